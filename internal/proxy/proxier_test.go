package proxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// Proxier tests: a real API server (controllertest) and the kernel of a test
// network namespace. Objects are created through the API; what the kernel
// holds is compared with Build over the same objects.

// path names the test namespace for NetNS and Cleanup: through the
// descriptor the test holds, not /run/netns/NAME, which a first `ip netns
// add` elsewhere (bind-mounting /run/netns over itself) hides.
func (ns *testNS) path() string { return fmt.Sprintf("/proc/self/fd/%d", int(ns.h)) }

type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// runProxier starts a Proxier on ns until the test ends (or stop is called);
// its logs are printed if the test fails. Run must return nil.
func runProxier(tb testing.TB, c kubernetes.Interface, ns *testNS, check time.Duration, tweak func(*Proxier)) (p *Proxier, stop func()) {
	tb.Helper()
	logs := &testLog{}
	level := slog.LevelDebug
	if _, ok := tb.(*testing.B); ok {
		level = slog.LevelInfo
	}
	p, err := NewProxier(ProxierConfig{
		Client: c, NetNS: ns.path(), CheckPeriod: check,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if tweak != nil {
		tweak(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				tb.Errorf("Run did not return after its context ended")
			}
			if tb.Failed() {
				tb.Logf("proxier logs:\n%s", logs)
			}
		})
	}
	tb.Cleanup(stop)
	return p, stop
}

func waitFor(tb testing.TB, what string, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitSynced(tb testing.TB, p *Proxier) {
	tb.Helper()
	waitFor(tb, "first sync", 30*time.Second, func() error {
		if !p.Synced() {
			_, _, err := p.LastSync()
			return fmt.Errorf("not synced (last error %v)", err)
		}
		return nil
	})
}

// apiService creates a ClusterIP service (port "http" 80 → 8080) and returns
// it with its allocated cluster IP.
func apiService(tb testing.TB, c kubernetes.Interface, ns, name string, labels map[string]string) *corev1.Service {
	tb.Helper()
	s, err := c.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func sliceObject(ns, svcName string, labels map[string]string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	l := map[string]string{discoveryv1.LabelServiceName: svcName}
	maps.Copy(l, labels)
	name, p, proto := "http", int32(8080), corev1.ProtocolTCP
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svcName + "-x", Labels: l},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &p, Protocol: &proto}},
		Endpoints:   eps,
	}
}

func apiSlice(tb testing.TB, c kubernetes.Interface, s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	tb.Helper()
	out, err := c.DiscoveryV1().EndpointSlices(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func setEndpoints(tb testing.TB, c kubernetes.Interface, s *discoveryv1.EndpointSlice, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	tb.Helper()
	s = s.DeepCopy()
	s.Endpoints = eps
	out, err := c.DiscoveryV1().EndpointSlices(s.Namespace).Update(context.Background(), s, metav1.UpdateOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// desired is Build over what the API holds, seen through the proxier's selector.
func desired(tb testing.TB, c kubernetes.Interface, opts Options) *Ruleset {
	tb.Helper()
	ctx := context.Background()
	lo := metav1.ListOptions{LabelSelector: ListSelector().String()}
	sl, err := c.CoreV1().Services("").List(ctx, lo)
	if err != nil {
		tb.Fatal(err)
	}
	el, err := c.DiscoveryV1().EndpointSlices("").List(ctx, lo)
	if err != nil {
		tb.Fatal(err)
	}
	var svcs []*corev1.Service
	for i := range sl.Items {
		svcs = append(svcs, &sl.Items[i])
	}
	var sls []*discoveryv1.EndpointSlice
	for i := range el.Items {
		sls = append(sls, &el.Items[i])
	}
	return Build(svcs, sls, opts)
}

// kernelView is what the kernel's table holds: rules per chain and the
// elements of each named map (key hex → verdict chain).
type kernelView struct {
	chains map[string]int
	maps   map[string]map[string]string
}

func readKernel(conn *nftables.Conn) (*kernelView, error) {
	t, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("table: %w", err)
	}
	v := &kernelView{chains: map[string]int{}, maps: map[string]map[string]string{}}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		rules, err := conn.GetRules(t, c)
		if err != nil {
			return nil, fmt.Errorf("rules of %s: %w", c.Name, err)
		}
		v.chains[c.Name] = len(rules)
	}
	sets, err := conn.GetSets(t)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		elems, err := conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("elements of %s: %w", s.Name, err)
		}
		m := map[string]string{}
		for _, e := range elems {
			m[hex.EncodeToString(e.Key)] = verdictChain(e)
		}
		v.maps[s.Name] = m
	}
	return v, nil
}

