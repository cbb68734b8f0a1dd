package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// fakeConn records the batch operations instead of sending them.
type fakeConn struct {
	ops     []string
	noTable bool
}

var _ Conn = (*fakeConn)(nil)

func (f *fakeConn) log(format string, a ...any) { f.ops = append(f.ops, fmt.Sprintf(format, a...)) }

func (f *fakeConn) AddTable(t *nftables.Table) *nftables.Table {
	f.log("add table %s", t.Name)
	return t
}
func (f *fakeConn) DelTable(t *nftables.Table) { f.log("delete table %s", t.Name) }
func (f *fakeConn) ListTableOfFamily(name string, _ nftables.TableFamily) (*nftables.Table, error) {
	if f.noTable {
		return nil, fmt.Errorf("no table")
	}
	return &nftables.Table{Name: name}, nil
}
func (f *fakeConn) AddChain(c *nftables.Chain) *nftables.Chain {
	f.log("add chain %s", c.Name)
	return c
}
func (f *fakeConn) DelChain(c *nftables.Chain)   { f.log("delete chain %s", c.Name) }
func (f *fakeConn) FlushChain(c *nftables.Chain) { f.log("flush chain %s", c.Name) }
func (f *fakeConn) AddRule(r *nftables.Rule) *nftables.Rule {
	f.log("add rule %s", r.Chain.Name)
	return r
}
func (f *fakeConn) AddSet(s *nftables.Set, e []nftables.SetElement) error {
	if !s.Anonymous {
		f.log("add map %s (%d)", s.Name, len(e))
	}
	return nil
}
func (f *fakeConn) SetAddElements(s *nftables.Set, e []nftables.SetElement) error {
	f.log("add elements %s (%d)", s.Name, len(e))
	return nil
}
func (f *fakeConn) SetDeleteElements(s *nftables.Set, e []nftables.SetElement) error {
	f.log("delete elements %s (%d)", s.Name, len(e))
	return nil
}
func (f *fakeConn) Flush() error { f.log("flush"); return nil }

func threeServices(webEndpoints ...discoveryv1.Endpoint) *Ruleset {
	return Build(
		[]*corev1.Service{
			svc("default", "web", "203.0.113.10", port("http", 80, 0)),
			svc("default", "other", "203.0.113.12", port("http", 80, 0)),
			nodePortSvc("default", "np", "203.0.113.13", port("http", 80, 30080)),
		},
		[]*discoveryv1.EndpointSlice{
			slice("default", "web", "http", 8080, webEndpoints...),
			slice("default", "other", "http", 8080, ep("10.244.2.2", true)),
			slice("default", "np", "http", 8080, ep("10.244.2.2", true)),
		}, Options{})
}

func TestApplyIncremental(t *testing.T) {
	f := &fakeConn{}
	s := NewSyncer(Options{})
	if err := s.Apply(f, threeServices(ep("10.244.2.2", true), ep("10.244.3.2", true))); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.ops, "delete table skiff") {
		t.Fatalf("first Apply is not a full sync: %v", f.ops)
	}

	t.Run("unchanged", func(t *testing.T) {
		f.ops = nil
		if err := s.Apply(f, threeServices(ep("10.244.2.2", true), ep("10.244.3.2", true))); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(f.ops, []string{"flush"}) {
			t.Fatalf("ops %v, want only an empty flush", f.ops)
		}
	})

	t.Run("one endpoint replaced", func(t *testing.T) {
		f.ops = nil
		if err := s.Apply(f, threeServices(ep("10.244.2.2", true), ep("10.244.4.2", true))); err != nil {
			t.Fatal(err)
		}
		svcChain := ChainName("service", "default/web/tcp/80")
		oldEP := ChainName("endpoint", "default/web/tcp/80__10.244.3.2/8080")
		newEP := ChainName("endpoint", "default/web/tcp/80__10.244.4.2/8080")
		want := []string{
			"add chain " + newEP,
			"flush chain " + svcChain,
			"flush chain " + oldEP,
			"add rule " + newEP, "add rule " + newEP,
			"add rule " + svcChain, "add rule " + svcChain, // numgen cascade: a rule per endpoint
			"delete chain " + oldEP,
			"flush",
		}
		// add rule order between new and changed chains is map order: compare as sets
		// but keep the phase order (adds before flushes before deletes).
		got := slices.Clone(f.ops)
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Fatalf("ops:\n%s\nwant:\n%s", strings.Join(f.ops, "\n"), strings.Join(want, "\n"))
		}
		if f.ops[0] != want[0] || f.ops[len(f.ops)-2] != want[len(want)-2] {
			t.Fatalf("phase order wrong:\n%s", strings.Join(f.ops, "\n"))
		}
	})

	t.Run("no endpoints left", func(t *testing.T) {
		f.ops = nil
		if err := s.Apply(f, threeServices()); err != nil {
			t.Fatal(err)
		}
		joined := strings.Join(f.ops, "\n")
		for _, w := range []string{
			"delete elements service-ips (1)",
			"add elements no-endpoint-services (1)",
			"delete chain " + ChainName("service", "default/web/tcp/80"),
		} {
			if !strings.Contains(joined, w) {
				t.Errorf("missing %q in:\n%s", w, joined)
			}
		}
		for _, o := range f.ops {
			if strings.Contains(o, "/other/") || strings.Contains(o, "/np/") {
				t.Errorf("another service touched: %s", o)
			}
		}
	})

	t.Run("drift: table gone means full sync", func(t *testing.T) {
		f.ops, f.noTable = nil, true
		if err := s.Apply(f, threeServices()); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(f.ops, "delete table skiff") || !slices.Contains(f.ops, "add table skiff") || !slices.Contains(f.ops, "add elements service-ips (2)") {
			t.Fatalf("no full sync: %v", f.ops)
		}
	})
}

