package registry

// Validation shared by the apps/v1 workloads, after
// pkg/apis/apps/validation/validation.go. Kubernetes validates its internal
// types; the field paths, details and bad values below are what it reports
// for the same apps/v1 objects.

import (
	"bytes"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// appsValidateSelector checks a workload's spec.selector: required, valid,
// and not empty. Kubernetes says "for deployment" for replica sets too.
func appsValidateSelector(sel *metav1.LabelSelector, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if sel == nil {
		return append(errs, field.Required(fldPath, ""))
	}
	errs = append(errs, metav1validation.ValidateLabelSelector(sel,
		metav1validation.LabelSelectorValidationOptions{AllowInvalidLabelValueInSelector: false}, fldPath)...)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(fldPath, sel, "empty selector is invalid for deployment"))
	}
	return errs
}

// appsValidateTemplateAgainstSelector is the selector/template part of
// ValidateDeploymentSpec and ValidateReplicaSetSpec: the selector must parse
// and match the template labels (a nil selector matches nothing, so a
// missing selector reports both errors, as Kubernetes does), and the
// template must be a valid pod template with restartPolicy Always.
func appsValidateTemplateAgainstSelector(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return append(errs, field.Invalid(fldPath.Child("selector"), sel, "invalid label selector"))
	}
	tPath := fldPath.Child("template")
	if !selector.Empty() && !selector.Matches(labels.Set(tmpl.Labels)) {
		errs = append(errs, field.Invalid(tPath.Child("metadata", "labels"), tmpl.Labels,
			"`selector` does not match template `labels`"))
	}
	errs = append(errs, validatePodTemplateSpec(tmpl, tPath)...)
	if tmpl.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(tPath.Child("spec", "restartPolicy"),
			tmpl.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if tmpl.Spec.ActiveDeadlineSeconds != nil {
		// Kubernetes words it so for deployments too.
		errs = append(errs, field.Forbidden(tPath.Child("spec", "activeDeadlineSeconds"),
			"activeDeadlineSeconds in ReplicaSet is not Supported"))
	}
	return errs
}

// appsValidateNonNegative is ValidateNonnegativeField for an int32 field.
func appsValidateNonNegative(v int32, fldPath *field.Path) field.ErrorList {
	return apivalidation.ValidateNonnegativeField(int64(v), fldPath)
}

// appsValidatePositiveIntOrPercent is ValidatePositiveIntOrPercent.
func appsValidatePositiveIntOrPercent(v intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch v.Type {
	case intstr.String:
		for _, msg := range utilvalidation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(fldPath, v, msg))
		}
	case intstr.Int:
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(v.IntValue()), fldPath)...)
	default:
		errs = append(errs, field.Invalid(fldPath, v, "must be an integer or percentage (e.g '5%%')"))
	}
	return errs
}

func appsPercentValue(v intstr.IntOrString) (int, bool) {
	if v.Type != intstr.String || len(utilvalidation.IsValidPercent(v.StrVal)) != 0 {
		return 0, false
	}
	n, _ := strconv.Atoi(v.StrVal[:len(v.StrVal)-1])
	return n, true
}

func appsIntOrPercentValue(v intstr.IntOrString) int {
	if n, ok := appsPercentValue(v); ok {
		return n
	}
	return v.IntValue()
}

// appsIsNotMoreThan100Percent is IsNotMoreThan100Percent.
func appsIsNotMoreThan100Percent(v intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	n, ok := appsPercentValue(v)
	if !ok || n <= 100 {
		return nil
	}
	return field.ErrorList{field.Invalid(fldPath, v, "must not be greater than 100%")}
}

// appsIntOrStringValue is what Kubernetes' conversion makes of an optional
// IntOrString: the zero value (integer 0) when unset.
func appsIntOrStringValue(p *intstr.IntOrString) intstr.IntOrString {
	if p == nil {
		return intstr.IntOrString{}
	}
	return *p
}

// appsContainerCells lays the template's containers out on one line each
// for names and images, as the Kubernetes printers do.
func appsContainerCells(containers []corev1.Container) (names, images string) {
	var nb, ib bytes.Buffer
	for i, c := range containers {
		nb.WriteString(c.Name)
		ib.WriteString(c.Image)
		if i != len(containers)-1 {
			nb.WriteString(",")
			ib.WriteString(",")
		}
	}
	return nb.String(), ib.String()
}

// appsDeref32 reads an optional int32 (replicas) as 0 when unset.
func appsDeref32(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// appsIsDecremented is core validation's IsDecremented (collisionCount).
func appsIsDecremented(update, old *int32) bool {
	if update == nil && old != nil {
		return true
	}
	if update == nil || old == nil {
		return false
	}
	return *update < *old
}
