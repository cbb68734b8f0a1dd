// Package registry knows, for every resource skiff serves, what Kubernetes
// knows about it: its names and scope, the defaults applied to it, how it is
// validated, which fields are selectable, how it prints as a Table, and the
// side effects of writing it (ClusterIP/NodePort allocation, graceful pod
// deletion). The apiserver drives the HTTP verbs generically through these
// descriptions; this package never touches HTTP or the store.
package registry

import (
	"context"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resource describes one served resource (one REST collection).
type Resource struct {
	Group      string // "" for the core group
	Version    string
	Resource   string // plural, lower case: "pods"
	Singular   string // "pod"
	Kind       string // "Pod"
	ListKind   string // "PodList"
	Namespaced bool
	ShortNames []string
	Categories []string // "all" for the resources `kubectl get all` shows
	// Subresources served: "status", "binding" (pods), "scale" (apps).
	Subresources []string
	New          func() runtime.Object // empty typed object: &corev1.Pod{}
	NewList      func() runtime.Object // empty typed list: &corev1.PodList{}
	Strategy     Strategy
	// NoDeleteCollection: the collection cannot be deleted as a whole
	// (namespaces, as in Kubernetes).
	NoDeleteCollection bool
}

// GroupVersion of the resource.
func (r *Resource) GroupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: r.Group, Version: r.Version}
}

// GVR of the resource.
func (r *Resource) GVR() schema.GroupVersionResource {
	return r.GroupVersion().WithResource(r.Resource)
}

// GVK of the resource's objects.
func (r *Resource) GVK() schema.GroupVersionKind { return r.GroupVersion().WithKind(r.Kind) }

// HasSubresource reports whether name ("status", "scale", "binding") is served.
func (r *Resource) HasSubresource(name string) bool {
	for _, s := range r.Subresources {
		if s == name {
			return true
		}
	}
	return false
}

// Strategy is what a resource does on each write. Objects passed in are the
// resource's typed objects (*corev1.Pod, …) and may be modified in place.
type Strategy interface {
	// Default applies the defaults Kubernetes applies when it decodes the
	// object (pod restartPolicy Always, service type ClusterIP, …). Called
	// for every create and update body before validation.
	Default(obj runtime.Object)
	// PrepareForCreate clears what a client may not set on create (status
	// when there is a status subresource) and sets generation.
	PrepareForCreate(ctx context.Context, obj runtime.Object)
	// PrepareForUpdate keeps the old status when there is a status
	// subresource, and bumps generation when the spec changed.
	PrepareForUpdate(ctx context.Context, obj, old runtime.Object)
	// Validate returns the problems of a new object, with field paths and
	// messages as Kubernetes words them. ObjectMeta is included.
	Validate(ctx context.Context, obj runtime.Object) field.ErrorList
	// ValidateUpdate validates obj as a replacement of old, including
	// immutable fields.
	ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList
	// PrepareForStatusUpdate keeps everything of old but the status (and
	// the metadata a status write may change) for writes to /status.
	PrepareForStatusUpdate(ctx context.Context, obj, old runtime.Object)
	// ValidateStatusUpdate validates a /status write.
	ValidateStatusUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList
	// SelectableFields returns the fields a fieldSelector may use, beyond
	// metadata.name and metadata.namespace (which the apiserver adds).
	SelectableFields(obj runtime.Object) fields.Set
	// TableColumns are the server-side Table columns as the Kubernetes
	// printers define them (Priority 1 = only with -o wide). Name is usually
	// first; events, as upstream, put it last among the wide columns.
	TableColumns() []metav1.TableColumnDefinition
	// TableRow returns one row's cells for obj, in TableColumns order, as of
	// now (ages are rendered relative to now).
	TableRow(obj runtime.Object, now time.Time) []interface{}
}

// Optional interfaces a Strategy may implement.

