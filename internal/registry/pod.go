package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-dev/skiff/internal/podqos"
)

// Pods, after pkg/registry/core/pod/strategy.go (Kubernetes 1.33) plus the
// admission plugins every cluster runs on pod create: ServiceAccount
// (serviceAccountName "default"; with Config.Objects the whole plugin, see
// pod_serviceaccount.go), DefaultTolerationSeconds and Priority.
//
// Generation: like 1.33+, a pod gets metadata.generation 1 on create and
// +1 on every spec change. (Kubernetes also bumps it when a graceful
// deletion starts; that part belongs to the apiserver's delete.)

func pods() *Resource { return podsWith(Config{}) }

// podsWith is pods with the DefaultTolerationSeconds admission values of
// cfg (300 s each when unset) and, when cfg.Objects is set, the
// ServiceAccount admission (pod_serviceaccount.go).
func podsWith(cfg Config) *Resource {
	tol := podTolerationDefaults{notReady: 300, unreachable: 300}
	if cfg.DefaultNotReadyTolerationSeconds > 0 {
		tol.notReady = cfg.DefaultNotReadyTolerationSeconds
	}
	if cfg.DefaultUnreachableTolerationSeconds > 0 {
		tol.unreachable = cfg.DefaultUnreachableTolerationSeconds
	}
	return &Resource{Version: "v1", Resource: "pods", Singular: "pod", Kind: "Pod", ListKind: "PodList", Namespaced: true,
		ShortNames: []string{"po"}, Categories: []string{"all"}, Subresources: []string{"status", "binding"},
		New: func() runtime.Object { return &corev1.Pod{} }, NewList: func() runtime.Object { return &corev1.PodList{} },
		Strategy: podStrategy{BaseStrategy{Namespaced: true, HasStatus: true, Generation: true}, tol, cfg.Objects}}
}

type podStrategy struct {
	BaseStrategy
	tolerations podTolerationDefaults
	// objects, when set, turns on the ServiceAccount admission (Admit).
	objects ObjectGetter
}

// podTolerationDefaults are the tolerationSeconds the DefaultTolerationSeconds
// admission plugin gives the not-ready and unreachable NoExecute tolerations
// (kube-apiserver's --default-not-ready-toleration-seconds and
// --default-unreachable-toleration-seconds).
type podTolerationDefaults struct{ notReady, unreachable int64 }

var (
	_ Strategy        = podStrategy{}
	_ GracefulDeleter = podStrategy{}
	_ Admitter        = podStrategy{}
)

// Default applies SetDefaults_Pod, the PodSpec defaults and the v1
// conversion rules that keep deprecated twins in sync.
func (podStrategy) Default(obj runtime.Object) {
	pod := obj.(*corev1.Pod)
	corePodDefaultRequests(pod.Spec.Containers)
	corePodDefaultRequests(pod.Spec.InitContainers)
	if pod.Spec.EnableServiceLinks == nil {
		v := corev1.DefaultEnableServiceLinks
		pod.Spec.EnableServiceLinks = &v
	}
	if pod.Spec.HostNetwork {
		corePodDefaultHostNetworkPorts(pod.Spec.Containers)
		corePodDefaultHostNetworkPorts(pod.Spec.InitContainers)
	}
	defaultPodSpec(&pod.Spec)
	// v1 <-> internal conversion: serviceAccount is the deprecated twin of
	// serviceAccountName; podIP/hostIP are the first of podIPs/hostIPs.
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = pod.Spec.DeprecatedServiceAccount
	}
	pod.Spec.DeprecatedServiceAccount = pod.Spec.ServiceAccountName
	st := &pod.Status
	if len(st.PodIPs) == 0 && st.PodIP != "" {
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	if len(st.PodIPs) > 0 {
		st.PodIP = st.PodIPs[0].IP
	}
	if len(st.HostIPs) == 0 && st.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	}
	if len(st.HostIPs) > 0 {
		st.HostIP = st.HostIPs[0].IP
	}
}

