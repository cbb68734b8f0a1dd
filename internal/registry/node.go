package registry

import (
	"context"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Nodes, after pkg/registry/core/node/strategy.go. Unlike other resources
// with a status subresource, a node's status may be set on create (the
// kubelet registers itself with it).

func nodes() *Resource {
	return &Resource{Version: "v1", Resource: "nodes", Singular: "node", Kind: "Node", ListKind: "NodeList",
		ShortNames: []string{"no"}, Subresources: []string{"status"},
		New: func() runtime.Object { return &corev1.Node{} }, NewList: func() runtime.Object { return &corev1.NodeList{} },
		Strategy: nodeStrategy{BaseStrategy{HasStatus: true}}}
}

type nodeStrategy struct{ BaseStrategy }

var _ Strategy = nodeStrategy{}

// Default is SetDefaults_NodeStatus plus the v1 conversion that keeps
// spec.podCIDR equal to spec.podCIDRs[0].
func (nodeStrategy) Default(obj runtime.Object) {
	n := obj.(*corev1.Node)
	if n.Status.Allocatable == nil && n.Status.Capacity != nil {
		n.Status.Allocatable = n.Status.Capacity.DeepCopy()
	}
	if len(n.Spec.PodCIDRs) == 0 && n.Spec.PodCIDR != "" {
		n.Spec.PodCIDRs = []string{n.Spec.PodCIDR}
	}
	if len(n.Spec.PodCIDRs) > 0 {
		n.Spec.PodCIDR = n.Spec.PodCIDRs[0]
	}
}

// PrepareForCreate keeps everything, status included.
func (nodeStrategy) PrepareForCreate(context.Context, runtime.Object) {}

// PrepareForUpdate keeps the old status.
func (nodeStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	obj.(*corev1.Node).Status = old.(*corev1.Node).Status
}

// Validate is ValidateNode.
func (nodeStrategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return coreValidateNode(obj.(*corev1.Node))
}

func coreValidateNode(n *corev1.Node) field.ErrorList {
	metaPath := field.NewPath("metadata")
	allErrs := coreValidateObjectMeta(&n.ObjectMeta, false, apivalidation.NameIsDNSSubdomain)
	if len(n.Spec.Taints) > 0 {
		// Kubernetes reports spec taints at metadata.taints.
		allErrs = append(allErrs, coreValidateNodeTaints(n.Spec.Taints, metaPath.Child("taints"))...)
	}
	allErrs = append(allErrs, coreValidateNodeResources(n)...)
	if len(n.Spec.PodCIDRs) > 0 {
		p := field.NewPath("spec", "podCIDRs")
		for i, c := range n.Spec.PodCIDRs {
			allErrs = append(allErrs, validation.IsValidCIDR(p.Index(i), c)...)
		}
		if len(n.Spec.PodCIDRs) > 1 {
			v4, v6 := 0, 0
			for _, c := range n.Spec.PodCIDRs {
				if pfx, err := netip.ParsePrefix(c); err == nil {
					if pfx.Addr().Is4() {
						v4++
					} else {
						v6++
					}
				}
			}
			if v4 != 1 || v6 != 1 || len(n.Spec.PodCIDRs) > 2 {
				allErrs = append(allErrs, field.Invalid(p, n.Spec.PodCIDRs, "may specify no more than one CIDR for each IP family"))
			}
			seen := sets.New[string]()
			for i, c := range n.Spec.PodCIDRs {
				if seen.Has(c) {
					allErrs = append(allErrs, field.Duplicate(p.Index(i), c))
				}
				seen.Insert(c)
			}
		}
	}
	return allErrs
}

// coreValidateNodeTaints is validateNodeTaints.
func coreValidateNodeTaints(taints []corev1.Taint, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	unique := map[corev1.TaintEffect]sets.Set[string]{}
	for i, t := range taints {
		idxPath := fldPath.Index(i)
		allErrs = append(allErrs, metav1validation.ValidateLabelName(t.Key, idxPath.Child("key"))...)
		if errs := validation.IsValidLabelValue(t.Value); len(errs) != 0 {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("value"), t.Value, strings.Join(errs, ";")))
		}
		allErrs = append(allErrs, coreValidateTaintEffect(t.Effect, false, idxPath.Child("effect"))...)
		if unique[t.Effect].Has(t.Key) {
			dup := field.Duplicate(idxPath, t)
			dup.Detail = "taints must be unique by key and effect pair"
			allErrs = append(allErrs, dup)
			continue
		}
		if unique[t.Effect] == nil {
			unique[t.Effect] = sets.New[string]()
		}
		unique[t.Effect].Insert(t.Key)
	}
	return allErrs
}

// coreValidateNodeResources is ValidateNodeResources.
func coreValidateNodeResources(n *corev1.Node) field.ErrorList {
	var allErrs field.ErrorList
	for _, k := range coreSortedResourceNames(n.Status.Capacity) {
		allErrs = append(allErrs, coreValidateResourceQuantity(k, n.Status.Capacity[k], field.NewPath("status", "capacity", string(k)))...)
	}
	for _, k := range coreSortedResourceNames(n.Status.Allocatable) {
		allErrs = append(allErrs, coreValidateResourceQuantity(k, n.Status.Allocatable[k], field.NewPath("status", "allocatable", string(k)))...)
	}
	return allErrs
}

