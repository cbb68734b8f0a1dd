package endpointutil

import (
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// PodEvents is the pod event handler both controllers register: it queues
// the keys of the Services whose endpoints a pod event can change, after
// BatchPeriod when set (--endpoint-updates-batch-period).
type PodEvents struct {
	Services    corelisters.ServiceLister
	Queue       workqueue.TypedDelayingInterface[string]
	BatchPeriod time.Duration
	Log         *slog.Logger
}

var _ cache.ResourceEventHandler = PodEvents{}

func (h PodEvents) enqueue(keys sets.Set[string]) {
	for key := range keys {
		if h.BatchPeriod > 0 {
			h.Queue.AddAfter(key, h.BatchPeriod)
		} else {
			h.Queue.Add(key)
		}
	}
}

// OnAdd queues the Services of a pod that belongs in endpoints. A pod
// without an IP (or finished) is in none, so its arrival changes nothing:
// skipping it saves one no-op sync per pod created at scale.
func (h PodEvents) OnAdd(obj any, _ bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || !ShouldPodBeInEndpoints(pod, true) {
		return
	}
	keys, err := ServicesForPod(h.Services, pod.Namespace, pod.Labels)
	if err != nil {
		h.Log.Error("finding services of pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		return
	}
	h.enqueue(keys)
}

// OnUpdate queues the Services of the old and new pod when the change
// matters to endpoints.
func (h PodEvents) OnUpdate(old, cur any) {
	h.enqueue(ServicesToUpdateOnPodChange(h.Services, old, cur))
}

// OnDelete queues the Services the pod was in.
func (h PodEvents) OnDelete(obj any) {
	if pod := PodFromDeleteAction(obj); pod != nil {
		h.OnAdd(pod, false)
	}
}