// corePodDefaultRequests: requests default to limits (pods only, not
// templates).
func corePodDefaultRequests(containers []corev1.Container) {
	for i := range containers {
		r := &containers[i].Resources
		if r.Limits == nil {
			continue
		}
		if r.Requests == nil {
			r.Requests = corev1.ResourceList{}
		}
		for k, v := range r.Limits {
			if _, ok := r.Requests[k]; !ok {
				r.Requests[k] = v.DeepCopy()
			}
		}
	}
}

func corePodDefaultHostNetworkPorts(containers []corev1.Container) {
	for i := range containers {
		for j := range containers[i].Ports {
			if containers[i].Ports[j].HostPort == 0 {
				containers[i].Ports[j].HostPort = containers[i].Ports[j].ContainerPort
			}
		}
	}
}

// PrepareForCreate runs the pod admission defaults, then resets status to
// Pending with the computed QoS class and sets generation 1.
func (s podStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	pod := obj.(*corev1.Pod)
	corePodAdmit(pod, s.tolerations)
	pod.Generation = 1
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: podqos.Compute(pod)}
	if len(pod.Spec.SchedulingGates) > 0 {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated,
			Message: "Scheduling is blocked due to non-empty scheduling gates", LastTransitionTime: metav1.Now(),
		})
	}
}

// corePodAdmit applies what the ServiceAccount, DefaultTolerationSeconds
// and Priority admission plugins change on a new pod.
func corePodAdmit(pod *corev1.Pod, tol podTolerationDefaults) {
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; !mirror && pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
	}
	pod.Spec.DeprecatedServiceAccount = pod.Spec.ServiceAccountName

	notReady, unreachable := false, false
	for _, t := range pod.Spec.Tolerations {
		noExec := t.Effect == corev1.TaintEffectNoExecute || t.Effect == ""
		if (t.Key == corev1.TaintNodeNotReady || t.Key == "") && noExec {
			notReady = true
		}
		if (t.Key == corev1.TaintNodeUnreachable || t.Key == "") && noExec {
			unreachable = true
		}
	}
	for _, add := range []struct {
		has  bool
		key  string
		secs int64
	}{{notReady, corev1.TaintNodeNotReady, tol.notReady}, {unreachable, corev1.TaintNodeUnreachable, tol.unreachable}} {
		if !add.has {
			secs := add.secs
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
				Key: add.key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs})
		}
	}

	// Priority: the two system classes are known; any other class name
	// (skiff serves no PriorityClass API) gets the no-default-class
	// priority 0.
	if pod.Spec.Priority == nil {
		var prio int32
		switch pod.Spec.PriorityClassName {
		case "system-node-critical":
			prio = 2000001000
		case "system-cluster-critical":
			prio = 2000000000
		}
		pod.Spec.Priority = &prio
	}
	if pod.Spec.PreemptionPolicy == nil {
		p := corev1.PreemptLowerPriority
		pod.Spec.PreemptionPolicy = &p
	}
}

// PrepareForUpdate keeps the status and bumps generation on spec changes.
func (s podStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	s.BaseStrategy.PrepareForUpdate(ctx, obj, old)
}

// Validate is ValidatePodCreate.
func (podStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	pod := obj.(*corev1.Pod)
	allErrs := corePodValidateMetaAndSpec(pod)
	specPath := field.NewPath("spec")
	if len(pod.Spec.EphemeralContainers) > 0 {
		allErrs = append(allErrs, field.Forbidden(specPath.Child("ephemeralContainers"), "cannot be set on create"))
	}
	if pod.Spec.NodeName != "" && len(pod.Spec.SchedulingGates) != 0 {
		allErrs = append(allErrs, field.Forbidden(specPath.Child("nodeName"), "cannot be set until all schedulingGates have been cleared"))
	}
	return allErrs
}

