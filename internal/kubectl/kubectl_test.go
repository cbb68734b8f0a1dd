package kubectl

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/kubectl")

const goldenDir = "../../testdata/kubectl"

type result struct {
	stdout, stderr string
	code           int
}

// runOurs runs Run against the kubeconfig.
func runOurs(t *testing.T, kubeconfig string, stdin string, args ...string) result {
	t.Helper()
	r, err := runOursErr(kubeconfig, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runOursErr is runOurs for goroutines other than the test's, which must
// not call t.Fatal.
func runOursErr(kubeconfig string, stdin string, args ...string) (result, error) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, append([]string{"--kubeconfig", kubeconfig}, args...), strings.NewReader(stdin), &out, &errOut)
	code := 0
	if err != nil {
		var ee *ExitError
		if !errors.As(err, &ee) {
			return result{}, fmt.Errorf("Run returned %T, want *ExitError: %v", err, err)
		}
		code = ee.Code
	}
	return result{out.String(), errOut.String(), code}, nil
}

// kubectlPath is the upstream kubectl on PATH, or "" to skip comparisons.
func kubectlPath(t *testing.T) string {
	p, err := exec.LookPath("kubectl")
	if err != nil {
		return ""
	}
	return p
}

func runUpstream(t *testing.T, bin, kubeconfig, stdin string, args ...string) result {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(home, "cache")}, args...)...)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "KUBECTL_KUBERC=false"}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("kubectl: %v", err)
		}
		code = ee.ExitCode()
	}
	return result{out.String(), errOut.String(), code}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join(goldenDir, name+".golden")
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("missing golden file (run with -update): %v", err)
	}
	if string(want) != got {
		t.Errorf("%s: output differs from golden file\n--- want\n%s--- got\n%s", name, want, got)
	}
}

func obj(y string) map[string]any {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		panic(err)
	}
	return m
}

// seed fills a fake server with a small, realistic cluster.
func seed(f *fakeServer) {
	for _, y := range []string{
		`{apiVersion: v1, kind: Namespace, metadata: {name: default}}`,
		`{apiVersion: v1, kind: Namespace, metadata: {name: kube-system}}`,
		`{apiVersion: v1, kind: Node, metadata: {name: node-1, labels: {kubernetes.io/hostname: node-1}}}`,
		`{apiVersion: v1, kind: Pod, metadata: {name: nginx, namespace: default, labels: {app: nginx}}, spec: {nodeName: node-1, containers: [{name: nginx, image: nginx}]}, status: {phase: Running, podIP: 10.42.0.5}}`,
		`{apiVersion: v1, kind: Pod, metadata: {name: web-7d9f8c6b5-x2x7q, namespace: default, labels: {app: web, pod-template-hash: 7d9f8c6b5}}, spec: {containers: [{name: web, image: nginx}, {name: sidecar, image: busybox}]}}`,
		`{apiVersion: v1, kind: Pod, metadata: {name: coredns-6799fbcd5-abcde, namespace: kube-system, labels: {k8s-app: kube-dns}}, spec: {nodeName: node-1, containers: [{name: coredns, image: coredns}]}, status: {phase: Running, podIP: 10.42.0.2}}`,
		`{apiVersion: v1, kind: Service, metadata: {name: kubernetes, namespace: default, labels: {component: apiserver}}, spec: {clusterIP: 10.43.0.1, ports: [{port: 443}]}}`,
		`{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: default, labels: {app: web}, managedFields: [{manager: kubectl, operation: Update}]}, spec: {replicas: 2, selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: "nginx:1.27"}]}}}}`,
	} {
		f.add(obj(y))
	}
}

