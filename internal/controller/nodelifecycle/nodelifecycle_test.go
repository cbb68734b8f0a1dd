package nodelifecycle

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// harness drives the controller's passes by hand on a fake clock; Run is
// not started.
type harness struct {
	t      *testing.T
	c      *Controller
	client *fake.Clientset
	clock  *testingclock.FakeClock
	rec    *record.FakeRecorder
	ctx    context.Context
}

func newHarness(t *testing.T, opts Options, objs ...runtime.Object) *harness {
	t.Helper()
	client := fake.NewSimpleClientset(objs...)
	rec := record.NewFakeRecorder(1000)
	clk := testingclock.NewFakeClock(t0)
	cc := controller.Context{
		Client:    client,
		Informers: informers.NewSharedInformerFactory(client, 0),
		Recorder:  func(string) record.EventRecorder { return rec },
		Log:       slog.New(slog.DiscardHandler),
	}
	opts.Clock = clk
	c, err := New(cc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); cc.Informers.Shutdown() })
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		t.Fatal("caches did not sync")
	}
	return &harness{t: t, c: c, client: client, clock: clk, rec: rec, ctx: ctx}
}

func readyNode(name string, heartbeat time.Time, labels map[string]string) *corev1.Node {
	hb := metav1.NewTime(heartbeat)
	conds := []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: hb, LastTransitionTime: hb}}
	for _, t := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeNetworkUnavailable} {
		conds = append(conds, corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, LastHeartbeatTime: hb, LastTransitionTime: hb})
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Labels: labels, CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Status:     corev1.NodeStatus{Conditions: conds},
	}
}

func lease(name string, renew time.Time) *coordv1.Lease {
	return &coordv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec:       coordv1.LeaseSpec{HolderIdentity: ptr.To(name), RenewTime: &metav1.MicroTime{Time: renew}},
	}
}

func readyPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// node reads a node from the API (the fake).
func (h *harness) node(name string) *corev1.Node {
	h.t.Helper()
	n, err := h.client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// synced waits until the informer cache holds the API's version of node.
func (h *harness) synced(name string) {
	h.t.Helper()
	want := h.node(name).ResourceVersion
	h.eventually("cache of node "+name, func() bool {
		n, err := h.c.nodes.Get(name)
		return err == nil && n.ResourceVersion == want
	})
}

func (h *harness) monitor() {
	h.t.Helper()
	if err := h.c.monitorNodeHealth(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// renew renews the node's lease at the fake now and waits for the cache.
func (h *harness) renew(name string) {
	h.t.Helper()
	l, err := h.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	l.Spec.RenewTime = &metav1.MicroTime{Time: h.clock.Now()}
	l.ResourceVersion = ""
	if _, err := h.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.eventually("lease cache", func() bool {
		got, err := h.c.leases.Leases(corev1.NamespaceNodeLease).Get(name)
		return err == nil && got.Spec.RenewTime.Time.Equal(h.clock.Now())
	})
}

// events drains the recorded events.
func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func hasEvent(events []string, want string) bool {
	for _, e := range events {
		if e == want {
			return true
		}
	}
	return false
}

func statusUpdates(client *fake.Clientset, resource string) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" && a.GetResource().Resource == resource && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

func TestFreshLeaseKeepsNodeReady(t *testing.T) {
	// The Ready heartbeat never moves, but the lease is renewed: healthy.
	h := newHarness(t, Options{}, readyNode("a", t0, nil), lease("a", t0))
	h.monitor()
	if !hasEvent(h.events(), "Normal RegisteredNode Node a event: Registered Node a in Controller") {
		t.Fatal("no RegisteredNode event")
	}
	for i := 0; i < 5; i++ {
		h.clock.Step(30 * time.Second)
		h.renew("a")
		h.monitor()
	}
	if n := statusUpdates(h.client, "nodes"); n != 0 {
		t.Fatalf("%d node status updates for a healthy node", n)
	}
	if c := nodeCondition(&h.node("a").Status, corev1.NodeReady); c.Status != corev1.ConditionTrue {
		t.Fatalf("Ready = %s", c.Status)
	}
}

func TestStaleNodeGoesUnknownAndGetsUnreachableTaint(t *testing.T) {
	h := newHarness(t, Options{},
		readyNode("a", t0, nil), lease("a", t0),
		readyNode("b", t0, nil), lease("b", t0),
		readyPod("p", "b"), readyPod("q", "a"))
	h.monitor()
	h.events()

	// 40s is not past the grace period yet.
	h.clock.Step(40 * time.Second)
	h.renew("a")
	h.monitor()
	if n := statusUpdates(h.client, "nodes"); n != 0 {
		t.Fatalf("node marked Unknown at exactly the grace period (%d updates)", n)
	}
	h.clock.Step(time.Second)
	h.renew("a")
	h.monitor()

	b := h.node("b")
	for _, ct := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		c := nodeCondition(&b.Status, ct)
		if c.Status != corev1.ConditionUnknown || c.Reason != "NodeStatusUnknown" || c.Message != "Kubelet stopped posting node status." ||
			!c.LastTransitionTime.Time.Equal(h.clock.Now()) || !c.LastHeartbeatTime.Time.Equal(t0) {
			t.Fatalf("condition %s = %+v", ct, c)
		}
	}
	if c := nodeCondition(&b.Status, corev1.NodeNetworkUnavailable); c.Status != corev1.ConditionFalse {
		t.Fatalf("NetworkUnavailable touched: %+v", c)
	}
	if c := nodeCondition(&h.node("a").Status, corev1.NodeReady); c.Status != corev1.ConditionTrue {
		t.Fatalf("a's Ready = %s", c.Status)
	}
	evs := h.events()
	if !hasEvent(evs, "Normal NodeNotReady Node b status is now: NodeNotReady") || !hasEvent(evs, "Warning NodeNotReady Node is not ready") {
		t.Fatalf("events %q", evs)
	}
	p, _ := h.client.CoreV1().Pods("default").Get(context.Background(), "p", metav1.GetOptions{})
	if c := controller.PodCondition(&p.Status, corev1.PodReady); c.Status != corev1.ConditionFalse {
		t.Fatalf("pod p on b: Ready = %s", c.Status)
	}
	q, _ := h.client.CoreV1().Pods("default").Get(context.Background(), "q", metav1.GetOptions{})
	if c := controller.PodCondition(&q.Status, corev1.PodReady); c.Status != corev1.ConditionTrue {
		t.Fatalf("pod q on a: Ready = %s", c.Status)
	}

	// The next pass sees Unknown and queues b; the tainting pass taints
	// it at once (the zone's token bucket starts full).
	h.synced("b")
	h.clock.Step(5 * time.Second)
	h.renew("a")
	h.monitor()
	h.synced("b")
	h.c.doNoExecuteTaintingPass(h.ctx)
	b = h.node("b")
	var got *corev1.Taint
	for i := range b.Spec.Taints {
		if b.Spec.Taints[i].MatchTaint(&unreachableTaint) {
			got = &b.Spec.Taints[i]
		}
	}
	if got == nil || got.TimeAdded == nil || !got.TimeAdded.Time.Equal(h.clock.Now()) {
		t.Fatalf("taints %+v", b.Spec.Taints)
	}
	if taintExists(h.node("a").Spec.Taints, &unreachableTaint) {
		t.Fatal("healthy node tainted")
	}

	// Posting Ready again (a kubelet's new heartbeat) removes the taint.
	b.Status.Conditions = readyNode("b", h.clock.Now(), nil).Status.Conditions
	if _, err := h.client.CoreV1().Nodes().UpdateStatus(context.Background(), b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.synced("b")
	h.renew("b")
	h.monitor()
	if taints := h.node("b").Spec.Taints; len(taints) != 0 {
		t.Fatalf("taints after recovery: %+v", taints)
	}
}

func TestAllNodesDownMeansNoTaints(t *testing.T) {
	// The only node goes stale: master disruption mode, no NoExecute
	// taint (the problem is likely on the control plane's side).
	h := newHarness(t, Options{}, readyNode("a", t0, nil), lease("a", t0))
	h.monitor()
	h.clock.Step(41 * time.Second)
	h.monitor()
	h.synced("a")
	h.clock.Step(5 * time.Second)
	h.monitor()
	h.c.doNoExecuteTaintingPass(h.ctx)
	n := h.node("a")
	if c := nodeCondition(&n.Status, corev1.NodeReady); c.Status != corev1.ConditionUnknown {
		t.Fatalf("Ready = %s", c.Status)
	}
	if taintExists(n.Spec.Taints, &unreachableTaint) {
		t.Fatal("the last node was tainted unreachable")
	}
}

func TestNotReadySwapsToUnreachableAtOnce(t *testing.T) {
	a := readyNode("a", t0, nil)
	b := readyNode("b", t0, nil)
	nodeCondition(&b.Status, corev1.NodeReady).Status = corev1.ConditionFalse
	b.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: t0}}}
	h := newHarness(t, Options{}, a, lease("a", t0), b, lease("b", t0))
	// As upstream, a controller start clears NoExecute taints and puts
	// them back through the zone queue. The pass reads the informer's
	// cache: let it see the cleared taints first.
	h.monitor()
	h.eventually("b tainted not-ready again", func() bool {
		h.synced("b")
		h.c.doNoExecuteTaintingPass(h.ctx)
		return taintExists(h.node("b").Spec.Taints, &notReadyTaint)
	})
	h.synced("b")
	h.clock.Step(41 * time.Second)
	h.renew("a")
	h.monitor() // b goes Unknown
	h.synced("b")
	h.clock.Step(5 * time.Second)
	h.renew("a")
	before := len(h.client.Actions())
	h.monitor() // swap without waiting for the queue
	taints := h.node("b").Spec.Taints
	if len(taints) != 1 || taints[0].Key != corev1.TaintNodeUnreachable || !taints[0].TimeAdded.Time.Equal(h.clock.Now()) {
		t.Fatalf("taints %+v", taints)
	}
	patches := 0
	for _, act := range h.client.Actions()[before:] {
		if act.GetVerb() == "patch" && act.GetResource().Resource == "nodes" {
			patches++
			if p := string(act.(k8stesting.PatchAction).GetPatch()); !strings.Contains(p, `"resourceVersion"`) {
				t.Fatalf("taint patch without resourceVersion: %s", p)
			}
		}
	}
	if patches != 1 {
		t.Fatalf("%d patches for one swap", patches)
	}
}

