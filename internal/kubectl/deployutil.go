package kubectl

import (
	"context"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Deployment helpers after kubectl's pkg/util/deployment, which describe,
// rollout history and rollout undo share.

const (
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	maxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	changeCauseAnnotation     = "kubernetes.io/change-cause"
	restartedAtAnnotation     = "kubectl.kubernetes.io/restartedAt"
	timedOutReason            = "ProgressDeadlineExceeded"
)

// deploymentReplicaSets lists the ReplicaSets the deployment controls (in
// list order) and splits them into the new one (the oldest whose template
// matches the deployment's, ignoring the hash label) and all the others.
func deploymentReplicaSets(ctx context.Context, cs kubernetes.Interface, d *appsv1.Deployment, chunk int64) (old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, err error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, nil, err
	}
	var owned []*appsv1.ReplicaSet
	opts := metav1.ListOptions{LabelSelector: sel.String(), Limit: chunk}
	for {
		list, err := cs.AppsV1().ReplicaSets(d.Namespace).List(ctx, opts)
		if err != nil {
			return nil, nil, err
		}
		for i := range list.Items {
			rs := &list.Items[i]
			if ref := metav1.GetControllerOf(rs); ref != nil && ref.UID == d.UID {
				owned = append(owned, rs)
			}
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	byAge := append([]*appsv1.ReplicaSet(nil), owned...)
	sort.Sort(rsByCreation(byAge))
	for _, rs := range byAge {
		if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			newRS = rs
			break
		}
	}
	for _, rs := range owned {
		if newRS != nil && rs.UID == newRS.UID {
			continue
		}
		old = append(old, rs)
	}
	return old, newRS, nil
}

// rsByCreation is controller.ReplicaSetsByCreationTimestamp.
type rsByCreation []*appsv1.ReplicaSet

func (o rsByCreation) Len() int      { return len(o) }
func (o rsByCreation) Swap(i, j int) { o[i], o[j] = o[j], o[i] }
func (o rsByCreation) Less(i, j int) bool {
	if o[i].CreationTimestamp.Equal(&o[j].CreationTimestamp) {
		return o[i].Name < o[j].Name
	}
	return o[i].CreationTimestamp.Before(&o[j].CreationTimestamp)
}

func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return apiequality.Semantic.DeepEqual(a, b)
}

// revision parses an object's revision annotation (0 when absent).
func revision(obj metav1.Object) (int64, error) {
	v, ok := obj.GetAnnotations()[revisionAnnotation]
	if !ok {
		return 0, nil
	}
	return strconv.ParseInt(v, 10, 64)
}

func deploymentCondition(st appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}
