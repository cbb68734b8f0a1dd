package nodestatus

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// requests counts the API requests of a client by "METHOD path".
type requests struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *requests) RoundTrip(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r.mu.Lock()
		r.n[req.Method+" "+req.URL.Path]++
		r.mu.Unlock()
		return next.RoundTrip(req)
	})
}

func (r *requests) get(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[key]
}

func (r *requests) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n = map[string]int{}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

const (
	nodeName  = "node-a"
	nodePath  = "/api/v1/nodes/" + nodeName
	leasePath = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + nodeName
	patchReq  = "PATCH " + nodePath + "/status"
)

// counted returns a client of the test API server whose requests are counted.
func counted(t *testing.T, api *controllertest.API) (kubernetes.Interface, *requests) {
	reqs := &requests{n: map[string]int{}}
	cfg := rest.CopyConfig(api.Config)
	cfg.WrapTransport = reqs.RoundTrip
	return kubernetes.NewForConfigOrDie(cfg), reqs
}

// fakeHost is what the test agent measures.
type fakeHost struct {
	mu       sync.Mutex
	capacity corev1.ResourceList
	signals  Signals
}

func (h *fakeHost) setSignals(f func(*Signals)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(&h.signals)
}

func testCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		"hugepages-2Mi":                 resource.MustParse("0"),
	}
}

// testAgent is an agent for nodeName on a fake clock and a fake host.
func testAgent(t *testing.T, client kubernetes.Interface, clk *testingclock.FakeClock, change func(*Config)) (*agent, *fakeHost) {
	t.Helper()
	cfg := Config{
		Client:         client,
		NodeName:       nodeName,
		NodeIP:         net.ParseIP("10.0.0.5"),
		Hostname:       "Node-A.Example",
		Labels:         map[string]string{LabelControlPlane: "true", LabelMaster: "true"},
		Taints:         []corev1.Taint{{Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectNoSchedule}},
		RuntimeVersion: "runc://1.4.4",
		KubeletVersion: "v1.32.0",
		Images: func() []corev1.ContainerImage {
			return []corev1.ContainerImage{{Names: []string{"docker.io/library/busybox:latest"}, SizeBytes: 1 << 20}}
		},
		Clock:  clk,
		Logger: slog.New(slog.DiscardHandler),
	}
	if change != nil {
		change(&cfg)
	}
	a, err := newAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{capacity: testCapacity(), signals: healthySignals()}
	a.capacity = func() (corev1.ResourceList, error) { return h.capacity.DeepCopy(), nil }
	a.signals = func() (Signals, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.signals, nil
	}
	return a, h
}

func condition(n *corev1.Node, typ corev1.NodeConditionType) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.NodeCondition{}
}

