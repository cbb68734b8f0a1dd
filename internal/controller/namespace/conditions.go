package namespace

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// The namespace status conditions the deleter maintains, with the reasons
// and messages kube-controller-manager uses when nothing is wrong.
var (
	conditionTypes = []corev1.NamespaceConditionType{
		corev1.NamespaceDeletionDiscoveryFailure,
		corev1.NamespaceDeletionGVParsingFailure,
		corev1.NamespaceDeletionContentFailure,
		corev1.NamespaceContentRemaining,
		corev1.NamespaceFinalizersRemaining,
	}
	okMessages = map[corev1.NamespaceConditionType]string{
		corev1.NamespaceDeletionDiscoveryFailure: "All resources successfully discovered",
		corev1.NamespaceDeletionGVParsingFailure: "All legacy kube types successfully parsed",
		corev1.NamespaceDeletionContentFailure:   "All content successfully deleted, may be waiting on finalization",
		corev1.NamespaceContentRemaining:         "All content successfully removed",
		corev1.NamespaceFinalizersRemaining:      "All content successfully removed",
	}
	okReasons = map[corev1.NamespaceConditionType]string{
		corev1.NamespaceDeletionDiscoveryFailure: "ResourcesDiscovered",
		corev1.NamespaceDeletionGVParsingFailure: "ParsedGroupVersions",
		corev1.NamespaceDeletionContentFailure:   "ContentDeleted",
		corev1.NamespaceContentRemaining:         "ContentRemoved",
		corev1.NamespaceFinalizersRemaining:      "ContentRemoved",
	}
)

// remaining totals what is left in a namespace after one deletion pass.
type remaining struct {
	byResource  map[schema.GroupVersionResource]int
	byFinalizer map[string]int
}

// conditionUpdater collects one pass's failures and turns them into
// namespace conditions.
type conditionUpdater struct {
	newConditions  []corev1.NamespaceCondition
	contentErrors  []error
	failureReasons []corev1.NamespaceCondition // set conditions worth an event
}

func (u *conditionUpdater) add(c corev1.NamespaceCondition) {
	u.newConditions = append(u.newConditions, c)
}

func (u *conditionUpdater) discoveryErr(err error) {
	msg := err.Error()
	var gerr *discovery.ErrGroupDiscoveryFailed
	if errors.As(err, &gerr) {
		msg = fmt.Sprintf("Discovery failed for some groups, %d failing: %v", len(gerr.Groups), err)
	}
	u.add(corev1.NamespaceCondition{Type: corev1.NamespaceDeletionDiscoveryFailure, Status: corev1.ConditionTrue,
		LastTransitionTime: metav1.Now(), Reason: "DiscoveryFailed", Message: msg})
}

func (u *conditionUpdater) groupVersionErr(err error) {
	u.add(corev1.NamespaceCondition{Type: corev1.NamespaceDeletionGVParsingFailure, Status: corev1.ConditionTrue,
		LastTransitionTime: metav1.Now(), Reason: "GroupVersionParsingFailed", Message: err.Error()})
}

func (u *conditionUpdater) deleteContentErr(err error) {
	u.contentErrors = append(u.contentErrors, err)
}

func (u *conditionUpdater) contentTotals(r remaining) {
	if len(r.byResource) > 0 {
		var parts []string
		for gvr, n := range r.byResource {
			if n > 0 {
				// "pods. has 2 resource instances": upstream prints
				// resource.group even for the empty core group.
				parts = append(parts, fmt.Sprintf("%s.%s has %d resource instances", gvr.Resource, gvr.Group, n))
			}
		}
		sort.Strings(parts)
		u.add(corev1.NamespaceCondition{Type: corev1.NamespaceContentRemaining, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.Now(), Reason: "SomeResourcesRemain",
			Message: fmt.Sprintf("Some resources are remaining: %s", strings.Join(parts, ", "))})
	}
	if len(r.byFinalizer) > 0 {
		var parts []string
		for f, n := range r.byFinalizer {
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%s in %d resource instances", f, n))
			}
		}
		sort.Strings(parts)
		u.add(corev1.NamespaceCondition{Type: corev1.NamespaceFinalizersRemaining, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.Now(), Reason: "SomeFinalizerRemain",
			Message: fmt.Sprintf("Some finalizers are remaining: %s", strings.Join(parts, ", "))})
	}
}

// update writes the collected conditions into status (the "ok" variant for
// every type without a failure) and reports whether anything changed.
func (u *conditionUpdater) update(status *corev1.NamespaceStatus) bool {
	if getCondition(u.newConditions, corev1.NamespaceDeletionContentFailure) == nil && len(u.contentErrors) > 0 {
		msgs := make([]string, 0, len(u.contentErrors))
		for _, e := range u.contentErrors {
			msgs = append(msgs, e.Error())
		}
		sort.Strings(msgs)
		u.add(corev1.NamespaceCondition{Type: corev1.NamespaceDeletionContentFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.Now(), Reason: "ContentDeletionFailed",
			Message: fmt.Sprintf("Failed to delete all resource types, %d remaining: %v", len(u.contentErrors), strings.Join(msgs, ", "))})
	}
	changed := false
	for _, t := range conditionTypes {
		want := getCondition(u.newConditions, t)
		if want == nil {
			want = &corev1.NamespaceCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: metav1.Now(),
				Reason: okReasons[t], Message: okMessages[t]}
		}
		have := getCondition(status.Conditions, t)
		switch {
		case have == nil:
			status.Conditions = append(status.Conditions, *want)
			changed = true
		case have.Status != want.Status || have.Reason != want.Reason || have.Message != want.Message:
			if have.Status != want.Status {
				have.LastTransitionTime = metav1.Now()
			}
			have.Status, have.Reason, have.Message = want.Status, want.Reason, want.Message
			changed = true
		default:
			continue
		}
		if want.Status == corev1.ConditionTrue && isFailure(t) {
			u.failureReasons = append(u.failureReasons, *want)
		}
	}
	return changed
}

// isFailure: the condition types that report an error (the two
// "remaining" ones are the normal course of a deletion).
func isFailure(t corev1.NamespaceConditionType) bool {
	return t == corev1.NamespaceDeletionDiscoveryFailure || t == corev1.NamespaceDeletionGVParsingFailure ||
		t == corev1.NamespaceDeletionContentFailure
}

func getCondition(conds []corev1.NamespaceCondition, t corev1.NamespaceConditionType) *corev1.NamespaceCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}