func TestStartupGraceForNodesThatNeverPosted(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "new", CreationTimestamp: metav1.NewTime(t0)}}
	h := newHarness(t, Options{}, n, readyNode("a", t0, nil), lease("a", t0))
	h.monitor()
	h.clock.Step(50 * time.Second)
	h.renew("a")
	h.monitor()
	if c := h.node("new").Status.Conditions; len(c) != 0 {
		t.Fatalf("conditions set within the startup grace: %+v", c)
	}
	h.clock.Step(11 * time.Second)
	h.renew("a")
	h.monitor()
	conds := h.node("new").Status.Conditions
	if len(conds) != 4 {
		t.Fatalf("conditions %+v", conds)
	}
	for _, c := range conds {
		if c.Status != corev1.ConditionUnknown || c.Reason != "NodeStatusNeverUpdated" || c.Message != "Kubelet never posted node status." {
			t.Fatalf("condition %+v", c)
		}
	}
}

func TestNoScheduleTaintsFollowConditions(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*corev1.Node)
		want    []string
		already []corev1.Taint
	}{
		{"healthy", func(*corev1.Node) {}, nil, nil},
		{"not ready", func(n *corev1.Node) { nodeCondition(&n.Status, corev1.NodeReady).Status = corev1.ConditionFalse }, []string{corev1.TaintNodeNotReady}, nil},
		{"unknown", func(n *corev1.Node) { nodeCondition(&n.Status, corev1.NodeReady).Status = corev1.ConditionUnknown }, []string{corev1.TaintNodeUnreachable}, nil},
		{"pressures", func(n *corev1.Node) {
			for _, t := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeNetworkUnavailable} {
				nodeCondition(&n.Status, t).Status = corev1.ConditionTrue
			}
		}, []string{corev1.TaintNodeMemoryPressure, corev1.TaintNodeDiskPressure, corev1.TaintNodePIDPressure, corev1.TaintNodeNetworkUnavailable}, nil},
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }, []string{corev1.TaintNodeUnschedulable}, nil},
		{"recovered, others' taints kept", func(*corev1.Node) {}, []string{"example.com/mine"}, []corev1.Taint{
			{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule},
			{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule},
			{Key: "example.com/mine", Effect: corev1.TaintEffectNoSchedule},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := readyNode("a", t0, nil)
			n.Spec.Taints = tt.already
			tt.mutate(n)
			h := newHarness(t, Options{}, n)
			if err := h.c.reconcile(h.ctx, nodePrefix+"a"); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tn := range h.node("a").Spec.Taints {
				got = append(got, tn.Key)
				if tn.Key != "example.com/mine" && (tn.Effect != corev1.TaintEffectNoSchedule || tn.TimeAdded == nil || !tn.TimeAdded.Time.Equal(t0)) {
					t.Fatalf("taint %+v", tn)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") && !sameSet(got, tt.want) {
				t.Fatalf("taints %v, want %v", got, tt.want)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestBetaLabelsReconciled(t *testing.T) {
	n := readyNode("a", t0, map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64", "beta.kubernetes.io/arch": "arm64"})
	h := newHarness(t, Options{}, n)
	if err := h.c.reconcile(h.ctx, nodePrefix+"a"); err != nil {
		t.Fatal(err)
	}
	l := h.node("a").Labels
	if l["beta.kubernetes.io/os"] != "linux" || l["beta.kubernetes.io/arch"] != "amd64" {
		t.Fatalf("labels %v", l)
	}
}

func TestPodBoundToNotReadyNodeIsMarkedNotReady(t *testing.T) {
	b := readyNode("b", t0, nil)
	nodeCondition(&b.Status, corev1.NodeReady).Status = corev1.ConditionFalse
	h := newHarness(t, Options{}, b, readyNode("a", t0, nil))
	h.monitor()
	if _, err := h.client.CoreV1().Pods("default").Create(context.Background(), readyPod("late", "b"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.eventually("pod cache", func() bool { _, err := h.c.pods.Pods("default").Get("late"); return err == nil })
	if err := h.c.reconcile(h.ctx, podPrefix+"default/late"); err != nil {
		t.Fatal(err)
	}
	p, _ := h.client.CoreV1().Pods("default").Get(context.Background(), "late", metav1.GetOptions{})
	if c := controller.PodCondition(&p.Status, corev1.PodReady); c.Status != corev1.ConditionFalse {
		t.Fatalf("Ready = %s", c.Status)
	}
}

func TestComputeZoneState(t *testing.T) {
	c := &Controller{opts: Options{UnhealthyZoneThreshold: 0.55}}
	cond := func(s corev1.ConditionStatus) *corev1.NodeCondition { return &corev1.NodeCondition{Status: s} }
	T, F, U := corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown
	tests := []struct {
		name  string
		conds []*corev1.NodeCondition
		want  zoneState
	}{
		{"all ready", []*corev1.NodeCondition{cond(T), cond(T)}, stateNormal},
		{"none ready", []*corev1.NodeCondition{cond(F), cond(U), nil}, stateFullDisruption},
		{"two of three down is normal", []*corev1.NodeCondition{cond(T), cond(F), cond(U)}, stateNormal},
		{"three of four down", []*corev1.NodeCondition{cond(T), cond(F), cond(U), cond(F)}, statePartialDisruption},
		{"three of ten down", []*corev1.NodeCondition{cond(T), cond(T), cond(T), cond(T), cond(T), cond(T), cond(T), cond(F), cond(F), cond(F)}, stateNormal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := c.computeZoneState(tt.conds); got != tt.want {
				t.Fatalf("state %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTaintQueueRate(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	q := newTaintQueue(clk, 0.1)
	for _, n := range []string{"a", "b", "c"} {
		if !q.add(n) {
			t.Fatalf("add %s", n)
		}
	}
	if q.add("a") {
		t.Fatal("a queued twice")
	}
	var done []string
	take := func(name string) (bool, time.Duration) { done = append(done, name); return true, 0 }
	q.try(take)
	if strings.Join(done, ",") != "a" {
		t.Fatalf("first pass tainted %v", done)
	}
	clk.Step(5 * time.Second)
	q.try(take)
	if len(done) != 1 {
		t.Fatalf("tainted %v within 5s", done)
	}
	clk.Step(5 * time.Second)
	q.try(take)
	if strings.Join(done, ",") != "a,b" {
		t.Fatalf("after 10s tainted %v", done)
	}
	if q.add("a") {
		t.Fatal("a processed node was queued again before remove")
	}
	if !q.remove("a") || !q.add("a") {
		t.Fatal("remove then add")
	}
	q.swapLimiter(0)
	clk.Step(time.Hour)
	q.try(take)
	if len(done) != 2 {
		t.Fatalf("tainted %v at rate 0", done)
	}
}