func getNode(t *testing.T, client kubernetes.Interface) *corev1.Node {
	t.Helper()
	n, err := client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRegisterNewNode(t *testing.T) {
	api := controllertest.Start(t)
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC))
	rec := record.NewFakeRecorder(10)
	a, _ := testAgent(t, api.Client, clk, func(c *Config) { c.Recorder = rec })
	if err := a.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := getNode(t, api.Client)

	wantLabels := map[string]string{
		"kubernetes.io/hostname":           "node-a.example",
		"kubernetes.io/os":                 runtime.GOOS,
		"kubernetes.io/arch":               runtime.GOARCH,
		"beta.kubernetes.io/os":            runtime.GOOS,
		"beta.kubernetes.io/arch":          runtime.GOARCH,
		"node.kubernetes.io/instance-type": "skiff",
		"beta.kubernetes.io/instance-type": "skiff",
		LabelControlPlane:                  "true",
		LabelMaster:                        "true",
	}
	if len(n.Labels) != len(wantLabels) {
		t.Errorf("labels %v", n.Labels)
	}
	for k, v := range wantLabels {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "dedicated" {
		t.Errorf("taints %+v", n.Spec.Taints)
	}
	wantAddrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.5"}, {Type: corev1.NodeHostName, Address: "node-a.example"}}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0] != wantAddrs[0] || n.Status.Addresses[1] != wantAddrs[1] {
		t.Errorf("addresses %+v", n.Status.Addresses)
	}
	for k, v := range map[corev1.ResourceName][2]string{
		corev1.ResourceCPU:              {"4", "4"},
		corev1.ResourceMemory:           {"8Gi", "8092Mi"},
		corev1.ResourcePods:             {"110", "110"},
		corev1.ResourceEphemeralStorage: {"100Gi", "90Gi"},
		"hugepages-2Mi":                 {"0", "0"},
	} {
		c, al := n.Status.Capacity[k], n.Status.Allocatable[k]
		if c.Cmp(resource.MustParse(v[0])) != 0 || al.Cmp(resource.MustParse(v[1])) != 0 {
			t.Errorf("%s: capacity %s allocatable %s, want %s and %s", k, c.String(), al.String(), v[0], v[1])
		}
	}
	info := n.Status.NodeInfo
	if info.ContainerRuntimeVersion != "runc://1.4.4" || info.KubeletVersion != "v1.32.0" || info.KubeProxyVersion != "v1.32.0" ||
		info.OperatingSystem != "linux" || info.Architecture != runtime.GOARCH || info.KernelVersion == "" || info.OSImage == "" || info.BootID == "" {
		t.Errorf("nodeInfo %+v", info)
	}
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("daemonEndpoints %+v", n.Status.DaemonEndpoints)
	}
	if len(n.Status.Images) != 1 || n.Status.Images[0].Names[0] != "docker.io/library/busybox:latest" {
		t.Errorf("images %+v", n.Status.Images)
	}
	var types []string
	for _, c := range n.Status.Conditions {
		types = append(types, string(c.Type)+"="+string(c.Status)+"/"+c.Reason)
		if !c.LastHeartbeatTime.Time.Equal(clk.Now()) || !c.LastTransitionTime.Time.Equal(clk.Now()) {
			t.Errorf("%s times %v %v, want %v", c.Type, c.LastHeartbeatTime, c.LastTransitionTime, clk.Now())
		}
	}
	if got := strings.Join(types, " "); got != "MemoryPressure=False/KubeletHasSufficientMemory DiskPressure=False/KubeletHasNoDiskPressure PIDPressure=False/KubeletHasSufficientPID Ready=True/KubeletReady" {
		t.Errorf("conditions %s", got)
	}
	close(rec.Events)
	var events []string
	for e := range rec.Events {
		events = append(events, e)
	}
	if got := strings.Join(events, "|"); got != "Normal NodeHasSufficientMemory Node node-a status is now: NodeHasSufficientMemory|"+
		"Normal NodeHasNoDiskPressure Node node-a status is now: NodeHasNoDiskPressure|Normal NodeHasSufficientPID Node node-a status is now: NodeHasSufficientPID" {
		t.Errorf("events %s", got)
	}
}

