// Package endpoints is the Endpoints controller (Kubernetes'
// pkg/controller/endpoint): for every Service with a selector it keeps a
// core/v1 Endpoints object of the same name listing the matching pods' IPs
// and resolved ports, ready ones under addresses and the rest under
// notReadyAddresses. Services without a selector are left to their users.
package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	utilnet "k8s.io/utils/net"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/endpoints/endpointutil"
)

const (
	// name is the controller's name in logs and cache-sync messages.
	name = "endpoints-controller"
	// component is the event source, as upstream.
	component = "endpoint-controller"
	// leaderAnnotation marks leader-election Endpoints, which have no
	// Service and must survive the leftover sweep.
	leaderAnnotation = "control-plane.alpha.kubernetes.io/leader"
)

// Options tune the controller.
type Options struct {
	// EndpointUpdatesBatchPeriod delays syncs caused by pod changes so that
	// several changes go out in one write (kube-controller-manager's
	// --endpoint-updates-batch-period). Default 0: no delay.
	EndpointUpdatesBatchPeriod time.Duration
}

// Controller keeps Endpoints in step with Services and pods.
type Controller struct {
	cc       controller.Context
	opts     Options
	log      *slog.Logger
	recorder record.EventRecorder
	queue    workqueue.TypedRateLimitingInterface[string]
	// podEvents queues the Services a pod event touches.
	podEvents endpointutil.PodEvents

	services  corelisters.ServiceLister
	pods      endpointutil.PodSelector
	endpoints corelisters.EndpointsLister
	synced    []cache.InformerSynced

	triggerTimes *endpointutil.TriggerTimeTracker
	stale        *staleTracker
	staleRetry   endpointutil.StaleBackoff
}

// New registers the controller's handlers on cc's shared pod, service and
// endpoints informers. It starts nothing.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, fmt.Errorf("endpoints: Client and Informers are required")
	}
	if opts.EndpointUpdatesBatchPeriod < 0 {
		return nil, fmt.Errorf("endpoints: EndpointUpdatesBatchPeriod must not be negative")
	}
	c := &Controller{
		cc:           cc,
		opts:         opts,
		log:          cc.Logger(name),
		recorder:     cc.EventRecorder(component),
		queue:        controller.NewQueue("endpoint"),
		triggerTimes: endpointutil.NewTriggerTimeTracker(),
		stale:        &staleTracker{rv: map[types.NamespacedName]string{}},
	}
	svcInf := cc.Informers.Core().V1().Services()
	podInf := cc.Informers.Core().V1().Pods()
	epInf := cc.Informers.Core().V1().Endpoints()
	if err := endpointutil.EnsurePodLabelIndex(podInf.Informer()); err != nil {
		return nil, fmt.Errorf("endpoints: pod index: %w", err)
	}
	c.services = svcInf.Lister()
	c.pods = endpointutil.PodSelector{Indexer: podInf.Informer().GetIndexer(), Lister: podInf.Lister()}
	c.endpoints = epInf.Lister()
	c.synced = []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced, epInf.Informer().HasSynced}

	enqueue := func(obj any) {
		if key, ok := controller.KeyOf(obj); ok {
			c.queue.Add(key)
		}
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, cur any) { enqueue(cur) },
		DeleteFunc: enqueue,
	}); err != nil {
		return nil, err
	}
	c.podEvents = endpointutil.PodEvents{Services: c.services, Queue: c.queue, BatchPeriod: opts.EndpointUpdatesBatchPeriod, Log: c.log}
	if _, err := podInf.Informer().AddEventHandler(c.podEvents); err != nil {
		return nil, err
	}
	// Someone deleting an Endpoints we manage gets it rewritten.
	if _, err := epInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: enqueue}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run syncs until ctx ends. After the caches fill it queues every existing
// Endpoints once, so ones whose Service vanished while the controller was
// down are deleted.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.log.Info("starting controller")
	defer c.log.Info("shutting down controller")
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
			return
		}
		c.checkLeftoverEndpoints()
	}()
	return controller.RunWorkers(ctx, name, c.queue, workers, c.sync, c.log, c.synced...)
}

