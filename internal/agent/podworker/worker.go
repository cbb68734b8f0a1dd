package podworker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/agent/logs"
	"github.com/skiff-dev/skiff/internal/agent/podconfig"
	"github.com/skiff-dev/skiff/internal/agent/prober"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// instance is one run of a container.
type instance struct {
	id       string
	name     string
	attempt  int
	imageID  string // image.Image.ID
	imageRef string // image.Image.ImageRef(): status imageID
	image    string // normalised name: status image
	termLog  string
	writer   *logs.Writer
	done     <-chan struct{}
	state    *runtime.State
	probed   bool
	msg      *string // termination message, read once exited

	// A re-adopted running container keeps the ready/started it had
	// (from the API status) until its probes report, or until assumeUntil.
	assumeReady, assumeStarted bool
	assumeUntil                time.Time
	readinessUpdates           int
	startupUpdates             int
}

func (i *instance) running() bool {
	return i != nil && i.state != nil && i.state.Status == runtime.StatusRunning
}
func (i *instance) exited() bool { return i != nil && isExited(i.state) }

// ctr is what the worker keeps about one container of the pod spec.
type ctr struct {
	insts   []*instance // oldest first; the newest two are kept
	waiting *corev1.ContainerStateWaiting
	pullErr string // the last image pull error
}

func (c *ctr) current() *instance {
	if c == nil || len(c.insts) == 0 {
		return nil
	}
	return c.insts[len(c.insts)-1]
}

func (c *ctr) previous() *instance {
	if c == nil || len(c.insts) < 2 {
		return nil
	}
	return c.insts[len(c.insts)-2]
}

// adoption is what the runtime held for a pod when Run started.
type adoption struct {
	sandbox    *runtime.Sandbox
	containers []*runtime.State
	ns, name   string
}

// podWorker serializes everything done for one pod.
type podWorker struct {
	m    *Manager
	uid  types.UID
	ns   string
	name string
	kick chan struct{}

	mu        sync.Mutex // guards pod, gone, ctrs (read by the kubelet server), patchedRV
	pod       *corev1.Pod
	patchedRV string // resourceVersion our last status patch produced
	gone      bool
	ctrs      map[string]*ctr
	sandbox   *runtime.Sandbox

	// Owned by the worker goroutine.
	adopt       *adoption
	podIPs      []string
	netReady    bool
	vols        map[string]podconfig.Volume
	files       podconfig.PodFiles
	filesOK     bool
	initialized bool
	released    bool
	apiPod      *corev1.Pod // the pod as our last status patch returned it
	registered  *corev1.Pod // the pod object last given to PodRegistrar
	firstSeen   time.Time
	wake        time.Time
}

func newPodWorker(m *Manager, pod *corev1.Pod, a *adoption) *podWorker {
	return &podWorker{
		m: m, uid: pod.UID, ns: pod.Namespace, name: pod.Name,
		kick: make(chan struct{}, 1), pod: pod, ctrs: map[string]*ctr{}, adopt: a,
		firstSeen: time.Now(),
	}
}

func (w *podWorker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	w.poke()
}

// ownEcho reports whether pod is the worker's own status patch coming back
// through the informer, with nothing else changed.
func (w *podWorker) ownEcho(pod *corev1.Pod) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.pod
	return old != nil && w.patchedRV != "" && pod.ResourceVersion == w.patchedRV &&
		old.Generation == pod.Generation && old.DeletionTimestamp.Equal(pod.DeletionTimestamp) &&
		maps.Equal(old.Labels, pod.Labels) && maps.Equal(old.Annotations, pod.Annotations)
}

func (w *podWorker) markGone() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.poke()
}

func (w *podWorker) currentPod() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) ctr(name string) *ctr {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.ctrs[name]
	if c == nil {
		c = &ctr{}
		w.ctrs[name] = c
	}
	return c
}

func (w *podWorker) setWaiting(name string, wt *corev1.ContainerStateWaiting) {
	c := w.ctr(name)
	w.mu.Lock()
	c.waiting = wt
	w.mu.Unlock()
}

func (w *podWorker) wakeIn(d time.Duration) {
	t := time.Now().Add(d)
	if w.wake.IsZero() || t.Before(w.wake) {
		w.wake = t
	}
}

func (w *podWorker) run(ctx context.Context) {
	defer w.m.workerDone(w)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer.C:
		}
		w.wake = time.Time{}
		finished := w.sync(ctx)
		if finished {
			return
		}
		next := w.m.cfg.ResyncPeriod
		if !w.wake.IsZero() {
			if d := time.Until(w.wake); d < next {
				next = max(d, 10*time.Millisecond)
			}
		}
		timer.Reset(next)
	}
}

