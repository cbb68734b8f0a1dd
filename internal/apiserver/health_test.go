package apiserver

import (
	"io"
	"net/http"
	"testing"
)

// The health endpoints answer as kube-apiserver's healthz package does.
func TestHealthEndpoints(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", 200, "ok"},
		{"/healthz?verbose", 200, "[+]ping ok\n[+]log ok\n[+]etcd ok\nhealthz check passed\n"},
		{"/livez?verbose=1", 200, "[+]ping ok\n[+]log ok\n[+]etcd ok\nlivez check passed\n"},
		{"/readyz?verbose&exclude=etcd&exclude=nope", 200, "[+]ping ok\n[+]log ok\n[+]etcd excluded: ok\n[+]etcd-readiness ok\n[+]informer-sync ok\n[+]shutdown ok\n" +
			"warn: some health checks cannot be excluded: no matches for \"nope\"\nreadyz check passed\n"},
		{"/healthz/ping", 200, "ok"},
		{"/readyz/informer-sync", 200, "ok"},
	} {
		resp := e.do(t, "GET", tc.path, "", nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || string(body) != tc.body {
			t.Errorf("%s: got %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
	}
	st := readStatus(t, e.do(t, "GET", "/healthz/nope", "", nil))
	if st.Code != http.StatusNotFound {
		t.Errorf("/healthz/nope: got %d", st.Code)
	}
	e.srv.StopWatches() // shutting down: no longer ready
	resp := e.do(t, "GET", "/readyz", "", nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n[+]informer-sync ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n"; resp.StatusCode != 500 || string(body) != want {
		t.Errorf("/readyz while stopping: got %d %q", resp.StatusCode, body)
	}
}
