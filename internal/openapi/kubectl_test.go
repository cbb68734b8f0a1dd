package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/registry"
)

// fakeAPI serves the Handler plus just enough of the API for kubectl:
// legacy discovery, /version, one existing pod ("existing"), 404 for other
// objects, and it records the writes it receives.
type fakeAPI struct {
	openapi   http.Handler
	resources []*registry.Resource

	mu     sync.Mutex
	writes []recordedWrite
}

type recordedWrite struct {
	method, path, query, contentType string
	body                             []byte
}

const existingPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"existing","namespace":"default","resourceVersion":"5","uid":"0b5c4d2e-1111-4f4f-9999-000000000001",
"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"name\":\"existing\",\"namespace\":\"default\"},\"spec\":{\"containers\":[{\"image\":\"nginx:1.25\",\"name\":\"web\"},{\"image\":\"busybox\",\"name\":\"side\"}]}}\n"}},
"spec":{"containers":[{"name":"web","image":"nginx:1.25"},{"name":"side","image":"busybox"}]}}`

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/openapi/") {
		f.openapi.ServeHTTP(w, r)
		return
	}
	switch {
	case p == "/version":
		writeJSON(w, 200, map[string]string{"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"})
		return
	case p == "/api":
		writeJSON(w, 200, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
		return
	case p == "/apis":
		list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
		seen := map[string]bool{}
		for _, res := range f.resources {
			if res.Group == "" || seen[res.Group] {
				continue
			}
			seen[res.Group] = true
			gv := metav1.GroupVersionForDiscovery{GroupVersion: res.GroupVersion().String(), Version: res.Version}
			list.Groups = append(list.Groups, metav1.APIGroup{Name: res.Group, Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv})
		}
		writeJSON(w, 200, list)
		return
	}
	for _, res := range f.resources {
		if p == "/"+gvPath(res.GroupVersion()) {
			writeJSON(w, 200, f.resourceList(res.GroupVersion()))
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodGet {
		f.mu.Lock()
		f.writes = append(f.writes, recordedWrite{r.Method, p, r.URL.RawQuery, r.Header.Get("Content-Type"), body})
		f.mu.Unlock()
	}
	switch {
	case p == "/api/v1/namespaces/default/pods/existing" && (r.Method == http.MethodGet || r.Method == http.MethodPatch):
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, existingPod)
	case r.Method == http.MethodPost:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	default:
		parts := strings.Split(p, "/")
		st := apierrors.NewNotFound(schema.GroupResource{Resource: parts[len(parts)-2]}, parts[len(parts)-1]).ErrStatus
		st.Kind, st.APIVersion = "Status", "v1"
		writeJSON(w, http.StatusNotFound, st)
	}
}

func (f *fakeAPI) resourceList(gv schema.GroupVersion) *metav1.APIResourceList {
	list := &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
	for _, r := range f.resources {
		if r.GroupVersion() != gv {
			continue
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: r.Resource, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind,
			Verbs:      metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
			ShortNames: r.ShortNames, Categories: r.Categories,
		})
		for _, sub := range r.Subresources {
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: r.Resource + "/" + sub, Namespaced: r.Namespaced, Kind: r.Kind, Verbs: metav1.Verbs{"get", "patch", "update"},
			})
		}
	}
	return list
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// kubectls returns the kubectl binaries to test with: the one on PATH and
// the versioned ones installed beside it.
func kubectls(t *testing.T) []string {
	var out []string
	if p, err := exec.LookPath("kubectl"); err == nil {
		out = append(out, p)
	}
	for _, v := range []string{"1.27", "1.33"} {
		p := "/usr/lib/google-cloud-sdk/bin/kubectl." + v
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	if more := os.Getenv("SKIFF_TEST_KUBECTLS"); more != "" {
		out = append(out, strings.Fields(more)...)
	}
	if len(out) == 0 {
		t.Skip("kubectl not installed")
	}
	return out
}

const podYAML = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
spec:
  containers:
  - name: web
    image: nginx:1.25
    ports:
    - containerPort: 80
    resources:
      limits:
        cpu: 500m
        memory: 128Mi
`

// A List is validated client-side even when the server validates fields,
// so this exercises the v2 document's schemas.
const badListYAML = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: bad
    namespace: default
  spec:
    containers:
    - name: web
      image: nginx
      bogusField: 1
`

const existingYAML = `apiVersion: v1
kind: Pod
metadata:
  name: existing
  namespace: default
spec:
  containers:
  - name: web
    image: nginx:1.26