// sync brings the pod's containers to what its spec and status ask for and
// reports the status. It returns true once the pod is finished with.
func (w *podWorker) sync(ctx context.Context) bool {
	w.mu.Lock()
	pod, gone := w.pod, w.gone
	w.mu.Unlock()
	if w.adopt != nil {
		w.readopt(ctx, pod)
		w.adopt = nil
	}
	if gone {
		w.cleanup(ctx, pod, 2*time.Second)
		return true
	}
	if pod.DeletionTimestamp != nil {
		return w.terminate(ctx, pod)
	}
	base := w.basePod(pod)
	w.refreshStates()
	terminal := base.Status.Phase == corev1.PodSucceeded || base.Status.Phase == corev1.PodFailed
	if terminal || w.released {
		w.finishTerminal(ctx, pod)
		w.report(ctx, pod, true)
		return false
	}
	if reg, ok := w.m.cfg.Sources.(PodRegistrar); ok && w.registered != pod {
		reg.RegisterPod(pod)
		w.registered = pod
	}
	t0 := time.Now()
	hadSandbox := w.sandbox != nil
	if err := w.ensureSandbox(ctx, pod); err != nil {
		w.m.log.Error("pod sandbox", "pod", klogKey(pod), "err", err)
		w.m.event(podRef(pod, ""), corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: "+err.Error())
		w.wakeIn(2 * time.Second)
		w.report(ctx, pod, false)
		return false
	}
	tSandbox := time.Since(t0)
	if !w.prepareVolumes(ctx, pod) {
		w.wakeIn(2 * time.Second)
		w.report(ctx, pod, false)
		return false
	}
	tVolumes := time.Since(t0) - tSandbox
	w.killUnhealthy(ctx, pod)

	// Init containers, then (once initialized) the others.
	states := map[string]prober.ContainerState{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		states[c.Name] = w.proberState(c.Name)
	}
	plan := prober.PlanInit(pod, states, w.initialized)
	failed := plan.Failed
	if !failed {
		for _, name := range plan.Start {
			spec := containerSpec(pod, name)
			if spec == nil {
				continue
			}
			w.startIfDue(ctx, pod, spec, true)
			if !prober.IsSidecar(spec) {
				break // one regular init container at a time
			}
		}
		if plan.Initialized {
			w.initialized = true
		}
	}
	if w.initialized && !failed {
		for i := range pod.Spec.Containers {
			c := &pod.Spec.Containers[i]
			cur := w.ctr(c.Name).current()
			switch {
			case cur == nil:
				w.startIfDue(ctx, pod, c, false)
			case cur.exited() && prober.ShouldRestart(pod.Spec.RestartPolicy, cur.state.ExitCode):
				w.startIfDue(ctx, pod, c, false)
			}
		}
	}
	w.refreshStates()
	tContainers := time.Since(t0)
	st := w.report(ctx, pod, failed)
	if !hadSandbox {
		w.m.log.Debug("pod started", "pod", klogKey(pod), "sandbox", tSandbox, "volumes", tVolumes,
			"containers", tContainers-tSandbox-tVolumes, "status", time.Since(t0)-tContainers, "sinceCreated", time.Since(pod.CreationTimestamp.Time))
	}
	if st != nil && (st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed) {
		w.finishTerminal(ctx, pod)
	}
	return false
}

// containerSpec finds a container of the pod spec by name.
func containerSpec(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

func (w *podWorker) proberState(name string) prober.ContainerState {
	cur := w.ctr(name).current()
	switch {
	case cur == nil:
		return prober.ContainerState{}
	case cur.running():
		return prober.ContainerState{Exists: true, Running: true, Started: w.started(cur)}
	case cur.exited():
		return prober.ContainerState{Exists: true, ExitCode: cur.state.ExitCode}
	default:
		return prober.ContainerState{Exists: true}
	}
}

// startIfDue starts a container that never ran, or restarts an exited one
// once its back-off allows.
func (w *podWorker) startIfDue(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, isInit bool) {
	c := w.ctr(spec.Name)
	cur := c.current()
	if cur != nil && !cur.exited() {
		return // running, or created (being started)
	}
	if cur != nil {
		r := w.m.backoff.Restart(pod, spec, cur.state.FinishedAt)
		if !r.Now {
			if c.waiting == nil || c.waiting.Reason != ReasonCrashLoopBackOff {
				w.m.event(podRef(pod, spec.Name), corev1.EventTypeWarning, "BackOff",
					fmt.Sprintf("Back-off restarting failed container %s in pod %s", spec.Name, formatPod(pod)))
			}
			w.setWaiting(spec.Name, r.Waiting)
			w.wakeIn(r.After)
			return
		}
	}
	w.startContainer(ctx, pod, spec, isInit)
}

func formatPod(pod *corev1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

func klogKey(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

// refreshStates reads the runtime state of each container's newest
// instances, and stops probing those that exited.
func (w *podWorker) refreshStates() {
	w.mu.Lock()
	var insts []*instance
	for _, c := range w.ctrs {
		insts = append(insts, c.insts...)
	}
	w.mu.Unlock()
	for _, in := range insts {
		if in.exited() && in.state.Status == runtime.StatusExited {
			continue // final
		}
		st, err := w.m.rt.State(in.id)
		if err != nil {
			st = &runtime.State{ID: in.id, Status: runtime.StatusUnknown, ExitCode: 255, Error: err.Error(), FinishedAt: time.Now()}
		}
		w.mu.Lock()
		in.state = st
		w.mu.Unlock()
		if in.exited() && in.probed {
			w.m.pm.RemoveContainer(in.id)
			in.probed = false
		}
	}
}

// killUnhealthy kills running containers whose liveness or startup probe
// failed; the restart follows in the same sync.
func (w *podWorker) killUnhealthy(ctx context.Context, pod *corev1.Pod) {
	for _, spec := range allContainers(pod) {
		cur := w.ctr(spec.Name).current()
		if !cur.running() || !cur.probed {
			continue
		}
		k, bad := w.m.pm.Unhealthy(cur.id)
		if !bad {
			continue
		}
		msg := k.Message
		if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
			msg += ", will be restarted"
		}
		w.m.event(podRef(pod, spec.Name), corev1.EventTypeNormal, "Killing", msg)
		grace := gracePeriod(pod, k.GracePeriod)
		w.m.pm.RemoveContainer(cur.id)
		cur.probed = false
		w.stopInstance(ctx, pod, spec, cur, grace, false)
	}
	w.refreshStates()
}

func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// gracePeriod is the kill grace: the override if set, else the pod's
// terminationGracePeriodSeconds, else 30 s; at least 2 s as the kubelet's
// minimum for a graceful stop (0 stays an immediate kill).
func gracePeriod(pod *corev1.Pod, override *int64) time.Duration {
	s := int64(30)
	switch {
	case override != nil:
		s = *override
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		s = *pod.Spec.TerminationGracePeriodSeconds
	}
	if s < 0 {
		s = 0
	}
	return time.Duration(s) * time.Second
}

// stopInstance runs the preStop hook (when asked) and stops a running
// instance with the grace period.
func (w *podWorker) stopInstance(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, in *instance, grace time.Duration, preStop bool) {
	start := time.Now()
	if preStop && spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil && grace > 0 {
		hctx, cancel := context.WithTimeout(ctx, grace)
		if msg, err := w.runHook(hctx, pod, spec, in, spec.Lifecycle.PreStop); err != nil {
			w.m.event(podRef(pod, spec.Name), corev1.EventTypeWarning, "FailedPreStopHook",
				fmt.Sprintf("PreStopHook failed: %s", hookMessage(msg, err)))
		}
		cancel()
		grace -= time.Since(start)
		if grace < 2*time.Second {
			grace = 2 * time.Second
		}
	}
	if _, err := w.m.rt.Stop(ctx, in.id, grace); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		w.m.log.Warn("stop container", "pod", klogKey(pod), "container", in.name, "id", in.id, "err", err)
	}
	if st, err := w.m.rt.State(in.id); err == nil {
		w.mu.Lock()
		in.state = st
		w.mu.Unlock()
	}
}

// basePod is the newest of the informer's pod and the one our last status
// patch returned (the informer may not have seen our patch yet).
func (w *podWorker) basePod(pod *corev1.Pod) *corev1.Pod {
	if w.apiPod == nil || w.apiPod.UID != pod.UID {
		return pod
	}
	a, err1 := strconv.ParseUint(w.apiPod.ResourceVersion, 10, 64)
	b, err2 := strconv.ParseUint(pod.ResourceVersion, 10, 64)
	if err1 == nil && err2 == nil && a > b {
		p := pod.DeepCopy()
		p.Status = *w.apiPod.Status.DeepCopy()
		return p
	}
	return pod
}

// report computes the pod's status and patches it when it changed. It
// returns the status.
func (w *podWorker) report(ctx context.Context, pod *corev1.Pod, forceTerminal bool) *corev1.PodStatus {
	base := w.basePod(pod)
	in := statusInput{
		Pod: base, Now: time.Now(), PodIPs: w.podIPs, HostIPs: w.m.cfg.NodeIPs,
		SandboxReady: w.sandbox != nil && w.netReady && !w.released,
		Initialized:  w.initialized, ForceTerminal: forceTerminal, StartTimeIfNew: time.Now(),
	}
	now := time.Now()
	for i := range pod.Spec.InitContainers {
		in.Init = append(in.Init, w.view(&pod.Spec.InitContainers[i], now))
	}
	for i := range pod.Spec.Containers {
		in.Containers = append(in.Containers, w.view(&pod.Spec.Containers[i], now))
	}
	st := computePodStatus(in)
	if apiequality.Semantic.DeepEqual(base.Status, st) {
		return &st
	}
	updated, err := patchPodStatus(ctx, w.m.cfg.Client, base, st)
	if err != nil {
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			w.m.log.Warn("patch pod status", "pod", klogKey(pod), "err", err)
			w.wakeIn(time.Second)
		}
		return &st
	}
	w.apiPod = updated
	w.mu.Lock()
	w.patchedRV = updated.ResourceVersion
	w.mu.Unlock()
	return &st
}

// view gathers what status computation needs about one container.
func (w *podWorker) view(spec *corev1.Container, now time.Time) containerView {
	c := w.ctr(spec.Name)
	w.mu.Lock()
	cur, prev, waiting := c.current(), c.previous(), c.waiting
	w.mu.Unlock()
	v := containerView{Name: spec.Name}
	if cur != nil {
		v.Current, v.CurrentID, v.RestartCount = cur.state, cur.id, int32(cur.attempt)
		v.Image, v.ImageID = cur.image, cur.imageRef
		if cur.exited() {
			v.CurrentMsg = w.terminationMessage(spec, cur)
		}
		if cur.running() {
			v.Ready = w.ready(cur, now)
			v.Started = w.started(cur)
			waiting = nil
		}
	}
	if prev != nil {
		v.Last, v.LastID = prev.state, prev.id
		if prev.exited() {
			v.LastMsg = w.terminationMessage(spec, prev)
		}
	}
	if cur != nil && !cur.exited() && !cur.running() {
		waiting = &corev1.ContainerStateWaiting{Reason: ReasonContainerCreating}
	}
	v.Waiting = waiting
	return v
}

func (w *podWorker) ready(in *instance, now time.Time) bool {
	if w.m.pm.Ready(in.id) {
		return true
	}
	if in.assumeReady && now.Before(in.assumeUntil) {
		w.wake = minTime(w.wake, in.assumeUntil)
		return true
	}
	return false
}

func (w *podWorker) started(in *instance) bool {
	if w.m.pm.Started(in.id) {
		return true
	}
	return in.assumeStarted && time.Now().Before(in.assumeUntil)
}

func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// probeUpdate notes that a probe of a re-adopted container reported for
// real (its first update is the worker's initial value).
func (w *podWorker) probeUpdate(u prober.Update) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.ctrs[u.ContainerName]
	if c == nil {
		return
	}
	for _, in := range c.insts {
		if in.id != u.ContainerID {
			continue
		}
		switch u.Type {
		case prober.Readiness:
			in.readinessUpdates++
			if in.readinessUpdates > 1 {
				in.assumeReady = false
			}
		case prober.Startup:
			in.startupUpdates++
			if in.startupUpdates > 1 {
				in.assumeStarted = false
			}
		}
	}
}

