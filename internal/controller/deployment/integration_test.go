package deployment

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// env runs the deployment controller against a real API server, with no
// ReplicaSet controller: a fake one sets every RS's status to its spec
// (available unless its template's image is "broken").
type env struct {
	t      *testing.T
	client kubernetes.Interface
	ctx    context.Context
	host   string // the API server's URL
}

func startEnv(t *testing.T) *env {
	t.Helper()
	api := controllertest.Start(t)
	cc := api.Context(t)
	c, err := New(cc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, client: api.Client, ctx: ctx, host: api.Config.Host}

	rsInf := cc.Informers.Apps().V1().ReplicaSets().Informer()
	simulate := func(obj any) {
		rs, ok := obj.(*appsv1.ReplicaSet)
		if !ok {
			return
		}
		n := *rs.Spec.Replicas
		avail := n
		if rs.Spec.Template.Spec.Containers[0].Image == "broken" {
			avail = 0
		}
		st := rs.Status
		if st.Replicas == n && st.ReadyReplicas == avail && st.AvailableReplicas == avail && st.ObservedGeneration == rs.Generation {
			return
		}
		cp := rs.DeepCopy()
		cp.Status.Replicas, cp.Status.ReadyReplicas, cp.Status.AvailableReplicas = n, avail, avail
		cp.Status.FullyLabeledReplicas = n
		cp.Status.ObservedGeneration = rs.Generation
		// Conflicts and NotFound: a newer event follows anyway.
		_, _ = api.Client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	}
	if _, err := rsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    simulate,
		UpdateFunc: func(_, cur any) { simulate(cur) },
	}); err != nil {
		t.Fatal(err)
	}
	cc.Informers.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, 2) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("Run: %v", err)
		}
		cc.Informers.Shutdown()
	})
	return e
}

func (e *env) get(name string) *appsv1.Deployment {
	e.t.Helper()
	d, err := e.client.AppsV1().Deployments("default").Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) replicaSets() []*appsv1.ReplicaSet {
	e.t.Helper()
	l, err := e.client.AppsV1().ReplicaSets("default").List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*appsv1.ReplicaSet
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	sortByCreation(out)
	return out
}

// rolloutStatus is kubectl rollout status' verdict on a deployment.
func rolloutStatus(d *appsv1.Deployment) (done bool, msg string, err error) {
	if d.Generation > d.Status.ObservedGeneration {
		return false, "Waiting for deployment spec update to be observed...", nil
	}
	if c := getCondition(d.Status, appsv1.DeploymentProgressing); c != nil && c.Reason == TimedOutReason {
		return false, "", fmt.Errorf("deployment %q exceeded its progress deadline", d.Name)
	}
	want := replicas(d.Spec.Replicas)
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d out of %d new replicas have been updated...", st.UpdatedReplicas, want), nil
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas are pending termination...", st.Replicas-st.UpdatedReplicas), nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return false, fmt.Sprintf("%d of %d updated replicas are available...", st.AvailableReplicas, st.UpdatedReplicas), nil
	}
	return true, fmt.Sprintf("deployment %q successfully rolled out", d.Name), nil
}

func (e *env) waitFor(what string, cond func() (bool, error)) {
	e.t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(e.ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		ok, err := cond()
		last = err
		return ok, nil
	})
	if err != nil {
		e.t.Fatalf("waiting for %s: %v (last: %v)", what, err, last)
	}
}

func (e *env) waitRolledOut(name string) *appsv1.Deployment {
	e.t.Helper()
	var d *appsv1.Deployment
	e.waitFor(name+" rolled out", func() (bool, error) {
		d = e.get(name)
		done, msg, err := rolloutStatus(d)
		if err != nil {
			return false, err
		}
		if !done {
			return false, fmt.Errorf("%s", msg)
		}
		c := getCondition(d.Status, appsv1.DeploymentProgressing)
		return c != nil && c.Reason == NewRSAvailableReason, fmt.Errorf("progressing %+v", c)
	})
	return d
}

func (e *env) patch(name string, pt types.PatchType, patch string) {
	e.t.Helper()
	if _, err := e.client.AppsV1().Deployments("default").Patch(e.ctx, name, pt, []byte(patch), metav1.PatchOptions{}); err != nil {
		e.t.Fatalf("patch %s: %v", patch, err)
	}
}

// monitor follows every ReplicaSet write in order and checks the rolling
// update bounds after each one.
type monitor struct {
	mu         sync.Mutex
	rss        map[string]*appsv1.ReplicaSet
	violations []string
	maxTotal   int32
	cancel     context.CancelFunc
	done       chan struct{}
}

