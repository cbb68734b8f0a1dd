// Package endpointutil holds what the Endpoints and EndpointSlice controllers
// share, after Kubernetes' k8s.io/endpointslice/util: which pods belong in a
// Service's endpoints, which Services a pod event touches, how a Service
// port's targetPort resolves on a pod, a pod-label index that makes "pods
// matching this selector" cost the matching pods rather than the namespace,
// and the tracker behind the endpoints.kubernetes.io/last-change-trigger-time
// annotation.
package endpointutil

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-dev/skiff/internal/controller"
)

// ShouldPodBeInEndpoints reports whether pod belongs in an Endpoints or
// EndpointSlice object: not terminal (Succeeded/Failed), has an IP, and is
// not being deleted unless includeTerminating.
func ShouldPodBeInEndpoints(pod *corev1.Pod, includeTerminating bool) bool {
	if controller.IsPodTerminal(pod) {
		return false
	}
	if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
		return false
	}
	if !includeTerminating && pod.DeletionTimestamp != nil {
		return false
	}
	return true
}

// ShouldSetHostname reports whether the endpoint for pod carries its
// hostname: the pod names svc as its subdomain (headless-service DNS).
func ShouldSetHostname(pod *corev1.Pod, svc *corev1.Service) bool {
	return pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && svc.Namespace == pod.Namespace
}

// IsServiceIPSet reports whether the Service has a cluster IP (it is neither
// headless nor ExternalName).
func IsServiceIPSet(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != corev1.ClusterIPNone && svc.Spec.ClusterIP != ""
}

// PodIPs returns the pod's IPs, falling back to status.podIP when podIPs is
// empty (the API server fills podIPs, fakes may not).
func PodIPs(pod *corev1.Pod) []string {
	if len(pod.Status.PodIPs) == 0 {
		if pod.Status.PodIP == "" {
			return nil
		}
		return []string{pod.Status.PodIP}
	}
	ips := make([]string, len(pod.Status.PodIPs))
	for i, ip := range pod.Status.PodIPs {
		ips[i] = ip.IP
	}
	return ips
}

// FindPort resolves svcPort's targetPort on pod: a number is used as is; a
// name is looked up among the named ports (of the same protocol) of the
// pod's containers and restartable init containers (sidecars).
func FindPort(pod *corev1.Pod, svcPort *corev1.ServicePort) (int32, error) {
	tp := svcPort.TargetPort
	switch tp.Type {
	case intstr.String:
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == tp.StrVal && p.Protocol == svcPort.Protocol {
					return p.ContainerPort, nil
				}
			}
		}
		for _, c := range pod.Spec.InitContainers {
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				continue
			}
			for _, p := range c.Ports {
				if p.Name == tp.StrVal && p.Protocol == svcPort.Protocol {
					return p.ContainerPort, nil
				}
			}
		}
	case intstr.Int:
		return int32(tp.IntValue()), nil
	}
	return 0, fmt.Errorf("no suitable port for manifest: %s", pod.UID)
}

// SemanticIgnoreResourceVersion compares objects semantically but ignores
// the resourceVersion of object references, so a pod's unrelated updates
// never rewrite its endpoints.
var SemanticIgnoreResourceVersion = conversion.EqualitiesOrDie(
	func(a, b corev1.ObjectReference) bool {
		a.ResourceVersion, b.ResourceVersion = "", ""
		return a == b
	},
)

// PodFromDeleteAction returns the pod of a delete event, unwrapping
// tombstones; nil when it is not a pod.
func PodFromDeleteAction(obj any) *corev1.Pod {
	if pod, ok := obj.(*corev1.Pod); ok {
		return pod
	}
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		if pod, ok := t.Obj.(*corev1.Pod); ok {
			return pod
		}
	}
	return nil
}