// patchPodStatus writes status with a strategic merge patch of the
// difference, carrying the pod's UID (upstream's utilpod.PatchPodStatus),
// and returns the updated pod.
func patchPodStatus(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, status corev1.PodStatus) (*corev1.Pod, error) {
	oldData, err := json.Marshal(corev1.Pod{Status: pod.Status})
	if err != nil {
		return nil, err
	}
	newData, err := json.Marshal(corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: pod.UID}, Status: status})
	if err != nil {
		return nil, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldData, newData, corev1.Pod{})
	if err != nil {
		return nil, err
	}
	return client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
}

// deletePod confirms a pod's deletion once its containers are gone.
func (w *podWorker) deletePod(ctx context.Context, pod *corev1.Pod) {
	err := w.m.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.m.log.Warn("delete pod", "pod", klogKey(pod), "err", err)
	}
}

// terminate runs a pod's graceful deletion: probes stop restarting,
// preStop hooks run, containers get SIGTERM and, after the grace period,
// SIGKILL; then everything is cleaned up and the deletion confirmed.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod) bool {
	w.m.pm.PodTerminating(pod.UID)
	grace := gracePeriod(pod, pod.DeletionGracePeriodSeconds)
	w.stopAll(ctx, pod, grace, true)
	w.cleanup(ctx, pod, grace)
	if ctx.Err() != nil {
		return true
	}
	w.deletePod(ctx, pod)
	return true
}

