//go:build !skiff_no_apiserver

// This test needs internal/apiserver, internal/registry and internal/store
// to build; -tags skiff_no_apiserver leaves it out while they are mid-edit.

package kubectl

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/version"

	"github.com/skiff-dev/skiff/internal/apiserver"
	"github.com/skiff-dev/skiff/internal/openapi"
	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

// startRealServer runs skiff's own API server on a bolt store, over plain
// HTTP without authentication, and returns a kubeconfig for it.
func startRealServer(t *testing.T) string {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	resources, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	oa, err := openapi.New(resources)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := apiserver.New(apiserver.Config{Store: st, Resources: resources, OpenAPI: oa,
		Version: version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.0-skiff"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
	})
	f := &fakeServer{srv: hs}
	return f.kubeconfig(t)
}

var (
	ageCell   = regexp.MustCompile(`\b\d+(s|m|m\d+s)\b`)
	clusterIP = regexp.MustCompile(`10\.43\.\d+\.\d+ *`)
	spaces    = regexp.MustCompile(` +`)
)

// TestAgainstSkiffAPIServer runs the same sequence with upstream kubectl
// and Run against two fresh skiff API servers and compares the output
// (AGE cells masked, since the two runs happen seconds apart).
func TestAgainstSkiffAPIServer(t *testing.T) {
	bin := kubectlPath(t)
	dir := copyManifests(t)
	seq := []step{
		{args: []string{"apply", "-f", "-"}, stdin: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n"},
		s("apply", "-f", "{dir}/app.yaml"),
		s("apply", "-f", "{dir}/app.yaml"),
		s("apply", "-f", "{dir}/app-v2.yaml"),
		s("apply", "-f", "{dir}/app-v2.yaml"),
		s("get", "deploy"),
		s("get", "deploy", "-o", "wide"),
		s("get", "svc,deploy", "-o", "name"),
		s("get", "all"),
		s("get", "ns"),
		s("label", "deploy", "shop", "env=prod"),
		s("label", "deploy", "shop", "env=dev"),
		s("annotate", "svc", "shop", "note=x"),
		s("get", "deploy", "--show-labels"),
		s("get", "deploy", "shop", "-o", "jsonpath={.spec.replicas} {.metadata.labels}"),
		s("api-resources"),
		s("api-resources", "-o", "wide"),
		s("create", "-f", "{dir}/app.yaml"),
		s("delete", "-f", "{dir}/app-v2.yaml"),
		s("get", "deploy,svc"),
		s("get", "pod", "nope"),
		s("apply", "-f", "{dir}/invalid.yaml"),
		s("create", "-f", "{dir}/invalid.yaml"),
		s("apply", "-f", "{dir}/unknown-field.yaml"),
		s("apply", "-f", "{dir}/unknown-field.yaml", "--validate=warn"),
		s("get", "cm", "strict", "-o", "jsonpath={.data}"),
	}
	run := func(kc string, upstream bool) []result {
		var out []result
		for _, st := range seq {
			args := expand(st.args, dir)
			var r result
			start := time.Now()
			if upstream {
				r = runUpstream(t, bin, kc, st.stdin, args...)
				r.stderr = normalizeStderr(r.stderr)
			} else {
				r = runOurs(t, kc, st.stdin, args...)
			}
			r.stdout = ageCell.ReplaceAllString(r.stdout, "AGE")
			r.stdout = clusterIP.ReplaceAllString(r.stdout, "CLUSTER-IP ")
			r.stdout = spaces.ReplaceAllString(r.stdout, " ")
			if d := time.Since(start); d > 2*time.Second {
				t.Logf("slow step (%v, upstream=%v): %v", d, upstream, st.args)
			}
			out = append(out, r)
		}
		return out
	}
	ours := run(startRealServer(t), false)
	var transcript strings.Builder
	for i, st := range seq {
		transcript.WriteString("$ kubectl " + strings.Join(st.args, " ") + "\n" + ours[i].stdout + ours[i].stderr)
	}
	t.Logf("transcript:\n%s", transcript.String())
	if bin == "" {
		t.Skip("kubectl not on PATH")
	}
	// The tools agreeing is not enough when the server is skiff's own: a
	// server bug both print the same way would pass. Only these fail.
	wantFail := map[string]bool{
		"label deploy shop env=dev":         true, // no --overwrite
		"create -f {dir}/app.yaml":          true, // already exists
		"get pod nope":                      true,
		"apply -f {dir}/invalid.yaml":       true,
		"create -f {dir}/invalid.yaml":      true,
		"apply -f {dir}/unknown-field.yaml": true, // strict field validation
	}
	up := run(startRealServer(t), true)
	for i, st := range seq {
		if failed := up[i].code != 0; failed != wantFail[strings.Join(st.args, " ")] {
			t.Errorf("step %d (kubectl %s): upstream exit %d\n%s%s", i, strings.Join(st.args, " "), up[i].code, up[i].stdout, up[i].stderr)
		}
		if up[i] != ours[i] {
			t.Errorf("step %d (kubectl %s) differs\n--- kubectl (exit %d)\n%s%s--- ours (exit %d)\n%s%s", i, strings.Join(st.args, " "),
				up[i].code, up[i].stdout, up[i].stderr, ours[i].code, ours[i].stdout, ours[i].stderr)
		}
	}
}

// TestWatchAgainstSkiffAPIServer checks get -w on skiff's own watch
// stream: the table first, then a row per change, headers once.
func TestWatchAgainstSkiffAPIServer(t *testing.T) {
	kc := startRealServer(t)
	if r := runOurs(t, kc, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\n", "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("setup: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut lockedBuffer
	done := make(chan error)
	go func() {
		done <- Run(ctx, []string{"--kubeconfig", kc, "get", "cm", "-w", "--output-watch-events"}, nil, &out, &errOut)
	}()
	// Wait for the initial table, then change things.
	waitFor(t, func() bool { return strings.Contains(out.String(), "one") })
	runOurs(t, kc, "", "label", "cm", "one", "a=b")
	runOurs(t, kc, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n", "apply", "-f", "-")
	runOurs(t, kc, "", "delete", "cm", "one")
	waitFor(t, func() bool { return strings.Contains(out.String(), "DELETED") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v (%s)", err, errOut.String())
	}
	got := ageCell.ReplaceAllString(out.String(), "AGE")
	want := "EVENT      NAME   DATA   AGE\n" +
		"ADDED      one    0      AGE\n" +
		"MODIFIED   one    0      AGE\n" +
		"ADDED      two    0      AGE\n" +
		"DELETED    one    0      AGE\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
