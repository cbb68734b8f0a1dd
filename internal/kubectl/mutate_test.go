package kubectl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyManifests copies testdata/kubectl/manifests into a temp dir, so both
// tools see the same file names (they appear in error messages).
func copyManifests(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(goldenDir, "manifests")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type step struct {
	args  []string
	stdin string
}

func s(args ...string) step { return step{args: args} }

var mutateSequences = map[string][]step{
	"apply": {
		s("apply", "-f", "{dir}/app.yaml"),
		s("apply", "-f", "{dir}/app.yaml"),
		s("get", "deploy", "shop", "-o", "yaml"),
		s("get", "-f", "{dir}/app.yaml"),
		s("get", "-f", "{dir}/app.yaml", "-o", "name"),
		s("apply", "-f", "{dir}/app-v2.yaml"),
		s("apply", "-f", "{dir}/app-v2.yaml"),
		s("get", "deploy,svc", "shop", "-o", "json"),
		s("apply", "-f", "{dir}/list.json"),
		s("apply", "-f", "{dir}/list-v2.json"),
		s("apply", "-f", "{dir}/list-v2.json", "-o", "name"),
		s("get", "widgets", "gadget", "-o", "yaml"),
		s("apply", "-f", "{dir}/app.yaml", "--dry-run=client"),
		s("apply", "-f", "{dir}/app.yaml", "--dry-run=server"),
		s("apply", "-f", "{dir}/other-ns.yaml"),
		s("apply", "-f", "{dir}/other-ns.yaml", "-n", "default"),
		s("apply", "-f", "{dir}/unknown.yaml"),
		s("apply", "-f", "{dir}/missing.yaml"),
		{args: []string{"apply", "-f", "-"}, stdin: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-stdin\ndata:\n  k: v\n"},
		s("create", "-f", "{dir}/list.json"),
		s("apply", "-f", "{dir}/empty.yaml"),
		s("create", "-f", "{dir}/empty.yaml"),
		s("delete", "-f", "{dir}/empty.yaml"),
		s("label", "-f", "{dir}/empty.yaml", "a=b"),
	},
	"create": {
		s("create", "-f", "{dir}/app.yaml"),
		s("create", "-f", "{dir}/app.yaml"),
		s("apply", "-f", "{dir}/app-v2.yaml"),
		s("apply", "-f", "{dir}/app-v2.yaml"),
		s("get", "deploy", "shop", "-o", "yaml"),
		s("create", "-f", "{dir}/list.json", "--dry-run=client"),
		s("get", "cm"),
	},
	"label": {
		s("label", "pod", "nginx", "tier=frontend"),
		s("label", "pod", "nginx", "tier=backend"),
		s("label", "pod", "nginx", "tier=frontend"),
		s("label", "pod", "nginx", "tier=backend", "--overwrite"),
		s("label", "pod/nginx", "tier-"),
		s("label", "pod/nginx", "tier-"),
		s("label", "pods", "--all", "env=test"),
		s("label", "pods", "-l", "app=web", "team=a", "-o", "name"),
		s("label", "deploy", "web", "a=b", "c=d", "--dry-run=client"),
		s("label", "pod", "nginx"),
		s("label", "pod", "nginx", "bad=a=b"),
		s("label", "pods", "x=y"),
		s("label", "pod", "missing", "x=y"),
		s("get", "pods", "--show-labels"),
	},
	"annotate": {
		s("annotate", "pod", "nginx", "note=hello world"),
		s("annotate", "pod", "nginx", "note=other"),
		s("annotate", "pod", "nginx", "note=hello world"),
		s("annotate", "pod", "nginx", "note=other", "--overwrite"),
		s("annotate", "pods", "--all", "checked=yes"),
		s("annotate", "pod", "nginx", "note-"),
		s("annotate", "svc", "kubernetes", "a=1", "-n", "default"),
		s("get", "pod", "nginx", "-o", "json"),
	},
	"delete": {
		s("delete", "pod", "nginx"),
		s("delete", "pod", "nginx"),
		s("delete", "pod", "nginx", "--ignore-not-found"),
		s("delete", "pods", "-l", "app=web"),
		s("delete", "pods", "-l", "app=nothing"),
		s("delete", "svc"),
		s("delete", "deploy/web", "--cascade=orphan"),
		s("delete", "pods", "--all", "-n", "kube-system", "--grace-period=0", "--force"),
		s("apply", "-f", "{dir}/app.yaml"),
		s("delete", "-f", "{dir}/app.yaml", "--wait=false"),
		s("delete", "-f", "{dir}/app.yaml"),
		s("delete", "-f", "{dir}/app.yaml", "--ignore-not-found"),
		s("delete", "ns", "kube-system", "-o", "name"),
		s("delete"),
		s("get", "all", "-A"),
	},
}

// TestMutationsMatchUpstream runs the same command sequence with upstream
// kubectl and with Run, each against its own freshly seeded fake server,
// and compares every step's output and the final server state, including
// the exact patches sent.
func TestMutationsMatchUpstream(t *testing.T) {
	bin := kubectlPath(t)
	for name, seq := range mutateSequences {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := copyManifests(t)
			fOurs := newFakeServer(t)
			seed(fOurs)
			kcOurs := fOurs.kubeconfig(t)
			var transcript strings.Builder
			var ours []result
			for _, st := range seq {
				args := expand(st.args, dir)
				r := runOurs(t, kcOurs, st.stdin, args...)
				ours = append(ours, r)
				transcript.WriteString("$ kubectl " + strings.Join(st.args, " ") + "\n" + r.stdout)
				if r.stderr != "" {
					transcript.WriteString("[stderr] " + r.stderr)
				}
				if r.code != 0 {
					transcript.WriteString("[exit 1]\n")
				}
			}
			golden(t, "seq-"+name, strings.ReplaceAll(transcript.String(), dir, "DIR"))
			if bin == "" {
				t.Skip("kubectl not on PATH")
			}
			fUp := newFakeServer(t)
			seed(fUp)
			kcUp := fUp.kubeconfig(t)
			for i, st := range seq {
				args := expand(st.args, dir)
				if len(args) > 0 && (args[0] == "apply" || args[0] == "create") {
					args = append(args, "--validate=false")
				}
				up := runUpstream(t, bin, kcUp, st.stdin, args...)
				if up.stdout != ours[i].stdout || normalizeStderr(up.stderr) != ours[i].stderr || up.code != ours[i].code {
					t.Errorf("step %d (kubectl %s) differs\n--- kubectl (exit %d)\n%s%s--- ours (exit %d)\n%s%s", i, strings.Join(st.args, " "),
						up.code, up.stdout, up.stderr, ours[i].code, ours[i].stdout, ours[i].stderr)
				}
			}
			if a, b := dumpState(fUp), dumpState(fOurs); a != b {
				t.Errorf("final state differs\n--- kubectl\n%s\n--- ours\n%s", a, b)
			}
			if a, b := strings.Join(fUp.patches, "\n"), strings.Join(fOurs.patches, "\n"); a != b {
				t.Errorf("patches differ\n--- kubectl\n%s\n--- ours\n%s", a, b)
			}
		})
	}
}

func expand(args []string, dir string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "{dir}", dir)
	}
	return out
}

func dumpState(f *fakeServer) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.MarshalIndent(f.objects, "", "  ")
	return string(b)
}
