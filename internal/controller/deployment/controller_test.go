package deployment

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
)

func TestCreateFirstReplicaSet(t *testing.T) {
	d := newDeployment("web", 3, "nginx:1")
	f := newFixture(t, d)
	f.mustSync("web")

	rss := f.replicaSets()
	if len(rss) != 1 {
		t.Fatalf("want 1 RS, got %d", len(rss))
	}
	rs := rss[0]
	hash := ComputeHash(&d.Spec.Template, nil)
	if rs.Name != "web-"+hash {
		t.Fatalf("name %q, want web-%s", rs.Name, hash)
	}
	if rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rs.Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rs.Spec.Template.Labels["app"] != "web" {
		t.Fatalf("pod-template-hash labels missing: %+v %+v", rs.Labels, rs.Spec.Selector)
	}
	if *rs.Spec.Replicas != 3 {
		t.Fatalf("replicas %d", *rs.Spec.Replicas)
	}
	if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != d.UID || ref.Kind != "Deployment" {
		t.Fatalf("controller ref %+v", ref)
	}
	if rs.Annotations[RevisionAnnotation] != "1" || rs.Annotations[DesiredReplicasAnnotation] != "3" || rs.Annotations[MaxReplicasAnnotation] != "4" {
		t.Fatalf("annotations %v", rs.Annotations)
	}
	got := f.deployment("web")
	if got.Annotations[RevisionAnnotation] != "1" {
		t.Fatalf("deployment revision %v", got.Annotations)
	}
	if c := getCondition(got.Status, appsv1.DeploymentProgressing); c == nil || c.Reason != NewReplicaSetReason ||
		c.Message != `Created new replica set "`+rs.Name+`"` || c.Status != corev1.ConditionTrue {
		t.Fatalf("progressing %+v", c)
	}
	if ev := f.eventsWith("ScalingReplicaSet"); len(ev) != 1 || ev[0] != "Normal ScalingReplicaSet Scaled up replica set "+rs.Name+" from 0 to 3" {
		t.Fatalf("events %q", f.events)
	}

	// The RS controller brings pods up; the deployment becomes complete.
	f.settle(nil)
	f.mustSync("web")
	got = f.deployment("web")
	st := got.Status
	if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.UnavailableReplicas != 0 || st.ObservedGeneration != 1 {
		t.Fatalf("status %+v", st)
	}
	if c := getCondition(st, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue || c.Reason != MinimumReplicasAvailable || c.Message != "Deployment has minimum availability." {
		t.Fatalf("available %+v", c)
	}
	if c := getCondition(st, appsv1.DeploymentProgressing); c == nil || c.Reason != NewRSAvailableReason || c.Message != `ReplicaSet "`+rs.Name+`" has successfully progressed.` {
		t.Fatalf("progressing %+v", c)
	}
	// A steady state writes nothing more.
	before := len(f.client.Actions())
	f.mustSync("web")
	for _, a := range f.client.Actions()[before:] {
		if a.GetVerb() != "list" && a.GetVerb() != "get" && a.GetVerb() != "watch" {
			t.Fatalf("steady state wrote: %v", a)
		}
	}
}

// rollout changes the image and steps the rolling update to completion,
// checking after each step that the sizes stay within surge and
// availability bounds. avail says whether a RS's pods become available.
func rollout(t *testing.T, f *fixture, name, image string, avail func(*appsv1.ReplicaSet) bool, steps int) []string {
	t.Helper()
	d := f.deployment(name)
	d.Spec.Template.Spec.Containers[0].Image = image
	f.update(d)
	want := *d.Spec.Replicas
	surge, unav := maxSurge(d), maxUnavailable(d)
	var trace []string
	for i := 0; i < steps; i++ {
		f.mustSync(name)
		var total, availableAfter int32
		for _, rs := range f.replicaSets() {
			total += *rs.Spec.Replicas
			// Pods surviving the RS controller's scale-down that were available.
			availableAfter += min(*rs.Spec.Replicas, rs.Status.AvailableReplicas)
		}
		if total > want+surge {
			t.Fatalf("step %d: %d replicas, more than %d+%d (%s)", i, total, want, surge, f.sizes())
		}
		if availableAfter < want-unav {
			t.Fatalf("step %d: %d available, fewer than %d-%d (%s)", i, availableAfter, want, unav, f.sizes())
		}
		trace = append(trace, f.sizes())
		f.settle(avail)
		st := f.deployment(name).Status
		if deploymentComplete(f.deployment(name), &st) {
			break
		}
	}
	return trace
}

func TestRollingUpdateSteps(t *testing.T) {
	d := newDeployment("web", 10, "nginx:1")
	setRolling(d, intstr.FromInt32(3), intstr.FromInt32(2))
	f := newFixture(t, d)
	f.mustSync("web")
	f.settle(nil)
	f.mustSync("web")

	trace := rollout(t, f, "web", "nginx:2", nil, 20)
	// Upstream's sequence: the new RS is created with the 3 surge replicas
	// and the old one goes to 8 (10-2 unavailable) in the same sync; then
	// new up to 5 once those are available, and so on.
	wantStart := []string{"8,3", "8,5", "3,5", "3,10", "0,10"}
	for i, w := range wantStart {
		if i >= len(trace) || trace[i] != w {
			t.Fatalf("trace %v, want prefix %v", trace, wantStart)
		}
	}
	f.mustSync("web")
	got := f.deployment("web")
	if got.Annotations[RevisionAnnotation] != "2" {
		t.Fatalf("revision %v", got.Annotations)
	}
	if st := got.Status; st.UpdatedReplicas != 10 || st.Replicas != 10 || st.AvailableReplicas != 10 {
		t.Fatalf("status %+v", st)
	}
	if c := getCondition(got.Status, appsv1.DeploymentProgressing); c.Reason != NewRSAvailableReason {
		t.Fatalf("progressing %+v", c)
	}
	if ev := f.eventsWith("Scaled down replica set"); len(ev) == 0 || !strings.HasSuffix(ev[0], " from 10 to 8") {
		t.Fatalf("scale down events %q", ev)
	}
}

func TestRollingUpdateBrokenTemplateKeepsOldPods(t *testing.T) {
	d := newDeployment("web", 4, "nginx:1")
	f := newFixture(t, d)
	f.mustSync("web")
	f.settle(nil)
	f.mustSync("web")

	oldName := f.replicaSets()[0].Name
	brokenNew := func(rs *appsv1.ReplicaSet) bool { return rs.Name == oldName }
	trace := rollout(t, f, "web", "nginx:broken", brokenNew, 8)
	// 25%/25% of 4: surge 1, unavailable 1 → 4,1 → 3,1 → 3,2 then stuck.
	if last := trace[len(trace)-1]; last != "3,2" {
		t.Fatalf("trace %v: stuck state should be 3,2", trace)
	}
	got := f.deployment("web")
	if c := getCondition(got.Status, appsv1.DeploymentProgressing); c == nil || c.Reason != ReplicaSetUpdatedReason {
		t.Fatalf("progressing %+v", c)
	}
	// Nothing happens until the progress deadline passes; then the
	// deployment times out.
	f.refresh()
	err := f.c.reconcile(context.Background(), "default/web")
	var after controller.RequeueAfter
	if !asRequeue(err, &after) || time.Duration(after) < 599*time.Second || time.Duration(after) > 602*time.Second {
		t.Fatalf("want a requeue for the deadline, got %v", err)
	}
	f.now = f.now.Add(11 * time.Minute)
	f.mustSync("web")
	got = f.deployment("web")
	c := getCondition(got.Status, appsv1.DeploymentProgressing)
	newName := f.replicaSets()[1].Name
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != TimedOutReason || c.Message != `ReplicaSet "`+newName+`" has timed out progressing.` {
		t.Fatalf("progressing %+v", c)
	}
	if err := f.sync("web"); err != nil {
		t.Fatalf("timed-out deployment requeues: %v", err)
	}
}

func TestRecreate(t *testing.T) {
	d := newDeployment("db", 2, "pg:1")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	f := newFixture(t, d)
	f.mustSync("db")
	f.settle(nil)
	f.mustSync("db")
	old := f.replicaSets()[0]
	// A pod of the old RS is still running.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-pod", Namespace: "default", UID: "pod-1",
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(old, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	d = f.deployment("db")
	d.Spec.Template.Spec.Containers[0].Image = "pg:2"
	f.update(d)
	f.mustSync("db")
	if s := f.sizes(); s != "0" {
		t.Fatalf("old RS must go to 0 first, sizes %s", s)
	}
	f.settle(nil)
	f.mustSync("db")
	if s := f.sizes(); s != "0" {
		t.Fatalf("new RS must wait for old pods, sizes %s", s)
	}
	if err := f.client.CoreV1().Pods("default").Delete(context.Background(), "db-pod", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.mustSync("db")
	if s := f.sizes(); s != "0,2" {
		t.Fatalf("after old pods are gone the new RS gets everything, sizes %s", s)
	}
	if ev := f.eventsWith("ScalingReplicaSet"); len(ev) != 3 || !strings.HasSuffix(ev[1], "from 2 to 0") || !strings.HasSuffix(ev[2], "from 0 to 2") {
		t.Fatalf("events %q", ev)
	}
}

func TestRevisionHistoryCleanup(t *testing.T) {
	d := newDeployment("web", 1, "v0")
	d.Spec.RevisionHistoryLimit = ptr.To[int32](2)
	f := newFixture(t, d)
	f.mustSync("web")
	f.settle(nil)
	for i := 1; i <= 5; i++ {
		rollout(t, f, "web", "v"+string(rune('0'+i)), nil, 10)
		f.mustSync("web")
		f.settle(nil)
		f.mustSync("web")
	}
	rss := f.replicaSets()
	if len(rss) != 3 {
		t.Fatalf("want the new RS and 2 old ones, got %d: %v", len(rss), revisions(rss))
	}
	if got := strings.Join(revisions(rss), ","); got != "4,5,6" {
		t.Fatalf("kept revisions %s", got)
	}
}

func TestScaleDuringRolloutIsProportional(t *testing.T) {
	d := newDeployment("web", 10, "v1")
	setRolling(d, intstr.FromInt32(3), intstr.FromInt32(2))
	f := newFixture(t, d)
	f.mustSync("web")
	f.settle(nil)
	f.mustSync("web")
	// Start a rollout whose new pods never become ready: 10,3 → 8,3.
	oldName := f.replicaSets()[0].Name
	rollout(t, f, "web", "v2", func(rs *appsv1.ReplicaSet) bool { return rs.Name == oldName }, 3)
	if s := f.sizes(); s != "8,5" {
		t.Fatalf("sizes before scaling %s", s)
	}
	d = f.deployment("web")
	d.Spec.Replicas = ptr.To[int32](20)
	f.update(d)
	f.mustSync("web")
	// 13 → 23 allowed: 8*23/13 = 14.2 → +6, 5*23/13 = 8.8 → +4.
	if s := f.sizes(); s != "14,9" {
		t.Fatalf("proportional scale up gave %s, want 14,9", s)
	}
	for _, rs := range f.replicaSets() {
		if rs.Annotations[DesiredReplicasAnnotation] != "20" || rs.Annotations[MaxReplicasAnnotation] != "23" {
			t.Fatalf("annotations %v", rs.Annotations)
		}
	}
}

func TestScaleSingleReplicaSet(t *testing.T) {
	d := newDeployment("web", 3, "v1")
	f := newFixture(t, d)
	f.mustSync("web")
	f.settle(nil)
	f.mustSync("web")
	for _, n := range []int32{0, 5} {
		d = f.deployment("web")
		d.Spec.Replicas = ptr.To(n)
		f.update(d)
		f.mustSync("web")
		if got := *f.replicaSets()[0].Spec.Replicas; got != n {
			t.Fatalf("scaled to %d, RS has %d", n, got)
		}
		f.settle(nil)
		f.mustSync("web")
	}
	ev := f.eventsWith("ScalingReplicaSet")
	if len(ev) != 3 || !strings.Contains(ev[1], "Scaled down replica set") || !strings.HasSuffix(ev[1], "from 3 to 0") || !strings.HasSuffix(ev[2], "from 0 to 5") {
		t.Fatalf("events %q", ev)
	}
}

func TestPauseAndResume(t *testing.T) {
	d := newDeployment("web", 2, "v1")
	f := newFixture(t, d)
	f.mustSync("web")
	f.settle(nil)
	f.mustSync("web")

	d = f.deployment("web")
	d.Spec.Paused = true
	d.Spec.Template.Spec.Containers[0].Image = "v2"
	f.update(d)
	f.mustSync("web")
	if n := len(f.replicaSets()); n != 1 {
		t.Fatalf("paused deployment rolled out: %d RSes", n)
	}
	c := getCondition(f.deployment("web").Status, appsv1.DeploymentProgressing)
	if c == nil || c.Status != corev1.ConditionUnknown || c.Reason != PausedDeployReason || c.Message != "Deployment is paused" {
		t.Fatalf("paused condition %+v", c)
	}
	// Scaling still works while paused.
	d = f.deployment("web")
	d.Spec.Replicas = ptr.To[int32](4)
	f.update(d)
	f.mustSync("web")
	if s := f.sizes(); s != "4" {
		t.Fatalf("paused scale: %s", s)
	}
	if got := f.deployment("web").Status.ObservedGeneration; got != f.deployment("web").Generation {
		t.Fatalf("observedGeneration %d", got)
	}

	d = f.deployment("web")
	d.Spec.Paused = false
	f.update(d)
	f.mustSync("web")
	c = getCondition(f.deployment("web").Status, appsv1.DeploymentProgressing)
	if c == nil || c.Reason != NewReplicaSetReason {
		// Resume records DeploymentResumed, then the same sync creates the new RS.
		t.Fatalf("after resume %+v", c)
	}
	if n := len(f.replicaSets()); n != 2 {
		t.Fatalf("resumed deployment did not roll out: %d RSes", n)
	}
}

func TestResumeConditionRecorded(t *testing.T) {
	d := newDeployment("web", 2, "v1")
	f := newFixture(t, d)
	f.mustSync("web")
	f.settle(nil)
	d = f.deployment("web")
	d.Spec.Paused = true
	f.update(d)
	f.mustSync("web")
	d = f.deployment("web")
	d.Spec.Paused = false
	f.update(d)
	f.refresh()
	// checkPausedConditions alone (the rest of the sync may move on).
	dd := d.DeepCopy()
	if err := f.c.checkPausedConditions(context.Background(), dd); err != nil {
		t.Fatal(err)
	}
	c := getCondition(f.deployment("web").Status, appsv1.DeploymentProgressing)
	if c == nil || c.Status != corev1.ConditionUnknown || c.Reason != ResumedDeployReason || c.Message != "Deployment is resumed" {
		t.Fatalf("resumed condition %+v", c)
	}
}

func TestRollbackToOldTemplate(t *testing.T) {
	d := newDeployment("web", 2, "v1")
	f := newFixture(t, d)
	f.mustSync("web")
	f.settle(nil)
	rollout(t, f, "web", "v2", nil, 10)
	f.mustSync("web")
	// kubectl rollout undo: the deployment gets the old RS's template back.
	rollout(t, f, "web", "v1", nil, 10)
	f.mustSync("web")
	rss := f.replicaSets()
	if len(rss) != 2 {
		t.Fatalf("undo must reuse the old RS, got %d RSes", len(rss))
	}
	first := rss[0]
	if first.Annotations[RevisionAnnotation] != "3" || first.Annotations[RevisionHistoryAnnotation] != "1" || *first.Spec.Replicas != 2 {
		t.Fatalf("rolled back RS %v replicas %d", first.Annotations, *first.Spec.Replicas)
	}
	if f.deployment("web").Annotations[RevisionAnnotation] != "3" {
		t.Fatalf("deployment revision %v", f.deployment("web").Annotations)
	}
}

func TestAdoptAndRelease(t *testing.T) {
	d := newDeployment("web", 1, "v1")
	hash := ComputeHash(&d.Spec.Template, nil)
	orphan := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + hash, Namespace: "default", UID: "rs-orphan",
			Labels: map[string]string{"app": "web", appsv1.DefaultDeploymentUniqueLabelKey: hash}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", appsv1.DefaultDeploymentUniqueLabelKey: hash}},
			Template: *d.Spec.Template.DeepCopy()},
	}
	orphan.Spec.Template.Labels = map[string]string{"app": "web", appsv1.DefaultDeploymentUniqueLabelKey: hash}
	other := orphan.DeepCopy()
	other.Name, other.UID = "unrelated", "rs-other"
	other.Labels = map[string]string{"app": "other"}
	f := newFixture(t, d, orphan, other)
	f.mustSync("web")
	rss := f.replicaSets()
	var adopted *appsv1.ReplicaSet
	for _, rs := range rss {
		if rs.Name == orphan.Name {
			adopted = rs
		}
		if rs.Name == "unrelated" && metav1.GetControllerOf(rs) != nil {
			t.Fatalf("adopted a non-matching RS")
		}
	}
	if len(rss) != 2 || adopted == nil || metav1.GetControllerOf(adopted) == nil || metav1.GetControllerOf(adopted).UID != d.UID {
		t.Fatalf("orphan not adopted as the new RS: %+v", rss)
	}
	if c := getCondition(f.deployment("web").Status, appsv1.DeploymentProgressing); c == nil || c.Reason != FoundNewRSReason {
		// The first sync annotates the RS; FoundNewReplicaSet comes on the next.
		f.mustSync("web")
		if c := getCondition(f.deployment("web").Status, appsv1.DeploymentProgressing); c == nil || c.Reason != FoundNewRSReason {
			t.Fatalf("progressing %+v", c)
		}
	}
}

func TestReleaseReplicaSetThatStopsMatching(t *testing.T) {
	d := newDeployment("web", 1, "v1")
	f := newFixture(t, d)
	f.mustSync("web")
	rs := f.replicaSets()[0]
	rs.Labels = map[string]string{"app": "gone"}
	if _, err := f.client.AppsV1().ReplicaSets("default").Update(context.Background(), rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.mustSync("web")
	for _, got := range f.replicaSets() {
		if got.UID == rs.UID && metav1.GetControllerOf(got) != nil {
			t.Fatalf("RS that stopped matching was not released: %+v", got.OwnerReferences)
		}
	}
}

func TestHashCollisionBumpsCollisionCount(t *testing.T) {
	d := newDeployment("web", 1, "v1")
	hash := ComputeHash(&d.Spec.Template, nil)
	// Someone else's RS already has the name the new RS would get.
	squatter := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + hash, Namespace: "default", UID: "squat", Labels: map[string]string{"x": "y"}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"x": "y"}}}},
	}
	f := newFixture(t, d, squatter)
	if err := f.sync("web"); err == nil {
		t.Fatalf("collision must return an error to retry")
	}
	if cc := f.deployment("web").Status.CollisionCount; cc == nil || *cc != 1 {
		t.Fatalf("collisionCount %v", cc)
	}
	f.mustSync("web")
	want := "web-" + ComputeHash(&d.Spec.Template, ptr.To[int32](1))
	found := false
	for _, rs := range f.replicaSets() {
		found = found || rs.Name == want
	}
	if !found {
		t.Fatalf("no RS %s after the collision", want)
	}
}