// TestStatusPatchedOnlyWhenChanged: no PATCH while nothing changes, one
// when a condition changes, one when the report frequency has passed.
func TestStatusPatchedOnlyWhenChanged(t *testing.T) {
	api := controllertest.Start(t)
	client, reqs := counted(t, api)
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC))
	var runtimeErr error
	var mu sync.Mutex
	a, host := testAgent(t, client, clk, func(c *Config) {
		c.RuntimeReady = func() error { mu.Lock(); defer mu.Unlock(); return runtimeErr }
	})
	ctx := context.Background()
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	registered := clk.Now()
	reqs.reset()
	sync := func() {
		t.Helper()
		clk.Step(10 * time.Second)
		if err := a.syncStatus(ctx); err != nil {
			t.Fatal(err)
		}
	}

	for range 5 {
		sync()
	}
	if n := reqs.get(patchReq); n != 0 {
		t.Fatalf("%d status patches while nothing changed", n)
	}
	if n := reqs.get("GET " + nodePath); n != 5 {
		t.Fatalf("%d node reads for 5 updates", n)
	}

	// Memory pressure: one patch, with a transition.
	host.setSignals(func(s *Signals) { s.MemoryAvailable = 50 << 20 })
	sync()
	if n := reqs.get(patchReq); n != 1 {
		t.Fatalf("%d status patches after memory pressure, want 1", n)
	}
	n := getNode(t, client)
	mp, ready := condition(n, corev1.NodeMemoryPressure), condition(n, corev1.NodeReady)
	if mp.Status != corev1.ConditionTrue || mp.Reason != "KubeletHasInsufficientMemory" || !mp.LastTransitionTime.Time.Equal(clk.Now()) {
		t.Errorf("MemoryPressure %+v", mp)
	}
	if ready.Status != corev1.ConditionTrue || !ready.LastTransitionTime.Time.Equal(registered) || !ready.LastHeartbeatTime.Time.Equal(clk.Now()) {
		t.Errorf("Ready %+v: transition should stay at %v, heartbeat move to %v", ready, registered, clk.Now())
	}
	pressureSince := clk.Now()

	// Memory is back, but the condition holds for 5m: nothing to write.
	host.setSignals(func(s *Signals) { s.MemoryAvailable = 4 << 30 })
	sync()
	if n := reqs.get(patchReq); n != 1 {
		t.Fatalf("%d status patches, want still 1", n)
	}

	// The report frequency passes (and with it the 5m hold): a patch.
	clk.Step(5 * time.Minute)
	sync()
	if n := reqs.get(patchReq); n != 2 {
		t.Fatalf("%d status patches after 5m, want 2", n)
	}
	n = getNode(t, client)
	if mp := condition(n, corev1.NodeMemoryPressure); mp.Status != corev1.ConditionFalse || !mp.LastTransitionTime.Time.Equal(clk.Now()) {
		t.Errorf("MemoryPressure %+v after the hold (was True since %v)", mp, pressureSince)
	}

	// Nothing changes but the report is due: a heartbeat-only patch.
	clk.Step(5 * time.Minute)
	sync()
	if n := reqs.get(patchReq); n != 3 {
		t.Fatalf("%d status patches after another 5m, want 3", n)
	}
	n = getNode(t, client)
	if c := condition(n, corev1.NodeReady); !c.LastHeartbeatTime.Time.Equal(clk.Now()) || !c.LastTransitionTime.Time.Equal(registered) {
		t.Errorf("Ready %+v after a heartbeat", c)
	}

	// The runtime goes down: Ready=False with its message.
	mu.Lock()
	runtimeErr = errors.New("container runtime is down")
	mu.Unlock()
	sync()
	n = getNode(t, client)
	if c := condition(n, corev1.NodeReady); c.Status != corev1.ConditionFalse || c.Reason != "KubeletNotReady" || c.Message != "container runtime is down" {
		t.Errorf("Ready %+v with the runtime down", c)
	}
	if n := reqs.get(patchReq); n != 4 {
		t.Fatalf("%d status patches, want 4", n)
	}
	if n := reqs.get("PUT " + nodePath + "/status"); n != 0 {
		t.Fatalf("%d status PUTs: the agent must only patch", n)
	}
}

// TestAdoptExistingNode: a Node of that name exists (a restarted agent, a
// node marked Unknown): its spec stays, the agent's labels are added, its
// status replaced.
func TestAdoptExistingNode(t *testing.T) {
	api := controllertest.Start(t)
	ctx := context.Background()
	old := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	existing := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"kubernetes.io/hostname": "old-name", "team": "a"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.42.3.0/24", Taints: []corev1.Taint{
			{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule},
			{Key: "user", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule},
		}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.9.9"}, {Type: corev1.NodeInternalIP, Address: "192.168.9.10"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown",
				Message: "Kubelet stopped posting node status.", LastHeartbeatTime: metav1.NewTime(old), LastTransitionTime: metav1.NewTime(old)}},
		},
	}
	if _, err := api.Client.CoreV1().Nodes().Create(ctx, existing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC))
	a, _ := testAgent(t, api.Client, clk, nil)
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	n := getNode(t, api.Client)
	if n.Spec.PodCIDR != "10.42.3.0/24" || len(n.Spec.PodCIDRs) != 1 || len(n.Spec.Taints) != 2 {
		t.Errorf("spec changed: %+v", n.Spec)
	}
	if n.Labels["kubernetes.io/hostname"] != "node-a.example" || n.Labels["team"] != "a" || n.Labels[LabelControlPlane] != "true" || n.Labels["node.kubernetes.io/instance-type"] != "skiff" {
		t.Errorf("labels %v", n.Labels)
	}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0].Address != "10.0.0.5" || n.Status.Addresses[1].Type != corev1.NodeHostName {
		t.Errorf("addresses %+v", n.Status.Addresses)
	}
	if c := condition(n, corev1.NodeReady); c.Status != corev1.ConditionTrue || !c.LastTransitionTime.Time.Equal(clk.Now()) {
		t.Errorf("Ready %+v", c)
	}
	if len(n.Status.Conditions) != 4 || n.Status.Allocatable.Pods().Value() != 110 {
		t.Errorf("status %+v", n.Status)
	}

	// Deleted while the agent runs: registered again at the next update.
	if err := api.Client.CoreV1().Nodes().Delete(ctx, nodeName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Step(10 * time.Second)
	if err := a.syncStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if n := getNode(t, api.Client); condition(n, corev1.NodeReady).Status != corev1.ConditionTrue || len(n.Spec.Taints) != 1 {
		t.Errorf("re-registered node %+v", n)
	}
}

