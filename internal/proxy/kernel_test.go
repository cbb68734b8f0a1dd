package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// topology: client ── node ── b1, b2 (veths), the node routes and runs the proxy.
//
//	client 10.244.1.2  ⇄ node 10.244.1.1 (vc)
//	b1     10.244.2.2  ⇄ node 10.244.2.1 (vb1)
//	b2     10.244.3.2  ⇄ node 10.244.3.1 (vb2)
//	node up0 198.51.100.1/24, default via 198.51.100.254 (dummy)
type topo struct {
	node, client, b1, b2 *testNS
}

func newTopo(t *testing.T) *topo {
	requireRoot(t)
	tp := &topo{node: newNS(t), client: newNS(t), b1: newNS(t), b2: newNS(t)}
	link(t, tp.node, tp.client, "vc", "10.244.1.1/24", "10.244.1.2/24")
	link(t, tp.node, tp.b1, "vb1", "10.244.2.1/24", "10.244.2.2/24")
	link(t, tp.node, tp.b2, "vb2", "10.244.3.1/24", "10.244.3.2/24")
	uplink(t, tp.node)
	enableForwarding(t, tp.node)
	serve(t, tp.b1, "10.244.2.2:8080", "b1")
	serve(t, tp.b2, "10.244.3.2:8080", "b2")
	return tp
}

// dial connects from ns to addr and returns what the server said.
func dial(t *testing.T, ns *testNS, addr string) (string, error) {
	t.Helper()
	var reply string
	var derr error
	ns.do(t, func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.Dial("tcp4", addr)
		if err != nil {
			derr = err
			return nil
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		reply, derr = string(b), err
		return nil
	})
	return reply, derr
}

// testServices: web (two endpoints unless given), empty (none), other (b1),
// np (NodePort 30080, b1+b2), lb (LoadBalancer ingress 198.51.100.60, b2).
func testServices(webEndpoints ...discoveryv1.Endpoint) *Ruleset {
	if len(webEndpoints) == 0 {
		webEndpoints = []discoveryv1.Endpoint{ep("10.244.2.2", true), ep("10.244.3.2", true)}
	}
	lb := svc("default", "lb", "203.0.113.14", port("http", 80, 30081))
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.60"}}
	return Build(
		[]*corev1Service{
			svc("default", "web", "203.0.113.10", port("http", 80, 0)),
			svc("default", "empty", "203.0.113.11", port("http", 80, 0)),
			svc("default", "other", "203.0.113.12", port("http", 80, 0)),
			nodePortSvc("default", "np", "203.0.113.13", port("http", 80, 30080)),
			lb,
		},
		[]*discoverySlice{
			slice("default", "web", "http", 8080, webEndpoints...),
			slice("default", "other", "http", 8080, ep("10.244.2.2", true)),
			slice("default", "np", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true)),
			slice("default", "lb", "http", 8080, ep("10.244.3.2", true)),
		}, Options{})
}