func (c *Controller) checkLeftoverEndpoints() {
	list, err := c.endpoints.List(labels.Everything())
	if err != nil {
		c.log.Error("listing endpoints; orphaned endpoints will not be cleaned up", "err", err)
		return
	}
	for _, ep := range list {
		if _, ok := ep.Annotations[leaderAnnotation]; ok {
			continue
		}
		if key, ok := controller.KeyOf(ep); ok {
			c.queue.Add(key)
		}
	}
}

// sync writes the Endpoints of one Service.
func (c *Controller) sync(ctx context.Context, key string) error {
	namespace, svcName, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(namespace).Get(svcName)
	if apierrors.IsNotFound(err) {
		// The Service is gone: so are its Endpoints. (Also reached for
		// leftover Endpoints without a Service.)
		err := c.cc.Client.CoreV1().Endpoints(namespace).Delete(ctx, svcName, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		c.triggerTimes.DeleteService(namespace, svcName)
		c.stale.forget(namespace, svcName)
		c.staleRetry.Reset(key)
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.Selector == nil {
		// No endpoints from this controller: ExternalName has none, and
		// selector-less Services get theirs from their users.
		return nil
	}

	pods, err := c.pods.Pods(svc.Namespace, svc.Spec.Selector)
	if err != nil {
		return err
	}
	// Computed before the no-op check so the tracker sees every sync.
	triggerTime := c.triggerTimes.Compute(svc, pods)
	subsets, ready, notReady := desiredSubsets(svc, pods)

	current, err := c.endpoints.Endpoints(svc.Namespace).Get(svc.Name)
	switch {
	case apierrors.IsNotFound(err):
		current = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: svc.Labels}}
	case err != nil:
		return err
	case c.stale.isStale(current):
		c.log.Debug("endpoints informer cache is out of date", "service", key, "resourceVersion", current.ResourceVersion)
		return controller.RequeueAfter(c.staleRetry.Next(key))
	}
	c.staleRetry.Reset(key)
	create := current.ResourceVersion == ""

	compareLabels := current.Labels
	if _, ok := current.Labels[corev1.IsHeadlessService]; ok {
		compareLabels = withoutLabel(current.Labels, corev1.IsHeadlessService)
	}
	if !create &&
		endpointutil.SemanticIgnoreResourceVersion.DeepEqual(current.Subsets, subsets) &&
		apiequality.Semantic.DeepEqual(compareLabels, svc.Labels) &&
		capacityAnnotationSetCorrectly(current.Annotations, current.Subsets) {
		return nil
	}

	ep := current.DeepCopy()
	ep.Subsets = subsets
	ep.Labels = map[string]string{}
	for k, v := range svc.Labels {
		ep.Labels[k] = v
	}
	if !endpointutil.IsServiceIPSet(svc) {
		ep.Labels[corev1.IsHeadlessService] = ""
	} else {
		delete(ep.Labels, corev1.IsHeadlessService)
	}
	if ep.Annotations == nil {
		ep.Annotations = map[string]string{}
	}
	if !triggerTime.IsZero() {
		ep.Annotations[corev1.EndpointsLastChangeTriggerTime] = triggerTime.UTC().Format(time.RFC3339Nano)
	} else {
		delete(ep.Annotations, corev1.EndpointsLastChangeTriggerTime)
	}
	if truncateEndpoints(ep) {
		ep.Annotations[corev1.EndpointsOverCapacity] = "truncated"
	} else {
		delete(ep.Annotations, corev1.EndpointsOverCapacity)
	}

	c.log.Debug("updating endpoints", "service", key, "ready", ready, "notReady", notReady)
	api := c.cc.Client.CoreV1().Endpoints(svc.Namespace)
	if create {
		_, err = api.Create(ctx, ep, metav1.CreateOptions{})
	} else {
		var updated *corev1.Endpoints
		updated, err = api.Update(ctx, ep, metav1.UpdateOptions{})
		if err == nil && updated.ResourceVersion != current.ResourceVersion {
			// Until the informer shows a newer version, the cached one
			// is stale: syncing from it would undo this write.
			c.stale.markStale(current)
		}
	}
	if err != nil {
		if create && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil // creates keep failing in a terminating namespace
		}
		if create && apierrors.IsAlreadyExists(err) {
			// The informer has not seen our (or someone's) create yet.
			return controller.RequeueAfter(c.staleRetry.Next(key))
		}
		if apierrors.IsConflict(err) {
			return err
		}
		if create {
			c.recorder.Eventf(ep, corev1.EventTypeWarning, "FailedToCreateEndpoint", "Failed to create endpoint for service %v/%v: %v", svc.Namespace, svc.Name, err)
		} else {
			c.recorder.Eventf(ep, corev1.EventTypeWarning, "FailedToUpdateEndpoint", "Failed to update endpoint %v/%v: %v", svc.Namespace, svc.Name, err)
		}
		return err
	}
	return nil
}

