package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSkiffKubectlControlPlane drives the controllers with the embedded
// client only: rollout, scale and describe as users type them; then checks
// the EndpointSlices and a service account token as a client uses it.
func TestSkiffKubectlControlPlane(t *testing.T) {
	c := startServer(t)
	c.simNodes(2)
	client := c.client()
	ctx := context.Background()
	sk := func(args ...string) string {
		t.Helper()
		out, errOut, err := c.skiffKubectl("", args...)
		if err != nil {
			t.Fatalf("skiff kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	if out, errOut, err := c.skiffKubectl(fmt.Sprintf(webDeployment, "default", "default"), "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	if out := sk("rollout", "status", "deployment/web", "--timeout=60s"); !strings.Contains(out, `deployment "web" successfully rolled out`) {
		t.Fatalf("rollout status: %s", out)
	}
	if out := sk("scale", "deployment/web", "--replicas=3"); strings.TrimSpace(out) != "deployment.apps/web scaled" {
		t.Errorf("scale: %q", out)
	}
	c.eventually(30*time.Second, "3 web pods", func() bool { return len(podsOf(t, client, "default", "app=web")) == 3 })
	// A new image by re-applying the edited manifest (replicas as scaled).
	edited := strings.Replace(strings.Replace(fmt.Sprintf(webDeployment, "default", "default"), "nginx:1.25", "nginx:1.26", 1), "replicas: 10", "replicas: 3", 1)
	if out, errOut, err := c.skiffKubectl(edited, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s%s", err, out, errOut)
	}
	sk("rollout", "status", "deployment/web", "--timeout=60s")
	if out := sk("rollout", "history", "deployment/web"); !strings.Contains(out, "REVISION") || !strings.Contains(out, "2 ") {
		t.Errorf("rollout history:\n%s", out)
	}
	if out := sk("rollout", "undo", "deployment/web"); strings.TrimSpace(out) != "deployment.apps/web rolled back" {
		t.Errorf("rollout undo: %q", out)
	}
	sk("rollout", "status", "deployment/web", "--timeout=60s")
	c.eventually(30*time.Second, "pods back on nginx:1.25", func() bool {
		ps := podsOf(t, client, "default", "app=web")
		for _, p := range ps {
			if p.Spec.Containers[0].Image != "nginx:1.25" {
				return false
			}
		}
		return len(ps) == 3
	})

	pod := podsOf(t, client, "default", "app=web")[0]
	for _, d := range []struct {
		args []string
		want []string
	}{
		{[]string{"describe", "deployment", "web"}, []string{"3 desired | 3 updated | 3 total | 3 available | 0 unavailable", "ScalingReplicaSet"}},
		{[]string{"describe", "pod", pod.Name}, []string{"Status:           Running", "IP:               " + pod.Status.PodIP, "Successfully assigned default/" + pod.Name}},
		{[]string{"describe", "rs", "-l", "app=web"}, []string{"Controlled By:  Deployment/web", "SuccessfulCreate"}},
		{[]string{"describe", "svc", "web"}, []string{"TargetPort:               http/TCP", pod.Status.PodIP}},
		{[]string{"describe", "endpoints", "web"}, []string{pod.Status.PodIP}},
		{[]string{"describe", "node", pod.Spec.NodeName}, []string{"Ready            True", "PodCIDR:", "Non-terminated Pods:", pod.Name}},
	} {
		out := sk(d.args...)
		for _, w := range d.want {
			if !strings.Contains(out, w) {
				t.Errorf("skiff kubectl %s lacks %q:\n%s", strings.Join(d.args, " "), w, out)
			}
		}
	}

	// The EndpointSlice controller mirrors the same pods.
	c.eventually(30*time.Second, "EndpointSlice of web with the 3 ready pods", func() bool {
		list, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil || len(list.Items) != 1 {
			return false
		}
		var ips []string
		for _, e := range list.Items[0].Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
		return sameIPs(ips, podIPs(podsOf(t, client, "default", "app=web")))
	})

	// A token for the default service account authenticates as it.
	kc := upstreamKubectl(t)
	token := strings.TrimSpace(c.mustKubectl(kc, "", "create", "token", "default"))
	out, errOut, err := c.kubectl(kc, "", "--kubeconfig=/dev/null", "--server", fmt.Sprintf("https://127.0.0.1:%d", c.port),
		"--insecure-skip-tls-verify", "--token", token, "get", "pods", "-o", "name")
	if err != nil || !strings.Contains(out, "pod/web-") {
		t.Errorf("kubectl with the service account token: %v\n%s%s", err, out, errOut)
	}
	_, errOut, err = c.kubectl(kc, "", "--kubeconfig=/dev/null", "--server", fmt.Sprintf("https://127.0.0.1:%d", c.port),
		"--insecure-skip-tls-verify", "--token", token+"x", "get", "pods")
	if err == nil || !strings.Contains(errOut, "Unauthorized") {
		t.Errorf("a forged token was accepted: %v %s", err, errOut)
	}
}
