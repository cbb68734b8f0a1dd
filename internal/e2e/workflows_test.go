package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestKubectlWorkflows runs the everyday kubectl commands a Kubernetes user
// types against one server, with every installed upstream kubectl. Each
// workflow works in its own namespace and removes what it made.
//
// These workflows check the API's behaviour as kubectl sees it, so the
// controllers are off: objects stay exactly as the commands left them
// (controlplane_test.go tests the controllers).
func TestKubectlWorkflows(t *testing.T) {
	bins := kubectlBinaries(t)
	c := startServer(t, "--disable-controller-manager", "--disable-scheduler")
	versions := make([]string, 0, len(bins))
	for v := range bins {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	workflows := []struct {
		name string
		run  func(w *workflow)
	}{
		{"discovery", wfDiscovery},
		{"generators", wfGenerators},
		{"output", wfOutput},
		{"edit-replace-diff", wfEditReplaceDiff},
		{"deployment", wfDeployment},
		{"watch-wait", wfWatchWait},
		{"pod-delete", wfPodDelete},
	}
	for _, v := range versions {
		for _, wf := range workflows {
			t.Run("kubectl-"+v+"/"+wf.name, func(t *testing.T) {
				c.t = t
				w := &workflow{t: t, c: c, bin: bins[v], dir: t.TempDir(),
					ns: "wf-" + wf.name + "-" + strings.ReplaceAll(v, ".", "-")}
				w.must("create", "namespace", w.ns)
				// With the controllers off nobody creates the namespace's
				// "default" ServiceAccount, and the ServiceAccount admission
				// rejects pods without it (as kube-apiserver does).
				w.must("create", "serviceaccount", "default")
				t.Cleanup(w.cleanup)
				wf.run(w)
			})
		}
	}
}

// workflow is one kubectl binary working in one namespace.
type workflow struct {
	t   *testing.T
	c   *cluster
	bin string
	ns  string
	dir string
	// nodes are cluster-scoped objects to remove at the end.
	nodes []string
}

// must runs kubectl -n ns ARGS and fails unless it succeeds quietly.
func (w *workflow) must(args ...string) string {
	w.t.Helper()
	return w.c.mustKubectl(w.bin, "", append([]string{"-n", w.ns}, args...)...)
}

// mustIn is must with stdin.
func (w *workflow) mustIn(stdin string, args ...string) string {
	w.t.Helper()
	return w.c.mustKubectl(w.bin, stdin, append([]string{"-n", w.ns}, args...)...)
}

// try runs kubectl -n ns ARGS and returns whatever happened.
func (w *workflow) try(args ...string) (string, string, error) {
	return w.c.kubectl(w.bin, "", append([]string{"-n", w.ns}, args...)...)
}

// file writes name in the workflow's temp dir and returns its path.
func (w *workflow) file(name, data string) string {
	w.t.Helper()
	p := filepath.Join(w.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	writeFile(w.t, p, data)
	return p
}

func (w *workflow) cleanup() {
	// Namespaces stay Terminating until a namespace controller exists, so
	// empty it first and do not wait for it to go.
	w.c.kubectl(w.bin, "", "-n", w.ns, "delete", "pods", "--all", "--grace-period=0", "--force")
	w.c.kubectl(w.bin, "", "-n", w.ns, "delete", "all,configmaps,secrets,serviceaccounts,ingresses,events", "--all", "--wait=false")
	w.c.kubectl(w.bin, "", "delete", "namespace", w.ns, "--wait=false")
	for _, n := range w.nodes {
		w.c.kubectl(w.bin, "", "delete", "node", n, "--wait=false")
	}
}

func (w *workflow) wantMatch(what, out string, res ...string) {
	w.t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(out) {
			w.t.Errorf("%s: no match for %s in:\n%s", what, re, out)
		}
	}
}

func (w *workflow) wantEqual(what, got, want string) {
	w.t.Helper()
	if strings.TrimSpace(got) != want {
		w.t.Errorf("%s = %q, want %q", what, strings.TrimSpace(got), want)
	}
}

// wfDiscovery: version, cluster-info, api-versions, explain, and auth can-i
// against a server without the authorization API.
func wfDiscovery(w *workflow) {
	out, errOut, err := w.c.kubectl(w.bin, "", "version")
	if err != nil {
		w.t.Fatalf("version: %v\n%s%s", err, out, errOut)
	}
	w.wantMatch("version", out, `(?m)^Client Version: `, `(?m)^Server Version: (version\.Info\{.*GitVersion:")?v1\.\d+\.\d+`)
	out = w.must("version", "-o", "json")
	w.wantMatch("version -o json", out, `"serverVersion":\s*\{`, `"major":\s*"1"`, `"platform":\s*"linux/`)

	out = w.must("cluster-info")
	w.wantMatch("cluster-info", out, fmt.Sprintf(`running at .*https://127\.0\.0\.1:%d`, w.c.port))

	out = w.must("api-versions")
	w.wantEqual("api-versions", out, strings.Join([]string{
		"apps/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1", "networking.k8s.io/v1", "v1"}, "\n"))

	// Kubernetes serves no deletecollection on namespaces.
	w.wantMatch("api-resources -o wide", w.must("api-resources", "-o", "wide"),
		`(?m)^namespaces\s+ns\s+v1\s+false\s+Namespace\s+\[?create[, ]delete[, ]get[, ]list[, ]patch[, ]update[, ]watch\]?\s*$`,
		`(?m)^configmaps\s+cm\s+v1\s+true\s+ConfigMap\s+\[?create[, ]delete[, ]deletecollection[, ]get`)

	for _, e := range []struct{ what, want string }{
		{"pods", "KIND:"},
		{"deployment.spec.strategy", "rollingUpdate"},
		{"service.spec.ports", "targetPort"},
		{"ingress.spec.rules", "http"},
		{"configmap.data", "data"},
		{"secret.type", "type"},
		{"node.status", "conditions"},
		{"namespace", "Namespace"},
		{"endpointslices", "EndpointSlice"},
		{"leases.spec", "holderIdentity"},
		{"ingressclass", "IngressClass"},
		{"replicaset.spec", "replicas"},
		{"serviceaccount", "ServiceAccount"},
		{"events.involvedObject", "uid"},
	} {
		out = w.must("explain", e.what)
		if !strings.Contains(out, e.want) {
			w.t.Errorf("explain %s: want %q in:\n%s", e.what, e.want, out)
		}
	}

	// SelfSubjectAccessReview is not served: kubectl reports the same
	// clean NotFound a cluster without authorization.k8s.io gives.
	out, errOut, err = w.try("auth", "can-i", "create", "pods")
	if err == nil || strings.TrimSpace(errOut) != "Error from server (NotFound): the server could not find the requested resource" {
		w.t.Errorf("auth can-i: err=%v stdout=%q stderr=%q", err, out, errOut)
	}
}

// wfGenerators: the `kubectl create ...`, `expose` and `run` generators,
// then get and describe of what they made.
func wfGenerators(w *workflow) {
	crt, key := w.tlsPair()
	for _, args := range [][]string{
		{"create", "configmap", "cm1", "--from-literal=a=b", "--from-literal=c=d"},
		{"create", "secret", "generic", "s1", "--from-literal=password=hunter2"},
		{"create", "secret", "tls", "tls1", "--cert=" + crt, "--key=" + key},
		{"create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "--port=80"},
		{"create", "service", "clusterip", "svc1", "--tcp=80:8080"},
		{"create", "service", "nodeport", "svc2", "--tcp=80:8080"},
		{"create", "serviceaccount", "sa1"},
		{"create", "ingress", "ing1", "--class=nginx", "--rule=foo.example.com/bar*=svc1:80"},
		{"expose", "deployment", "web", "--port=80", "--target-port=8080", "--name=websvc"},
		{"run", "p1", "--image=busybox:1.36", "--labels=app=p1", "--", "sleep", "3600"},
	} {
		out := w.must(args...)
		if !regexp.MustCompile(`(created|exposed)\s*$`).MatchString(out) {
			w.t.Errorf("kubectl %s: %q", strings.Join(args, " "), out)
		}
	}

	w.wantMatch("get secrets", w.must("get", "secrets"),
		`(?m)^s1\s+Opaque\s+1\s+\S+$`, `(?m)^tls1\s+kubernetes.io/tls\s+2\s+\S+$`)
	w.wantEqual("secret data", w.must("get", "secret", "s1", "-o", "jsonpath={.data.password}"), "aHVudGVyMg==")
	w.wantMatch("get svc", w.must("get", "svc"),
		`(?m)^svc1\s+ClusterIP\s+10\.43\.\d+\.\d+\s+<none>\s+80/TCP\s+\S+$`,
		`(?m)^svc2\s+NodePort\s+10\.43\.\d+\.\d+\s+<none>\s+80:3\d{4}/TCP\s+\S+$`,
		`(?m)^websvc\s+ClusterIP\s+10\.43\.\d+\.\d+\s+<none>\s+80/TCP\s+\S+$`)
	w.wantEqual("expose selector", w.must("get", "svc", "websvc", "-o", "jsonpath={.spec.selector.app} {.spec.ports[0].targetPort}"), "web 8080")
	// replace --force of what get -o yaml printed gets the same ClusterIP
	// and NodePort back: delete released them.
	held := w.must("get", "svc", "svc2", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}")
	w.wantEqual("replace --force svc", w.mustIn(w.must("get", "svc", "svc2", "-o", "yaml"), "replace", "--force", "-f", "-"),
		"service \"svc2\" deleted\nservice/svc2 replaced")
	w.wantEqual("ClusterIP and NodePort after replace --force", w.must("get", "svc", "svc2", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}"), held)
	w.wantMatch("get deploy", w.must("get", "deploy", "web", "-o", "wide"),
		`(?m)^web\s+0/2\s+0\s+0\s+\S+\s+nginx\s+nginx:1.25\s+app=web$`)
	w.wantMatch("get pod", w.must("get", "pod", "p1"), `(?m)^p1\s+0/1\s+Pending\s+0\s+\S+$`)
	w.wantMatch("get ing", w.must("get", "ingress"), `(?m)^ing1\s+nginx\s+foo.example.com\s+80\s+\S+$`)
	w.wantMatch("get sa", w.must("get", "serviceaccount", "sa1"), `(?m)^sa1\s+0\s+\S+$`)

	// describe lists events with field selectors on involvedObject.
	uid := w.must("get", "pod", "p1", "-o", "jsonpath={.metadata.uid}")
	ev := fmt.Sprintf(`apiVersion: v1
kind: Event
metadata: {name: p1.e2e, namespace: %s}
involvedObject: {apiVersion: v1, kind: Pod, name: p1, namespace: %s, uid: %s}
reason: Pulling
message: Pulling image "busybox:1.36"
type: Normal
source: {component: kubelet}
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:00:00Z"
count: 1
`, w.ns, w.ns, uid)
	w.mustIn(ev, "create", "-f", "-")
	w.wantMatch("get events", w.must("get", "events"), `(?m)^\S+\s+Normal\s+Pulling\s+pod/p1\s+Pulling image "busybox:1.36"$`)
	w.wantMatch("get events --field-selector", w.must("get", "events", "--field-selector", "involvedObject.kind=Pod,involvedObject.name=p1,reason=Pulling", "-o", "name"), `event/p1.e2e`)

	for _, d := range []struct {
		what string
		want []string
	}{
		{"pod/p1", []string{`(?m)^Status:\s+Pending$`, `(?m)^Labels:\s+app=p1$`, `(?m)^\s+Normal\s+Pulling\s+\S+\s+kubelet\s+Pulling image "busybox:1.36"$`}},
		{"deployment/web", []string{`(?m)^Replicas:\s+2 desired`, `(?m)^StrategyType:\s+RollingUpdate$`, `25% max unavailable, 25% max surge`}},
		{"service/svc2", []string{`(?m)^Type:\s+NodePort$`, `(?m)^NodePort:\s+80-8080\s+3\d{4}/TCP$`}},
		{"namespace/" + w.ns, []string{`(?m)^Status:\s+Active$`}},
		{"configmap/cm1", []string{`(?m)^a:$`, `(?m)^b$`}},
		{"secret/s1", []string{`(?m)^password:\s+7 bytes$`}},
		{"secret/tls1", []string{`(?m)^Type:\s+kubernetes.io/tls$`, `(?m)^tls.crt:\s+\d+ bytes$`}},
		{"ingress/ing1", []string{`(?m)^Ingress Class:\s+nginx$`, `foo.example.com`, `/bar\*?\s+svc1:80`}},
		{"serviceaccount/sa1", []string{`(?m)^Name:\s+sa1$`}},
	} {
		w.wantMatch("describe "+d.what, w.must("describe", d.what), d.want...)
	}
}

// wfOutput: paging, the printers, sorting, labels and bulk deletes.
func wfOutput(w *workflow) {
	for i := 1; i <= 5; i++ {
		w.must("create", "configmap", fmt.Sprintf("c%d", i), fmt.Sprintf("--from-literal=n=%d", 6-i))
	}
	want := "configmap/c1\nconfigmap/c2\nconfigmap/c3\nconfigmap/c4\nconfigmap/c5"
	w.wantEqual("get --chunk-size=2", w.must("get", "configmaps", "--chunk-size=2", "-o", "name"), want)
	// The pages are really pages: kubectl follows continue tokens.
	_, log, err := w.try("get", "configmaps", "--chunk-size=2", "-v=6")
	if err != nil || strings.Count(log, "continue=") != 2 {
		w.t.Errorf("get --chunk-size=2 -v=6: want 2 continued requests (err %v):\n%s", err, log)
	}
	w.wantEqual("get -A --chunk-size=1", w.c.mustKubectl(w.bin, "", "get", "configmaps", "-A", "--chunk-size=1", "-o", "name", "--field-selector", "metadata.namespace="+w.ns), want)

	w.wantEqual("jsonpath", w.must("get", "cm", "-o", "jsonpath={.items[*].metadata.name}"), "c1 c2 c3 c4 c5")
	w.wantEqual("jsonpath range", w.must("get", "cm", "-o", `jsonpath={range .items[*]}{.metadata.name}={.data.n}{"\n"}{end}`), "c1=5\nc2=4\nc3=3\nc4=2\nc5=1")
	w.wantMatch("custom-columns", w.must("get", "cm", "-o", "custom-columns=NAME:.metadata.name,N:.data.n"),
		`(?m)^NAME\s+N$`, `(?m)^c3\s+3$`)
	w.wantEqual("go-template", w.must("get", "cm", "-o", `go-template={{range .items}}{{.metadata.name}} {{end}}`), "c1 c2 c3 c4 c5")
	w.wantEqual("--sort-by", w.must("get", "cm", "--sort-by=.data.n", "-o", "name"),
		"configmap/c5\nconfigmap/c4\nconfigmap/c3\nconfigmap/c2\nconfigmap/c1")
	sorted := w.must("get", "cm", "--sort-by=.data.n")
	w.wantMatch("--sort-by table", sorted, `^NAME\s+DATA\s+AGE\nc5\s+1\s+\S+\nc4\s`)

	w.must("label", "cm", "--all", "tier=one")
	out := w.must("label", "cm", "-l", "tier=one", "tier=two", "--overwrite")
	if strings.Count(out, "labeled") != 5 {
		w.t.Errorf("label -l --overwrite:\n%s", out)
	}
	w.wantMatch("--show-labels", w.must("get", "cm", "c1", "--show-labels"), `(?m)^NAME\s+DATA\s+AGE\s+LABELS$`, `(?m)^c1\s+1\s+\S+\s+tier=two$`)

	w.must("annotate", "cm", "c1", "owner=a")
	_, errOut, err := w.try("annotate", "cm", "c1", "owner=b")
	if err == nil || !strings.Contains(errOut, "--overwrite is false but found the following declared annotation(s): 'owner' already has a value (a)") {
		w.t.Errorf("annotate without --overwrite: %v %s", err, errOut)
	}
	w.must("annotate", "cm", "c1", "owner=b", "--overwrite")
	w.wantEqual("annotation", w.must("get", "cm", "c1", "-o", "jsonpath={.metadata.annotations.owner}"), "b")

	w.must("label", "cm", "c1", "c2", "doomed=yes")
	out = w.must("delete", "cm", "-l", "doomed=yes")
	w.wantEqual("delete -l", out, "configmap \"c1\" deleted\nconfigmap \"c2\" deleted")
	out = w.must("delete", "cm", "--all")
	w.wantEqual("delete --all", out, "configmap \"c3\" deleted\nconfigmap \"c4\" deleted\nconfigmap \"c5\" deleted")
	_, errOut, _ = w.try("get", "cm")
	w.wantEqual("get after delete --all", errOut, "No resources found in "+w.ns+" namespace.")
}

// wfEditReplaceDiff: edit, replace (plain and --force), diff, server-side
// dry-run, a List, and apply of a directory with several documents.
func wfEditReplaceDiff(w *workflow) {
	w.must("create", "configmap", "conf", "--from-literal=mode=old")
	editor := w.file("editor.sh", "#!/bin/sh\nsed -i 's/mode: old/mode: edited/' \"$1\"\n")
	if err := os.Chmod(editor, 0o755); err != nil {
		w.t.Fatal(err)
	}
	out, errOut, err := w.kubectlEnv([]string{"EDITOR=" + editor, "KUBE_EDITOR=" + editor}, "edit", "configmap", "conf")
	if err != nil || strings.TrimSpace(out) != "configmap/conf edited" {
		w.t.Errorf("edit: %v %q %s", err, out, errOut)
	}
	w.wantEqual("after edit", w.must("get", "cm", "conf", "-o", "jsonpath={.data.mode}"), "edited")

	// replace -f with what get -o yaml returned (resourceVersion included).
	live := w.must("get", "cm", "conf", "-o", "yaml")
	uid := w.must("get", "cm", "conf", "-o", "jsonpath={.metadata.uid}")
	w.wantEqual("replace -f", w.mustIn(strings.Replace(live, "mode: edited", "mode: replaced", 1), "replace", "-f", "-"), "configmap/conf replaced")
	w.wantEqual("after replace", w.must("get", "cm", "conf", "-o", "jsonpath={.data.mode} {.metadata.uid}"), "replaced "+uid)
	// A stale resourceVersion is a conflict.
	_, errOut, err = w.c.kubectl(w.bin, live, "-n", w.ns, "replace", "-f", "-")
	if err == nil || !strings.Contains(errOut, `Operation cannot be fulfilled on configmaps "conf": the object has been modified`) {
		w.t.Errorf("stale replace: %v %s", err, errOut)
	}

	manifest := w.file("conf.yaml", fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\n  namespace: %s\ndata:\n  mode: forced\n", w.ns))
	out = w.must("replace", "--force", "-f", manifest)
	w.wantEqual("replace --force", out, "configmap \"conf\" deleted\nconfigmap/conf replaced")
	got := w.must("get", "cm", "conf", "-o", "jsonpath={.data.mode} {.metadata.uid}")
	if !strings.HasPrefix(got, "forced ") || strings.HasSuffix(got, uid) {
		w.t.Errorf("after replace --force: %q (old uid %s): want new data and a new uid", got, uid)
	}

	// diff: exit 1 with a unified diff when the server would change it,
	// exit 0 when not; nothing is written.
	changed := w.file("conf2.yaml", strings.Replace(readFile(w.t, manifest), "mode: forced", "mode: diffed", 1))
	out, errOut, err = w.try("diff", "-f", changed)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "-  mode: forced\n+  mode: diffed") {
		w.t.Errorf("diff of a change: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = w.try("diff", "-f", manifest)
	if err != nil || out != "" {
		w.t.Errorf("diff of the same object: %v\n%s%s", err, out, errOut)
	}
	w.wantEqual("after diff", w.must("get", "cm", "conf", "-o", "jsonpath={.data.mode}"), "forced")

	// apply --dry-run=server validates and reports, but writes nothing.
	// Adopt it; kubectl warns about the missing annotation, as it does
	// against any cluster.
	if _, errOut, err := w.try("apply", "-f", manifest); err != nil {
		w.t.Fatalf("apply: %v %s", err, errOut)
	}
	w.wantEqual("apply --dry-run=server", w.must("apply", "--dry-run=server", "-f", changed), "configmap/conf configured (server dry run)")
	w.wantEqual("after dry-run apply", w.must("get", "cm", "conf", "-o", "jsonpath={.data.mode}"), "forced")
	_, errOut, err = w.try("apply", "--dry-run=server", "-f", w.file("bad.yaml", fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: Bad_Name\n  namespace: %s\nspec:\n  ports:\n  - port: 80\n", w.ns)))
	if err == nil || !strings.Contains(errOut, `The Service "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"`) {
		w.t.Errorf("invalid dry-run: %v %s", err, errOut)
	}

	// create -f of a List.
	list := fmt.Sprintf(`apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: l1, namespace: %[1]s}
- apiVersion: v1
  kind: Service
  metadata: {name: l2, namespace: %[1]s}
  spec: {selector: {app: l}, ports: [{port: 80}]}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: l3, namespace: %[1]s}
  spec:
    selector: {matchLabels: {app: l}}
    template:
      metadata: {labels: {app: l}}
      spec: {containers: [{name: c, image: nginx}]}
`, w.ns)
	listFile := w.file("list.yaml", list)
	w.wantEqual("create -f List", w.must("create", "-f", listFile), "configmap/l1 created\nservice/l2 created\ndeployment.apps/l3 created")
	w.wantEqual("get -f List", w.must("get", "-f", listFile, "-o", "name"), "configmap/l1\nservice/l2\ndeployment.apps/l3")
	w.wantEqual("delete -f List", w.must("delete", "-f", listFile), "configmap \"l1\" deleted\nservice \"l2\" deleted\ndeployment.apps \"l3\" deleted")

	// apply -f DIR with several documents per file.
	w.file("app/a.yaml", list)
	w.file("app/b.yaml", fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: b1, namespace: %[1]s}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: b2, namespace: %[1]s}
spec:
  rules:
  - host: x.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: l2, port: {number: 80}}}}]}
`, w.ns))
	dir := filepath.Join(w.dir, "app") + "/"
	out = w.must("apply", "-f", dir)
	w.wantEqual("apply -f dir/", out, "configmap/l1 created\nservice/l2 created\ndeployment.apps/l3 created\nconfigmap/b1 created\ningress.networking.k8s.io/b2 created")
	out = w.must("apply", "-f", dir)
	if strings.Count(out, "unchanged") != 5 {
		w.t.Errorf("second apply -f dir/:\n%s", out)
	}
	out, errOut, err = w.try("diff", "-f", dir)
	if err != nil || out != "" {
		w.t.Errorf("diff -f dir/ after apply: %v\n%s%s", err, out, errOut)
	}
}

// wfDeployment: scale, set image, rollout restart, status and scale
// subresources.
func wfDeployment(w *workflow) {
	w.must("create", "deployment", "app", "--image=nginx:1.25", "--replicas=1")
	w.wantEqual("scale", w.must("scale", "deployment", "app", "--replicas=3"), "deployment.apps/app scaled")
	w.wantEqual("after scale", w.must("get", "deploy", "app", "-o", "jsonpath={.spec.replicas} {.metadata.generation}"), "3 2")
	_, errOut, err := w.try("scale", "deployment", "app", "--replicas=5", "--current-replicas=2")
	if err == nil || !strings.Contains(errOut, "Expected replicas to be 2, was 3") {
		w.t.Errorf("scale --current-replicas mismatch: %v %s", err, errOut)
	}
	w.wantEqual("set image", w.must("set", "image", "deployment/app", "nginx=nginx:1.26"), "deployment.apps/app image updated")
	w.wantEqual("after set image", w.must("get", "deploy", "app", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}"), "nginx:1.26 3")
	w.wantEqual("rollout restart", w.must("rollout", "restart", "deployment/app"), "deployment.apps/app restarted")
	if got := w.must("get", "deploy", "app", "-o", `jsonpath={.spec.template.metadata.annotations.kubectl\.kubernetes\.io/restartedAt}`); got == "" {
		w.t.Error("rollout restart did not set restartedAt")
	}
	w.wantEqual("set env", w.must("set", "env", "deployment/app", "MODE=prod"), "deployment.apps/app env updated")

	// --subresource=status writes status only; the spec is untouched.
	w.wantEqual("patch --subresource=status", w.must("patch", "deployment", "app", "--subresource=status", "--type=merge",
		"-p", `{"status":{"replicas":3,"readyReplicas":2,"availableReplicas":2,"updatedReplicas":3},"spec":{"replicas":9}}`), "deployment.apps/app patched")
	w.wantMatch("get after status patch", w.must("get", "deploy", "app"), `(?m)^app\s+2/3\s+3\s+2\s+\S+$`)
	w.wantEqual("spec after status patch", w.must("get", "deploy", "app", "-o", "jsonpath={.spec.replicas}"), "3")
	w.wantMatch("get --subresource=scale", w.must("get", "deploy", "app", "--subresource=scale", "-o", "yaml"),
		`(?m)^kind: Scale$`, `(?m)^  replicas: 3$`, `(?m)^  selector: app=app$`)
}

// wfWatchWait: get --watch-only, wait --for=delete, wait --for=jsonpath.
func wfWatchWait(w *workflow) {
	w.must("create", "configmap", "before")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, "-n", w.ns, "get", "configmaps", "--watch-only", "-o", "name")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+w.c.kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The watch starts at some point after Start; keep creating objects
	// until one shows up, then check that nothing listed came first.
	var seen []string
	deadline := time.After(20 * time.Second)
	for i := 0; len(seen) == 0; i++ {
		w.must("create", "configmap", fmt.Sprintf("after%d", i))
		select {
		case l, ok := <-lines:
			if !ok {
				w.t.Fatal("kubectl get --watch-only ended early")
			}
			seen = append(seen, l)
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			w.t.Fatal("kubectl get --watch-only printed nothing within 20s")
		}
	}
	if !strings.HasPrefix(seen[0], "configmap/after") {
		w.t.Errorf("--watch-only printed %q first; the existing object must not be listed", seen[0])
	}

	// wait --for=delete returns once the object is gone.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		w.c.kubectl(w.bin, "", "-n", w.ns, "delete", "configmap", "before")
	}()
	out, errOut, err := w.try("wait", "--for=delete", "configmap/before", "--timeout=20s")
	<-done
	if err != nil || !strings.Contains(out, "configmap/before condition met") {
		w.t.Errorf("wait --for=delete: %v %q %s", err, out, errOut)
	}

	// wait --for=jsonpath sees a later change.
	w.must("create", "configmap", "flag", "--from-literal=state=off")
	go func() {
		time.Sleep(300 * time.Millisecond)
		w.c.kubectl(w.bin, "", "-n", w.ns, "patch", "configmap", "flag", "-p", `{"data":{"state":"on"}}`)
	}()
	out, errOut, err = w.try("wait", "--for=jsonpath={.data.state}=on", "configmap/flag", "--timeout=20s")
	if err != nil || !strings.Contains(out, "configmap/flag condition met") {
		w.t.Errorf("wait --for=jsonpath: %v %q %s", err, out, errOut)
	}
	_, errOut, err = w.try("wait", "--for=jsonpath={.data.state}=never", "configmap/flag", "--timeout=1s")
	if err == nil || !strings.Contains(errOut, "timed out waiting for the condition") {
		w.t.Errorf("wait for a value that never comes: %v %s", err, errOut)
	}
}

// wfPodDelete: a pod bound to a node is deleted gracefully (Terminating
// until its agent confirms, or a forced delete); an unbound one at once.
func wfPodDelete(w *workflow) {
	node := w.ns + "-node"
	w.nodes = append(w.nodes, node)
	w.mustIn(fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata:\n  name: %s\n", node), "create", "-f", "-")
	w.must("patch", "node", node, "--subresource=status", "--type=merge", "-p",
		`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`)
	w.wantMatch("get node", w.c.mustKubectl(w.bin, "", "get", "node", node), `(?m)^`+node+`\s+Ready\s+<none>\s+\S+\s*$`)
	out := w.must("wait", "--for=condition=Ready", "node/"+node, "--timeout=10s")
	w.wantEqual("wait --for=condition", out, "node/"+node+" condition met")

	w.mustIn(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: bound}
spec:
  nodeName: %s
  containers: [{name: c, image: busybox:1.36, resources: {requests: {cpu: 100m}}}]
`, node), "create", "-f", "-")
	w.must("run", "unbound", "--image=busybox:1.36")
	w.wantMatch("describe node", w.c.mustKubectl(w.bin, "", "describe", "node", node),
		`(?m)^Non-terminated Pods:\s+\(1 in total\)$`, `(?m)^\s+`+w.ns+`\s+bound\s+100m`)

	w.wantEqual("delete bound", w.must("delete", "pod", "bound", "--wait=false"), `pod "bound" deleted`)
	w.wantMatch("get terminating pod", w.must("get", "pod", "bound"), `(?m)^bound\s+0/1\s+Terminating\s+0\s+\S+$`)
	w.wantEqual("grace", w.must("get", "pod", "bound", "-o", "jsonpath={.metadata.deletionGracePeriodSeconds}"), "30")
	w.wantMatch("describe terminating pod", w.must("describe", "pod", "bound"), `(?m)^Status:\s+Terminating \(lasts `)

	// An unbound pod has nothing to wait for.
	w.wantEqual("delete unbound", w.must("delete", "pod", "unbound", "--timeout=20s"), `pod "unbound" deleted`)

	out, errOut, err := w.try("delete", "pod", "bound", "--grace-period=0", "--force")
	if err != nil || strings.TrimSpace(out) != `pod "bound" force deleted` || !strings.Contains(errOut, "Immediate deletion does not wait") {
		w.t.Errorf("force delete: %v %q %s", err, out, errOut)
	}
	_, errOut, err = w.try("get", "pod", "bound")
	if err == nil || !strings.Contains(errOut, `pods "bound" not found`) {
		w.t.Errorf("get after force delete: %v %s", err, errOut)
	}
}