func TestKernelClusterIP(t *testing.T) {
	tp := newTopo(t)
	conn := tp.node.nft(t)
	s := NewSyncer(Options{})
	if err := s.Apply(conn, testServices()); err != nil {
		t.Fatal(err)
	}

	t.Run("rules listed back", func(t *testing.T) {
		tbl, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		set, err := conn.GetSetByName(tbl, MapServiceIPs)
		if err != nil {
			t.Fatal(err)
		}
		elems, err := conn.GetSetElements(set)
		if err != nil {
			t.Fatal(err)
		}
		// The library hands verdict data back raw (nested attributes):
		// look for the chain name in it.
		got := map[string][]byte{}
		for _, e := range elems {
			got[fmt.Sprintf("%v", e.Key)] = e.Val
		}
		webKey := fmt.Sprintf("%v", mapKeyBytes(MapKey{Addr: mustParse("203.0.113.10"), Proto: ProtoTCP, Port: 80}))
		if !bytes.Contains(got[webKey], []byte(ChainName("service", "default/web/tcp/80")+"\x00")) {
			t.Errorf("service-ips: web → %q; all %q", got[webKey], got)
		}
		if len(elems) != 5 { // web, other, np, lb VIP and ingress (empty is in no-endpoint-services)
			t.Errorf("service-ips has %d elements, want 5", len(elems))
		}
		set, err = conn.GetSetByName(tbl, MapNoEndpointServices)
		if err != nil {
			t.Fatal(err)
		}
		if elems, _ := conn.GetSetElements(set); len(elems) != 1 {
			t.Errorf("no-endpoint-services has %d elements, want 1", len(elems))
		}
		// Each endpoint chain DNATs to its endpoint.
		epChain := ChainName("endpoint", "default/web/tcp/80__10.244.3.2/8080")
		rules, err := conn.GetRules(tbl, &nftables.Chain{Name: epChain, Table: tbl})
		if err != nil {
			t.Fatal(err)
		}
		var dnat bool
		for _, r := range rules {
			for _, e := range r.Exprs {
				if n, ok := e.(*expr.NAT); ok && n.Type == expr.NATTypeDestNAT {
					dnat = true
				}
				if im, ok := e.(*expr.Immediate); ok && im.Register == 1 && !net.IP(im.Data).Equal(net.ParseIP("10.244.3.2")) {
					t.Errorf("endpoint chain immediate %v", net.IP(im.Data))
				}
			}
		}
		if len(rules) != 2 || !dnat {
			t.Errorf("endpoint chain: %d rules, dnat %v", len(rules), dnat)
		}
	})

	t.Run("VIP reaches both backends", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 40 && len(seen) < 2; i++ {
			r, err := dial(t, tp.client, "203.0.113.10:80")
			if err != nil {
				t.Fatalf("dial VIP: %v", err)
			}
			seen[r]++
		}
		if seen["b1"] == 0 || seen["b2"] == 0 {
			t.Fatalf("replies %v, want both b1 and b2", seen)
		}
	})

	t.Run("from the node itself", func(t *testing.T) {
		if r, err := dial(t, tp.node, "203.0.113.12:80"); err != nil || r != "b1" {
			t.Fatalf("node → VIP: %q, %v", r, err)
		}
	})

	t.Run("NodePort on the node address", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 40 && len(seen) < 2; i++ {
			r, err := dial(t, tp.client, "10.244.1.1:30080")
			if err != nil {
				t.Fatalf("dial NodePort: %v", err)
			}
			seen[r]++
		}
		if seen["b1"] == 0 || seen["b2"] == 0 {
			t.Fatalf("replies %v, want both b1 and b2", seen)
		}
	})

	t.Run("LoadBalancer ingress IP", func(t *testing.T) {
		if r, err := dial(t, tp.client, "198.51.100.60:80"); err != nil || r != "b2" {
			t.Fatalf("dial LB ingress: %q, %v", r, err)
		}
	})

	t.Run("no endpoints refuses at once", func(t *testing.T) {
		start := time.Now()
		_, err := dial(t, tp.client, "203.0.113.11:80")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial: %v, want connection refused", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("refused after %v", d)
		}
	})

	t.Run("endpoint change touches one service", func(t *testing.T) {
		before := ruleHandles(t, conn, s)
		rs := testServices(ep("10.244.2.2", true), ep("10.244.3.2", false)) // b2 no longer ready
		if err := s.Apply(conn, rs); err != nil {
			t.Fatal(err)
		}
		after := ruleHandles(t, conn, s)
		webSvc := ChainName("service", "default/web/tcp/80")
		goneEP := ChainName("endpoint", "default/web/tcp/80__10.244.3.2/8080")
		if _, ok := after[goneEP]; ok {
			t.Errorf("chain %s still there", goneEP)
		}
		if slices.Equal(before[webSvc], after[webSvc]) {
			t.Errorf("web's service chain was not rewritten")
		}
		for name, h := range before {
			if name == webSvc || name == goneEP {
				continue
			}
			if !slices.Equal(h, after[name]) {
				t.Errorf("chain %s changed: %v → %v", name, h, after[name])
			}
		}
		for i := 0; i < 10; i++ {
			if r, err := dial(t, tp.client, "203.0.113.10:80"); err != nil || r != "b1" {
				t.Fatalf("after change: %q, %v, want b1 only", r, err)
			}
		}
		// And back to no endpoints at all: refused.
		rs2 := Build([]*corev1Service{svc("default", "web", "203.0.113.10", port("http", 80, 0))}, nil, Options{})
		if err := s.Apply(conn, rs2); err != nil {
			t.Fatal(err)
		}
		if _, err := dial(t, tp.client, "203.0.113.10:80"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("web without endpoints: %v, want refused", err)
		}
		if n := len(ruleHandles(t, conn, s)); n != len(staticChains) {
			t.Errorf("%d chains left, want only the %d static ones", n, len(staticChains))
		}
	})

	t.Run("drift is repaired", func(t *testing.T) {
		conn.DelTable(s.Table())
		if err := conn.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(conn, testServices()); err != nil {
			t.Fatal(err)
		}
		if r, err := dial(t, tp.client, "203.0.113.12:80"); err != nil || r != "b1" {
			t.Fatalf("after full sync: %q, %v", r, err)
		}
	})

	t.Run("Delete removes the table", func(t *testing.T) {
		if err := s.Delete(conn); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); err == nil {
			t.Fatal("table still there")
		}
		if err := s.Delete(conn); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
	})
}