func TestPodDeletionWakesOnlyRecreateDeployments(t *testing.T) {
	for _, strategy := range []appsv1.DeploymentStrategyType{appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType} {
		t.Run(string(strategy), func(t *testing.T) {
			d := newDeployment("web", 1, "v1")
			if strategy == appsv1.RecreateDeploymentStrategyType {
				d.Spec.Strategy = appsv1.DeploymentStrategy{Type: strategy}
			}
			f := newFixture(t, d)
			f.mustSync("web")
			f.refresh()
			rs := f.replicaSets()[0]
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default",
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}}}
			f.c.podGone(pod)
			want := 0
			if strategy == appsv1.RecreateDeploymentStrategyType {
				want = 1
			}
			if got := f.c.queue.Len(); got != want {
				t.Fatalf("queue has %d keys, want %d", got, want)
			}
			f.c.queue.ShutDown()
		})
	}
}

func TestReplicaFailureConditionIsCopied(t *testing.T) {
	d := newDeployment("web", 2, "v1")
	f := newFixture(t, d)
	f.mustSync("web")
	rs := f.replicaSets()[0]
	rs.Status.Conditions = []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
		Reason: "FailedCreate", Message: `pods "web-x" is forbidden: exceeded quota`}}
	if _, err := f.client.AppsV1().ReplicaSets("default").UpdateStatus(context.Background(), rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.mustSync("web")
	c := getCondition(f.deployment("web").Status, appsv1.DeploymentReplicaFailure)
	if c == nil || c.Reason != "FailedCreate" || c.Status != corev1.ConditionTrue {
		t.Fatalf("replica failure %+v", c)
	}
	a := getCondition(f.deployment("web").Status, appsv1.DeploymentAvailable)
	if a == nil || a.Status != corev1.ConditionFalse || a.Reason != MinimumReplicasUnavailable {
		t.Fatalf("available %+v", a)
	}
}
