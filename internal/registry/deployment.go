package registry

// apps/v1 Deployments, after pkg/registry/apps/deployment/strategy.go,
// pkg/apis/apps/v1/defaults.go and pkg/apis/apps/validation.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	extensionsv1beta1 "k8s.io/api/extensions/v1beta1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

func deployments() *Resource {
	return &Resource{Group: "apps", Version: "v1", Resource: "deployments", Singular: "deployment",
		Kind: "Deployment", ListKind: "DeploymentList", Namespaced: true,
		ShortNames: []string{"deploy"}, Categories: []string{"all"}, Subresources: []string{"status", "scale"},
		New:      func() runtime.Object { return &appsv1.Deployment{} },
		NewList:  func() runtime.Object { return &appsv1.DeploymentList{} },
		Strategy: deploymentStrategy{BaseStrategy{Namespaced: true, HasStatus: true, Generation: true}},
	}
}

type deploymentStrategy struct{ BaseStrategy }

var (
	_ Strategy      = deploymentStrategy{}
	_ ScaleAccessor = deploymentStrategy{}
)

// Default is SetDefaults_Deployment plus the pod spec defaults of the
// template. apps/v1 does not default the selector or template labels.
func (deploymentStrategy) Default(obj runtime.Object) {
	d := obj.(*appsv1.Deployment)
	if d.Spec.Replicas == nil {
		d.Spec.Replicas = ptr.To[int32](1)
	}
	st := &d.Spec.Strategy
	if st.Type == "" {
		st.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if st.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if st.RollingUpdate == nil {
			st.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		if st.RollingUpdate.MaxUnavailable == nil {
			st.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromString("25%"))
		}
		if st.RollingUpdate.MaxSurge == nil {
			st.RollingUpdate.MaxSurge = ptr.To(intstr.FromString("25%"))
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = ptr.To[int32](10)
	}
	if d.Spec.ProgressDeadlineSeconds == nil {
		d.Spec.ProgressDeadlineSeconds = ptr.To[int32](600)
	}
	defaultPodSpec(&d.Spec.Template.Spec)
}

// PrepareForUpdate keeps the status and bumps generation when the spec or
// the annotations change: Kubernetes copies a deployment's annotations to
// its replica sets, so they count as desired state (this also covers the
// deprecated.deployment.rollback.to annotation, which is spec.rollbackTo
// internally).
func (s deploymentStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	s.BaseStrategy.PrepareForUpdate(ctx, obj, old)
	nd, od := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
	if !apiequality.Semantic.DeepEqual(nd.Annotations, od.Annotations) {
		nd.Generation = od.Generation + 1
	}
}

func (s deploymentStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	d := obj.(*appsv1.Deployment)
	errs := s.ValidateMeta(obj)
	return append(errs, validateDeploymentSpec(d, field.NewPath("spec"))...)
}

// ValidateUpdate is ValidateDeploymentUpdate plus the apps/v1 rule that the
// selector is immutable.
func (s deploymentStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	nd, od := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
	errs := s.ValidateMetaUpdate(obj, old)
	errs = append(errs, validateDeploymentSpec(nd, field.NewPath("spec"))...)
	return append(errs, apivalidation.ValidateImmutableField(nd.Spec.Selector, od.Spec.Selector,
		field.NewPath("spec", "selector"))...)
}

// PrepareForStatusUpdate keeps the spec and, as Kubernetes' deployment
// status strategy does, the labels.
func (s deploymentStrategy) PrepareForStatusUpdate(ctx context.Context, obj, old runtime.Object) {
	s.BaseStrategy.PrepareForStatusUpdate(ctx, obj, old)
	obj.(*appsv1.Deployment).Labels = old.(*appsv1.Deployment).Labels
}

// ValidateStatusUpdate is ValidateDeploymentStatusUpdate.
func (s deploymentStrategy) ValidateStatusUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	nd, od := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
	errs := s.ValidateMetaUpdate(obj, old)
	p := field.NewPath("status")
	errs = append(errs, validateDeploymentStatus(&nd.Status, p)...)
	if appsIsDecremented(nd.Status.CollisionCount, od.Status.CollisionCount) {
		errs = append(errs, field.Invalid(p.Child("collisionCount"), appsDeref32(nd.Status.CollisionCount),
			"cannot be decremented"))
	}
	return errs
}