// ruleHandles maps each chain of the table to its rule handles.
func ruleHandles(t *testing.T, conn *nftables.Conn, s *Syncer) map[string][]uint64 {
	t.Helper()
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]uint64{}
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		rules, err := conn.GetRules(s.Table(), c)
		if err != nil {
			t.Fatal(err)
		}
		hs := []uint64{}
		for _, r := range rules {
			hs = append(hs, r.Handle)
		}
		out[c.Name] = hs
	}
	return out
}

func TestKernelNetnsDeletionLeavesNothing(t *testing.T) {
	requireRoot(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		ns := newNS(t)
		name = ns.name
		if err := NewSyncer(Options{}).Apply(ns.nft(t), testServices()); err != nil {
			t.Fatal(err)
		}
	}) // the inner test's cleanup deletes the namespace
	if _, err := os.Stat("/var/run/netns/" + name); !os.IsNotExist(err) {
		t.Errorf("netns %s still present: %v", name, err)
	}
	// Read-only look at the host: the table was only ever in the test namespace.
	host, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := host.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); err == nil {
		t.Errorf("a %q table exists in the root namespace", TableName)
	}
}

// TestKernelManyServices: maps beyond one netlink attribute (64 KiB) are
// written whole — the library does not split element lists, and an
// overflowing list used to lose elements or fail the batch with ENOENT.
func TestKernelManyServices(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	conn := ns.nft(t)
	s := NewSyncer(Options{})
	const n = 1500
	sa, la := manyServices(n, "10.244.9.1")
	rs := Build(sa, la, Options{})
	for i := 0; i < 2; i++ { // a fresh table, then a replaced one
		if err := s.FullSync(conn, rs); err != nil {
			t.Fatal(err)
		}
	}
	sb, lb := manyServices(n, "10.244.9.2")
	if err := s.Apply(conn, Build(sb, lb, Options{})); err != nil {
		t.Fatal(err)
	}
	tbl, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	set, err := conn.GetSetByName(tbl, MapServiceIPs)
	if err != nil {
		t.Fatal(err)
	}
	elems, err := conn.GetSetElements(set)
	if err != nil {
		t.Fatal(err)
	}
	if len(elems) != n {
		t.Fatalf("service-ips has %d elements, want %d", len(elems), n)
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != len(rs.Chains)+len(staticChains) {
		t.Fatalf("%d chains, want %d", len(chains), len(rs.Chains)+len(staticChains))
	}
}

func dialTimeout(t *testing.T, ns *testNS, addr string, timeout time.Duration) error {
	t.Helper()
	var derr error
	ns.do(t, func() error {
		c, err := net.DialTimeout("tcp4", addr, timeout)
		if err == nil {
			c.Close()
		}
		derr = err
		return nil
	})
	return derr
}

// wantDropped: the connection attempt times out (dropped), it is not refused.
func wantDropped(t *testing.T, ns *testNS, addr string) {
	t.Helper()
	err := dialTimeout(t, ns, addr, 1500*time.Millisecond)
	if err == nil {
		t.Fatalf("dial %s succeeded, want dropped", addr)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s refused, want dropped (timeout)", addr)
	}
}

func mustCheck(t *testing.T, s *Syncer, conn *nftables.Conn, want bool) {
	t.Helper()
	ok, err := s.Check(conn)
	if err != nil {
		t.Fatal(err)
	}
	if ok != want {
		why, _ := s.drift(conn)
		t.Fatalf("Check = %v, want %v (%s)", ok, want, why)
	}
}

func TestKernelSessionAffinity(t *testing.T) {
	tp := newTopo(t)
	conn := tp.node.nft(t)
	s := NewSyncer(Options{})
	sticky := svc("default", "sticky", "203.0.113.30", port("http", 80, 0))
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	plain := svc("default", "web", "203.0.113.10", port("http", 80, 0))
	slices := []*discoveryv1.EndpointSlice{
		slice("default", "sticky", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true)),
		slice("default", "web", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true)),
	}
	if err := s.Apply(conn, Build([]*corev1.Service{sticky, plain}, slices, Options{})); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s, conn, true)
	first, err := dial(t, tp.client, "203.0.113.30:80")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		r, err := dial(t, tp.client, "203.0.113.30:80")
		if err != nil || r != first {
			t.Fatalf("connection %d: %q, %v; want %q every time", i, r, err, first)
		}
	}
	// The same client without affinity spreads (so the above is not luck).
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		r, err := dial(t, tp.client, "203.0.113.10:80")
		if err != nil {
			t.Fatal(err)
		}
		seen[r] = true
	}
	if len(seen) != 2 {
		t.Fatalf("without affinity: %v", seen)
	}
	// Incremental: the sticky endpoint goes; the client moves to the other
	// one and its set is deleted with its chain.
	other := "10.244.3.2"
	if first == "b2" {
		other = "10.244.2.2"
	}
	slices[0] = slice("default", "sticky", "http", 8080, ep(other, true))
	if err := s.Apply(conn, Build([]*corev1.Service{sticky, plain}, slices, Options{})); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s, conn, true)
	for i := 0; i < 5; i++ {
		if r, err := dial(t, tp.client, "203.0.113.30:80"); err != nil || r == first {
			t.Fatalf("after the endpoint went: %q, %v", r, err)
		}
	}
	tbl, _ := conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	sets, err := conn.GetSets(tbl)
	if err != nil {
		t.Fatal(err)
	}
	var aff []string
	for _, set := range sets {
		if strings.HasPrefix(set.Name, "affinity-") {
			aff = append(aff, set.Name)
			if !set.HasTimeout || set.Timeout != 10800*time.Second {
				t.Errorf("set %s: timeout %v %v", set.Name, set.HasTimeout, set.Timeout)
			}
		}
	}
	if len(aff) != 1 || !strings.Contains(aff[0], other) {
		t.Fatalf("affinity sets %v, want one for %s", aff, other)
	}
}