// corePodValidateMetaAndSpec is validatePodMetadataAndSpec.
func corePodValidateMetaAndSpec(pod *corev1.Pod) field.ErrorList {
	metaPath, specPath := field.NewPath("metadata"), field.NewPath("spec")
	allErrs := coreValidateObjectMeta(&pod.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
	allErrs = append(allErrs, coreValidatePodAnnotations(pod.Annotations, &pod.Spec, metaPath.Child("annotations"))...)
	allErrs = append(allErrs, validatePodSpec(&pod.Spec, &pod.ObjectMeta, specPath, coreValidationOpts{resourceIsPod: true})...)
	if pod.Spec.ServiceAccountName == "" {
		for vi, v := range pod.Spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for si, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil {
					allErrs = append(allErrs, field.Forbidden(specPath.Child("volumes").Index(vi).Child("projected").Child("sources").Index(si).Child("serviceAccountToken"),
						"must not be specified when serviceAccountName is not set"))
				}
			}
		}
	}
	for i := range pod.Spec.Containers {
		allErrs = append(allErrs, coreValidateContainerOnlyForPod(&pod.Spec.Containers[i], specPath.Child("containers").Index(i))...)
	}
	for i := range pod.Spec.InitContainers {
		allErrs = append(allErrs, coreValidateContainerOnlyForPod(&pod.Spec.InitContainers[i], specPath.Child("initContainers").Index(i))...)
	}
	return allErrs
}

// corePodUpdatableFields is updatablePodSpecFields, joined with "," in the
// error message as Kubernetes does.
var corePodUpdatableFields = []string{
	"`spec.containers[*].image`",
	"`spec.initContainers[*].image`",
	"`spec.activeDeadlineSeconds`",
	"`spec.tolerations` (only additions to existing tolerations)",
	"`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
}

// ValidateUpdate is ValidatePodUpdate: the spec is immutable except images,
// activeDeadlineSeconds (may only shrink), added tolerations, removed
// scheduling gates and terminationGracePeriodSeconds from negative to 1.
func (podStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	newPod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
	metaPath, specPath := field.NewPath("metadata"), field.NewPath("spec")
	allErrs := coreValidateObjectMetaUpdate(&newPod.ObjectMeta, &oldPod.ObjectMeta)
	allErrs = append(allErrs, corePodValidateMetaAndSpec(newPod)...)
	allErrs = append(allErrs, corePodValidateAnnotationUpdates(newPod, oldPod, metaPath.Child("annotations"))...)

	errs, stop := corePodValidateContainerUpdates(newPod.Spec.Containers, oldPod.Spec.Containers, specPath.Child("containers"))
	allErrs = append(allErrs, errs...)
	if stop {
		return allErrs
	}
	errs, stop = corePodValidateContainerUpdates(newPod.Spec.InitContainers, oldPod.Spec.InitContainers, specPath.Child("initContainers"))
	allErrs = append(allErrs, errs...)
	if stop {
		return allErrs
	}

	adsPath := specPath.Child("activeDeadlineSeconds")
	if newPod.Spec.ActiveDeadlineSeconds != nil {
		v := *newPod.Spec.ActiveDeadlineSeconds
		if v < 0 || v > math.MaxInt32 {
			return append(allErrs, field.Invalid(adsPath, v, validation.InclusiveRangeError(0, math.MaxInt32)))
		}
		if oldPod.Spec.ActiveDeadlineSeconds != nil && *oldPod.Spec.ActiveDeadlineSeconds < v {
			return append(allErrs, field.Invalid(adsPath, v, "must be less than or equal to previous value"))
		}
	} else if oldPod.Spec.ActiveDeadlineSeconds != nil {
		allErrs = append(allErrs, field.Invalid(adsPath, newPod.Spec.ActiveDeadlineSeconds, "must not update from a positive integer to nil value"))
	}

	allErrs = append(allErrs, coreValidateTolerationUpdate(newPod.Spec.Tolerations, oldPod.Spec.Tolerations, specPath.Child("tolerations"))...)
	allErrs = append(allErrs, corePodValidateGateRemovals(newPod.Spec.SchedulingGates, oldPod.Spec.SchedulingGates, specPath.Child("schedulingGates"))...)

	if apiequality.Semantic.DeepEqual(newPod.Spec, oldPod.Spec) {
		return allErrs
	}
	munged := *newPod.Spec.DeepCopy()
	for i := range munged.Containers {
		munged.Containers[i].Image = oldPod.Spec.Containers[i].Image
	}
	for i := range munged.InitContainers {
		munged.InitContainers[i].Image = oldPod.Spec.InitContainers[i].Image
	}
	munged.ActiveDeadlineSeconds = oldPod.Spec.ActiveDeadlineSeconds
	munged.SchedulingGates = oldPod.Spec.SchedulingGates
	munged.Tolerations = oldPod.Spec.Tolerations
	if t := oldPod.Spec.TerminationGracePeriodSeconds; t != nil && *t < 0 &&
		munged.TerminationGracePeriodSeconds != nil && *munged.TerminationGracePeriodSeconds == 1 {
		munged.TerminationGracePeriodSeconds = t
	}
	if !apiequality.Semantic.DeepEqual(munged, oldPod.Spec) {
		msg := fmt.Sprintf("pod updates may not change fields other than %s\n%s",
			strings.Join(corePodUpdatableFields, ","), corePodSpecDiff(oldPod.Spec, munged))
		allErrs = append(allErrs, field.Forbidden(specPath, msg))
	}
	return allErrs
}

