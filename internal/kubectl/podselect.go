package kubectl

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
)

// defaultContainerAnnotation names the container kubectl picks when -c is
// not given (KEP 2227).
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// podArg is the object a POD | TYPE/NAME argument names, as kubectl's
// builder.ResourceNames("pods", arg) resolves it.
type podArg struct {
	mapping *meta.RESTMapping
	obj     *unstructured.Unstructured
}

// resolvePodArg fetches the object: a bare name is a pod, TYPE/NAME any
// type. With typeArg set (attach's TYPE NAME form) name is its NAME.
func (e *env) resolvePodArg(typeArg, name string) (*podArg, error) {
	ns, err := e.ns()
	if err != nil {
		return nil, err
	}
	resource := "pods"
	switch {
	case typeArg != "":
		resource = typeArg
	case strings.Contains(name, "/"):
		parts := strings.SplitN(name, "/", 2)
		if parts[0] == "" || parts[1] == "" {
			return nil, errors.New("arguments in resource/name form must have a single resource and name")
		}
		resource, name = parts[0], parts[1]
	}
	m, err := e.mappingFor(resource)
	if err != nil {
		return nil, err
	}
	u, err := e.getObject(m, scopedNS(m, ns), name)
	if err != nil {
		return nil, err
	}
	return &podArg{mapping: m, obj: u}, nil
}

// typed converts the object to its client-go type, or leaves it
// unstructured for types the scheme does not know.
func (a *podArg) typed() (runtime.Object, error) {
	gvk := a.obj.GroupVersionKind()
	if gvk.Empty() {
		gvk = a.mapping.GroupVersionKind
	}
	obj, err := scheme.Scheme.New(gvk)
	if err != nil {
		return a.obj, nil
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(a.obj.Object, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// selectorFor is kubectl's polymorphichelpers.SelectorsForObject.
func selectorFor(obj runtime.Object) (string, labels.Selector, error) {
	ls := func(ns string, s *metav1.LabelSelector) (string, labels.Selector, error) {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			return "", nil, fmt.Errorf("invalid label selector: %v", err)
		}
		return ns, sel, nil
	}
	switch t := obj.(type) {
	case *appsv1.ReplicaSet:
		return ls(t.Namespace, t.Spec.Selector)
	case *appsv1.StatefulSet:
		return ls(t.Namespace, t.Spec.Selector)
	case *appsv1.DaemonSet:
		return ls(t.Namespace, t.Spec.Selector)
	case *appsv1.Deployment:
		return ls(t.Namespace, t.Spec.Selector)
	case *batchv1.Job:
		return ls(t.Namespace, t.Spec.Selector)
	case *corev1.ReplicationController:
		return t.Namespace, labels.SelectorFromSet(t.Spec.Selector), nil
	case *corev1.Service:
		if len(t.Spec.Selector) == 0 {
			return "", nil, fmt.Errorf("invalid service '%s': Service is defined without a selector", t.Name)
		}
		return t.Namespace, labels.SelectorFromSet(t.Spec.Selector), nil
	}
	return "", nil, fmt.Errorf("selector for %T not implemented", obj)
}

// podList lists the pods matching selector, sorted by less; when there
// are none it waits up to timeout for one to appear, as kubectl's
// GetPodList does.
func (e *env) podList(ns string, sel labels.Selector, timeout time.Duration, less func(a, b *corev1.Pod) bool) ([]corev1.Pod, error) {
	cs, err := e.clientset()
	if err != nil {
		return nil, err
	}
	opts := metav1.ListOptions{LabelSelector: sel.String()}
	list, err := cs.CoreV1().Pods(ns).List(e.ctx, opts)
	if err != nil {
		return nil, err
	}
	if len(list.Items) > 0 {
		pods := list.Items
		sort.SliceStable(pods, func(i, j int) bool { return less(&pods[i], &pods[j]) })
		return pods, nil
	}
	opts.ResourceVersion = list.ResourceVersion
	ctx, cancel := e.ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(e.ctx, timeout)
	}
	defer cancel()
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				if ctx.Err() != nil {
					return nil, errors.New("timed out waiting for the condition")
				}
				return nil, errors.New("watch closed before UntilWithoutRetry timeout")
			}
			if ev.Type == watch.Error {
				return nil, apierrors.FromObject(ev.Object)
			}
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					return nil, fmt.Errorf("%#v is not a pod event", ev)
				}
				return []corev1.Pod{*p}, nil
			}
		case <-ctx.Done():
			return nil, errors.New("timed out waiting for the condition")
		}
	}
}

// attachablePod is kubectl's AttachablePodForObject: the pod itself, or
// the most active pod the object selects.
func (e *env) attachablePod(a *podArg, timeout time.Duration) (*corev1.Pod, error) {
	obj, err := a.typed()
	if err != nil {
		return nil, err
	}
	if p, ok := obj.(*corev1.Pod); ok {
		return p, nil
	}
	ns, sel, err := selectorFor(obj)
	if err != nil {
		return nil, fmt.Errorf("cannot attach to %T: %v", obj, err)
	}
	pods, err := e.podList(ns, sel, timeout, func(a, b *corev1.Pod) bool { return activePodLess(b, a) })
	if err != nil {
		return nil, err
	}
	return &pods[0], nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podReadyTime(p *corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

func maxRestarts(p *corev1.Pod) int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n = max(n, c.RestartCount)
	}
	return n
}

