package nodestatus

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// setNodeStatus runs the kubelet's status setters over status, in their
// order, and returns the events their transitions call for.
func (a *agent) setNodeStatus(status *corev1.NodeStatus, now time.Time) []string {
	ts := metav1.NewTime(now)
	status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: a.cfg.NodeIP.String()},
		{Type: corev1.NodeHostName, Address: a.cfg.Hostname},
	}
	if capacity, err := a.capacity(); err != nil {
		// As the kubelet without machine info: keep what was reported;
		// Ready says which capacities are missing, if any.
		a.log.Warn("reading node capacity", "err", err)
	} else {
		capacity[corev1.ResourcePods] = *resourcePods(a.cfg.MaxPods)
		setCapacity(status, capacity, a.cfg.Thresholds.Reservation(capacity))
	}
	status.NodeInfo = a.info
	status.DaemonEndpoints.KubeletEndpoint.Port = a.cfg.KubeletPort
	if a.cfg.Images != nil {
		status.Images = limitImages(a.cfg.Images())
	}

	pressure := a.lastPressure
	if s, err := a.signals(); err != nil {
		a.log.Warn("reading eviction signals: keeping the pressure conditions", "err", err)
	} else {
		pressure = a.hold.apply(now, a.cfg.Thresholds.Pressure(s))
		a.lastPressure = pressure
	}
	var events []string
	add := func(e string) {
		if e != "" {
			events = append(events, e)
		}
	}
	add(setPressureCondition(status, memoryText, pressure.Memory, ts))
	add(setPressureCondition(status, diskText, pressure.Disk, ts))
	add(setPressureCondition(status, pidText, pressure.PID, ts))
	var errs []error
	for _, f := range []func() error{a.cfg.RuntimeReady, a.cfg.NetworkReady} {
		if f != nil {
			errs = append(errs, f())
		}
	}
	add(setReadyCondition(status, errs, ts))
	return events
}

// setCapacity is the capacity/allocatable half of the kubelet's
// MachineInfo setter: capacity keys are set (others, such as extended
// resources posted by device plugins, are kept; hugepage sizes the host no
// longer has go); allocatable is capacity minus reservation, and memory
// also minus the hugepages, never negative.
func setCapacity(status *corev1.NodeStatus, capacity, reservation corev1.ResourceList) {
	if status.Capacity == nil {
		status.Capacity = corev1.ResourceList{}
	}
	for k := range status.Capacity {
		if _, ok := capacity[k]; !ok && strings.HasPrefix(string(k), corev1.ResourceHugePagesPrefix) {
			delete(status.Capacity, k)
		}
	}
	for k, v := range capacity {
		status.Capacity[k] = v
	}
	if status.Allocatable == nil {
		status.Allocatable = corev1.ResourceList{}
	}
	for k := range status.Allocatable {
		if _, ok := status.Capacity[k]; !ok {
			delete(status.Allocatable, k)
		}
	}
	for k, v := range status.Capacity {
		value := v.DeepCopy()
		if r, ok := reservation[k]; ok {
			value.Sub(r)
		}
		if value.Sign() < 0 {
			value.Set(0)
		}
		status.Allocatable[k] = value
	}
	for k, v := range status.Capacity {
		if !strings.HasPrefix(string(k), corev1.ResourceHugePagesPrefix) {
			continue
		}
		mem := status.Allocatable[corev1.ResourceMemory]
		mem.Sub(v)
		if mem.Sign() < 0 {
			mem.Set(0)
		}
		status.Allocatable[corev1.ResourceMemory] = mem
	}
}