// corePodValidateAnnotationUpdates: the mirror-pod annotation may not be
// added, changed or removed.
func corePodValidateAnnotationUpdates(newPod, oldPod *corev1.Pod, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	k := corev1.MirrorPodAnnotationKey
	oldV, oldOK := oldPod.Annotations[k]
	newV, newOK := newPod.Annotations[k]
	switch {
	case oldOK && (!newOK || newV != oldV):
		allErrs = append(allErrs, field.Forbidden(fldPath.Key(k), "may not remove or update mirror pod annotation"))
	case !oldOK && newOK:
		allErrs = append(allErrs, field.Forbidden(fldPath.Key(k), "may not add mirror pod annotation"))
	}
	return allErrs
}

// corePodValidateContainerUpdates is ValidateContainerUpdates.
func corePodValidateContainerUpdates(newC, oldC []corev1.Container, fldPath *field.Path) (field.ErrorList, bool) {
	if len(newC) != len(oldC) {
		return field.ErrorList{field.Forbidden(fldPath, "pod updates may not add or remove containers")}, true
	}
	var allErrs field.ErrorList
	for i, c := range newC {
		if len(c.Image) == 0 {
			allErrs = append(allErrs, field.Required(fldPath.Index(i).Child("image"), ""))
		}
		if len(strings.TrimSpace(c.Image)) != len(c.Image) {
			allErrs = append(allErrs, field.Invalid(fldPath.Index(i).Child("image"), c.Image, "must not have leading or trailing whitespace"))
		}
	}
	return allErrs, false
}

// corePodValidateGateRemovals is validateOnlyDeletedSchedulingGates.
func corePodValidateGateRemovals(newG, oldG []corev1.PodSchedulingGate, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	old := map[string]bool{}
	for _, g := range oldG {
		old[g.Name] = true
	}
	for i, g := range newG {
		if !old[g.Name] {
			allErrs = append(allErrs, field.Forbidden(fldPath.Index(i).Child("name"),
				fmt.Sprintf("only deletion is allowed, but found new scheduling gate '%s'", g.Name)))
		}
	}
	return allErrs
}

// corePodSpecDiff renders what changed between two specs as a line diff of
// their JSON ("-" old, "+" new). Kubernetes prints a go-cmp diff of its
// internal types here; the exact text cannot match.
func corePodSpecDiff(oldSpec, newSpec corev1.PodSpec) string {
	a, _ := json.MarshalIndent(oldSpec, "  ", "  ")
	b, _ := json.MarshalIndent(newSpec, "  ", "  ")
	al, bl := strings.Split("  "+string(a), "\n"), strings.Split("  "+string(b), "\n")
	if len(al)*len(bl) <= coreMaxDiffCells {
		return coreLineDiff(al, bl)
	}
	// Too big for a line diff (the LCS table is quadratic): show the
	// top-level fields that differ.
	var om, nm map[string]json.RawMessage
	_ = json.Unmarshal(a, &om)
	_ = json.Unmarshal(b, &nm)
	var sb strings.Builder
	for _, k := range coreSortedKeys(coreMergeKeys(om, nm)) {
		if string(om[k]) != string(nm[k]) {
			fmt.Fprintf(&sb, "-  %q: %s\n+  %q: %s\n", k, om[k], k, nm[k])
		}
	}
	return sb.String()
}

