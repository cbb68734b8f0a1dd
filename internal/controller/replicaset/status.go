package replicaset

import (
	"context"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	typedappsv1 "k8s.io/client-go/kubernetes/typed/apps/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Condition reasons, as upstream (they double as event reasons).
const (
	reasonFailedCreate     = "FailedCreate"
	reasonFailedDelete     = "FailedDelete"
	reasonSuccessfulCreate = "SuccessfulCreate"
	reasonSuccessfulDelete = "SuccessfulDelete"
)

// calculateStatus is the status the ReplicaSet should have given its
// active (claimed, not terminating, not finished) pods and its terminating
// ones (nil when the terminatingReplicas field is off).
func calculateStatus(rs *appsv1.ReplicaSet, active, terminating []*corev1.Pod, manageErr error, withTerminating bool, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	// Pods whose labels include all of the template's (a superset of the
	// selector) are "fully labeled".
	template := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	var fully, ready, available int32
	for _, p := range active {
		if template.Matches(labels.Set(p.Labels)) {
			fully++
		}
		if controller.IsPodReady(p) {
			ready++
			if controller.IsPodAvailable(p, rs.Spec.MinReadySeconds, metav1.NewTime(now)) {
				available++
			}
		}
	}

	failure := getCondition(rs.Status, appsv1.ReplicaSetReplicaFailure)
	switch {
	case manageErr != nil && failure == nil:
		var reason string
		if diff := len(active) - int(desired(rs)); diff < 0 {
			reason = reasonFailedCreate
		} else if diff > 0 {
			reason = reasonFailedDelete
		}
		setCondition(&st, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now), Reason: reason, Message: manageErr.Error(),
		})
	case manageErr == nil && failure != nil:
		removeCondition(&st, appsv1.ReplicaSetReplicaFailure)
	}

	st.Replicas = int32(len(active))
	st.FullyLabeledReplicas = fully
	st.ReadyReplicas = ready
	st.AvailableReplicas = available
	if withTerminating {
		st.TerminatingReplicas = ptr.To(int32(len(terminating)))
	} else {
		st.TerminatingReplicas = nil
	}
	return st
}

// statusUpdateRetries: one more try after a failed update, with a fresh
// read, as upstream.
const statusUpdateRetries = 1

// updateStatus writes st (with observedGeneration) through the status
// subresource unless nothing changed, and returns the written ReplicaSet.
func updateStatus(ctx context.Context, c typedappsv1.ReplicaSetInterface, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	if rs.Status.Replicas == st.Replicas &&
		rs.Status.FullyLabeledReplicas == st.FullyLabeledReplicas &&
		rs.Status.ReadyReplicas == st.ReadyReplicas &&
		rs.Status.AvailableReplicas == st.AvailableReplicas &&
		ptr.Equal(rs.Status.TerminatingReplicas, st.TerminatingReplicas) &&
		rs.Generation == rs.Status.ObservedGeneration &&
		reflect.DeepEqual(rs.Status.Conditions, st.Conditions) {
		return rs, nil
	}
	st.ObservedGeneration = rs.Generation
	cur := rs.DeepCopy()
	for i := 0; ; i++ {
		cur.Status = st
		updated, err := c.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			return updated, nil
		}
		if i >= statusUpdateRetries || ctx.Err() != nil {
			return nil, err
		}
		fresh, getErr := c.Get(ctx, rs.Name, metav1.GetOptions{})
		if getErr != nil {
			// The status we computed is stale anyway; this is the
			// more interesting error.
			return nil, getErr
		}
		cur = fresh
	}
}

// nextAvailabilityCheck returns how long until the first active pod that
// is ready but not yet available (minReadySeconds) becomes available, or
// nil when there is none.
func nextAvailabilityCheck(active []*corev1.Pod, minReadySeconds int32, now time.Time) *time.Duration {
	if minReadySeconds <= 0 {
		return nil
	}
	min := time.Duration(minReadySeconds) * time.Second
	var next *time.Time
	for _, p := range active {
		c := controller.PodCondition(&p.Status, corev1.PodReady)
		if c == nil || c.Status != corev1.ConditionTrue || c.LastTransitionTime.IsZero() {
			continue
		}
		at := c.LastTransitionTime.Add(min)
		if !at.Before(now) && (next == nil || at.Before(*next)) {
			next = &at
		}
	}
	if next == nil {
		return nil
	}
	// IsPodAvailable wants now strictly after readiness+minReadySeconds.
	d := next.Sub(now) + 10*time.Millisecond
	return &d
}

func desired(rs *appsv1.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1 // the API default
	}
	return *rs.Spec.Replicas
}

func getCondition(st appsv1.ReplicaSetStatus, t appsv1.ReplicaSetConditionType) *appsv1.ReplicaSetCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setCondition adds or replaces the condition of its type, keeping an
// existing one with the same status and reason as it is.
func setCondition(st *appsv1.ReplicaSetStatus, cond appsv1.ReplicaSetCondition) {
	if cur := getCondition(*st, cond.Type); cur != nil && cur.Status == cond.Status && cur.Reason == cond.Reason {
		return
	}
	removeCondition(st, cond.Type)
	st.Conditions = append(st.Conditions, cond)
}

func removeCondition(st *appsv1.ReplicaSetStatus, t appsv1.ReplicaSetConditionType) {
	var out []appsv1.ReplicaSetCondition
	for _, c := range st.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	st.Conditions = out
}