// stopAll stops every running container of the pod concurrently.
func (w *podWorker) stopAll(ctx context.Context, pod *corev1.Pod, grace time.Duration, preStop bool) {
	w.mu.Lock()
	var run []*instance
	for _, c := range w.ctrs {
		if cur := c.current(); cur != nil && (cur.state == nil || !cur.exited()) {
			run = append(run, cur)
		}
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range run {
		spec := containerSpec(pod, in.name)
		if in.running() && spec != nil {
			w.m.event(podRef(pod, in.name), corev1.EventTypeNormal, "Killing", "Stopping container "+in.name)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stopInstance(ctx, pod, spec, in, grace, preStop)
		}()
	}
	wg.Wait()
	w.refreshStates()
}

// finishTerminal handles a pod in a terminal phase: its containers are
// stopped and its sandbox released; the exited containers and their logs
// stay until the pod is deleted.
func (w *podWorker) finishTerminal(ctx context.Context, pod *corev1.Pod) {
	if w.released {
		return
	}
	w.stopAll(ctx, pod, gracePeriod(pod, nil), true)
	w.m.pm.RemovePod(pod.UID)
	w.mu.Lock()
	for _, c := range w.ctrs {
		for _, in := range c.insts {
			in.probed = false
		}
	}
	w.mu.Unlock()
	w.releaseSandbox(ctx, pod)
	w.released = true
}

func (w *podWorker) releaseSandbox(ctx context.Context, pod *corev1.Pod) {
	w.mu.Lock()
	sb := w.sandbox
	w.mu.Unlock()
	if sb == nil {
		if s, err := w.m.rt.GetSandbox(string(w.uid)); err == nil {
			sb = s
		}
	}
	if sb == nil {
		return
	}
	if w.m.cfg.Network != nil && !pod.Spec.HostNetwork {
		if err := w.m.cfg.Network.TearDown(ctx, pod, sb.NetNSPath); err != nil {
			w.m.log.Warn("network teardown", "pod", klogKey(pod), "err", err)
		}
	}
	if err := w.m.rt.RemoveSandbox(ctx, sb.ID); err != nil {
		w.m.log.Warn("remove sandbox", "pod", klogKey(pod), "err", err)
		return
	}
	w.mu.Lock()
	w.sandbox = nil
	w.mu.Unlock()
	w.netReady = false
}

// cleanup removes everything the pod has on the node: containers (killed
// after grace if still running), log FIFOs, sandbox and network, cgroup
// and pod directory.
func (w *podWorker) cleanup(ctx context.Context, pod *corev1.Pod, grace time.Duration) {
	w.stopAll(ctx, pod, grace, false)
	if ctx.Err() != nil {
		return // agent stopping: the next Run finishes the job
	}
	w.m.pm.RemovePod(pod.UID)
	w.mu.Lock()
	var insts []*instance
	for _, c := range w.ctrs {
		insts = append(insts, c.insts...)
	}
	w.ctrs = map[string]*ctr{}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.m.removeInstance(ctx, in)
		}()
	}
	wg.Wait()
	for _, c := range allContainers(pod) {
		w.m.backoff.Forget(pod, c)
	}
	w.releaseSandbox(ctx, pod)
	w.m.removePodResources(pod.UID)
	if reg, ok := w.m.cfg.Sources.(PodRegistrar); ok {
		reg.UnregisterPod(pod)
	}
	if w.m.cfg.PodRemoved != nil {
		w.m.cfg.PodRemoved(pod.UID)
	}
}

// closeWriters stops the log writers (Manager shutdown; the containers keep
// running and a restarted agent reopens their FIFOs).
func (w *podWorker) closeWriters() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.ctrs {
		for _, in := range c.insts {
			if in.writer != nil {
				in.writer.Close()
			}
		}
	}
}

// hookMessage formats a failed hook's output and error as the kubelet.
func hookMessage(msg string, err error) string {
	if msg != "" {
		return msg
	}
	return err.Error()
}