func (deploymentStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Ready", Type: "string", Description: "Number of the pod with ready state"},
		{Name: "Up-to-date", Type: "string", Description: extensionsv1beta1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"]},
		{Name: "Available", Type: "string", Description: extensionsv1beta1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"]},
		AgeColumn(),
		{Name: "Containers", Type: "string", Priority: 1, Description: "Names of each container in the template."},
		{Name: "Images", Type: "string", Priority: 1, Description: "Images referenced by each container in the template."},
		{Name: "Selector", Type: "string", Priority: 1, Description: extensionsv1beta1.DeploymentSpec{}.SwaggerDoc()["selector"]},
	}
}

func (deploymentStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	d := obj.(*appsv1.Deployment)
	selector := "<invalid>"
	if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
		selector = sel.String()
	}
	names, images := appsContainerCells(d.Spec.Template.Spec.Containers)
	return []interface{}{
		d.Name,
		fmt.Sprintf("%d/%d", int64(d.Status.ReadyReplicas), int64(appsDeref32(d.Spec.Replicas))),
		int64(d.Status.UpdatedReplicas),
		int64(d.Status.AvailableReplicas),
		Age(d.CreationTimestamp, now),
		names, images, selector,
	}
}

// Scale is what the deployments/scale subresource reports.
func (deploymentStrategy) Scale(obj runtime.Object) (specReplicas, statusReplicas int32, selector string) {
	d := obj.(*appsv1.Deployment)
	return appsDeref32(d.Spec.Replicas), d.Status.Replicas, appsScaleSelector(d.Spec.Selector)
}

func (deploymentStrategy) SetReplicas(obj runtime.Object, replicas int32) {
	obj.(*appsv1.Deployment).Spec.Replicas = ptr.To(replicas)
}

// validateDeploymentSpec is ValidateDeploymentSpec.
func validateDeploymentSpec(d *appsv1.Deployment, fldPath *field.Path) field.ErrorList {
	spec := &d.Spec
	errs := appsValidateNonNegative(appsDeref32(spec.Replicas), fldPath.Child("replicas"))
	errs = append(errs, appsValidateSelector(spec.Selector, fldPath.Child("selector"))...)
	errs = append(errs, appsValidateTemplateAgainstSelector(spec.Selector, &spec.Template, fldPath)...)
	errs = append(errs, validateDeploymentStrategy(&spec.Strategy, fldPath.Child("strategy"))...)
	errs = append(errs, appsValidateNonNegative(spec.MinReadySeconds, fldPath.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		// zero is a valid revisionHistoryLimit
		errs = append(errs, appsValidateNonNegative(*spec.RevisionHistoryLimit, fldPath.Child("revisionHistoryLimit"))...)
	}
	// The deprecated rollback annotation is spec.rollbackTo in Kubernetes'
	// internal type. (A value that is not an integer fails its decoding
	// there; it is left alone here.)
	if rev, ok := d.Annotations[appsv1.DeprecatedRollbackTo]; ok && rev != "" {
		if n, err := strconv.ParseInt(rev, 10, 64); err == nil {
			errs = append(errs, apivalidation.ValidateNonnegativeField(n, fldPath.Child("rollback", "version"))...)
		}
	}
	if p := spec.ProgressDeadlineSeconds; p != nil {
		errs = append(errs, appsValidateNonNegative(*p, fldPath.Child("progressDeadlineSeconds"))...)
		if *p <= spec.MinReadySeconds {
			errs = append(errs, field.Invalid(fldPath.Child("progressDeadlineSeconds"), *p,
				"must be greater than minReadySeconds"))
		}
	}
	return errs
}

// deploymentStrategyValue mirrors Kubernetes' internal DeploymentStrategy
// (no JSON tags) so an unsupported strategy renders as it does there.
type deploymentStrategyValue struct {
	Type          appsv1.DeploymentStrategyType
	RollingUpdate *deploymentRollingUpdateValue
}

type deploymentRollingUpdateValue struct {
	MaxUnavailable intstr.IntOrString
	MaxSurge       intstr.IntOrString
}

// validateDeploymentStrategy is ValidateDeploymentStrategy.
func validateDeploymentStrategy(st *appsv1.DeploymentStrategy, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch st.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if st.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(fldPath.Child("rollingUpdate"),
				"may not be specified when strategy `type` is '"+string(appsv1.RecreateDeploymentStrategyType)+"'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if st.RollingUpdate == nil {
			errs = append(errs, field.Required(fldPath.Child("rollingUpdate"), "this should be defaulted and never be nil"))
		} else {
			errs = append(errs, validateRollingUpdateDeployment(st.RollingUpdate, fldPath.Child("rollingUpdate"))...)
		}
	default:
		v := deploymentStrategyValue{Type: st.Type}
		if ru := st.RollingUpdate; ru != nil {
			v.RollingUpdate = &deploymentRollingUpdateValue{
				MaxUnavailable: appsIntOrStringValue(ru.MaxUnavailable),
				MaxSurge:       appsIntOrStringValue(ru.MaxSurge),
			}
		}
		errs = append(errs, field.NotSupported(fldPath, v, []string{
			string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}))
	}
	return errs
}