// ServicesForPod returns the keys of the Services in namespace whose
// selector matches podLabels. A nil selector matches nothing.
func ServicesForPod(lister corelisters.ServiceLister, namespace string, podLabels map[string]string) (sets.Set[string], error) {
	svcs, err := lister.Services(namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	set := sets.New[string]()
	for _, svc := range svcs {
		if svc.Spec.Selector == nil {
			continue
		}
		if labels.ValidatedSetSelector(svc.Spec.Selector).Matches(labels.Set(podLabels)) {
			set.Insert(svc.Namespace + "/" + svc.Name)
		}
	}
	return set, nil
}

// ServicesToUpdateOnPodChange returns the keys of the Services a pod update
// affects: none when nothing endpoint-relevant changed; the Services
// matching the new labels; and, when the labels changed, also those that
// matched the old ones (all of both when the endpoint changed too, else only
// those that gained or lost the pod).
func ServicesToUpdateOnPodChange(lister corelisters.ServiceLister, oldObj, curObj any) sets.Set[string] {
	oldPod, ok1 := oldObj.(*corev1.Pod)
	curPod, ok2 := curObj.(*corev1.Pod)
	if !ok1 || !ok2 || curPod.ResourceVersion == oldPod.ResourceVersion {
		// A resync: the service informer's resync already covers it.
		return nil
	}
	podChanged, labelsChanged := podEndpointsChanged(oldPod, curPod)
	if !podChanged && !labelsChanged {
		return nil
	}
	services, err := ServicesForPod(lister, curPod.Namespace, curPod.Labels)
	if err != nil {
		return nil
	}
	if labelsChanged {
		oldServices, err := ServicesForPod(lister, oldPod.Namespace, oldPod.Labels)
		if err != nil {
			return services
		}
		if podChanged {
			return services.Union(oldServices)
		}
		return services.SymmetricDifference(oldServices)
	}
	return services
}

// podEndpointsChanged reports whether the pod changed in a way that changes
// its endpoint (first) or the Services it matches (second).
func podEndpointsChanged(oldPod, newPod *corev1.Pod) (bool, bool) {
	labelsChanged := !reflect.DeepEqual(newPod.Labels, oldPod.Labels)
	switch {
	case !newPod.DeletionTimestamp.Equal(oldPod.DeletionTimestamp),
		controller.IsPodReady(oldPod) != controller.IsPodReady(newPod),
		// Upstream leaves these out; they are rare and make a pod that
		// turns terminal while unready, or a hostname change, show at
		// once. (Not nodeName: binding precedes the IP and would cost a
		// no-op sync per scheduled pod.)
		controller.IsPodTerminal(oldPod) != controller.IsPodTerminal(newPod),
		oldPod.Spec.Hostname != newPod.Spec.Hostname || oldPod.Spec.Subdomain != newPod.Spec.Subdomain,
		!reflect.DeepEqual(PodIPs(oldPod), PodIPs(newPod)):
		return true, labelsChanged
	}
	return false, labelsChanged
}

// PodLabelIndex names the pod informer index both controllers share: one
// entry "namespace/key=value" per pod label.
const PodLabelIndex = "endpoints:podLabels"

func podLabelIndexFunc(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	out := make([]string, 0, len(pod.Labels))
	for k, v := range pod.Labels {
		out = append(out, labelIndexKey(pod.Namespace, k, v))
	}
	return out, nil
}

func labelIndexKey(ns, k, v string) string {
	var b strings.Builder
	b.Grow(len(ns) + len(k) + len(v) + 2)
	b.WriteString(ns)
	b.WriteByte('/')
	b.WriteString(k)
	b.WriteByte('=')
	b.WriteString(v)
	return b.String()
}

var indexMu sync.Mutex

// EnsurePodLabelIndex adds PodLabelIndex to the (shared) pod informer unless
// another controller already did.
func EnsurePodLabelIndex(inf cache.SharedIndexInformer) error {
	indexMu.Lock()
	defer indexMu.Unlock()
	if _, ok := inf.GetIndexer().GetIndexers()[PodLabelIndex]; ok {
		return nil
	}
	return inf.AddIndexers(cache.Indexers{PodLabelIndex: podLabelIndexFunc})
}

// PodSelector lists a namespace's pods matching a Service selector through
// PodLabelIndex, so a sync costs the pods carrying the selector's rarest
// label rather than every pod in the namespace.
type PodSelector struct {
	Indexer cache.Indexer
	Lister  corelisters.PodLister
}

// Pods returns the pods in namespace matching selector (a Service's
// equality-based selector; empty matches all).
func (p PodSelector) Pods(namespace string, selector map[string]string) ([]*corev1.Pod, error) {
	sel := labels.ValidatedSetSelector(selector)
	if len(selector) == 0 || p.Indexer == nil {
		return p.Lister.Pods(namespace).List(sel)
	}
	var best []any
	first := true
	for k, v := range selector {
		objs, err := p.Indexer.ByIndex(PodLabelIndex, labelIndexKey(namespace, k, v))
		if err != nil {
			return p.Lister.Pods(namespace).List(sel)
		}
		if first || len(objs) < len(best) {
			best, first = objs, false
		}
		if len(best) == 0 {
			break
		}
	}
	pods := make([]*corev1.Pod, 0, len(best))
	for _, o := range best {
		pod := o.(*corev1.Pod)
		if sel.Matches(labels.Set(pod.Labels)) {
			pods = append(pods, pod)
		}
	}
	return pods, nil
}

// TriggerTimeTracker computes the endpoints.kubernetes.io/last-change-trigger-time
// annotation: the earliest time of the pod Ready transitions (or Service
// creation) not yet reflected in the Service's endpoints. Calls for one
// Service must not be concurrent (the workqueue guarantees it).
type TriggerTimeTracker struct {
	mu     sync.Mutex
	states map[string]triggerState
}

type triggerState struct {
	service time.Time
	pods    map[string]time.Time
}

// NewTriggerTimeTracker returns an empty tracker.
func NewTriggerTimeTracker() *TriggerTimeTracker {
	return &TriggerTimeTracker{states: map[string]triggerState{}}
}

// Compute records the current trigger times of svc and its pods and returns
// the time to export; zero means "drop the annotation".
func (t *TriggerTimeTracker) Compute(svc *corev1.Service, pods []*corev1.Pod) time.Time {
	key := svc.Namespace + "/" + svc.Name
	t.mu.Lock()
	state, known := t.states[key]
	t.mu.Unlock()

	var minChanged time.Time
	earlier := func(ts time.Time) {
		if minChanged.IsZero() || ts.Before(minChanged) {
			minChanged = ts
		}
	}
	podTimes := make(map[string]time.Time, len(pods))
	for _, pod := range pods {
		c := controller.PodCondition(&pod.Status, corev1.PodReady)
		if c == nil || c.LastTransitionTime.IsZero() {
			continue
		}
		ts := c.LastTransitionTime.Time
		podTimes[pod.Name] = ts
		if ts.After(state.pods[pod.Name]) {
			earlier(ts)
		}
	}
	svcTime := svc.CreationTimestamp.Time
	if svcTime.After(state.service) {
		earlier(svcTime)
	}
	t.mu.Lock()
	t.states[key] = triggerState{service: svcTime, pods: podTimes}
	t.mu.Unlock()
	if !known {
		return svcTime
	}
	return minChanged
}

// DeleteService forgets a deleted Service.
func (t *TriggerTimeTracker) DeleteService(namespace, name string) {
	t.mu.Lock()
	delete(t.states, namespace+"/"+name)
	t.mu.Unlock()
}

// StaleBackoff spaces the retries of a sync that found the informer cache
// behind the controller's own last write: quick at first (the watch event
// is usually milliseconds away, and nothing else will queue the key when it
// lands), doubling up to a second if the cache stays behind.
type StaleBackoff struct {
	mu    sync.Mutex
	tries map[string]int
}

// Next returns how long to wait before looking at key again.
func (b *StaleBackoff) Next(key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tries == nil {
		b.tries = map[string]int{}
	}
	n := b.tries[key]
	b.tries[key] = n + 1
	return min(10*time.Millisecond<<min(n, 10), time.Second)
}

// Reset forgets key's retries (its cache caught up, or it is gone).
func (b *StaleBackoff) Reset(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.tries, key)
}
