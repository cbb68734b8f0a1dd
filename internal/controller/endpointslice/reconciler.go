package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/skiff-dev/skiff/internal/controller/endpoints/endpointutil"
)

// reconciler turns a Service's pods and its existing slices into the
// creates, updates and deletes that make the slices right, changing as few
// slices as it can (upstream's k8s.io/endpointslice Reconciler, without
// topology hints).
type reconciler struct {
	client       kubernetes.Interface
	nodes        corelisters.NodeLister
	maxEndpoints int
	tracker      *sliceTracker
}

// reconcile brings the slices of svc in line with pods. existing are the
// slices labelled as svc's and managed by this controller.
func (r *reconciler) reconcile(ctx context.Context, svc *corev1.Service, pods []*corev1.Pod, existing []*discoveryv1.EndpointSlice, triggerTime time.Time) error {
	supported := addressTypesForService(svc)
	var toDelete []*discoveryv1.EndpointSlice
	byType := map[discoveryv1.AddressType][]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		if !supported.Has(s.AddressType) {
			toDelete = append(toDelete, s)
			continue
		}
		byType[s.AddressType] = append(byType[s.AddressType], s)
	}
	var errs []error
	for _, at := range sets.List(supported) {
		if err := r.reconcileByAddressType(ctx, svc, pods, byType[at], triggerTime, at); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range toDelete {
		if err := r.deleteSlice(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("error deleting %s EndpointSlice for Service %s/%s: %w", s.Name, svc.Namespace, svc.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *reconciler) deleteSlice(ctx context.Context, s *discoveryv1.EndpointSlice) error {
	err := r.client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	r.tracker.expectDeletion(s)
	return nil
}

func (r *reconciler) reconcileByAddressType(ctx context.Context, svc *corev1.Service, pods []*corev1.Pod, existing []*discoveryv1.EndpointSlice, triggerTime time.Time, at discoveryv1.AddressType) error {
	var toCreate, toUpdate, toDelete []*discoveryv1.EndpointSlice
	var errs []error

	existingByPorts := map[portsKey][]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		if ownedBy(s, svc) {
			k := portsKeyOf(s.Ports)
			existingByPorts[k] = append(existingByPorts[k], s)
		} else {
			// Left from an older Service of the same name.
			toDelete = append(toDelete, s)
		}
	}

	desiredPorts := map[portsKey][]discoveryv1.EndpointPort{}
	desired := map[portsKey]endpointSet{}
	for _, pod := range pods {
		if !endpointutil.ShouldPodBeInEndpoints(pod, true) {
			continue
		}
		ports := endpointPorts(svc, pod)
		k := portsKeyOf(ports)
		if desired[k] == nil {
			desired[k] = endpointSet{}
			desiredPorts[k] = ports
		}
		node, err := r.nodes.Get(pod.Spec.NodeName)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				return err
			}
			// A pod on a node that does not exist: leave it out and
			// retry later, unless the Service publishes everything.
			if !svc.Spec.PublishNotReadyAddresses {
				errs = append(errs, fmt.Errorf("skipping Pod %s for Service %s/%s: Node %s Not Found", pod.Name, svc.Namespace, svc.Name, pod.Spec.NodeName))
				continue
			}
			node = nil
		}
		ep := podToEndpoint(pod, node, svc, at)
		if len(ep.Addresses) > 0 {
			desired[k][endpointKeyOf(&ep)] = &ep
		}
	}

	keys := make([]portsKey, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c, u, d := r.reconcileByPorts(svc, existingByPorts[k], desired[k], desiredPorts[k], at)
		toCreate = append(toCreate, c...)
		toUpdate = append(toUpdate, u...)
		toDelete = append(toDelete, d...)
	}
	// Slices of port sets no longer wanted go.
	for k, ss := range existingByPorts {
		if _, ok := desired[k]; !ok {
			toDelete = append(toDelete, ss...)
		}
	}

	// A Service without endpoints keeps one empty placeholder slice.
	if len(existing) == len(toDelete) && len(toCreate) == 0 {
		ph := newSlice(svc, []discoveryv1.EndpointPort{}, at)
		if len(toDelete) == 1 && isPlaceholder(toDelete[0], ph) {
			toDelete = nil // it is already there
		} else {
			toCreate = append(toCreate, ph)
		}
	}

	if err := r.finalize(ctx, svc, toCreate, toUpdate, toDelete, triggerTime); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reconcileByPorts compares the existing slices of one port set with the
// desired endpoints:
//  1. drop undesired endpoints from existing slices and refresh changed
//     ones (and the slices' labels);
//  2. top up the slices changed in 1 with the remaining endpoints;
//  3. fit what is left into one unchanged slice with room, else new slices.
func (r *reconciler) reconcileByPorts(svc *corev1.Service, existing []*discoveryv1.EndpointSlice, want endpointSet, ports []discoveryv1.EndpointPort, at discoveryv1.AddressType) (toCreate, toUpdate, toDelete []*discoveryv1.EndpointSlice) {
	byName := map[string]*discoveryv1.EndpointSlice{}
	unchanged, update, remove := sets.New[string](), sets.New[string](), sets.New[string]()

	// 1.
	for _, s := range existing {
		byName[s.Name] = s
		kept := []discoveryv1.Endpoint{}
		changed := false
		for i := range s.Endpoints {
			k := endpointKeyOf(&s.Endpoints[i])
			got, ok := want[k]
			if !ok {
				continue
			}
			kept = append(kept, *got)
			if !endpointsEqualBeyondKey(got, &s.Endpoints[i]) {
				changed = true
			}
			delete(want, k) // placed
		}
		labels, labelsChanged := sliceLabels(s, svc)
		switch {
		case changed || len(kept) != len(s.Endpoints):
			if len(kept) == 0 {
				remove.Insert(s.Name)
				continue
			}
			c := s.DeepCopy()
			c.Endpoints, c.Labels = kept, labels
			byName[s.Name] = c
			update.Insert(s.Name)
		case labelsChanged:
			c := s.DeepCopy()
			c.Labels = labels
			byName[s.Name] = c
			update.Insert(s.Name)
		default:
			unchanged.Insert(s.Name)
		}
	}

	// 2. Fullest first.
	if len(want) > 0 && update.Len() > 0 {
		names := sets.List(update)
		slices.SortStableFunc(names, func(a, b string) int { return len(byName[b].Endpoints) - len(byName[a].Endpoints) })
		for _, n := range names {
			s := byName[n]
			if room := r.maxEndpoints - len(s.Endpoints); room > 0 && len(want) > 0 {
				s.Endpoints = append(s.Endpoints, want.popSorted(room)...)
			}
		}
	}

	// 3.
	for len(want) > 0 {
		var fill *discoveryv1.EndpointSlice
		if len(want) < r.maxEndpoints && unchanged.Len() > 0 {
			fill = sliceToFill(byName, sets.List(unchanged), len(want), r.maxEndpoints)
		}
		if fill == nil {
			fill = newSlice(svc, ports, at)
		} else {
			fill = fill.DeepCopy()
			byName[fill.Name] = fill
		}
		fill.Endpoints = append(fill.Endpoints, want.popSorted(r.maxEndpoints-len(fill.Endpoints))...)
		if fill.Name != "" {
			update.Insert(fill.Name)
			unchanged.Delete(fill.Name)
		} else {
			toCreate = append(toCreate, fill)
		}
	}

	for _, n := range sets.List(update) {
		toUpdate = append(toUpdate, byName[n])
	}
	for _, n := range sets.List(remove) {
		toDelete = append(toDelete, byName[n])
	}
	return toCreate, toUpdate, toDelete
}

// sliceToFill returns the unchanged slice that would be closest to full
// with n more endpoints, or nil if none has room.
func sliceToFill(byName map[string]*discoveryv1.EndpointSlice, names []string, n, max int) *discoveryv1.EndpointSlice {
	closest := max
	var best *discoveryv1.EndpointSlice
	for _, name := range names {
		s := byName[name]
		diff := max - (n + len(s.Endpoints))
		if diff >= 0 && diff < closest {
			closest, best = diff, s
			if diff == 0 {
				break
			}
		}
	}
	return best
}

// finalize writes the changes. Creates paired with deletes of the same
// address type become updates of the slice that would have gone.
func (r *reconciler) finalize(ctx context.Context, svc *corev1.Service, toCreate, toUpdate, toDelete []*discoveryv1.EndpointSlice, triggerTime time.Time) error {
	for i := 0; i < len(toDelete) && len(toCreate) > 0; {
		old, s := toDelete[i], toCreate[len(toCreate)-1]
		if old.AddressType == s.AddressType && ownedBy(old, svc) {
			s.Name, s.ResourceVersion = old.Name, old.ResourceVersion
			toCreate = toCreate[:len(toCreate)-1]
			toUpdate = append(toUpdate, s)
			toDelete = append(toDelete[:i], toDelete[i+1:]...)
		} else {
			i++
		}
	}

	api := r.client.DiscoveryV1().EndpointSlices(svc.Namespace)
	// No creates for a Service being deleted: the garbage collector would
	// race to delete them.
	if svc.DeletionTimestamp == nil {
		for _, s := range toCreate {
			setTriggerTime(s, triggerTime)
			created, err := api.Create(ctx, s, metav1.CreateOptions{})
			if err != nil {
				if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
					return nil
				}
				return fmt.Errorf("failed to create EndpointSlice for Service %s/%s: %w", svc.Namespace, svc.Name, err)
			}
			r.tracker.update(created)
		}
	}
	for _, s := range toUpdate {
		setTriggerTime(s, triggerTime)
		updated, err := api.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("failed to update %s EndpointSlice for Service %s/%s: %w", s.Name, svc.Namespace, svc.Name, err)
		}
		r.tracker.update(updated)
	}
	for _, s := range toDelete {
		if err := r.deleteSlice(ctx, s); err != nil {
			return fmt.Errorf("failed to delete %s EndpointSlice for Service %s/%s: %w", s.Name, svc.Namespace, svc.Name, err)
		}
	}
	return nil
}