// localTopo: the node is "node"; b1 is a local endpoint, b2 stands for an
// endpoint on another node. The cluster CIDR 10.244.2.0/23 holds b1 and b2
// (pods); the client 10.244.1.2 is outside it (an external client).
var localOpts = Options{NodeName: "node", ClusterCIDR: netip.MustParsePrefix("10.244.2.0/23")}

func TestKernelExternalTrafficPolicyLocal(t *testing.T) {
	tp := newTopo(t)
	serveWho(t, tp.b1, "10.244.2.2:8081", "b1")
	serveWho(t, tp.b2, "10.244.3.2:8081", "b2")
	conn := tp.node.nft(t)
	s := NewSyncer(localOpts)
	loc := nodePortSvc("default", "loc", "203.0.113.40", port("http", 80, 30090))
	loc.Spec.ExternalIPs = []string{"198.51.100.70"}
	loc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	build := func(eps ...discoveryv1.Endpoint) *Ruleset {
		return Build([]*corev1.Service{loc}, []*discoveryv1.EndpointSlice{slice("default", "loc", "http", 8081, eps...)}, localOpts)
	}
	if err := s.Apply(conn, build(epOn("10.244.2.2", "node", true), epOn("10.244.3.2", "other", true))); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"10.244.1.1:30090", "198.51.100.70:80"} {
		for i := 0; i < 10; i++ {
			if r, err := dial(t, tp.client, addr); err != nil || r != "b1 from 10.244.1.2" {
				t.Fatalf("external client → %s: %q, %v; want the local endpoint, client IP kept", addr, r, err)
			}
		}
	}
	t.Run("pods short-circuit to all endpoints", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 40 && len(seen) < 2; i++ {
			r, err := dial(t, tp.b2, "198.51.100.70:80")
			if err != nil {
				t.Fatal(err)
			}
			seen[strings.Fields(r)[0]] = true
		}
		if !seen["b1"] || !seen["b2"] {
			t.Fatalf("pod → external IP reached %v, want both endpoints", seen)
		}
	})
	t.Run("the node itself", func(t *testing.T) {
		if r, err := dial(t, tp.node, "10.244.1.1:30090"); err != nil || !strings.HasPrefix(r, "b") {
			t.Fatalf("node → its NodePort: %q, %v", r, err)
		}
	})
	t.Run("no local endpoint drops external traffic", func(t *testing.T) {
		if err := s.Apply(conn, build(epOn("10.244.3.2", "other", true))); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, s, conn, true)
		wantDropped(t, tp.client, "10.244.1.1:30090")
		wantDropped(t, tp.client, "198.51.100.70:80")
		if r, err := dial(t, tp.b1, "198.51.100.70:80"); err != nil || !strings.HasPrefix(r, "b2 from") {
			t.Fatalf("pod → external IP: %q, %v, want b2 (short-circuit)", r, err)
		}
		if r, err := dial(t, tp.client, "203.0.113.40:80"); err != nil || !strings.HasPrefix(r, "b2 from") {
			t.Fatalf("ClusterIP: %q, %v, want b2", r, err)
		}
	})
}

