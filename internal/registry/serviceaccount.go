package registry

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ServiceAccounts, after pkg/registry/core/serviceaccount/strategy.go.

func serviceAccounts() *Resource {
	return &Resource{Version: "v1", Resource: "serviceaccounts", Singular: "serviceaccount", Kind: "ServiceAccount", ListKind: "ServiceAccountList", Namespaced: true,
		ShortNames: []string{"sa"},
		New:        func() runtime.Object { return &corev1.ServiceAccount{} }, NewList: func() runtime.Object { return &corev1.ServiceAccountList{} },
		Strategy: serviceAccountStrategy{BaseStrategy{Namespaced: true, NameFn: apivalidation.ValidateServiceAccountName}}}
}

type serviceAccountStrategy struct{ BaseStrategy }

var _ Strategy = serviceAccountStrategy{}

// coreCleanSecretReferences keeps only the name of each secret reference.
func coreCleanSecretReferences(sa *corev1.ServiceAccount) {
	for i, s := range sa.Secrets {
		sa.Secrets[i] = corev1.ObjectReference{Name: s.Name}
	}
}

func (serviceAccountStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	coreCleanSecretReferences(obj.(*corev1.ServiceAccount))
}

func (serviceAccountStrategy) PrepareForUpdate(_ context.Context, obj, _ runtime.Object) {
	coreCleanSecretReferences(obj.(*corev1.ServiceAccount))
}

// Validate is ValidateServiceAccount.
func (serviceAccountStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	sa := obj.(*corev1.ServiceAccount)
	return coreValidateObjectMeta(&sa.ObjectMeta, true, apivalidation.ValidateServiceAccountName)
}

// ValidateUpdate is ValidateServiceAccountUpdate.
func (serviceAccountStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	sa, oldSA := obj.(*corev1.ServiceAccount), old.(*corev1.ServiceAccount)
	allErrs := coreValidateObjectMetaUpdate(&sa.ObjectMeta, &oldSA.ObjectMeta)
	return append(allErrs, coreValidateObjectMeta(&sa.ObjectMeta, true, apivalidation.ValidateServiceAccountName)...)
}

// TableColumns: NAME SECRETS AGE (kubectl 1.32).
func (serviceAccountStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Secrets", Type: "string", Description: corev1.ServiceAccount{}.SwaggerDoc()["secrets"]},
		AgeColumn(),
	}
}

func (serviceAccountStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	sa := obj.(*corev1.ServiceAccount)
	return []interface{}{sa.Name, int64(len(sa.Secrets)), Age(sa.CreationTimestamp, now)}
}
