package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080"]
        ports:
        - name: http
          containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
`

// TestUpstreamKubectl drives the server with the real kubectl binaries,
// with the written kubeconfig and no extra flags.
func TestUpstreamKubectl(t *testing.T) {
	bins := kubectlBinaries(t)
	c := startServer(t)
	names := make([]string, 0, len(bins))
	for v := range bins {
		names = append(names, v)
	}
	sort.Strings(names)
	for _, v := range names {
		bin := bins[v]
		t.Run("kubectl-"+v, func(t *testing.T) {
			c.t = t
			ns := "e2e-" + strings.ReplaceAll(v, ".", "-")
			dir := t.TempDir()
			manifest := dir + "/web.yaml"
			writeFile(t, manifest, webManifest)

			out := c.mustKubectl(bin, "", "get", "ns")
			for _, want := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
				if !regexp.MustCompile(`(?m)^` + want + `\s+Active\s+\S+$`).MatchString(out) {
					t.Errorf("get ns: no Active %s row:\n%s", want, out)
				}
			}
			if !strings.HasPrefix(out, "NAME") || !strings.Contains(strings.SplitN(out, "\n", 2)[0], "STATUS") {
				t.Errorf("get ns header:\n%s", out)
			}

			c.mustKubectl(bin, "", "create", "namespace", ns)

			out = c.mustKubectl(bin, "", "apply", "-n", ns, "-f", manifest)
			for _, want := range []string{"deployment.apps/web created", "service/web created", "configmap/web-config created"} {
				if !strings.Contains(out, want) {
					t.Errorf("first apply: want %q in:\n%s", want, out)
				}
			}
			out = c.mustKubectl(bin, "", "apply", "-n", ns, "-f", manifest)
			for _, want := range []string{"deployment.apps/web unchanged", "service/web unchanged", "configmap/web-config unchanged"} {
				if !strings.Contains(out, want) {
					t.Errorf("second apply: want %q in:\n%s", want, out)
				}
			}
			writeFile(t, manifest, strings.Replace(webManifest, "greeting: hello", "greeting: changed", 1))
			out = c.mustKubectl(bin, "", "apply", "-n", ns, "-f", manifest)
			if !strings.Contains(out, "configmap/web-config configured") || !strings.Contains(out, "deployment.apps/web unchanged") {
				t.Errorf("third apply:\n%s", out)
			}

			out = c.mustKubectl(bin, "", "get", "configmap", "web-config", "-n", ns, "-o", "yaml")
			for _, want := range []string{"greeting: changed", "kubectl.kubernetes.io/last-applied-configuration", "resourceVersion:", "uid:", "creationTimestamp:"} {
				if !strings.Contains(out, want) {
					t.Errorf("get -o yaml: want %q in:\n%s", want, out)
				}
			}

			out = c.mustKubectl(bin, "", "get", "svc", "web", "-n", ns, "-o", "wide")
			if !regexp.MustCompile(`(?m)^web\s+NodePort\s+10\.43\.\d+\.\d+\s+<none>\s+80:3\d{4}/TCP\s+\S+\s+app=web$`).MatchString(out) {
				t.Errorf("get svc -o wide:\n%s", out)
			}

			// get -w sees a change made after it started.
			watchSeesChange(t, c, bin, ns)

			out = c.mustKubectl(bin, "", "label", "configmap", "web-config", "-n", ns, "tier=frontend")
			if strings.TrimSpace(out) != "configmap/web-config labeled" {
				t.Errorf("label: %q", out)
			}
			out = c.mustKubectl(bin, "", "get", "configmaps", "-n", ns, "-l", "tier=frontend", "-o", "name")
			if strings.TrimSpace(out) != "configmap/web-config" {
				t.Errorf("get -l: %q", out)
			}

			out = c.mustKubectl(bin, "", "patch", "deployment", "web", "-n", ns, "-p", `{"spec":{"replicas":3}}`)
			if strings.TrimSpace(out) != "deployment.apps/web patched" {
				t.Errorf("strategic patch: %q", out)
			}
			c.mustKubectl(bin, "", "patch", "deployment", "web", "-n", ns, "--type=merge", "-p", `{"metadata":{"annotations":{"owner":"e2e"}}}`)
			c.mustKubectl(bin, "", "patch", "deployment", "web", "-n", ns, "--type=json", "-p", `[{"op":"replace","path":"/spec/minReadySeconds","value":5}]`)
			out = c.mustKubectl(bin, "", "get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.replicas} {.metadata.annotations.owner} {.spec.minReadySeconds} {.metadata.generation}")
			// Three patches, three generations: Kubernetes bumps a
			// Deployment's generation on annotation changes too.
			if strings.TrimSpace(out) != "3 e2e 5 4" {
				t.Errorf("after patches: %q, want replicas 3, annotation, minReadySeconds 5, generation 4", out)
			}

			// A manifest Kubernetes rejects is rejected with its wording.
			bad := strings.Replace(webManifest, "      labels:\n        app: web\n    spec:", "      labels:\n        app: other\n    spec:", 1)
			_, errOut, err := c.kubectl(bin, bad, "apply", "-n", ns, "-f", "-")
			if err == nil || !strings.Contains(errOut, `is invalid`) || !strings.Contains(errOut, "spec.template.metadata.labels") {
				t.Errorf("invalid apply: err=%v stderr=%s", err, errOut)
			}

			out = c.mustKubectl(bin, "", "api-resources")
			for _, re := range []string{
				`(?m)^pods\s+po\s+v1\s+true\s+Pod$`,
				`(?m)^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$`,
				`(?m)^namespaces\s+ns\s+v1\s+false\s+Namespace$`,
				`(?m)^ingresses\s+ing\s+networking.k8s.io/v1\s+true\s+Ingress$`,
			} {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("api-resources: no match for %s in:\n%s", re, out)
				}
			}

			out = c.mustKubectl(bin, "", "explain", "pod.spec")
			for _, want := range []string{"KIND:", "Pod", "containers", "restartPolicy"} {
				if !strings.Contains(out, want) {
					t.Errorf("explain pod.spec: want %q in:\n%s", want, out)
				}
			}

			out = c.mustKubectl(bin, "", "delete", "-n", ns, "-f", manifest)
			for _, want := range []string{`deployment.apps "web" deleted`, `service "web" deleted`, `configmap "web-config" deleted`} {
				if !strings.Contains(out, want) {
					t.Errorf("delete -f: want %q in:\n%s", want, out)
				}
			}
			_, errOut, err = c.kubectl(bin, "", "get", "configmap", "web-config", "-n", ns)
			if err == nil || !strings.Contains(errOut, `Error from server (NotFound): configmaps "web-config" not found`) {
				t.Errorf("get after delete: %v %s", err, errOut)
			}
		})
	}
}

// watchSeesChange runs `kubectl get configmaps -w` and checks that a
// ConfigMap created afterwards shows up as a new row.
func watchSeesChange(t *testing.T, c *cluster, bin, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "get", "configmaps", "-n", ns, "-w")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	created := false
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("kubectl get -w ended before seeing the change")
			}
			if strings.HasPrefix(line, "web-config") && !created {
				c.mustKubectl(bin, "", "create", "configmap", "watched", "-n", ns, "--from-literal=a=b")
				created = true
			}
			if strings.HasPrefix(line, "watched ") {
				if !regexp.MustCompile(`^watched\s+1\s+\S+$`).MatchString(line) {
					t.Errorf("watch row: %q", line)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("kubectl get -w did not show the new ConfigMap within 30s")
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