// coreMaxDiffCells bounds the line diff of corePodSpecDiff.
const coreMaxDiffCells = 1 << 20

func coreMergeKeys(a, b map[string]json.RawMessage) map[string]bool {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}

// coreLineDiff is a longest-common-subsequence line diff.
func coreLineDiff(a, b []string) string {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			sb.WriteString(" " + a[i] + "\n")
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			sb.WriteString("-" + a[i] + "\n")
			i++
		default:
			sb.WriteString("+" + b[j] + "\n")
			j++
		}
	}
	return sb.String()
}

// PrepareForStatusUpdate keeps the spec, ownerReferences (old kubelets
// corrupted them) and, when a client drops them, the QoS class and the
// observed generations.
func (s podStrategy) PrepareForStatusUpdate(ctx context.Context, obj, old runtime.Object) {
	s.BaseStrategy.PrepareForStatusUpdate(ctx, obj, old)
	newPod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
	newPod.OwnerReferences = oldPod.OwnerReferences
	if newPod.Status.QOSClass == "" {
		newPod.Status.QOSClass = oldPod.Status.QOSClass
	}
	if newPod.Status.ObservedGeneration == 0 {
		newPod.Status.ObservedGeneration = oldPod.Status.ObservedGeneration
	}
	oldGens := map[corev1.PodConditionType][]int64{}
	for _, c := range oldPod.Status.Conditions {
		oldGens[c.Type] = append(oldGens[c.Type], c.ObservedGeneration)
	}
	for i, c := range newPod.Status.Conditions {
		g := int64(0)
		if gs := oldGens[c.Type]; len(gs) > 0 {
			g, oldGens[c.Type] = gs[0], gs[1:]
		}
		if c.ObservedGeneration == 0 {
			newPod.Status.Conditions[i].ObservedGeneration = g
		}
	}
}

// ValidateStatusUpdate is ValidatePodStatusUpdate.
func (podStrategy) ValidateStatusUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	newPod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
	metaPath := field.NewPath("metadata")
	allErrs := coreValidateObjectMetaUpdate(&newPod.ObjectMeta, &oldPod.ObjectMeta)
	allErrs = append(allErrs, corePodValidateAnnotationUpdates(newPod, oldPod, metaPath.Child("annotations"))...)
	for i, c := range newPod.Status.Conditions {
		switch c.Type {
		case corev1.PodScheduled, corev1.PodReady, corev1.PodInitialized:
		default:
			// Kubernetes reports these under metadata, with a capital T.
			allErrs = append(allErrs, coreQualifiedName(string(c.Type), metaPath.Child("conditions").Index(i).Child("Type"))...)
		}
	}
	stPath := field.NewPath("status")
	if newPod.Spec.NodeName != oldPod.Spec.NodeName {
		allErrs = append(allErrs, field.Forbidden(stPath.Child("nodeName"), "may not be changed directly"))
	}
	if n := newPod.Status.NominatedNodeName; n != oldPod.Status.NominatedNodeName && len(n) > 0 {
		for _, msg := range apivalidation.NameIsDNSSubdomain(n, false) {
			allErrs = append(allErrs, field.Invalid(stPath.Child("nominatedNodeName"), n, msg))
		}
	}
	allErrs = append(allErrs, apivalidation.ValidateImmutableField(newPod.Status.QOSClass, oldPod.Status.QOSClass, stPath.Child("qosClass"))...)
	allErrs = append(allErrs, corePodValidateStateTransitions(newPod.Status.ContainerStatuses, oldPod.Status.ContainerStatuses, stPath.Child("containerStatuses"), oldPod.Spec.RestartPolicy, nil)...)
	allErrs = append(allErrs, corePodValidateStateTransitions(newPod.Status.InitContainerStatuses, oldPod.Status.InitContainerStatuses, stPath.Child("initContainerStatuses"), oldPod.Spec.RestartPolicy, oldPod.Spec.InitContainers)...)
	allErrs = append(allErrs, corePodValidateStateTransitions(newPod.Status.EphemeralContainerStatuses, oldPod.Status.EphemeralContainerStatuses, stPath.Child("ephemeralContainerStatuses"), corev1.RestartPolicyNever, nil)...)
	var podIPs, hostIPs []string
	for _, ip := range newPod.Status.PodIPs {
		podIPs = append(podIPs, ip.IP)
	}
	allErrs = append(allErrs, coreValidateIPs(podIPs, stPath.Child("podIPs"))...)
	for _, ip := range newPod.Status.HostIPs {
		hostIPs = append(hostIPs, ip.IP)
	}
	if len(hostIPs) > 0 && newPod.Status.HostIP != hostIPs[0] {
		allErrs = append(allErrs, field.Invalid(stPath.Child("hostIPs").Index(0).Child("ip"), hostIPs[0], "must be equal to `hostIP`"))
	}
	allErrs = append(allErrs, coreValidateIPs(hostIPs, stPath.Child("hostIPs"))...)
	return allErrs
}