// afterOrZero reports whether t1 is after t2, a zero time counting as
// after any other.
func afterOrZero(t1, t2 time.Time) bool {
	if t1.IsZero() || t2.IsZero() {
		return t1.IsZero()
	}
	return t1.After(t2)
}

// activePodLess is kubectl's podutils.ActivePods order (least active
// first): unassigned, pending, unknown, running; not ready before ready;
// ready more recently; more restarts; newer.
func activePodLess(a, b *corev1.Pod) bool {
	if a.Spec.NodeName != b.Spec.NodeName && (a.Spec.NodeName == "" || b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	rank := map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}
	if rank[a.Status.Phase] != rank[b.Status.Phase] {
		return rank[a.Status.Phase] < rank[b.Status.Phase]
	}
	if podReady(a) != podReady(b) {
		return !podReady(a)
	}
	if podReady(a) && podReady(b) && !podReadyTime(a).Equal(podReadyTime(b)) {
		return afterOrZero(podReadyTime(a), podReadyTime(b))
	}
	if maxRestarts(a) != maxRestarts(b) {
		return maxRestarts(a) > maxRestarts(b)
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return afterOrZero(a.CreationTimestamp.Time, b.CreationTimestamp.Time)
	}
	return false
}

// loggingPodLess is kubectl's podutils.ByLogging order (best first):
// assigned, running, ready, ready longer, more restarts, older.
func loggingPodLess(a, b *corev1.Pod) bool {
	if a.Spec.NodeName != b.Spec.NodeName && (a.Spec.NodeName == "" || b.Spec.NodeName == "") {
		return a.Spec.NodeName != ""
	}
	rank := map[corev1.PodPhase]int{corev1.PodRunning: 0, corev1.PodUnknown: 1, corev1.PodPending: 2}
	if rank[a.Status.Phase] != rank[b.Status.Phase] {
		return rank[a.Status.Phase] < rank[b.Status.Phase]
	}
	if podReady(a) != podReady(b) {
		return podReady(a)
	}
	if podReady(a) && podReady(b) && !podReadyTime(a).Equal(podReadyTime(b)) {
		return afterOrZero(podReadyTime(b), podReadyTime(a))
	}
	if maxRestarts(a) != maxRestarts(b) {
		return maxRestarts(a) > maxRestarts(b)
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return afterOrZero(b.CreationTimestamp.Time, a.CreationTimestamp.Time)
	}
	return false
}

// findContainer returns the named container and its field path.
func findContainer(p *corev1.Pod, name string) (*corev1.Container, string) {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return &p.Spec.Containers[i], "spec.containers{" + name + "}"
		}
	}
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == name {
			return &p.Spec.InitContainers[i], "spec.initContainers{" + name + "}"
		}
	}
	for i := range p.Spec.EphemeralContainers {
		if p.Spec.EphemeralContainers[i].Name == name {
			return (*corev1.Container)(&p.Spec.EphemeralContainers[i].EphemeralContainerCommon), "spec.ephemeralContainers{" + name + "}"
		}
	}
	return nil, ""
}

// allContainerNames lists containers as kubectl's "Defaulted container"
// message does: regular, then ephemeral, then init.
func allContainerNames(p *corev1.Pod) string {
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range p.Spec.EphemeralContainers {
		names = append(names, c.Name+" (ephem)")
	}
	for _, c := range p.Spec.InitContainers {
		names = append(names, c.Name+" (init)")
	}
	return strings.Join(names, ", ")
}

func hasManyContainers(p *corev1.Pod) bool {
	return len(p.Spec.Containers) > 1 || len(p.Spec.InitContainers) > 0 || len(p.Spec.EphemeralContainers) > 0
}

// findOrDefaultContainer is kubectl's podcmd.FindOrDefaultContainerByName
// (exec, attach): the named container, the annotated default, or the
// first, saying so on stderr unless quiet when there was a choice.
func (e *env) findOrDefaultContainer(p *corev1.Pod, name string, quiet bool) (*corev1.Container, error) {
	if name != "" {
		c, _ := findContainer(p, name)
		if c == nil {
			return nil, fmt.Errorf("container %s not found in pod %s", name, p.Name)
		}
		return c, nil
	}
	if len(p.Spec.Containers) == 0 {
		return nil, fmt.Errorf("pod %s/%s does not have any containers", p.Namespace, p.Name)
	}
	if def := p.Annotations[defaultContainerAnnotation]; def != "" {
		if c, _ := findContainer(p, def); c != nil {
			return c, nil
		}
	}
	if !quiet && hasManyContainers(p) {
		fmt.Fprintf(e.errOut, "Defaulted container %q out of: %s\n", p.Spec.Containers[0].Name, allContainerNames(p))
	}
	return &p.Spec.Containers[0], nil
}
