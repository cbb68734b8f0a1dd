package registry

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Namespaces, after pkg/registry/core/namespace/strategy.go.
//
// The "finalize" subresource (PUT .../namespaces/NAME/finalize) writes only
// spec.finalizers, through FinalizeStrategy.
//
// Deleting a namespace is not a plain delete (the apiserver's business):
// Kubernetes sets deletionTimestamp and status.phase Terminating and removes
// the object only once spec.finalizers and metadata.finalizers are empty.

func namespaces() *Resource {
	return &Resource{Version: "v1", Resource: "namespaces", Singular: "namespace", Kind: "Namespace", ListKind: "NamespaceList",
		ShortNames: []string{"ns"}, Subresources: []string{"status", "finalize"}, NoDeleteCollection: true,
		New: func() runtime.Object { return &corev1.Namespace{} }, NewList: func() runtime.Object { return &corev1.NamespaceList{} },
		Strategy: namespaceStrategy{BaseStrategy{HasStatus: true, NameFn: apivalidation.ValidateNamespaceName}}}
}

type namespaceStrategy struct{ BaseStrategy }

var _ Strategy = namespaceStrategy{}

// Default is SetDefaults_Namespace and SetDefaults_NamespaceStatus.
func (namespaceStrategy) Default(obj runtime.Object) {
	ns := obj.(*corev1.Namespace)
	coreNamespaceLabel(ns)
	if ns.Status.Phase == "" {
		ns.Status.Phase = corev1.NamespaceActive
	}
}

// coreNamespaceLabel sets kubernetes.io/metadata.name to the name (the
// defaulting and Canonicalize of Kubernetes; the name must be known, so the
// apiserver should generate names before PrepareForCreate).
func coreNamespaceLabel(ns *corev1.Namespace) {
	if ns.Name == "" {
		return
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[corev1.LabelMetadataName] = ns.Name
}

// PrepareForCreate: phase Active, finalizer "kubernetes" always present.
func (namespaceStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	ns := obj.(*corev1.Namespace)
	ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
	has := false
	for _, f := range ns.Spec.Finalizers {
		if f == corev1.FinalizerKubernetes {
			has = true
			break
		}
	}
	if !has {
		ns.Spec.Finalizers = append(ns.Spec.Finalizers, corev1.FinalizerKubernetes)
	}
	coreNamespaceLabel(ns)
}

// PrepareForUpdate keeps spec.finalizers and status (finalizers change only
// through /finalize).
func (namespaceStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	ns, oldNS := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	ns.Spec.Finalizers = oldNS.Spec.Finalizers
	ns.Status = oldNS.Status
	coreNamespaceLabel(ns)
}

// Validate is ValidateNamespace.
func (namespaceStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return coreValidateNamespace(obj.(*corev1.Namespace))
}

func coreValidateNamespace(ns *corev1.Namespace) field.ErrorList {
	allErrs := coreValidateObjectMeta(&ns.ObjectMeta, false, apivalidation.ValidateNamespaceName)
	for i := range ns.Spec.Finalizers {
		// Kubernetes reports these at spec.finalizers, without the index.
		allErrs = append(allErrs, coreValidateFinalizerName(string(ns.Spec.Finalizers[i]), field.NewPath("spec", "finalizers"))...)
	}
	return allErrs
}

func coreValidateFinalizerName(name string, fldPath *field.Path) field.ErrorList {
	allErrs := apivalidation.ValidateFinalizerName(name, fldPath)
	return append(allErrs, coreValidateKubeFinalizerName(name, fldPath)...)
}

// ValidateUpdate is ValidateNamespace + ValidateNamespaceUpdate.
func (namespaceStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	ns, oldNS := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	allErrs := coreValidateNamespace(ns)
	return append(allErrs, coreValidateObjectMetaUpdate(&ns.ObjectMeta, &oldNS.ObjectMeta)...)
}

// PrepareForStatusUpdate keeps the spec.
func (s namespaceStrategy) PrepareForStatusUpdate(ctx context.Context, obj, old runtime.Object) {
	s.BaseStrategy.PrepareForStatusUpdate(ctx, obj, old)
	coreNamespaceLabel(obj.(*corev1.Namespace))
}

// ValidateStatusUpdate is ValidateNamespaceStatusUpdate: Active without a
// deletionTimestamp, Terminating with one.
func (namespaceStrategy) ValidateStatusUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	ns, oldNS := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	allErrs := coreValidateObjectMetaUpdate(&ns.ObjectMeta, &oldNS.ObjectMeta)
	p := field.NewPath("status", "Phase")
	if ns.DeletionTimestamp.IsZero() {
		if ns.Status.Phase != corev1.NamespaceActive {
			allErrs = append(allErrs, field.Invalid(p, ns.Status.Phase, "may only be 'Active' if `deletionTimestamp` is empty"))
		}
	} else if ns.Status.Phase != corev1.NamespaceTerminating {
		allErrs = append(allErrs, field.Invalid(p, ns.Status.Phase, "may only be 'Terminating' if `deletionTimestamp` is not empty"))
	}
	return allErrs
}

// FinalizeStrategy is implemented by the namespace strategy. Writes to the
// "finalize" subresource change spec.finalizers (and metadata) only; the
// apiserver must use these hooks for them instead of PrepareForUpdate and
// ValidateUpdate, which keep the old spec.finalizers as Kubernetes does for
// plain updates.
type FinalizeStrategy interface {
	PrepareForFinalize(ctx context.Context, obj, old runtime.Object)
	ValidateFinalize(ctx context.Context, obj, old runtime.Object) field.ErrorList
}

var _ FinalizeStrategy = namespaceStrategy{}

// PrepareForFinalize keeps the status; spec.finalizers come from obj.
func (namespaceStrategy) PrepareForFinalize(_ context.Context, obj, old runtime.Object) {
	ns, oldNS := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	ns.Status = oldNS.Status
	coreNamespaceLabel(ns)
}

// ValidateFinalize is ValidateNamespaceFinalizeUpdate.
func (namespaceStrategy) ValidateFinalize(_ context.Context, obj, old runtime.Object) field.ErrorList {
	ns, oldNS := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	allErrs := coreValidateObjectMetaUpdate(&ns.ObjectMeta, &oldNS.ObjectMeta)
	p := field.NewPath("spec", "finalizers")
	for i := range ns.Spec.Finalizers {
		allErrs = append(allErrs, coreValidateFinalizerName(string(ns.Spec.Finalizers[i]), p.Index(i))...)
	}
	return allErrs
}

// SelectableFields: status.phase, and "name" (a Kubernetes bug kept for
// compatibility).
func (namespaceStrategy) SelectableFields(obj runtime.Object) fields.Set {
	ns := obj.(*corev1.Namespace)
	return fields.Set{"status.phase": string(ns.Status.Phase), "name": ns.Name}
}

// TableColumns: NAME STATUS AGE.
func (namespaceStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Status", Type: "string", Description: "The status of the namespace"},
		AgeColumn(),
	}
}

func (namespaceStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	ns := obj.(*corev1.Namespace)
	return []interface{}{ns.Name, string(ns.Status.Phase), Age(ns.CreationTimestamp, now)}
}