func (f *fakeConn) DelSet(s *nftables.Set) { f.log("delete set %s", s.Name) }

func TestApplyIncrementalAffinity(t *testing.T) {
	build := func(sticky bool, timeout int32, webEPs ...discoveryv1.Endpoint) *Ruleset {
		web := svc("default", "web", "203.0.113.10", port("http", 80, 0))
		if sticky {
			web.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			web.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
		}
		return Build([]*corev1.Service{web, svc("default", "other", "203.0.113.12", port("http", 80, 0))},
			[]*discoveryv1.EndpointSlice{
				slice("default", "web", "http", 8080, webEPs...),
				slice("default", "other", "http", 8080, ep("10.244.2.2", true)),
			}, Options{})
	}
	two := []discoveryv1.Endpoint{ep("10.244.2.2", true), ep("10.244.3.2", true)}
	f := &fakeConn{}
	s := NewSyncer(Options{})
	if err := s.Apply(f, build(false, 0, two...)); err != nil {
		t.Fatal(err)
	}
	id := "default/web/tcp/80"
	a1, a2 := ChainName("affinity", id+"__10.244.2.2/8080"), ChainName("affinity", id+"__10.244.3.2/8080")
	e2 := ChainName("endpoint", id+"__10.244.3.2/8080")
	noOther := func() {
		t.Helper()
		for _, o := range f.ops {
			if strings.Contains(o, "/other/") || strings.Contains(o, "table") {
				t.Errorf("not incremental: %s", o)
			}
		}
	}

	f.ops = nil
	if err := s.Apply(f, build(true, 60, two...)); err != nil {
		t.Fatal(err)
	}
	if f.ops[0] != "add map "+a1+" (0)" && f.ops[0] != "add map "+a2+" (0)" || !slices.Contains(f.ops, "add map "+a2+" (0)") {
		t.Fatalf("sets not created first:\n%s", strings.Join(f.ops, "\n"))
	}
	if !slices.Contains(f.ops, "flush chain "+ChainName("service", id)) || !slices.Contains(f.ops, "flush chain "+e2) {
		t.Fatalf("chains not rewritten:\n%s", strings.Join(f.ops, "\n"))
	}
	noOther()

	f.ops = nil
	if err := s.Apply(f, build(true, 60, ep("10.244.2.2", true))); err != nil {
		t.Fatal(err)
	}
	if n := len(f.ops); n < 3 || f.ops[n-3] != "delete chain "+e2 || f.ops[n-2] != "delete set "+a2 {
		t.Fatalf("endpoint's set not deleted after its chain:\n%s", strings.Join(f.ops, "\n"))
	}
	noOther()

	f.ops = nil
	if err := s.Apply(f, build(true, 120, ep("10.244.2.2", true))); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.ops, "delete table skiff") {
		t.Fatalf("timeout change without a full sync:\n%s", strings.Join(f.ops, "\n"))
	}
}

// TestPickEndpoint: N endpoints become the cascade "numgen random mod N-i
// == 0 goto chain_i", the last one unconditional, and in the kernel's
// expressions each of the N gets 1/N of the connections.
func TestPickEndpoint(t *testing.T) {
	for _, targets := range [][]string{{"a"}, {"a", "b"}, {"a", "b", "c", "d"}} {
		model := pickEndpoint(targets, func(s string) string { return s })
		if len(model) != len(targets) {
			t.Fatalf("%v: %d rules", targets, len(model))
		}
		var rules [][]expr.Any
		for _, r := range model {
			ex, err := r.exprs(nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			rules = append(rules, ex)
		}
		p := 1.0 // the chance that a connection reaches rule i
		for i, ex := range rules {
			v, ok := ex[len(ex)-1].(*expr.Verdict)
			if !ok || v.Kind != expr.VerdictGoto || v.Chain != targets[i] {
				t.Fatalf("%v: rule %d ends in %#v, want goto %s", targets, i, ex[len(ex)-1], targets[i])
			}
			share := p // the last rule takes all that reach it
			if i < len(targets)-1 {
				ng, ok1 := ex[0].(*expr.Numgen)
				cmp, ok2 := ex[1].(*expr.Cmp)
				if len(ex) != 3 || !ok1 || !ok2 || ng.Type != unix.NFT_NG_RANDOM || ng.Register != cmp.Register ||
					cmp.Op != expr.CmpOpEq || !slices.Equal(cmp.Data, []byte{0, 0, 0, 0}) {
					t.Fatalf("%v: rule %d is %#v", targets, i, ex)
				}
				share = p / float64(ng.Modulus)
			} else if len(ex) != 1 {
				t.Fatalf("%v: last rule is %#v, want a plain goto", targets, ex)
			}
			if want := 1 / float64(len(targets)); share < want-1e-9 || share > want+1e-9 {
				t.Fatalf("%v: target %d gets %.3f of the connections, want %.3f", targets, i, share, want)
			}
			p -= share
		}
	}
}