func TestKernelInternalTrafficPolicyLocal(t *testing.T) {
	tp := newTopo(t)
	conn := tp.node.nft(t)
	s := NewSyncer(localOpts)
	local := corev1.ServiceInternalTrafficPolicyLocal
	itp := svc("default", "itp", "203.0.113.41", port("http", 80, 0))
	itp.Spec.InternalTrafficPolicy = &local
	build := func(eps ...discoveryv1.Endpoint) *Ruleset {
		return Build([]*corev1.Service{itp}, []*discoveryv1.EndpointSlice{slice("default", "itp", "http", 8080, eps...)}, localOpts)
	}
	if err := s.Apply(conn, build(epOn("10.244.2.2", "node", true), epOn("10.244.3.2", "other", true))); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if r, err := dial(t, tp.client, "203.0.113.41:80"); err != nil || r != "b1" {
			t.Fatalf("ClusterIP: %q, %v, want the local endpoint b1 only", r, err)
		}
	}
	if err := s.Apply(conn, build(epOn("10.244.3.2", "other", true))); err != nil {
		t.Fatal(err)
	}
	wantDropped(t, tp.client, "203.0.113.41:80")
}

func TestKernelEgressMasquerade(t *testing.T) {
	tp := newTopo(t)
	serveWho(t, tp.client, "10.244.1.2:9090", "outside")
	serveWho(t, tp.b2, "10.244.3.2:8081", "b2")
	conn := tp.node.nft(t)
	web := svc("default", "web", "203.0.113.10", port("http", 80, 0))
	rs := Build([]*corev1.Service{web}, []*discoveryv1.EndpointSlice{slice("default", "web", "http", 8081, ep("10.244.3.2", true))}, localOpts)
	s := NewSyncer(localOpts)
	if err := s.Apply(conn, rs); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ addr, want string }{
		{"10.244.1.2:9090", "outside from 10.244.1.1"}, // leaves the cluster network: masqueraded
		{"10.244.3.2:8081", "b2 from 10.244.2.2"},      // pod → pod: not
		{"203.0.113.10:80", "b2 from 10.244.2.2"},      // pod → service → pod: not
	} {
		if r, err := dial(t, tp.b1, c.addr); err != nil || r != c.want {
			t.Errorf("b1 → %s: %q, %v; want %q", c.addr, r, err, c.want)
		}
	}
	// Without a cluster CIDR nothing is masqueraded.
	s2 := NewSyncer(Options{})
	if err := s2.FullSync(conn, Build([]*corev1.Service{web}, []*discoveryv1.EndpointSlice{slice("default", "web", "http", 8081, ep("10.244.3.2", true))}, Options{})); err != nil {
		t.Fatal(err)
	}
	if r, err := dial(t, tp.b1, "10.244.1.2:9090"); err != nil || r != "outside from 10.244.2.2" {
		t.Errorf("without cluster CIDR: %q, %v", r, err)
	}
}

// TestKernelDrift: every kind of drift is seen by Check, and FullSync
// repairs it — with rules counted per chain, and in one dump (Options.NetNS).
func TestKernelDrift(t *testing.T) {
	t.Run("per chain", func(t *testing.T) { testKernelDrift(t, false) })
	t.Run("one dump", func(t *testing.T) { testKernelDrift(t, true) })
}

