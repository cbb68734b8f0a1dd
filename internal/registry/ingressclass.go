package registry

import (
	"context"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

const ingClassMaxControllerLen = 250

var ingClassParameterScopes = sets.New(networkingv1.IngressClassParametersReferenceScopeNamespace, networkingv1.IngressClassParametersReferenceScopeCluster)

func ingressClasses() *Resource {
	return &Resource{Group: "networking.k8s.io", Version: "v1", Resource: "ingressclasses", Singular: "ingressclass", Kind: "IngressClass", ListKind: "IngressClassList",
		New:      func() runtime.Object { return &networkingv1.IngressClass{} },
		NewList:  func() runtime.Object { return &networkingv1.IngressClassList{} },
		Strategy: ingressClassStrategy{BaseStrategy{Generation: true}}}
}

type ingressClassStrategy struct{ BaseStrategy }

var _ Strategy = ingressClassStrategy{}

func (ingressClassStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return ingClassValidate(obj.(*networkingv1.IngressClass))
}

func (ingressClassStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	ic, oldIC := obj.(*networkingv1.IngressClass), old.(*networkingv1.IngressClass)
	allErrs := apivalidation.ValidateObjectMetaUpdate(&ic.ObjectMeta, &oldIC.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(ic.Spec.Controller, oldIC.Spec.Controller, field.NewPath("spec", "controller"))...)
	return append(allErrs, ingClassValidate(ic)...)
}

// ingClassValidate is ValidateIngressClass of pkg/apis/networking/validation.
func ingClassValidate(ic *networkingv1.IngressClass) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMeta(&ic.ObjectMeta, false, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	specPath := field.NewPath("spec")
	ctrlPath := specPath.Child("controller")
	if ic.Spec.Controller == "" {
		allErrs = append(allErrs, field.Required(ctrlPath, ""))
	} else {
		if len(ic.Spec.Controller) > ingClassMaxControllerLen {
			allErrs = append(allErrs, field.TooLong(ctrlPath, "", ingClassMaxControllerLen))
		}
		allErrs = append(allErrs, validation.IsDomainPrefixedPath(ctrlPath, ic.Spec.Controller)...)
	}
	if p := ic.Spec.Parameters; p != nil {
		pPath := specPath.Child("parameters")
		if p.APIGroup != nil {
			allErrs = append(allErrs, coreDNS1123Subdomain(*p.APIGroup, pPath.Child("apiGroup"))...)
		}
		allErrs = append(allErrs, ingValidatePathSegment(p.Kind, pPath.Child("kind"))...)
		allErrs = append(allErrs, ingValidatePathSegment(p.Name, pPath.Child("name"))...)
		if p.Scope == nil {
			return append(allErrs, field.Required(pPath.Child("scope"), ""))
		}
		scope := *p.Scope
		switch {
		case !ingClassParameterScopes.Has(scope):
			allErrs = append(allErrs, field.NotSupported(pPath.Child("scope"), scope, sets.List(ingClassParameterScopes)))
		case scope == networkingv1.IngressClassParametersReferenceScopeNamespace:
			if p.Namespace == nil {
				allErrs = append(allErrs, field.Required(pPath.Child("namespace"), "`parameters.scope` is set to 'Namespace'"))
			} else {
				for _, msg := range apivalidation.ValidateNamespaceName(*p.Namespace, false) {
					allErrs = append(allErrs, field.Invalid(pPath.Child("namespace"), *p.Namespace, msg))
				}
			}
		case scope == networkingv1.IngressClassParametersReferenceScopeCluster && p.Namespace != nil:
			allErrs = append(allErrs, field.Forbidden(pPath.Child("namespace"), "`parameters.scope` is set to 'Cluster'"))
		}
	}
	return allErrs
}

func (ingressClassStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Controller", Type: "string", Description: "Controller that is responsible for handling this class"},
		{Name: "Parameters", Type: "string", Description: "A reference to a resource with additional parameters"},
		AgeColumn(),
	}
}

func (ingressClassStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	ic := obj.(*networkingv1.IngressClass)
	params := "<none>"
	if p := ic.Spec.Parameters; p != nil {
		params = p.Kind
		if p.APIGroup != nil {
			params += "." + *p.APIGroup
		}
		params += "/" + p.Name
	}
	return []interface{}{ic.Name, ic.Spec.Controller, params, Age(ic.CreationTimestamp, now)}
}
