package nodelifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

var (
	// unreachableTaint and notReadyTaint are the NoExecute taints for
	// Ready=Unknown and Ready=False.
	unreachableTaint = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
	notReadyTaint    = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}

	// conditionTaints maps node conditions to the NoSchedule taint each
	// status gets (TaintNodesByCondition).
	conditionTaints = map[corev1.NodeConditionType]map[corev1.ConditionStatus]string{
		corev1.NodeReady: {
			corev1.ConditionFalse:   corev1.TaintNodeNotReady,
			corev1.ConditionUnknown: corev1.TaintNodeUnreachable,
		},
		corev1.NodeMemoryPressure:     {corev1.ConditionTrue: corev1.TaintNodeMemoryPressure},
		corev1.NodeDiskPressure:       {corev1.ConditionTrue: corev1.TaintNodeDiskPressure},
		corev1.NodeNetworkUnavailable: {corev1.ConditionTrue: corev1.TaintNodeNetworkUnavailable},
		corev1.NodePIDPressure:        {corev1.ConditionTrue: corev1.TaintNodePIDPressure},
	}

	// conditionTaintKeys are the NoSchedule taint keys this controller owns.
	conditionTaintKeys = map[string]bool{
		corev1.TaintNodeNotReady:           true,
		corev1.TaintNodeUnreachable:        true,
		corev1.TaintNodeNetworkUnavailable: true,
		corev1.TaintNodeMemoryPressure:     true,
		corev1.TaintNodeDiskPressure:       true,
		corev1.TaintNodePIDPressure:        true,
		corev1.TaintNodeUnschedulable:      true,
	}
)

// updateTaintBackoff is upstream's UpdateTaintBackoff.
var updateTaintBackoff = wait.Backoff{Steps: 5, Duration: 100 * time.Millisecond, Jitter: 1.0}

func taintExists(taints []corev1.Taint, t *corev1.Taint) bool {
	for i := range taints {
		if taints[i].MatchTaint(t) {
			return true
		}
	}
	return false
}

// applyTaints returns taints with remove (by key and effect) taken out and
// add put in, and whether that changed anything. A taint to add that is
// already there is kept as it is, so its timeAdded does not move.
func applyTaints(taints, add, remove []corev1.Taint, now metav1.Time) ([]corev1.Taint, bool) {
	var out []corev1.Taint
	changed := false
	for _, t := range taints {
		if taintExists(remove, &t) && !taintExists(add, &t) {
			changed = true
			continue
		}
		out = append(out, t)
	}
	for _, t := range add {
		if taintExists(out, &t) {
			continue
		}
		t.TimeAdded = &now
		out = append(out, t)
		changed = true
	}
	return out, changed
}

// swapTaints adds and removes node taints in one patch carrying the
// node's resourceVersion (upstream SwapNodeControllerTaint makes two). The
// first attempt works from node (the cache); conflicts re-read the node.
func (c *Controller) swapTaints(ctx context.Context, node *corev1.Node, add, remove []corev1.Taint) error {
	if _, changed := applyTaints(node.Spec.Taints, add, remove, metav1.Time{}); !changed {
		return nil
	}
	cur := node
	first := true
	err := retry.RetryOnConflict(updateTaintBackoff, func() error {
		if !first {
			fresh, err := c.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur = fresh
		}
		first = false
		taints, changed := applyTaints(cur.Spec.Taints, add, remove, c.now())
		if !changed {
			return nil
		}
		var list any = taints
		if len(taints) == 0 {
			list = nil // a merge patch's null removes the field
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": cur.ResourceVersion},
			"spec":     map[string]any{"taints": list},
		})
		if err != nil {
			return err
		}
		_, err = c.client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("swap taints of node %s (add %v, remove %v): %w", node.Name, taintKeys(add), taintKeys(remove), err)
	}
	c.log.Debug("swapped node taints", "node", node.Name, "added", taintKeys(add), "removed", taintKeys(remove))
	return nil
}

func taintKeys(taints []corev1.Taint) []string {
	out := make([]string, len(taints))
	for i, t := range taints {
		out[i] = t.Key + ":" + string(t.Effect)
	}
	return out
}

// syncNoScheduleTaints keeps the node's condition NoSchedule taints (and
// the unschedulable one) in step with its conditions
// (doNoScheduleTaintingPass).
func (c *Controller) syncNoScheduleTaints(ctx context.Context, node *corev1.Node) error {
	var want []corev1.Taint
	for _, cond := range node.Status.Conditions {
		if key, ok := conditionTaints[cond.Type][cond.Status]; ok {
			want = append(want, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule})
		}
	}
	if node.Spec.Unschedulable {
		want = append(want, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	}
	var add, remove []corev1.Taint
	for _, t := range want {
		if !taintExists(node.Spec.Taints, &t) {
			add = append(add, t)
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule && conditionTaintKeys[t.Key] && !taintExists(want, &t) {
			remove = append(remove, t)
		}
	}
	if len(add) == 0 && len(remove) == 0 {
		return nil
	}
	return c.swapTaints(ctx, node, add, remove)
}

// labelReconcile lists the beta labels kept equal to their GA labels.
var labelReconcile = []struct{ primary, secondary string }{
	{corev1.LabelOSStable, "beta.kubernetes.io/os"},
	{corev1.LabelArchStable, "beta.kubernetes.io/arch"},
}

// reconcileLabels sets beta.kubernetes.io/os and /arch from their GA
// labels (reconcileNodeLabels).
func (c *Controller) reconcileLabels(ctx context.Context, node *corev1.Node) error {
	update := map[string]string{}
	for _, r := range labelReconcile {
		v, ok := node.Labels[r.primary]
		if !ok {
			continue
		}
		if cur, ok := node.Labels[r.secondary]; !ok || cur != v {
			update[r.secondary] = v
		}
	}
	if len(update) == 0 {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": update}})
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Nodes().Patch(ctx, node.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("update labels %v of node %s: %w", update, node.Name, err)
	}
	return nil
}
