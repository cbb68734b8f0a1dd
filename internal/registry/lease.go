package registry

import (
	"context"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func leases() *Resource {
	return &Resource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases", Singular: "lease", Kind: "Lease", ListKind: "LeaseList", Namespaced: true,
		New:      func() runtime.Object { return &coordinationv1.Lease{} },
		NewList:  func() runtime.Object { return &coordinationv1.LeaseList{} },
		Strategy: leaseStrategy{BaseStrategy{Namespaced: true}}}
}

type leaseStrategy struct{ BaseStrategy }

var _ Strategy = leaseStrategy{}

// PrepareForCreate drops the fields of the CoordinatedLeaderElection feature,
// which is off by default in Kubernetes 1.32-1.33.
func (leaseStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	l := obj.(*coordinationv1.Lease)
	l.Spec.Strategy = nil
	l.Spec.PreferredHolder = nil
}

func (leaseStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	l, o := obj.(*coordinationv1.Lease), old.(*coordinationv1.Lease)
	if o.Spec.Strategy == nil {
		l.Spec.Strategy = nil
	}
	if o.Spec.PreferredHolder == nil {
		l.Spec.PreferredHolder = nil
	}
}

func (leaseStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return leaseValidate(obj.(*coordinationv1.Lease))
}

func (leaseStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	l, o := obj.(*coordinationv1.Lease), old.(*coordinationv1.Lease)
	allErrs := apivalidation.ValidateObjectMetaUpdate(&l.ObjectMeta, &o.ObjectMeta, field.NewPath("metadata"))
	return append(allErrs, leaseValidate(l)...)
}

// leaseValidate is ValidateLease of pkg/apis/coordination/validation.
func leaseValidate(l *coordinationv1.Lease) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMeta(&l.ObjectMeta, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	specPath := field.NewPath("spec")
	if d := l.Spec.LeaseDurationSeconds; d != nil && *d <= 0 {
		allErrs = append(allErrs, field.Invalid(specPath.Child("leaseDurationSeconds"), *d, "must be greater than 0"))
	}
	if t := l.Spec.LeaseTransitions; t != nil && *t < 0 {
		allErrs = append(allErrs, field.Invalid(specPath.Child("leaseTransitions"), *t, "must be greater than or equal to 0"))
	}
	if s := l.Spec.Strategy; s != nil {
		if !strings.Contains(string(*s), "/") && *s != coordinationv1.OldestEmulationVersion {
			allErrs = append(allErrs, field.NotSupported(specPath.Child("strategy"), *s, []coordinationv1.CoordinatedLeaseStrategy{coordinationv1.OldestEmulationVersion}))
		}
	}
	if p := l.Spec.PreferredHolder; p != nil && *p != "" && (l.Spec.Strategy == nil || *l.Spec.Strategy == "") {
		allErrs = append(allErrs, field.Forbidden(specPath.Child("preferredHolder"), "may only be specified if `strategy` is defined"))
	}
	return allErrs
}

func (leaseStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Holder", Type: "string", Description: coordinationv1.LeaseSpec{}.SwaggerDoc()["holderIdentity"]},
		AgeColumn(),
	}
}

func (leaseStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	l := obj.(*coordinationv1.Lease)
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	return []interface{}{l.Name, holder, Age(l.CreationTimestamp, now)}
}
