package registry

// apps/v1 ReplicaSets, after pkg/registry/apps/replicaset/strategy.go,
// pkg/apis/apps/v1/defaults.go and pkg/apis/apps/validation.

import (
	"context"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	extensionsv1beta1 "k8s.io/api/extensions/v1beta1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

func replicaSets() *Resource {
	return &Resource{Group: "apps", Version: "v1", Resource: "replicasets", Singular: "replicaset",
		Kind: "ReplicaSet", ListKind: "ReplicaSetList", Namespaced: true,
		ShortNames: []string{"rs"}, Categories: []string{"all"}, Subresources: []string{"status", "scale"},
		New:      func() runtime.Object { return &appsv1.ReplicaSet{} },
		NewList:  func() runtime.Object { return &appsv1.ReplicaSetList{} },
		Strategy: replicaSetStrategy{BaseStrategy{Namespaced: true, HasStatus: true, Generation: true}},
	}
}

// replicaSetStrategy: BaseStrategy already does what Kubernetes does on
// create/update (status reset/kept, generation bumped on spec change only)
// and on status writes (spec kept; unlike deployments, labels may change).
type replicaSetStrategy struct{ BaseStrategy }

var (
	_ Strategy      = replicaSetStrategy{}
	_ ScaleAccessor = replicaSetStrategy{}
)

// Default is SetDefaults_ReplicaSet plus the template's pod spec defaults.
func (replicaSetStrategy) Default(obj runtime.Object) {
	rs := obj.(*appsv1.ReplicaSet)
	if rs.Spec.Replicas == nil {
		rs.Spec.Replicas = ptr.To[int32](1)
	}
	defaultPodSpec(&rs.Spec.Template.Spec)
}

func (s replicaSetStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	rs := obj.(*appsv1.ReplicaSet)
	errs := s.ValidateMeta(obj)
	return append(errs, validateReplicaSetSpec(&rs.Spec, field.NewPath("spec"))...)
}

// ValidateUpdate mirrors Kubernetes exactly: it validates the new object
// as on create, then as an update (so spec problems are listed twice in
// the causes; the message dedupes them), then the immutable selector.
func (s replicaSetStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	nrs, ors := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
	errs := s.Validate(ctx, obj)
	errs = append(errs, s.ValidateMetaUpdate(obj, old)...)
	errs = append(errs, validateReplicaSetSpec(&nrs.Spec, field.NewPath("spec"))...)
	return append(errs, apivalidation.ValidateImmutableField(nrs.Spec.Selector, ors.Spec.Selector,
		field.NewPath("spec", "selector"))...)
}

// ValidateStatusUpdate is ValidateReplicaSetStatusUpdate.
func (s replicaSetStrategy) ValidateStatusUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	errs := s.ValidateMetaUpdate(obj, old)
	return append(errs, validateReplicaSetStatus(&obj.(*appsv1.ReplicaSet).Status, field.NewPath("status"))...)
}

// SelectableFields: replica sets add status.replicas.
func (replicaSetStrategy) SelectableFields(obj runtime.Object) fields.Set {
	return fields.Set{"status.replicas": strconv.Itoa(int(obj.(*appsv1.ReplicaSet).Status.Replicas))}
}

func (replicaSetStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Desired", Type: "integer", Description: extensionsv1beta1.ReplicaSetSpec{}.SwaggerDoc()["replicas"]},
		{Name: "Current", Type: "integer", Description: extensionsv1beta1.ReplicaSetStatus{}.SwaggerDoc()["replicas"]},
		{Name: "Ready", Type: "integer", Description: extensionsv1beta1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"]},
		AgeColumn(),
		{Name: "Containers", Type: "string", Priority: 1, Description: "Names of each container in the template."},
		{Name: "Images", Type: "string", Priority: 1, Description: "Images referenced by each container in the template."},
		{Name: "Selector", Type: "string", Priority: 1, Description: extensionsv1beta1.ReplicaSetSpec{}.SwaggerDoc()["selector"]},
	}
}

func (replicaSetStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	rs := obj.(*appsv1.ReplicaSet)
	names, images := appsContainerCells(rs.Spec.Template.Spec.Containers)
	return []interface{}{
		rs.Name,
		int64(appsDeref32(rs.Spec.Replicas)),
		int64(rs.Status.Replicas),
		int64(rs.Status.ReadyReplicas),
		Age(rs.CreationTimestamp, now),
		names, images, metav1.FormatLabelSelector(rs.Spec.Selector),
	}
}

// Scale is what the replicasets/scale subresource reports.
func (replicaSetStrategy) Scale(obj runtime.Object) (specReplicas, statusReplicas int32, selector string) {
	rs := obj.(*appsv1.ReplicaSet)
	return appsDeref32(rs.Spec.Replicas), rs.Status.Replicas, appsScaleSelector(rs.Spec.Selector)
}

func (replicaSetStrategy) SetReplicas(obj runtime.Object, replicas int32) {
	obj.(*appsv1.ReplicaSet).Spec.Replicas = ptr.To(replicas)
}

// validateReplicaSetSpec is ValidateReplicaSetSpec.
func validateReplicaSetSpec(spec *appsv1.ReplicaSetSpec, fldPath *field.Path) field.ErrorList {
	errs := appsValidateNonNegative(appsDeref32(spec.Replicas), fldPath.Child("replicas"))
	errs = append(errs, appsValidateNonNegative(spec.MinReadySeconds, fldPath.Child("minReadySeconds"))...)
	errs = append(errs, appsValidateSelector(spec.Selector, fldPath.Child("selector"))...)
	return append(errs, appsValidateTemplateAgainstSelector(spec.Selector, &spec.Template, fldPath)...)
}

// validateReplicaSetStatus is ValidateReplicaSetStatus.
func validateReplicaSetStatus(st *appsv1.ReplicaSetStatus, fldPath *field.Path) field.ErrorList {
	errs := appsValidateNonNegative(st.Replicas, fldPath.Child("replicas"))
	errs = append(errs, appsValidateNonNegative(st.FullyLabeledReplicas, fldPath.Child("fullyLabeledReplicas"))...)
	errs = append(errs, appsValidateNonNegative(st.ReadyReplicas, fldPath.Child("readyReplicas"))...)
	errs = append(errs, appsValidateNonNegative(st.AvailableReplicas, fldPath.Child("availableReplicas"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(st.ObservedGeneration, fldPath.Child("observedGeneration"))...)
	if st.TerminatingReplicas != nil {
		errs = append(errs, appsValidateNonNegative(*st.TerminatingReplicas, fldPath.Child("terminatingReplicas"))...)
	}
	const msg = "cannot be greater than status.replicas"
	if st.FullyLabeledReplicas > st.Replicas {
		errs = append(errs, field.Invalid(fldPath.Child("fullyLabeledReplicas"), st.FullyLabeledReplicas, msg))
	}
	if st.ReadyReplicas > st.Replicas {
		errs = append(errs, field.Invalid(fldPath.Child("readyReplicas"), st.ReadyReplicas, msg))
	}
	if st.AvailableReplicas > st.Replicas {
		errs = append(errs, field.Invalid(fldPath.Child("availableReplicas"), st.AvailableReplicas, msg))
	}
	if st.AvailableReplicas > st.ReadyReplicas {
		errs = append(errs, field.Invalid(fldPath.Child("availableReplicas"), st.AvailableReplicas,
			"cannot be greater than readyReplicas"))
	}
	return errs
}