// verdictChain is the chain of a verdict-map element read back from the
// kernel. The library (v0.3.0) does not decode verdicts of elements: Val
// holds the nested NFTA_VERDICT_* attributes.
func verdictChain(e nftables.SetElement) string {
	if e.VerdictData != nil {
		return e.VerdictData.Chain
	}
	ad, err := netlink.NewAttributeDecoder(e.Val)
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			return ad.String()
		}
	}
	return ""
}

// String renders the view deterministically (for comparisons and messages).
func (v *kernelView) String() string {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(v.chains)) {
		fmt.Fprintf(&b, "chain %s: %d rules\n", n, v.chains[n])
	}
	for _, m := range slices.Sorted(maps.Keys(v.maps)) {
		fmt.Fprintf(&b, "map %s:\n", m)
		for _, k := range slices.Sorted(maps.Keys(v.maps[m])) {
			fmt.Fprintf(&b, "\t%s : %s\n", k, v.maps[m][k])
		}
	}
	return b.String()
}

// matches reports how the kernel differs from rs: the per-service chains
// must be exactly rs's, and each map must hold rs's elements.
func (v *kernelView) matches(rs *Ruleset) error {
	static := map[string]bool{}
	for _, c := range staticChains {
		static[c.name] = true
	}
	var problems []string
	for n := range rs.Chains {
		if _, ok := v.chains[n]; !ok {
			problems = append(problems, "missing chain "+n)
		}
	}
	for n := range v.chains {
		if _, ok := rs.Chains[n]; !ok && !static[n] {
			problems = append(problems, "stale chain "+n)
		}
	}
	for m, want := range rs.Maps {
		got := v.maps[m]
		if len(got) != len(want) {
			problems = append(problems, fmt.Sprintf("map %s: %d elements, want %d", m, len(got), len(want)))
			continue
		}
		for k, c := range want {
			if gc, ok := got[hex.EncodeToString(mapKeyBytes(k))]; !ok || gc != c {
				problems = append(problems, fmt.Sprintf("map %s: %s → %q, want %s", m, k, gc, c))
			}
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// waitConverged waits until the kernel holds Build over the API's objects.
func waitConverged(tb testing.TB, conn *nftables.Conn, c kubernetes.Interface) *kernelView {
	tb.Helper()
	var v *kernelView
	waitFor(tb, "kernel matches the API", 30*time.Second, func() (err error) {
		rs := desired(tb, c, Options{})
		if v, err = readKernel(conn); err != nil {
			return err
		}
		return v.matches(rs)
	})
	return v
}

func vipKey(tb testing.TB, s *corev1.Service) string {
	tb.Helper()
	a, err := netip.ParseAddr(s.Spec.ClusterIP)
	if err != nil {
		tb.Fatalf("service %s: cluster IP %q: %v", s.Name, s.Spec.ClusterIP, err)
	}
	return hex.EncodeToString(mapKeyBytes(MapKey{Addr: a, Proto: ProtoTCP, Port: 80}))
}

// TestBuildCache: the per-service cache gives Build's result, also after
// changes, and rebuilds only what changed.
func TestBuildCache(t *testing.T) {
	rv := func(o metav1.Object, v string) { o.SetResourceVersion(v); o.SetUID(types.UID("uid-" + o.GetName())) }
	web := svc("default", "web", "10.43.0.10", port("http", 80, 0), port("metrics", 9090, 0))
	np := nodePortSvc("default", "np", "10.43.0.11", port("http", 80, 30080))
	np.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	lb := svc("other", "lb", "10.43.0.12", port("http", 80, 30081))
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.60"}}
	headless := svc("default", "headless", corev1.ClusterIPNone, port("http", 80, 0))
	empty := svc("default", "empty", "10.43.0.13", port("http", 80, 0))
	webA := slice("default", "web", "http", 8080, ep("10.244.2.2", true), ep("10.244.3.2", true))
	webB := slice("default", "web", "metrics", 9090, ep("10.244.2.2", true))
	webB.Name = "web-def"
	npS := slice("default", "np", "http", 8080, ep("10.244.4.2", true))
	lbS := slice("other", "lb", "http", 8080, ep("10.244.5.2", false))
	orphan := slice("default", "gone", "http", 8080, ep("10.244.6.2", true))
	svcs := []*corev1.Service{web, np, lb, headless, empty}
	sls := []*discoveryv1.EndpointSlice{webA, webB, npS, lbS, orphan}
	for _, o := range svcs {
		rv(o, "1")
	}
	for _, o := range sls {
		rv(o, "1")
	}
	c := newBuildCache(Options{NodeName: "n1"})
	check := func(step string) {
		t.Helper()
		got, want := c.build(svcs, sls), Build(svcs, sls, Options{NodeName: "n1"})
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: cached build differs from Build:\n%s\nwant\n%s", step, got, want)
		}
	}
	check("first")
	npPart := c.parts["default/np"]
	// One slice changes: only its service is rebuilt.
	webA = webA.DeepCopy()
	webA.Endpoints = []discoveryv1.Endpoint{ep("10.244.9.9", true)}
	rv(webA, "2")
	sls[0] = webA
	check("slice changed")
	if c.parts["default/np"] != npPart {
		t.Error("an unchanged service was rebuilt")
	}
	// A service changes; one goes.
	np = np.DeepCopy()
	np.Spec.Ports[0].NodePort = 30090
	rv(np, "2")
	svcs = []*corev1.Service{web, np, headless, empty}
	check("service changed and deleted")
	if _, ok := c.parts["other/lb"]; ok {
		t.Error("deleted service still cached")
	}
}

func TestNewProxierChecksConfig(t *testing.T) {
	if _, err := NewProxier(ProxierConfig{}); err == nil {
		t.Error("no client: no error")
	}
	api := controllertest.Start(t)
	if _, err := NewProxier(ProxierConfig{Client: api.Client, NetNS: "/run/netns/skiff-t-does-not-exist"}); err == nil {
		t.Error("missing netns: no error")
	}
	p, err := NewProxier(ProxierConfig{Client: api.Client})
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.MinSyncPeriod != DefaultMinSyncPeriod || p.cfg.CheckPeriod != DefaultCheckPeriod || p.Synced() {
		t.Errorf("defaults: %+v, synced %v", p.cfg, p.Synced())
	}
}

func TestProxierFollowsAPI(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	conn := ns.nft(t)
	api := controllertest.Start(t)
	c := api.Client

	web := apiService(t, c, "default", "web", nil)
	webSlice := apiSlice(t, c, sliceObject("default", "web", nil, ep("10.244.2.2", true), ep("10.244.3.2", true)))
	empty := apiService(t, c, "default", "empty", nil)
	// Handed to another proxy: kube-proxy's selector leaves it out.
	other := apiService(t, c, "default", "other", map[string]string{proxyNameLabel: "someone-else"})
	apiSlice(t, c, sliceObject("default", "other", map[string]string{proxyNameLabel: "someone-else"}, ep("10.244.2.3", true)))

	p, _ := runProxier(t, c, ns, 300*time.Millisecond, nil)
	waitSynced(t, p)
	v := waitConverged(t, conn, c)
	if _, ok := v.maps[MapServiceIPs][vipKey(t, web)]; !ok {
		t.Errorf("web's VIP not in %s:\n%s", MapServiceIPs, v)
	}
	if _, ok := v.maps[MapNoEndpointServices][vipKey(t, empty)]; !ok {
		t.Errorf("empty's VIP not in %s:\n%s", MapNoEndpointServices, v)
	}
	for m := range v.maps {
		if _, ok := v.maps[m][vipKey(t, other)]; ok {
			t.Errorf("other (service-proxy-name) is programmed in %s", m)
		}
	}

	t.Run("slice change", func(t *testing.T) {
		webSlice = setEndpoints(t, c, webSlice, ep("10.244.2.2", true), ep("10.244.4.2", true))
		v := waitConverged(t, conn, c)
		gone := ChainName("endpoint", "default/web/tcp/80__10.244.3.2/8080")
		if _, ok := v.chains[gone]; ok {
			t.Errorf("chain %s still there", gone)
		}
		// No ready endpoint left: the VIP moves to the reject map.
		webSlice = setEndpoints(t, c, webSlice, ep("10.244.2.2", false))
		v = waitConverged(t, conn, c)
		if _, ok := v.maps[MapNoEndpointServices][vipKey(t, web)]; !ok {
			t.Errorf("web without ready endpoints not in %s:\n%s", MapNoEndpointServices, v)
		}
		webSlice = setEndpoints(t, c, webSlice, ep("10.244.2.2", true))
		waitConverged(t, conn, c)
		if len(p.SyncLatencies()) == 0 {
			t.Error("no slice-event latency recorded")
		}
	})

	t.Run("service deleted", func(t *testing.T) {
		if err := c.CoreV1().Services("default").Delete(context.Background(), "empty", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		v := waitConverged(t, conn, c)
		if _, ok := v.maps[MapNoEndpointServices][vipKey(t, empty)]; ok {
			t.Error("deleted service still in the kernel")
		}
	})

	t.Run("handed to another proxy", func(t *testing.T) {
		ctx := context.Background()
		x := apiService(t, c, "default", "x", nil)
		xs := apiSlice(t, c, sliceObject("default", "x", nil, ep("10.244.2.9", true)))
		v := waitConverged(t, conn, c)
		if _, ok := v.maps[MapServiceIPs][vipKey(t, x)]; !ok {
			t.Fatalf("x not programmed:\n%s", v)
		}
		// The selector stops matching: the watch reports a deletion.
		x.Labels = map[string]string{proxyNameLabel: "someone-else"}
		if _, err := c.CoreV1().Services("default").Update(ctx, x, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		xs.Labels[proxyNameLabel] = "someone-else"
		if _, err := c.DiscoveryV1().EndpointSlices("default").Update(ctx, xs, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		v = waitConverged(t, conn, c)
		if _, ok := v.maps[MapServiceIPs][vipKey(t, x)]; ok {
			t.Error("x still programmed after it was handed to another proxy")
		}
	})

	t.Run("drift repaired", func(t *testing.T) {
		x := ns.nft(t)
		x.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})
		if err := x.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := readKernel(conn); err == nil {
			t.Fatal("table still there after deleting it")
		}
		waitConverged(t, conn, c) // CheckPeriod is 300 ms
		if _, _, err := p.LastSync(); err != nil {
			t.Errorf("last sync: %v", err)
		}
	})
}

func TestProxierRestartKeepsRules(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	conn := ns.nft(t)
	api := controllertest.Start(t)
	c := api.Client
	for i := range 5 {
		name := fmt.Sprintf("s%d", i)
		apiService(t, c, "default", name, nil)
		if i > 0 {
			apiSlice(t, c, sliceObject("default", name, nil, ep(fmt.Sprintf("10.244.2.%d", i), true), ep(fmt.Sprintf("10.244.3.%d", i), true)))
		}
	}
	p1, stop1 := runProxier(t, c, ns, time.Minute, nil)
	waitSynced(t, p1)
	before := waitConverged(t, conn, c).String()
	stop1()
	// The agent stopped: the rules stay.
	v, err := readKernel(conn)
	if err != nil {
		t.Fatalf("table gone after Run returned: %v", err)
	}
	if got := v.String(); got != before {
		t.Fatalf("table changed when the proxier stopped:\n%s\nwant\n%s", got, before)
	}
	// A new proxier on the existing table: the same rules, nothing twice.
	p2, _ := runProxier(t, c, ns, time.Minute, nil)
	waitSynced(t, p2)
	if got := waitConverged(t, conn, c).String(); got != before {
		t.Fatalf("after restart:\n%s\nwant\n%s", got, before)
	}
	// And it keeps following the API.
	s, err := c.DiscoveryV1().EndpointSlices("default").Get(context.Background(), "s1-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setEndpoints(t, c, s, ep("10.244.4.1", true))
	if got := waitConverged(t, conn, c).String(); got == before {
		t.Fatal("no change in the kernel after a slice update")
	}
}

// faultyConn fails Flush while *fails > 0.
type faultyConn struct {
	*lastingConn
	fails *atomic.Int32
}

func (f faultyConn) Flush() error {
	if f.fails.Add(-1) >= 0 {
		return errors.New("injected flush failure")
	}
	return f.lastingConn.Flush()
}

func TestProxierRetriesWithFreshConn(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	conn := ns.nft(t)
	api := controllertest.Start(t)
	c := api.Client
	apiService(t, c, "default", "web", nil)
	apiSlice(t, c, sliceObject("default", "web", nil, ep("10.244.2.2", true)))

	var fails atomic.Int32
	var dials atomic.Int32
	fails.Store(3)
	p, _ := runProxier(t, c, ns, time.Minute, func(p *Proxier) {
		p.dial = func(fd int) (Conn, error) {
			dials.Add(1)
			c, err := dialLasting(fd)
			if err != nil {
				return nil, err
			}
			return faultyConn{lastingConn: c.(*lastingConn), fails: &fails}, nil
		}
	})
	waitSynced(t, p)
	waitConverged(t, conn, c)
	if _, _, err := p.LastSync(); err != nil {
		t.Errorf("last sync: %v", err)
	}
	if n := dials.Load(); n < 4 {
		t.Errorf("%d connections for 3 failures and a success, want a fresh one after each failure", n)
	}
	// Failures after the first sync are retried too.
	fails.Store(2)
	s, err := c.DiscoveryV1().EndpointSlices("default").Get(context.Background(), "web-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setEndpoints(t, c, s, ep("10.244.3.2", true))
	waitConverged(t, conn, c)
}

// TestLastingConnDeadline: the deadline reaches the connection's socket (so
// a lost netlink reply cannot stop the proxier for good).
func TestLastingConnDeadline(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	c, err := dialLasting(int(ns.h))
	if err != nil {
		t.Fatal(err)
	}
	lc := c.(*lastingConn)
	defer lc.CloseLasting()
	if _, err := lc.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.ListTablesOfFamily(nftables.TableFamilyIPv4); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the deadline: %v, want a timeout", err)
	}
}

func TestCleanup(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	conn := ns.nft(t)
	rs := Build([]*corev1.Service{svc("default", "web", "10.43.0.10", port("http", 80, 0))},
		[]*discoveryv1.EndpointSlice{slice("default", "web", "http", 8080, ep("10.244.2.2", true))}, Options{})
	if err := NewSyncer(Options{}).FullSync(conn, rs); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(ns.path()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); err == nil {
		t.Fatal("table still there after Cleanup")
	}
	if err := Cleanup(ns.path()); err != nil {
		t.Fatalf("Cleanup without a table: %v", err)
	}
	if err := Cleanup("/run/netns/skiff-t-does-not-exist"); err == nil {
		t.Fatal("Cleanup of a missing namespace: no error")
	}
}

// BenchmarkProxierEndpointUpdate: an EndpointSlice update through the API
// until the new endpoint's chain is in the kernel (the test polls it), with
// n services programmed. Reported besides ns/op: the proxier's own record
// from event receipt to batch flush (median, max). "check" is one drift
// check of the whole table (what the proxier does every CheckPeriod);
// "update-minsync=0" is "update" without the debounce.
func BenchmarkProxierEndpointUpdate(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			ns := newNS(b)
			api := controllertest.Start(b)
			c := api.Client
			createMany(b, c, n)
			p, stop := runProxier(b, c, ns, time.Hour, nil)
			waitSynced(b, p)
			waitConverged(b, ns.nft(b), c)

			poll, err := NewConn(nftables.WithNetNSFd(int(ns.h)), nftables.AsLasting())
			if err != nil {
				b.Fatal(err)
			}
			defer poll.CloseLasting()
			table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
			ctx := context.Background()
			s0, err := c.DiscoveryV1().EndpointSlices("default").Get(ctx, "svc-0-x", metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			svc0, err := c.CoreV1().Services("default").Get(ctx, "svc-0", metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			// The chain that appears when the second endpoint becomes alt[k].
			alt := [2]string{"10.244.9.1", "10.244.9.2"}
			var target [2]string
			for k := range alt {
				x := s0.DeepCopy()
				x.Endpoints = []discoveryv1.Endpoint{ep("10.244.1.10", true), ep(alt[k], true)}
				before := Build([]*corev1.Service{svc0}, []*discoveryv1.EndpointSlice{s0}, Options{})
				after := Build([]*corev1.Service{svc0}, []*discoveryv1.EndpointSlice{x}, Options{})
				for name := range after.Chains {
					if _, ok := before.Chains[name]; !ok && strings.Contains(name, alt[k]) {
						target[k] = name
					}
				}
				if target[k] == "" {
					b.Fatalf("no new chain for endpoint %s", alt[k])
				}
			}
			updates := 0 // alternates the endpoint across runs
			update := func(b *testing.B, p *Proxier) {
				i := 0
				for ; b.Loop(); i++ {
					k := updates % 2
					updates++
					s0 = setEndpoints(b, c, s0, ep("10.244.1.10", true), ep(alt[k], true))
					deadline := time.Now().Add(30 * time.Second)
					for {
						if _, err := poll.ListChain(table, target[k]); err == nil {
							break
						}
						if time.Now().After(deadline) {
							b.Fatalf("chain %s not in the kernel after 30 s", target[k])
						}
						time.Sleep(200 * time.Microsecond)
					}
				}
				b.StopTimer()
				lat := p.SyncLatencies() // the last ones are this loop's, one per update
				lat = lat[len(lat)-min(i, len(lat)):]
				slices.Sort(lat)
				if len(lat) > 0 {
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "event-to-flush-ms")
					b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-event-to-flush-ms")
				}
			}
			b.Run("update", func(b *testing.B) { update(b, p) })
			stop() // the Syncer is now ours; its namespace descriptor was Run's
			p.syncer.opts.NetNS = int(ns.h)
			b.Run("check", func(b *testing.B) {
				conn, err := dialLasting(int(ns.h))
				if err != nil {
					b.Fatal(err)
				}
				defer conn.(*lastingConn).CloseLasting()
				for b.Loop() {
					if ok, err := p.syncer.Check(conn); err != nil || !ok {
						b.Fatalf("check: %v, %v", ok, err)
					}
				}
			})
			// Back-to-back updates wait for MinSyncPeriod since the previous
			// sync's start; without it, the time left is the sync's own.
			p, _ = runProxier(b, c, ns, time.Hour, func(p *Proxier) { p.cfg.MinSyncPeriod = 0 })
			waitSynced(b, p)
			b.Run("update-minsync=0", func(b *testing.B) { update(b, p) })
		})
	}
}

// createMany creates services svc-0 … svc-(n-1), each with a slice of two
// ready endpoints, through the API (a few requests at a time).
func createMany(tb testing.TB, c kubernetes.Interface, n int) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := w; i < n; i += 4 {
				name := fmt.Sprintf("svc-%d", i)
				_, err := c.CoreV1().Services("default").Create(ctx, &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
						{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
				}, metav1.CreateOptions{})
				if err == nil {
					second := fmt.Sprintf("10.244.%d.%d", 50+i/250, 1+i%250)
					_, err = c.DiscoveryV1().EndpointSlices("default").Create(ctx,
						sliceObject("default", name, nil, ep("10.244.1.10", true), ep(second, true)), metav1.CreateOptions{})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}
