package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRestartKeepsEverything: SIGTERM stops the server cleanly and a restart
// on the same data dir serves every object with its resourceVersion.
func TestRestartKeepsEverything(t *testing.T) {
	bins := kubectlBinaries(t)
	kubectl := bins["path"]
	c := startServer(t)
	c.mustKubectl(kubectl, "", "create", "configmap", "keep", "--from-literal=k=v")
	before := c.mustKubectl(kubectl, "", "get", "configmap", "keep", "-o", "jsonpath={.metadata.uid} {.metadata.resourceVersion}")
	svcBefore := c.mustKubectl(kubectl, "", "get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
	if svcBefore != "10.43.0.1" {
		t.Errorf("default/kubernetes clusterIP = %q, want 10.43.0.1", svcBefore)
	}
	if err := c.stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, c.log)
	}
	tok1, err := os.ReadFile(c.dataDir + "/server/token")
	if err != nil || !strings.HasPrefix(string(tok1), "K10") {
		t.Fatalf("token file: %q %v", tok1, err)
	}
	c.start()
	after := c.mustKubectl(kubectl, "", "get", "configmap", "keep", "-o", "jsonpath={.metadata.uid} {.metadata.resourceVersion}")
	if before != after {
		t.Errorf("after restart %q, before %q", after, before)
	}
	tok2, err := os.ReadFile(c.dataDir + "/server/token")
	if err != nil || string(tok1) != string(tok2) {
		t.Errorf("the join token changed across a restart: %v", err)
	}
	// A write after restart gets a newer revision than any before it.
	c.mustKubectl(kubectl, "", "label", "configmap", "keep", "x=y")
	rv := c.mustKubectl(kubectl, "", "get", "configmap", "keep", "-o", "jsonpath={.metadata.resourceVersion}")
	var rv1, rv2 int
	if _, err := fmt.Sscan(strings.Fields(before)[1], &rv1); err != nil {
		t.Fatalf("resourceVersion before restart %q: %v", before, err)
	}
	if _, err := fmt.Sscan(rv, &rv2); err != nil {
		t.Fatalf("resourceVersion after restart %q: %v", rv, err)
	}
	if rv2 <= rv1 {
		t.Errorf("resourceVersion went from %d to %d", rv1, rv2)
	}
}

// TestAuthentication: only the health and version endpoints are open.
func TestAuthentication(t *testing.T) {
	c := startServer(t)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(path string) (int, string) {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", c.port, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/healthz", "/livez", "/readyz", "/version"} {
		if code, body := get(p); code != http.StatusOK {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
	for _, p := range []string{"/api/v1/namespaces", "/api", "/apis", "/openapi/v2", "/api/v1/namespaces/default/pods"} {
		code, body := get(p)
		if code != http.StatusUnauthorized || !strings.Contains(body, `"reason":"Unauthorized"`) {
			t.Errorf("%s without credentials: %d %s", p, code, body)
		}
	}
	if fi, err := os.Stat(c.kubeconfig); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v %v", fi.Mode(), err)
	}
}