var readOnlyCases = []struct {
	name string
	args []string
}{
	{"get-pods", []string{"get", "pods"}},
	{"get-pods-wide", []string{"get", "pods", "-o", "wide"}},
	{"get-pods-all-namespaces", []string{"get", "pods", "-A"}},
	{"get-pods-all-namespaces-wide", []string{"get", "-o", "wide", "pods", "--all-namespaces"}},
	{"get-pods-yaml", []string{"get", "pods", "-o", "yaml"}},
	{"get-pod-yaml", []string{"get", "pod", "nginx", "-o", "yaml"}},
	{"get-pod-slash-yaml", []string{"get", "po/nginx", "-oyaml"}},
	{"get-pods-json", []string{"get", "pods", "-o", "json"}},
	{"get-pod-json", []string{"get", "pods", "nginx", "-o", "json"}},
	{"get-pods-name", []string{"get", "pods", "-o", "name"}},
	{"get-deploy-name", []string{"get", "deploy", "-A", "-o", "name"}},
	{"get-all", []string{"get", "all"}},
	{"get-all-all-namespaces", []string{"get", "all", "-A"}},
	{"get-pods-svc", []string{"get", "pods,svc"}},
	{"get-two-pods", []string{"get", "po", "nginx", "web-7d9f8c6b5-x2x7q"}},
	{"get-type-slash-name", []string{"get", "pod/nginx", "service/kubernetes"}},
	{"get-deploy-wide", []string{"get", "deployments.apps", "-o", "wide", "-A"}},
	{"get-kind", []string{"get", "Deployment"}},
	{"get-selector-labels", []string{"get", "pods", "-l", "app=web", "--show-labels"}},
	{"get-label-columns", []string{"get", "pods", "-L", "app", "-A"}},
	{"get-field-selector", []string{"get", "pods", "--field-selector", "metadata.name=nginx"}},
	{"get-no-headers", []string{"get", "pods", "--no-headers"}},
	{"get-nodes", []string{"get", "nodes"}},
	{"get-nodes-wide-yaml", []string{"get", "no", "node-1", "-o", "yaml"}},
	{"get-ns", []string{"get", "ns"}},
	{"get-cm-empty", []string{"get", "configmaps"}},
	{"get-empty-namespace", []string{"-n", "nothing", "get", "pods"}},
	{"get-empty-cluster", []string{"get", "configmaps", "-A"}},
	{"get-empty-yaml", []string{"get", "cm", "-o", "yaml"}},
	{"get-missing", []string{"get", "pod", "missing"}},
	{"get-missing-and-found", []string{"get", "pod", "missing", "nginx"}},
	{"get-unknown-type", []string{"get", "frobs"}},
	{"get-ignore-not-found", []string{"get", "pod", "missing", "--ignore-not-found"}},
	{"get-fallback-table", []string{"get", "widgets"}},
	{"get-jsonpath-list", []string{"get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\t\"}{.status.podIP}{\"\\n\"}{end}"}},
	{"get-jsonpath-one", []string{"get", "svc", "kubernetes", "-o=jsonpath={.spec.clusterIP}"}},
	{"get-jsonpath-missing", []string{"get", "svc", "kubernetes", "-o", "jsonpath={.spec.nothing}"}},
	{"get-jsonpath-no-template", []string{"get", "pods", "-o", "jsonpath"}},
	{"get-bad-output", []string{"get", "pods", "-o", "foo"}},
	{"get-no-args", []string{"get"}},
	{"get-extra-slash", []string{"get", "pods", "pod/nginx"}},
	{"api-resources", []string{"api-resources"}},
	{"api-resources-wide", []string{"api-resources", "-o", "wide"}},
	{"api-resources-name", []string{"api-resources", "-o", "name"}},
	{"api-resources-cluster", []string{"api-resources", "--namespaced=false"}},
	{"api-resources-apps", []string{"api-resources", "--api-group", "apps"}},
}

// TestGetMatchesUpstream compares Run with the real kubectl on the same
// fake server, and records the output as golden files.
func TestGetMatchesUpstream(t *testing.T) {
	f := newFakeServer(t)
	seed(f)
	// No creationTimestamp: the fallback printer computes AGE locally, and
	// "<unknown>" keeps the golden file independent of the date.
	f.add(obj(`{apiVersion: example.com/v1, kind: Widget, metadata: {name: gizmo, namespace: default, creationTimestamp: null}}`))
	kc := f.kubeconfig(t)
	bin := kubectlPath(t)
	for _, tc := range readOnlyCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ours := runOurs(t, kc, "", tc.args...)
			golden(t, tc.name, ours.stdout+"--- stderr\n"+ours.stderr)
			if bin == "" {
				t.Skip("kubectl not on PATH")
			}
			up := runUpstream(t, bin, kc, "", tc.args...)
			if ours.stdout != up.stdout {
				t.Errorf("stdout differs from kubectl\n--- kubectl\n%s--- ours\n%s", up.stdout, ours.stdout)
			}
			if normalizeStderr(ours.stderr) != normalizeStderr(up.stderr) {
				t.Errorf("stderr differs from kubectl\n--- kubectl\n%s--- ours\n%s", up.stderr, ours.stderr)
			}
			if ours.code != up.code {
				t.Errorf("exit code %d, kubectl %d", ours.code, up.code)
			}
		})
	}
}

var klogLine = regexp.MustCompile(`(?m)^[EWI]\d{4} .*\n`)

// normalizeStderr drops klog lines, which only upstream kubectl emits.
func normalizeStderr(s string) string { return klogLine.ReplaceAllString(s, "") }