func testKernelDrift(t *testing.T, dump bool) {
	tp := newTopo(t)
	opts := localOpts
	if dump {
		opts.NetNS = int(tp.node.h)
	}
	conn := tp.node.nft(t)
	sticky := svc("default", "sticky", "203.0.113.30", port("http", 80, 0))
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	rs := Build([]*corev1.Service{
		svc("default", "web", "203.0.113.10", port("http", 80, 0)),
		svc("default", "other", "203.0.113.12", port("http", 80, 0)),
		sticky,
	}, []*discoveryv1.EndpointSlice{
		slice("default", "web", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true)),
		slice("default", "other", "http", 8080, ep("10.244.2.2", true)),
		slice("default", "sticky", "http", 8080, ep("10.244.3.2", true)),
	}, opts)
	s := NewSyncer(opts)
	mustCheck(t, s, conn, false) // nothing applied yet
	if err := s.Apply(conn, rs); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, s, conn, true)

	table := s.Table()
	getSet := func(name string) *nftables.Set {
		t.Helper()
		set, err := conn.GetSetByName(table, name)
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	webVIP := MapKey{Addr: mustParse("203.0.113.10"), Proto: ProtoTCP, Port: 80}
	otherVIP := MapKey{Addr: mustParse("203.0.113.12"), Proto: ProtoTCP, Port: 80}
	stickyID := "default/sticky/tcp/80"
	stickySet := ChainName("affinity", stickyID+"__10.244.3.2/8080")
	chain := func(n string) *nftables.Chain { return &nftables.Chain{Name: n, Table: table} }

	for _, c := range []struct {
		name  string
		drift func() error
	}{
		{"deleted element", func() error {
			return conn.SetDeleteElements(getSet(MapServiceIPs), []nftables.SetElement{{Key: mapKeyBytes(webVIP)}})
		}},
		{"changed element", func() error {
			set := getSet(MapServiceIPs)
			if err := conn.SetDeleteElements(set, []nftables.SetElement{{Key: mapKeyBytes(webVIP)}}); err != nil {
				return err
			}
			return conn.SetAddElements(set, []nftables.SetElement{element(webVIP, ChainName("service", "default/other/tcp/80"))})
		}},
		{"extra element", func() error {
			return conn.SetAddElements(getSet(MapNoEndpointServices), []nftables.SetElement{element(MapKey{Addr: mustParse("203.0.113.99"), Proto: ProtoTCP, Port: 1}, VerdictDrop)})
		}},
		{"flushed chain", func() error { conn.FlushChain(chain(ChainName("service", "default/web/tcp/80"))); return nil }},
		{"flushed static chain", func() error { conn.FlushChain(chain(chainEgress)); return nil }},
		{"extra rule", func() error {
			conn.AddRule(&nftables.Rule{Table: table, Chain: chain("services"), Exprs: []expr.Any{&expr.Counter{}}})
			return nil
		}},
		{"extra chain", func() error { conn.AddChain(chain("stray")); return nil }},
		{"deleted chain", func() error {
			if err := conn.SetDeleteElements(getSet(MapServiceIPs), []nftables.SetElement{{Key: mapKeyBytes(otherVIP)}}); err != nil {
				return err
			}
			conn.FlushChain(chain(ChainName("service", "default/other/tcp/80")))
			conn.DelChain(chain(ChainName("service", "default/other/tcp/80")))
			return nil
		}},
		{"deleted affinity set", func() error {
			conn.FlushChain(chain(ChainName("service", stickyID)))
			conn.FlushChain(chain(ChainName("endpoint", stickyID+"__10.244.3.2/8080")))
			conn.DelSet(&nftables.Set{Table: table, Name: stickySet})
			return nil
		}},
		{"missing table", func() error { conn.DelTable(table); return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.drift(); err != nil {
				t.Fatal(err)
			}
			if err := conn.Flush(); err != nil {
				t.Fatalf("making drift: %v", err)
			}
			mustCheck(t, s, conn, false)
			if err := s.FullSync(conn, rs); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, s, conn, true)
			for _, x := range []struct{ addr, want string }{{"203.0.113.12:80", "b1"}, {"203.0.113.30:80", "b2"}} {
				if r, err := dial(t, tp.client, x.addr); err != nil || r != x.want {
					t.Fatalf("after repair %s: %q, %v", x.addr, r, err)
				}
			}
		})
	}
}