`

func TestKubectl(t *testing.T) {
	bins := kubectls(t)
	rs, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range bins {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			fake := &fakeAPI{openapi: h, resources: rs}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			k := newKubectl(t, bin, srv.URL, map[string]string{"pod.yaml": podYAML, "bad.yaml": badListYAML, "existing.yaml": existingYAML})
			run, mustRun, expect := k.run, k.mustRun, k.expect
			out := mustRun("explain", "pod.spec")
			expect(out, "KIND:       Pod", "VERSION:    v1", "FIELD: spec <PodSpec>", "containers\t<[]Container> -required-",
				"List of containers belonging to the pod.", "restartPolicy\t<string>", "Always")
			out = mustRun("explain", "deployment.spec.strategy")
			expect(out, "GROUP:      apps", "KIND:       Deployment", "FIELD: strategy <DeploymentStrategy>", "rollingUpdate\t<RollingUpdateDeployment>", "type\t<string>")
			out = mustRun("explain", "svc")
			expect(out, "KIND:       Service", "Service is a named abstraction", "spec\t<ServiceSpec>", "metadata\t<ObjectMeta>")
			out = mustRun("explain", "pod.spec.containers.resources.limits")
			expect(out, "FIELD: limits <map[string]Quantity>")
			out = mustRun("explain", "svc.spec.type")
			expect(out, "FIELD: type <string>", "ClusterIP", "NodePort")
			out = mustRun("explain", "deploy", "--recursive")
			expect(out, "      maxSurge\t<IntOrString>", "  metadata\t<ObjectMeta>")
			out = mustRun("explain", "pod.spec", "--output=plaintext-openapiv2")
			expect(out, "KIND:     Pod", "RESOURCE: spec <Object>", "containers\t<[]Object> -required-")

			out = mustRun("apply", "--dry-run=client", "-f", "pod.yaml")
			expect(out, "pod/web created (dry run)")

			out, err := run("apply", "--dry-run=client", "-f", "bad.yaml")
			t.Logf("bad.yaml: %s", out)
			if err == nil {
				t.Errorf("apply of an unknown field succeeded:\n%s", out)
			}
			expect(out, `unknown field "bogusField"`, "io.k8s.api.core.v1.Container")

			// kubectl found fieldValidation support in the v3 document:
			// it sends Strict and leaves validation to the server.
			mustRun("create", "-f", "pod.yaml")
			// An update is a strategic merge patch; kubectl computes it from
			// the v3 document's patch metadata, and warns if that fails.
			mustRun("apply", "-f", "existing.yaml")
			fake.mu.Lock()
			defer fake.mu.Unlock()
			var sawCreate, sawPatch bool
			for _, wr := range fake.writes {
				switch wr.method {
				case http.MethodPost:
					sawCreate = true
					if !strings.Contains(wr.query, "fieldValidation=Strict") {
						t.Errorf("create without fieldValidation=Strict: %s?%s", wr.path, wr.query)
					}
				case http.MethodPatch:
					sawPatch = true
					if wr.contentType != "application/strategic-merge-patch+json" {
						t.Errorf("apply patched with %s", wr.contentType)
					}
					// The merge key "name" keeps "side" out of the patch.
					if !strings.Contains(string(wr.body), `"$setElementOrder/containers":[{"name":"web"}]`) {
						t.Errorf("unexpected patch %s", wr.body)
					}
				}
			}
			if !sawCreate || !sawPatch {
				t.Errorf("writes seen: %+v", fake.writes)
			}
		})
	}
}

// kubectl runs one kubectl binary against a server with a fresh kubeconfig
// and HOME (so its discovery and OpenAPI caches start empty).
type kubectl struct {
	t                    *testing.T
	bin, dir, kubeconfig string
}

func newKubectl(t *testing.T, bin, server string, files map[string]string) *kubectl {
	dir := t.TempDir()
	k := &kubectl{t: t, bin: bin, dir: dir, kubeconfig: filepath.Join(dir, "kubeconfig")}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: %s
contexts:
- name: c
  context:
    cluster: c
    user: u
users:
- name: u
  user:
    token: t
current-context: c
`, server)
	if err := os.WriteFile(k.kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func (k *kubectl) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Dir = k.dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig, "HOME="+k.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// mustRun runs kubectl, failing the test on an error or a warning.
func (k *kubectl) mustRun(args ...string) string {
	k.t.Helper()
	out, err := k.run(args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if testing.Verbose() {
		k.t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
	}
	if strings.Contains(strings.ToLower(out), "warning") {
		k.t.Errorf("kubectl %s warned:\n%s", strings.Join(args, " "), out)
	}
	return out
}

func (k *kubectl) expect(out string, wants ...string) {
	k.t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			k.t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}