// kubectlEnv runs kubectl -n ns ARGS with extra environment variables.
func (w *workflow) kubectlEnv(env []string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, append([]string{"-n", w.ns}, args...)...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+w.c.kubeconfig), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// tlsPair writes a self-signed certificate and key for `create secret tls`.
func (w *workflow) tlsPair() (crt, key string) {
	w.t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		w.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		w.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		w.t.Fatal(err)
	}
	crt = w.file("tls.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	key = w.file("tls.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	return crt, key
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRestartFinishesBootstrap: a restarted server finishes its bootstrap
// (it writes the kubeconfig only after that) and stays up, and the
// default/kubernetes Service and Endpoints follow a changed API port.
// The bootstrap used to create the existing Service again, which fails on
// its ClusterIP, until the server gave up and exited a minute later.
func TestRestartFinishesBootstrap(t *testing.T) {
	kubectl := kubectlBinaries(t)["path"]
	c := startServer(t)
	if err := c.stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, c.log)
	}
	if err := os.Remove(c.kubeconfig); err != nil {
		t.Fatal(err)
	}
	c.port = freePort(t)
	c.start() // waits for the kubeconfig
	port := fmt.Sprint(c.port)
	if got := c.mustKubectl(kubectl, "", "-n", "default", "get", "svc", "kubernetes", "-o", "jsonpath={.spec.ports[0].targetPort}"); got != port {
		t.Errorf("after a restart on port %s: service targetPort %q", port, got)
	}
	// A host with only loopback addresses has no endpoints to check; the
	// server says so in its log. Anywhere else they must exist.
	if strings.Contains(c.log.String(), "no non-loopback node IP") {
		t.Log("no non-loopback node IP on this host: default/kubernetes has no endpoints to check")
		return
	}
	for _, args := range [][]string{
		{"get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].ports[0].port}"},
		{"get", "endpointslices", "kubernetes", "-o", "jsonpath={.ports[0].port}"},
	} {
		if got := c.mustKubectl(kubectl, "", append([]string{"-n", "default"}, args...)...); got != port {
			t.Errorf("after a restart on port %s: %s %s = %q", port, args[1], args[2], got)
		}
	}
}
