package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
)

// podTender is the hollow kubelet's pod half: every pod bound to a live sim
// node is reported Running and Ready with an IP; a pod being deleted is
// finished off (deleted with grace 0) as a kubelet does once its
// containers stopped.
type podTender struct {
	sim    *Sim
	lister corelisters.PodLister
	synced cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]
	log    *slog.Logger

	mu      sync.Mutex
	waiting map[string][]string // node → pod keys waiting for its podCIDR
}

func newPodTender(s *Sim, inf coreinformers.PodInformer) *podTender {
	t := &podTender{
		sim: s, lister: inf.Lister(), synced: inf.Informer().HasSynced,
		queue: controller.NewQueue("sim-pods"), log: s.log, waiting: map[string][]string{},
	}
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			pod := obj.(*corev1.Pod)
			t.remember(pod)
			t.enqueue(pod)
		},
		UpdateFunc: func(_, obj any) { t.enqueue(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				t.forget(pod)
			}
		},
	})
	return t
}

func (t *podTender) enqueue(pod *corev1.Pod) {
	if _, ok := t.sim.node(pod.Spec.NodeName); !ok {
		return
	}
	if key, ok := controller.KeyOf(pod); ok {
		t.queue.Add(key)
	}
}

// remember reserves the IP of a pod that already has one (a restarted sim).
func (t *podTender) remember(pod *corev1.Pod) {
	addr, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil || pod.Spec.HostNetwork {
		return
	}
	t.sim.mu.Lock()
	defer t.sim.mu.Unlock()
	if n, ok := t.sim.nodes[pod.Spec.NodeName]; ok && n.ipam != nil {
		n.ipam.reserve(addr, string(pod.UID))
	}
}

func (t *podTender) forget(pod *corev1.Pod) {
	t.sim.mu.Lock()
	defer t.sim.mu.Unlock()
	if n, ok := t.sim.nodes[pod.Spec.NodeName]; ok && n.ipam != nil {
		n.ipam.release(string(pod.UID))
	}
}

// nodeReady requeues the pods that waited for the node's podCIDR.
func (t *podTender) nodeReady(node string) {
	t.mu.Lock()
	keys := t.waiting[node]
	delete(t.waiting, node)
	t.mu.Unlock()
	for _, k := range keys {
		t.queue.Add(k)
	}
	// Pods listed before the CIDR was known may hold IPs from an earlier
	// run; reserve them now.
	if pods, err := t.lister.List(everything); err == nil {
		for _, p := range pods {
			if p.Spec.NodeName == node {
				t.remember(p)
			}
		}
	}
}

func (t *podTender) run(ctx context.Context, workers int, synced ...cache.InformerSynced) error {
	return controller.RunWorkers(ctx, "sim-pods", t.queue, workers, t.sync, t.log, append(synced, t.synced)...)
}

func (t *podTender) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := t.lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	node, ok := t.sim.node(pod.Spec.NodeName)
	if !ok {
		return nil // not ours, or the node has failed
	}
	if pod.DeletionTimestamp != nil {
		// The "containers" stopped at once; finish the deletion.
		err := t.sim.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if controller.IsPodTerminal(pod) {
		return nil
	}
	status, wait, err := t.runningStatus(pod, node)
	if err != nil {
		return err
	}
	if wait {
		t.mu.Lock()
		t.waiting[node.name] = append(t.waiting[node.name], key)
		t.mu.Unlock()
		return nil
	}
	if status == nil {
		return nil // already as wanted
	}
	updated := pod.DeepCopy()
	updated.Status = *status
	_, err = t.sim.client.CoreV1().Pods(ns).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// runningStatus is the status a kubelet would report once every container
// started and passed readiness. It returns nil when the pod already has
// it, and wait when the node has no podCIDR yet.
func (t *podTender) runningStatus(pod *corev1.Pod, node *simNode) (*corev1.PodStatus, bool, error) {
	if pod.Status.Phase == corev1.PodRunning && controller.IsPodReady(pod) && pod.Status.PodIP != "" {
		return nil, false, nil
	}
	ip := node.ip
	if !pod.Spec.HostNetwork {
		t.sim.mu.Lock()
		a := node.ipam
		var addr netip.Addr
		var err error
		if a != nil {
			addr, err = a.allocate(string(pod.UID))
		}
		t.sim.mu.Unlock()
		if a == nil {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		ip = addr.String()
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	st := pod.Status.DeepCopy()
	st.Phase = corev1.PodRunning
	st.HostIP, st.HostIPs = node.ip, []corev1.HostIP{{IP: node.ip}}
	st.PodIP, st.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	for _, c := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady, corev1.PodScheduled} {
		setCondition(st, c, now)
	}
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod, c.Name),
			Ready: true, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: containerID(pod, c.Name)}},
		})
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod, c.Name),
			Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return st, false, nil
}

func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, now metav1.Time) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != corev1.ConditionTrue {
				st.Conditions[i] = corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
}

func containerID(pod *corev1.Pod, name string) string {
	sum := sha256.Sum256([]byte(string(pod.UID) + "/" + name))
	return "sim://" + hex.EncodeToString(sum[:])
}

func imageID(image string) string {
	sum := sha256.Sum256([]byte(image))
	return image + "@sha256:" + hex.EncodeToString(sum[:])
}

var everything = labels.Everything()