// desiredSubsets computes the packed subsets of svc's Endpoints from its
// pods, and how many ready and not-ready (pod, port) pairs went in.
func desiredSubsets(svc *corev1.Service, pods []*corev1.Pod) ([]corev1.EndpointSubset, int, int) {
	subsets := []corev1.EndpointSubset{}
	var ready, notReady int
	publish := svc.Spec.PublishNotReadyAddresses
	for _, pod := range pods {
		if !endpointutil.ShouldPodBeInEndpoints(pod, publish) {
			continue
		}
		addr, ok := podAddress(svc, pod)
		if !ok {
			continue // no IP of the Service's family
		}
		isReady := publish || controller.IsPodReady(pod)
		add := func(ports []corev1.EndpointPort) {
			ss := corev1.EndpointSubset{Ports: ports}
			if isReady {
				ss.Addresses = []corev1.EndpointAddress{addr}
				ready++
			} else {
				ss.NotReadyAddresses = []corev1.EndpointAddress{addr}
				notReady++
			}
			subsets = append(subsets, ss)
		}
		if len(svc.Spec.Ports) == 0 {
			// Only headless Services may have no ports.
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				add(nil)
			}
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, err := endpointutil.FindPort(pod, sp)
			if err != nil {
				continue // e.g. a named targetPort this pod lacks
			}
			add([]corev1.EndpointPort{{Name: sp.Name, Port: port, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol}})
		}
	}
	return repackSubsets(subsets), ready, notReady
}

// podAddress is the pod's address for svc: its IP of the Service's
// (primary) family, with node, hostname and a reference to the pod.
func podAddress(svc *corev1.Service, pod *corev1.Pod) (corev1.EndpointAddress, bool) {
	ips := endpointutil.PodIPs(pod)
	family := corev1.IPv4Protocol
	switch {
	case len(svc.Spec.IPFamilies) > 0:
		family = svc.Spec.IPFamilies[0]
	case endpointutil.IsServiceIPSet(svc):
		if utilnet.IsIPv6String(svc.Spec.ClusterIP) {
			family = corev1.IPv6Protocol
		}
	case len(ips) > 0 && utilnet.IsIPv6String(ips[0]):
		family = corev1.IPv6Protocol
	}
	ip := ""
	for _, candidate := range ips {
		if (family == corev1.IPv6Protocol) == utilnet.IsIPv6String(candidate) {
			ip = candidate
			break
		}
	}
	if ip == "" {
		return corev1.EndpointAddress{}, false
	}
	addr := corev1.EndpointAddress{
		IP:        ip,
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.NodeName != "" {
		node := pod.Spec.NodeName
		addr.NodeName = &node
	}
	if endpointutil.ShouldSetHostname(pod, svc) {
		addr.Hostname = pod.Spec.Hostname
	}
	return addr, true
}

func withoutLabel(in map[string]string, key string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if k != key {
			out[k] = v
		}
	}
	return out
}

// staleTracker remembers, per Service, the resourceVersion of the Endpoints
// this controller replaced, so a sync reading that version from a lagging
// cache waits instead of writing from old state (upstream's
// staleEndpointsTracker).
type staleTracker struct {
	mu sync.Mutex
	rv map[types.NamespacedName]string
}

func (t *staleTracker) markStale(ep *corev1.Endpoints) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rv[types.NamespacedName{Namespace: ep.Namespace, Name: ep.Name}] = ep.ResourceVersion
}

func (t *staleTracker) isStale(ep *corev1.Endpoints) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	rv, ok := t.rv[types.NamespacedName{Namespace: ep.Namespace, Name: ep.Name}]
	return ok && rv == ep.ResourceVersion
}

func (t *staleTracker) forget(namespace, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.rv, types.NamespacedName{Namespace: namespace, Name: name})
}