// CreateHook runs after validation, before the object is stored (also for
// dry runs). It may modify obj (e.g. allocate a ClusterIP). undo, when not
// nil, is called if the object is not stored after all (dry run, conflict,
// store error). Errors should be *apierrors.StatusError.
type CreateHook interface {
	BeforeCreate(ctx context.Context, obj runtime.Object, dryRun bool) (undo func(), err error)
}

// UpdateHook is CreateHook for updates (e.g. a Service changing type).
// commit, when not nil, is called once the update is stored (to release
// what old held); undo when it is not.
type UpdateHook interface {
	BeforeUpdate(ctx context.Context, obj, old runtime.Object, dryRun bool) (commit, undo func(), err error)
}

// Admitter is implemented by strategies whose create admission reads other
// objects (the ServiceAccount admission plugin of pods). Admit runs where
// kube-apiserver's mutating admission runs: after Default, name generation
// and the namespace check, before PrepareForCreate and validation, also for
// dry runs. It may modify obj. name is what an admission error names: the
// object's name, or its generateName when the name was generated (upstream
// admission sees the object before its name is generated). Errors should be
// *apierrors.StatusError.
type Admitter interface {
	Admit(ctx context.Context, obj runtime.Object, name string) error
}

// DeleteHook runs after an object is removed from the store.
type DeleteHook interface {
	AfterDelete(ctx context.Context, obj runtime.Object)
}

// Initializer rebuilds in-memory state (allocators) from the stored objects
// when the server starts, before any request is served.
type Initializer interface {
	Init(ctx context.Context, existing []runtime.Object) error
}

// GracefulDeleter decides whether a delete is graceful (pods on a node):
// graceful == true means mark deletionTimestamp = now + seconds and keep the
// object until it is deleted again with grace 0 (or its agent confirms).
// opts.GracePeriodSeconds, when set, overrides the object's own period.
type GracefulDeleter interface {
	GracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) (seconds int64, graceful bool)
}

// ScaleAccessor is implemented by strategies of resources with a "scale"
// subresource.
type ScaleAccessor interface {
	// Scale reads spec.replicas, status.replicas and the selector.
	Scale(obj runtime.Object) (specReplicas, statusReplicas int32, selector string)
	// SetReplicas writes spec.replicas.
	SetReplicas(obj runtime.Object, replicas int32)
}

// Config carries the cluster settings some resources need.
type Config struct {
	ServiceCIDR   netip.Prefix // default 10.43.0.0/16
	NodePortFirst int          // default 30000
	NodePortLast  int          // default 32767
	// tolerationSeconds of the NoExecute tolerations for the not-ready and
	// unreachable taints added to every pod that has none; default 300.
	DefaultNotReadyTolerationSeconds    int64
	DefaultUnreachableTolerationSeconds int64
	// Objects reads stored objects for the admission that needs them: the
	// ServiceAccount admission of pods (service account must exist,
	// projected token volume, imagePullSecrets). kube-apiserver runs it by
	// default and skiff server sets Objects; nil turns it off, as
	// --disable-admission-plugins=ServiceAccount does in upstream's
	// integration tests (pods still get serviceAccountName "default").
	Objects ObjectGetter
}

// Resources returns every resource skiff serves, in discovery order.
func Resources(cfg Config) ([]*Resource, error) {
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = netip.MustParsePrefix("10.43.0.0/16")
	}
	if cfg.NodePortFirst == 0 && cfg.NodePortLast == 0 {
		cfg.NodePortFirst, cfg.NodePortLast = 30000, 32767
	}
	svc, err := services(cfg)
	if err != nil {
		return nil, err
	}
	return []*Resource{
		// core/v1
		namespaces(), podsWith(cfg), nodes(), events(), configMaps(), secrets(),
		serviceAccounts(), svc, endpoints(),
		// apps/v1
		deployments(), replicaSets(),
		// networking.k8s.io/v1
		ingresses(), ingressClasses(),
		// coordination.k8s.io/v1
		leases(),
		// discovery.k8s.io/v1
		endpointSlices(),
	}, nil
}