func TestLease(t *testing.T) {
	api := controllertest.Start(t)
	client, reqs := counted(t, api)
	ctx := context.Background()
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC))
	a, _ := testAgent(t, client, clk, nil)
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	node := getNode(t, client)
	leases := client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	check := func(what string) {
		t.Helper()
		l, err := leases.Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if *l.Spec.HolderIdentity != nodeName || *l.Spec.LeaseDurationSeconds != 40 || !l.Spec.RenewTime.Time.Equal(clk.Now()) {
			t.Fatalf("%s: lease spec %+v (now %v)", what, l.Spec, clk.Now())
		}
		if len(l.OwnerReferences) != 1 || l.OwnerReferences[0].UID != node.UID || l.OwnerReferences[0].Kind != "Node" || l.OwnerReferences[0].APIVersion != "v1" {
			t.Fatalf("%s: owner %+v", what, l.OwnerReferences)
		}
	}

	a.renewLease(ctx)
	check("created")

	// Renewals update the lease last written: one PUT, no read.
	reqs.reset()
	clk.Step(10 * time.Second)
	a.renewLease(ctx)
	if p, g := reqs.get("PUT "+leasePath), reqs.get("GET "+leasePath); p != 1 || g != 0 {
		t.Fatalf("renewal: %d PUTs, %d GETs; want 1 and 0", p, g)
	}
	check("renewed")

	// Someone else wrote it: conflict, re-read, renewed.
	l, err := leases.Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Spec.HolderIdentity = ptrTo("intruder")
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Step(10 * time.Second)
	a.renewLease(ctx)
	check("after a conflict")

	// Deleted: created again.
	if err := leases.Delete(ctx, nodeName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Step(10 * time.Second)
	a.renewLease(ctx)
	check("after deletion")
}

func ptrTo[T any](v T) *T { return &v }

func TestConfigErrors(t *testing.T) {
	api := controllertest.Start(t)
	for name, cfg := range map[string]Config{
		"no client":   {KubeletVersion: "v1", RuntimeVersion: "runc://1"},
		"no versions": {Client: api.Client},
		"negative":    {Client: api.Client, KubeletVersion: "v1", RuntimeVersion: "runc://1", NodeIP: net.ParseIP("10.0.0.1"), MaxPods: -1},
		"unspecified": {Client: api.Client, KubeletVersion: "v1", RuntimeVersion: "runc://1", NodeIP: net.IPv4zero},
		"node name":   {Client: api.Client, KubeletVersion: "v1", RuntimeVersion: "runc://1", NodeIP: net.ParseIP("10.0.0.1"), NodeName: "Bad_Name"},
		"label":       {Client: api.Client, KubeletVersion: "v1", RuntimeVersion: "runc://1", NodeIP: net.ParseIP("10.0.0.1"), NodeName: "n", Labels: map[string]string{"a/b/c": "x"}},
		// Rejected by the API server as invalid: not retried.
		"taint": {Client: api.Client, KubeletVersion: "v1", RuntimeVersion: "runc://1", NodeIP: net.ParseIP("10.0.0.1"), NodeName: "n",
			Taints: []corev1.Taint{{Key: "a", Effect: "Sometimes"}}, Logger: slog.New(slog.DiscardHandler)},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := Run(ctx, cfg)
		cancel()
		if err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
