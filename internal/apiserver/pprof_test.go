package apiserver

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestProfilingOnlyForMasters(t *testing.T) {
	env := newTestEnv(t, func(c *Config) {
		c.Profiling = true
		c.Authenticator = func(r *http.Request) (Identity, bool) {
			switch r.Header.Get("Authorization") {
			case "Bearer admin":
				return Identity{Name: "admin", Groups: []string{"system:masters"}}, true
			case "Bearer user":
				return Identity{Name: "user", Groups: []string{"system:authenticated"}}, true
			}
			return Identity{}, false
		}
	})
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, env.http.URL+"/debug/pprof/heap?debug=1", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		buf := new(bytes.Buffer)
		_, _ = buf.ReadFrom(resp.Body)
		if resp.StatusCode == http.StatusOK && !strings.Contains(buf.String(), "heap profile") {
			t.Errorf("admin got %q…", buf.String()[:min(80, buf.Len())])
		}
		return resp.StatusCode
	}
	for token, want := range map[string]int{"admin": 200, "user": 403, "": 401} {
		if got := get(token); got != want {
			t.Errorf("token %q: status %d, want %d", token, got, want)
		}
	}
}
