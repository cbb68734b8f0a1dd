package kubectl

import (
	"strings"
	"testing"
)

// TestApplyInteroperatesWithUpstream alternates upstream kubectl and Run
// on one server: each must see the other's last-applied configuration as
// its own ("unchanged") and compute the same patches.
func TestApplyInteroperatesWithUpstream(t *testing.T) {
	bin := kubectlPath(t)
	if bin == "" {
		t.Skip("kubectl not on PATH")
	}
	dir := copyManifests(t)
	f := newFakeServer(t)
	seed(f)
	kc := f.kubeconfig(t)
	steps := []struct {
		upstream bool
		file     string
		want     string
	}{
		{true, "app.yaml", "deployment.apps/shop created\nservice/shop created\n"},
		{false, "app.yaml", "deployment.apps/shop unchanged\nservice/shop unchanged\n"},
		{false, "app-v2.yaml", "deployment.apps/shop configured\nservice/shop unchanged\n"},
		{true, "app-v2.yaml", "deployment.apps/shop unchanged\nservice/shop unchanged\n"},
		{true, "app.yaml", "deployment.apps/shop configured\nservice/shop unchanged\n"},
		{false, "app.yaml", "deployment.apps/shop unchanged\nservice/shop unchanged\n"},
		{false, "list.json", "configmap/settings created\nwidget.example.com/gadget created\n"},
		{true, "list.json", "configmap/settings unchanged\nwidget.example.com/gadget unchanged\n"},
		{true, "list-v2.json", "configmap/settings configured\nwidget.example.com/gadget configured\n"},
		{false, "list-v2.json", "configmap/settings unchanged\nwidget.example.com/gadget unchanged\n"},
		{false, "list.json", "configmap/settings configured\nwidget.example.com/gadget configured\n"},
		{true, "list.json", "configmap/settings unchanged\nwidget.example.com/gadget unchanged\n"},
	}
	for i, st := range steps {
		var r result
		if st.upstream {
			r = runUpstream(t, bin, kc, "", "apply", "-f", dir+"/"+st.file, "--validate=false")
		} else {
			r = runOurs(t, kc, "", "apply", "-f", dir+"/"+st.file)
		}
		if r.stdout != st.want || r.code != 0 {
			who := map[bool]string{true: "kubectl", false: "skiff"}[st.upstream]
			t.Errorf("step %d: %s apply -f %s: got %q (stderr %q, exit %d), want %q", i, who, st.file, r.stdout, r.stderr, r.code, st.want)
		}
	}
	// The live object carries exactly what kubectl would have recorded.
	d := f.get("deployments", "default", "shop")
	ann := d["metadata"].(map[string]any)["annotations"].(map[string]any)["kubectl.kubernetes.io/last-applied-configuration"].(string)
	if !strings.HasPrefix(ann, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"labels":{"app":"shop","tier":"web"},"name":"shop","namespace":"default"}`) || !strings.HasSuffix(ann, "}\n") {
		t.Errorf("last-applied annotation = %q", ann)
	}
	if !strings.Contains(ann, `"value":"\u003cprod \u0026 fast\u003e"`) {
		t.Errorf("last-applied annotation is not HTML-escaped like kubectl's: %q", ann)
	}
}