// corePodValidateStateTransitions is ValidateContainerStateTransition (and
// its init-container variant when inits is given): a terminated container
// of a pod that does not restart it may not run again.
func corePodValidateStateTransitions(newS, oldS []corev1.ContainerStatus, fldPath *field.Path, policy corev1.RestartPolicy, inits []corev1.Container) field.ErrorList {
	var allErrs field.ErrorList
	if policy == corev1.RestartPolicyAlways {
		return nil
	}
	for i, o := range oldS {
		if o.State.Terminated == nil {
			continue
		}
		if o.State.Terminated.ExitCode != 0 && policy == corev1.RestartPolicyOnFailure {
			continue
		}
		restartable := false
		for _, c := range inits {
			if c.Name == o.Name {
				restartable = c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
				break
			}
		}
		if restartable {
			continue
		}
		for _, n := range newS {
			if o.Name == n.Name && n.State.Terminated == nil {
				allErrs = append(allErrs, field.Forbidden(fldPath.Index(i).Child("state"), "may not be transitioned to non-terminated state"))
			}
		}
	}
	return allErrs
}

// SelectableFields are the pod fields of ToSelectableFields.
func (podStrategy) SelectableFields(obj runtime.Object) fields.Set {
	pod := obj.(*corev1.Pod)
	podIP := ""
	if len(pod.Status.PodIPs) > 0 {
		podIP = pod.Status.PodIPs[0].IP
	} else {
		podIP = pod.Status.PodIP
	}
	return fields.Set{
		"spec.nodeName":            pod.Spec.NodeName,
		"spec.restartPolicy":       string(pod.Spec.RestartPolicy),
		"spec.schedulerName":       pod.Spec.SchedulerName,
		"spec.serviceAccountName":  pod.Spec.ServiceAccountName,
		"spec.hostNetwork":         strconv.FormatBool(pod.Spec.HostNetwork),
		"status.phase":             string(pod.Status.Phase),
		"status.podIP":             podIP,
		"status.nominatedNodeName": pod.Status.NominatedNodeName,
	}
}

// GracePeriod is CheckGracefulDelete: pods not yet scheduled or already
// finished go at once; others wait opts.gracePeriodSeconds or their
// terminationGracePeriodSeconds. A negative period becomes 1.
func (podStrategy) GracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) (int64, bool) {
	pod := obj.(*corev1.Pod)
	var period int64
	switch {
	case opts != nil && opts.GracePeriodSeconds != nil:
		period = *opts.GracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		period = *pod.Spec.TerminationGracePeriodSeconds
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		period = 0
	}
	if period < 0 {
		period = 1
	}
	return period, period > 0
}
