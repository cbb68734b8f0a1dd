package e2e

import (
	"strings"
	"testing"
)

// TestSkiffKubectlMatchesUpstream runs the same commands through `skiff
// kubectl` and the upstream kubectl and expects the same output.
func TestSkiffKubectlMatchesUpstream(t *testing.T) {
	kubectl := kubectlBinaries(t)["path"]
	// No controllers: both clients must see the same objects.
	c := startServer(t, "--disable-controller-manager", "--disable-scheduler")
	c.mustKubectl(kubectl, webManifest, "apply", "-f", "-")

	// skiff kubectl apply interoperates: the same manifest is unchanged.
	out, errOut, err := c.skiffKubectl(webManifest, "apply", "-f", "-")
	if err != nil {
		t.Fatalf("skiff kubectl apply: %v\n%s", err, errOut)
	}
	for _, want := range []string{"deployment.apps/web unchanged", "service/web unchanged", "configmap/web-config unchanged"} {
		if !strings.Contains(out, want) {
			t.Errorf("skiff kubectl apply after upstream apply: want %q in:\n%s", want, out)
		}
	}
	// …and upstream sees skiff's change as its own.
	changed := strings.Replace(webManifest, "greeting: hello", "greeting: skiff", 1)
	if out, errOut, err = c.skiffKubectl(changed, "apply", "-f", "-"); err != nil || !strings.Contains(out, "configmap/web-config configured") {
		t.Fatalf("skiff kubectl apply change: %v\n%s%s", err, out, errOut)
	}
	if out := c.mustKubectl(kubectl, changed, "apply", "-f", "-"); !strings.Contains(out, "configmap/web-config unchanged") {
		t.Errorf("upstream apply after skiff apply:\n%s", out)
	}

	for _, args := range [][]string{
		{"get", "ns"},
		{"get", "namespaces", "-o", "wide"},
		{"get", "svc"},
		{"get", "svc", "-o", "wide"},
		{"get", "deploy,svc,cm"},
		{"get", "cm", "-A"},
		{"get", "deployments", "web", "-o", "yaml"},
		{"get", "svc", "-o", "json"},
		{"get", "all", "-o", "name"},
		{"get", "cm", "-l", "missing=label"},
		{"api-resources"},
		{"api-resources", "-o", "wide"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			// Ages are rendered by the server at request time; a second
			// boundary between the two calls can differ, so retry once.
			// Both failing the same way is no match: upstream must succeed
			// and print something (the empty selector prints to stderr).
			var up, sk, upErr, skErr string
			var upRun, skRun error
			for attempt := 0; attempt < 2; attempt++ {
				up, upErr, upRun = c.kubectl(kubectl, "", args...)
				sk, skErr, skRun = c.skiffKubectl("", args...)
				if upRun != nil || up+upErr == "" {
					t.Fatalf("upstream kubectl %s: %v, nothing to compare with\n%s%s", strings.Join(args, " "), upRun, up, upErr)
				}
				if up == sk && upErr == skErr && skRun == nil {
					return
				}
			}
			t.Errorf("skiff kubectl %s differs from upstream (skiff: %v)\n--- upstream stdout:\n%s--- skiff stdout:\n%s--- upstream stderr:\n%s--- skiff stderr:\n%s",
				strings.Join(args, " "), skRun, up, sk, upErr, skErr)
		})
	}
}