const coreNodePodCIDRMsg = "node updates may not change podCIDR except from \"\" to valid"

// coreValidateNodeUpdate is ValidateNodeUpdate.
func coreValidateNodeUpdate(n, old *corev1.Node) field.ErrorList {
	allErrs := coreValidateObjectMetaUpdate(&n.ObjectMeta, &old.ObjectMeta)
	allErrs = append(allErrs, coreValidateNodeResources(n)...)
	seen := map[corev1.NodeAddress]bool{}
	for i, a := range n.Status.Addresses {
		if seen[a] {
			allErrs = append(allErrs, field.Duplicate(field.NewPath("status", "addresses").Index(i), a))
		}
		seen[a] = true
	}
	if len(old.Spec.PodCIDRs) > 0 {
		p := field.NewPath("spec", "podCIDRs")
		if len(old.Spec.PodCIDRs) != len(n.Spec.PodCIDRs) {
			allErrs = append(allErrs, field.Forbidden(p, coreNodePodCIDRMsg))
		} else {
			for i, v := range old.Spec.PodCIDRs {
				if v != n.Spec.PodCIDRs[i] {
					allErrs = append(allErrs, field.Forbidden(p, coreNodePodCIDRMsg))
				}
			}
		}
	}
	if len(old.Spec.ProviderID) > 0 && old.Spec.ProviderID != n.Spec.ProviderID {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "providerID"), "node updates may not change providerID except from \"\" to valid"))
	}
	if len(n.Spec.Taints) > 0 {
		allErrs = append(allErrs, coreValidateNodeTaints(n.Spec.Taints, field.NewPath("metadata", "taints"))...)
	}
	if n.Spec.DoNotUseExternalID != old.Spec.DoNotUseExternalID {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "externalID"), "may not be updated"))
	}
	return allErrs
}

// ValidateUpdate is ValidateNode + ValidateNodeUpdate.
func (nodeStrategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	n := obj.(*corev1.Node)
	return append(coreValidateNode(n), coreValidateNodeUpdate(n, old.(*corev1.Node))...)
}

// ValidateStatusUpdate is ValidateNodeUpdate.
func (nodeStrategy) ValidateStatusUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return coreValidateNodeUpdate(obj.(*corev1.Node), old.(*corev1.Node))
}

// SelectableFields: spec.unschedulable.
func (nodeStrategy) SelectableFields(obj runtime.Object) fields.Set {
	return fields.Set{"spec.unschedulable": strconv.FormatBool(obj.(*corev1.Node).Spec.Unschedulable)}
}

// TableColumns: NAME STATUS ROLES AGE VERSION, and with -o wide
// INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME.
func (nodeStrategy) TableColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		NameColumn(),
		{Name: "Status", Type: "string", Description: "The status of the node"},
		{Name: "Roles", Type: "string", Description: "The roles of the node"},
		AgeColumn(),
		{Name: "Version", Type: "string", Description: corev1.NodeSystemInfo{}.SwaggerDoc()["kubeletVersion"]},
		{Name: "Internal-IP", Type: "string", Priority: 1, Description: corev1.NodeStatus{}.SwaggerDoc()["addresses"]},
		{Name: "External-IP", Type: "string", Priority: 1, Description: corev1.NodeStatus{}.SwaggerDoc()["addresses"]},
		{Name: "OS-Image", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["osImage"]},
		{Name: "Kernel-Version", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["kernelVersion"]},
		{Name: "Container-Runtime", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["containerRuntimeVersion"]},
	}
}

// TableRow is printNode.
func (nodeStrategy) TableRow(obj runtime.Object, now time.Time) []interface{} {
	n := obj.(*corev1.Node)
	var status []string
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				status = append(status, string(c.Type))
			} else {
				status = append(status, "Not"+string(c.Type))
			}
			break
		}
	}
	if len(status) == 0 {
		status = append(status, "Unknown")
	}
	if n.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}
	roles := strings.Join(coreNodeRoles(n), ",")
	if roles == "" {
		roles = "<none>"
	}
	info := n.Status.NodeInfo
	unknown := func(s string) string {
		if s == "" {
			return "<unknown>"
		}
		return s
	}
	return []interface{}{n.Name, strings.Join(status, ","), roles, Age(n.CreationTimestamp, now), info.KubeletVersion,
		coreNodeAddress(n, corev1.NodeInternalIP), coreNodeAddress(n, corev1.NodeExternalIP),
		unknown(info.OSImage), unknown(info.KernelVersion), unknown(info.ContainerRuntimeVersion)}
}

// coreNodeRoles is findNodeRoles: node-role.kubernetes.io/<role> labels and
// the kubernetes.io/role label, sorted.
func coreNodeRoles(n *corev1.Node) []string {
	roles := sets.New[string]()
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if r := strings.TrimPrefix(k, "node-role.kubernetes.io/"); r != "" {
				roles.Insert(r)
			}
		case k == "kubernetes.io/role" && v != "":
			roles.Insert(v)
		}
	}
	list := roles.UnsortedList()
	sort.Strings(list)
	return list
}

func coreNodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}