func (e *env) monitor(want, surge, unavailable int32) *monitor {
	e.t.Helper()
	list, err := e.client.AppsV1().ReplicaSets("default").List(e.ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	w, err := e.client.AppsV1().ReplicaSets("default").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		e.t.Fatal(err)
	}
	m := &monitor{rss: map[string]*appsv1.ReplicaSet{}, cancel: cancel, done: make(chan struct{})}
	for i := range list.Items {
		m.rss[list.Items[i].Name] = &list.Items[i]
	}
	go func() {
		defer close(m.done)
		defer w.Stop()
		for ev := range w.ResultChan() {
			rs, ok := ev.Object.(*appsv1.ReplicaSet)
			if !ok {
				continue
			}
			m.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(m.rss, rs.Name)
			} else {
				m.rss[rs.Name] = rs
			}
			var total, avail int32
			var sizes []string
			for _, r := range m.rss {
				total += *r.Spec.Replicas
				avail += min(*r.Spec.Replicas, r.Status.AvailableReplicas)
				sizes = append(sizes, fmt.Sprintf("%s=%d/%d", r.Name, *r.Spec.Replicas, r.Status.AvailableReplicas))
			}
			m.maxTotal = max(m.maxTotal, total)
			if total > want+surge {
				m.violations = append(m.violations, fmt.Sprintf("%d replicas > %d+%d: %v", total, want, surge, sizes))
			}
			if avail < want-unavailable {
				m.violations = append(m.violations, fmt.Sprintf("%d available < %d-%d: %v", avail, want, unavailable, sizes))
			}
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *monitor) stop() ([]string, int32) {
	m.cancel()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.violations, m.maxTotal
}

func TestIntegrationRollingUpdateUndoRestartScale(t *testing.T) {
	e := startEnv(t)
	d := newDeployment("web", 10, "nginx:1")
	d.UID, d.Generation = "", 0
	setRolling(d, intstr.FromInt32(3), intstr.FromInt32(2))
	if _, err := e.client.AppsV1().Deployments("default").Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := e.waitRolledOut("web")
	if got.Annotations[RevisionAnnotation] != "1" || got.Status.AvailableReplicas != 10 {
		t.Fatalf("first rollout: %v %+v", got.Annotations, got.Status)
	}
	first := e.replicaSets()[0]
	if !strings.HasPrefix(first.Name, "web-") || first.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == "" {
		t.Fatalf("first RS %s %v", first.Name, first.Labels)
	}

	// kubectl set image, with a change-cause.
	m := e.monitor(10, 3, 2)
	e.patch("web", types.StrategicMergePatchType, `{"metadata":{"annotations":{"kubernetes.io/change-cause":"set image nginx:2"}},"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:2"}]}}}}`)
	got = e.waitRolledOut("web")
	violations, maxTotal := m.stop()
	if len(violations) > 0 {
		t.Fatalf("rolling update broke its bounds:\n%s", strings.Join(violations, "\n"))
	}
	if maxTotal != 13 {
		t.Fatalf("rollout never used its surge: max %d replicas", maxTotal)
	}
	rss := e.replicaSets()
	if len(rss) != 2 || *rss[0].Spec.Replicas != 0 || *rss[1].Spec.Replicas != 10 {
		t.Fatalf("after rollout: %d RSes", len(rss))
	}
	if rss[1].Annotations["kubernetes.io/change-cause"] != "set image nginx:2" || rss[1].Annotations[RevisionAnnotation] != "2" {
		t.Fatalf("new RS annotations %v", rss[1].Annotations)
	}

	// kubectl rollout undo: the template of revision 1, without its hash label.
	tmpl := rss[0].Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	raw, _ := json.Marshal(tmpl)
	e.patch("web", types.JSONPatchType, fmt.Sprintf(`[{"op":"replace","path":"/spec/template","value":%s}]`, raw))
	got = e.waitRolledOut("web")
	rss = e.replicaSets()
	if len(rss) != 2 || rss[0].Annotations[RevisionAnnotation] != "3" || rss[0].Annotations[RevisionHistoryAnnotation] != "1" || *rss[0].Spec.Replicas != 10 {
		t.Fatalf("undo did not reuse revision 1's RS: %v", rss[0].Annotations)
	}
	if got.Annotations[RevisionAnnotation] != "3" {
		t.Fatalf("deployment revision after undo: %v", got.Annotations)
	}

	// kubectl rollout restart.
	e.patch("web", types.StrategicMergePatchType, `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-01T00:00:00Z"}}}}}`)
	got = e.waitRolledOut("web")
	if n := len(e.replicaSets()); n != 3 || got.Annotations[RevisionAnnotation] != "4" {
		t.Fatalf("restart: %d RSes, revision %v", n, got.Annotations[RevisionAnnotation])
	}

	// kubectl scale to 0 and back, through the scale subresource.
	for _, n := range []int32{0, 4} {
		sc, err := e.client.AppsV1().Deployments("default").GetScale(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Spec.Replicas = n
		if _, err := e.client.AppsV1().Deployments("default").UpdateScale(e.ctx, "web", sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// As upstream, observedGeneration may be written before the RS
		// reports its new size, so wait for the counts too.
		e.waitFor(fmt.Sprintf("scale to %d", n), func() (bool, error) {
			got = e.waitRolledOut("web")
			return got.Status.Replicas == n && got.Status.AvailableReplicas == n, fmt.Errorf("status %+v", got.Status)
		})
	}

	// Events in upstream's words.
	e.waitFor("ScalingReplicaSet events", func() (bool, error) {
		evs, err := e.client.CoreV1().Events("default").List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var msgs []string
		for _, ev := range evs.Items {
			if ev.Reason == "ScalingReplicaSet" && ev.Source.Component == Component && ev.InvolvedObject.Name == "web" {
				msgs = append(msgs, ev.Message)
			}
		}
		all := strings.Join(msgs, "\n")
		want := []string{
			"Scaled up replica set " + first.Name + " from 0 to 10",
			"Scaled down replica set " + first.Name + " from 10 to 8",
		}
		for _, w := range want {
			if !strings.Contains(all, w) {
				return false, fmt.Errorf("no event %q in %q", w, msgs)
			}
		}
		return true, nil
	})
}

func TestIntegrationRecreateAndProgressDeadline(t *testing.T) {
	e := startEnv(t)
	d := newDeployment("db", 3, "pg:1")
	d.UID, d.Generation = "", 0
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	d.Spec.ProgressDeadlineSeconds = ptr.To[int32](2)
	if _, err := e.client.AppsV1().Deployments("default").Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRolledOut("db")

	// A pod of the old RS that is still there (no RS controller runs here).
	old := e.replicaSets()[0]
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-old", Namespace: "default", Labels: old.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(old, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pg:1"}}},
	}
	if _, err := e.client.CoreV1().Pods("default").Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Recreate: the new RS is never scaled up while an old one has replicas.
	m := e.monitor(3, 0, 3)
	e.patch("db", types.StrategicMergePatchType, `{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"broken"}]}}}}`)
	e.waitFor("old RS scaled down and observed", func() (bool, error) {
		d := e.get("db")
		return d.Status.ObservedGeneration == d.Generation && d.Status.Replicas == 0, fmt.Errorf("status %+v", d.Status)
	})
	// That sync saw no old replicas but the old pod: no new RS yet.
	if rss := e.replicaSets(); len(rss) != 1 {
		t.Fatalf("new RS created while an old pod runs: %d RSes", len(rss))
	}
	// The pod's deletion alone wakes the deployment.
	if err := e.client.CoreV1().Pods("default").Delete(e.ctx, "db-old", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("recreate to start the new RS", func() (bool, error) {
		rss := e.replicaSets()
		return len(rss) == 2 && *rss[1].Spec.Replicas == 3, nil
	})
	m.stop()
	m.mu.Lock()
	for _, v := range m.violations {
		t.Errorf("recreate: %s", v)
	}
	m.mu.Unlock()

	// The new pods never become available: after 2s the deployment reports
	// ProgressDeadlineExceeded (found through the controller's requeue).
	var c *appsv1.DeploymentCondition
	e.waitFor("progress deadline", func() (bool, error) {
		c = getCondition(e.get("db").Status, appsv1.DeploymentProgressing)
		return c != nil && c.Reason == TimedOutReason, fmt.Errorf("progressing %+v", c)
	})
	if c.Status != corev1.ConditionFalse || !strings.HasSuffix(c.Message, `" has timed out progressing.`) {
		t.Fatalf("timed out condition %+v", c)
	}
	a := getCondition(e.get("db").Status, appsv1.DeploymentAvailable)
	if a == nil || a.Status != corev1.ConditionFalse || a.Reason != MinimumReplicasUnavailable || a.Message != "Deployment does not have minimum availability." {
		t.Fatalf("available condition %+v", a)
	}
}