// validateRollingUpdateDeployment is ValidateRollingUpdateDeployment.
func validateRollingUpdateDeployment(ru *appsv1.RollingUpdateDeployment, fldPath *field.Path) field.ErrorList {
	maxUnavailable := appsIntOrStringValue(ru.MaxUnavailable)
	maxSurge := appsIntOrStringValue(ru.MaxSurge)
	errs := appsValidatePositiveIntOrPercent(maxUnavailable, fldPath.Child("maxUnavailable"))
	errs = append(errs, appsValidatePositiveIntOrPercent(maxSurge, fldPath.Child("maxSurge"))...)
	if appsIntOrPercentValue(maxUnavailable) == 0 && appsIntOrPercentValue(maxSurge) == 0 {
		errs = append(errs, field.Invalid(fldPath.Child("maxUnavailable"), maxUnavailable,
			"may not be 0 when `maxSurge` is 0"))
	}
	return append(errs, appsIsNotMoreThan100Percent(maxUnavailable, fldPath.Child("maxUnavailable"))...)
}

// validateDeploymentStatus is ValidateDeploymentStatus.
func validateDeploymentStatus(st *appsv1.DeploymentStatus, fldPath *field.Path) field.ErrorList {
	errs := apivalidation.ValidateNonnegativeField(st.ObservedGeneration, fldPath.Child("observedGeneration"))
	errs = append(errs, appsValidateNonNegative(st.Replicas, fldPath.Child("replicas"))...)
	errs = append(errs, appsValidateNonNegative(st.UpdatedReplicas, fldPath.Child("updatedReplicas"))...)
	errs = append(errs, appsValidateNonNegative(st.ReadyReplicas, fldPath.Child("readyReplicas"))...)
	errs = append(errs, appsValidateNonNegative(st.AvailableReplicas, fldPath.Child("availableReplicas"))...)
	errs = append(errs, appsValidateNonNegative(st.UnavailableReplicas, fldPath.Child("unavailableReplicas"))...)
	if st.TerminatingReplicas != nil {
		errs = append(errs, appsValidateNonNegative(*st.TerminatingReplicas, fldPath.Child("terminatingReplicas"))...)
	}
	if st.CollisionCount != nil {
		errs = append(errs, appsValidateNonNegative(*st.CollisionCount, fldPath.Child("collisionCount"))...)
	}
	const msg = "cannot be greater than status.replicas"
	if st.UpdatedReplicas > st.Replicas {
		errs = append(errs, field.Invalid(fldPath.Child("updatedReplicas"), st.UpdatedReplicas, msg))
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

// appsScaleSelector is the selector string the apps scale subresource
// reports (status.selector): the parsed selector's canonical form.
func appsScaleSelector(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return ""
	}
	return s.String()
}