// limitImages orders images largest first (the kubelet's ByImageSize) and
// keeps the first 50, with at most 5 names each.
func limitImages(images []corev1.ContainerImage) []corev1.ContainerImage {
	images = append([]corev1.ContainerImage(nil), images...)
	// Ties by first name, so that a source listing in random order does
	// not make the status look changed.
	first := func(img corev1.ContainerImage) string {
		if len(img.Names) == 0 {
			return ""
		}
		return img.Names[0]
	}
	sort.SliceStable(images, func(i, j int) bool {
		if images[i].SizeBytes != images[j].SizeBytes {
			return images[i].SizeBytes > images[j].SizeBytes
		}
		return first(images[i]) < first(images[j])
	})
	if len(images) > maxImages {
		images = images[:maxImages]
	}
	out := make([]corev1.ContainerImage, len(images))
	for i, img := range images {
		out[i] = img
		if len(img.Names) > maxNamesPerImage {
			out[i].Names = img.Names[:maxNamesPerImage]
		}
	}
	return out
}

// statusChanged is the kubelet's nodeStatusHasChanged: any difference,
// conditions compared by type without their heartbeat times.
func statusChanged(old, cur *corev1.NodeStatus) bool {
	if conditionsChanged(old.Conditions, cur.Conditions) {
		return true
	}
	o, c := old.DeepCopy(), cur.DeepCopy()
	o.Conditions, c.Conditions = nil, nil
	return !apiequality.Semantic.DeepEqual(o, c)
}

func conditionsChanged(old, cur []corev1.NodeCondition) bool {
	if len(old) != len(cur) {
		return true
	}
	norm := func(in []corev1.NodeCondition) []corev1.NodeCondition {
		out := append([]corev1.NodeCondition(nil), in...)
		sort.SliceStable(out, func(i, j int) bool { return out[i].Type < out[j].Type })
		for i := range out {
			out[i].LastHeartbeatTime = metav1.Time{}
		}
		return out
	}
	return !apiequality.Semantic.DeepEqual(norm(old), norm(cur))
}

// statusPatch is the strategic merge patch from old to the status of cur
// (nodeutil.PatchNodeStatus): the spec is left out, and addresses, wrongly
// tagged patchStrategy=merge on type in the API, are replaced whole.
func statusPatch(old, cur *corev1.Node) ([]byte, error) {
	oldData, err := json.Marshal(old)
	if err != nil {
		return nil, err
	}
	replaceAddresses := len(old.Status.Addresses) > 0 && !apiequality.Semantic.DeepEqual(old.Status.Addresses, cur.Status.Addresses)
	diff := cur.DeepCopy()
	diff.Spec = old.Spec
	if replaceAddresses {
		diff.Status.Addresses = old.Status.Addresses
	}
	newData, err := json.Marshal(diff)
	if err != nil {
		return nil, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldData, newData, corev1.Node{})
	if err != nil {
		return nil, fmt.Errorf("node status patch: %w", err)
	}
	if !replaceAddresses {
		return patch, nil
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, err
	}
	status, _ := m["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
		m["status"] = status
	}
	addrs := make([]any, 0, len(cur.Status.Addresses)+1)
	for _, a := range cur.Status.Addresses {
		addrs = append(addrs, map[string]any{"type": string(a.Type), "address": a.Address})
	}
	status["addresses"] = append(addrs, map[string]any{"$patch": "replace"})
	return json.Marshal(m)
}

// labelPatch is a merge patch setting the labels of want that are missing
// from have or have another value there; nil when there are none. Other
// labels stay.
func labelPatch(have, want map[string]string) []byte {
	set := map[string]string{}
	for k, v := range want {
		if cur, ok := have[k]; !ok || cur != v {
			set[k] = v
		}
	}
	if len(set) == 0 {
		return nil
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": set}})
	return b
}

func resourcePods(n int64) *resource.Quantity { return resource.NewQuantity(n, resource.DecimalSI) }

// Allocatable is what the node reports as status.allocatable for capacity:
// capacity minus t's reservations (and memory minus hugepages), never below
// zero. The pod worker uses it for resourceFieldRef defaults.
func (t Thresholds) Allocatable(capacity corev1.ResourceList) corev1.ResourceList {
	var status corev1.NodeStatus
	setCapacity(&status, capacity, t.Reservation(capacity))
	return status.Allocatable
}
