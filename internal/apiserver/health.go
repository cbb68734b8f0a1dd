package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// healthCheck is one named check of /healthz, /livez or /readyz.
type healthCheck struct {
	name  string
	check func(ctx context.Context) error
}

// healthChecks lists the checks of an endpoint ("healthz", "livez",
// "readyz"), named as kube-apiserver names its own.
func (s *Server) healthChecks(endpoint string) []healthCheck {
	ping := func(context.Context) error { return nil }
	store := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := s.store.CurrentRevision(ctx)
		return err
	}
	checks := []healthCheck{{"ping", ping}, {"log", ping}, {"etcd", store}}
	if endpoint == "readyz" {
		checks = append(checks,
			healthCheck{"etcd-readiness", store},
			healthCheck{"informer-sync", func(context.Context) error {
				if !s.ready.Load() {
					return errors.New("not initialised")
				}
				return nil
			}},
			healthCheck{"shutdown", func(context.Context) error {
				select {
				case <-s.stopped:
					return errors.New("shutting down")
				default:
					return nil
				}
			}})
	}
	return checks
}

// serveHealth answers /healthz, /livez, /readyz and /{endpoint}/{check}
// as kube-apiserver's healthz package does: "ok", or with ?verbose one
// line per check; ?exclude=name skips a check; a failure is a 500 that
// lists the checks without their reasons (the endpoints are public).
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request, endpoint, sub string) {
	checks := s.healthChecks(endpoint)
	if sub != "" {
		for _, c := range checks {
			if c.name == sub {
				if err := c.check(r.Context()); err != nil {
					http.Error(w, fmt.Sprintf("internal server error: %v", err), http.StatusInternalServerError)
					return
				}
				writeText(w, http.StatusOK, "ok")
				return
			}
		}
		s.writeError(w, r, errNotFoundPath())
		return
	}
	excluded := map[string]bool{}
	for _, e := range r.URL.Query()["exclude"] {
		excluded[e] = true
	}
	var out bytes.Buffer
	var failed []string
	for _, c := range checks {
		if excluded[c.name] {
			delete(excluded, c.name)
			fmt.Fprintf(&out, "[+]%s excluded: ok\n", c.name)
			continue
		}
		if err := c.check(r.Context()); err != nil {
			fmt.Fprintf(&out, "[-]%s failed: reason withheld\n", c.name)
			failed = append(failed, c.name)
			s.log.Warn("health check failed", "endpoint", endpoint, "check", c.name, "err", err)
			continue
		}
		fmt.Fprintf(&out, "[+]%s ok\n", c.name)
	}
	if len(excluded) > 0 {
		var names []string
		for n := range excluded {
			names = append(names, fmt.Sprintf("%q", n))
		}
		sort.Strings(names)
		fmt.Fprintf(&out, "warn: some health checks cannot be excluded: no matches for %s\n", strings.Join(names, ","))
	}
	if len(failed) > 0 {
		http.Error(w, fmt.Sprintf("%s%s check failed", out.String(), endpoint), http.StatusInternalServerError)
		return
	}
	if _, verbose := r.URL.Query()["verbose"]; !verbose {
		writeText(w, http.StatusOK, "ok")
		return
	}
	fmt.Fprintf(&out, "%s check passed\n", endpoint)
	writeText(w, http.StatusOK, out.String())
}
