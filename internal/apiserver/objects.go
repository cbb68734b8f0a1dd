package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"

	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

// Store layout (see BRIEF): /registry/<group or core>/<resource>/[<ns>/]<name>.
func resourcePrefix(r *registry.Resource) string {
	g := r.Group
	if g == "" {
		g = "core"
	}
	return "/registry/" + g + "/" + r.Resource + "/"
}

func collectionPrefix(r *registry.Resource, ns string) string {
	if r.Namespaced && ns != "" {
		return resourcePrefix(r) + ns + "/"
	}
	return resourcePrefix(r)
}

func objectKey(r *registry.Resource, ns, name string) string {
	if r.Namespaced {
		return resourcePrefix(r) + ns + "/" + name
	}
	return resourcePrefix(r) + name
}

// decodeStored turns a stored value into a typed object with its
// resourceVersion set.
func decodeStored(r *registry.Resource, value []byte, rev int64) (runtime.Object, error) {
	obj := r.New()
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(value, obj); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", r.Kind, err)
	}
	obj.GetObjectKind().SetGroupVersionKind(r.GVK())
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatInt(rev, 10))
	}
	return obj, nil
}

// encodeForStore renders obj as stored: with apiVersion/kind, without
// resourceVersion (the store's ModRevision is the resourceVersion).
func encodeForStore(r *registry.Resource, obj runtime.Object) ([]byte, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	rv := m.GetResourceVersion()
	m.SetResourceVersion("")
	obj.GetObjectKind().SetGroupVersionKind(r.GVK())
	data, err := json.Marshal(obj)
	m.SetResourceVersion(rv)
	return data, err
}

func setRV(obj runtime.Object, rev int64) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatInt(rev, 10))
	}
}

// storeErr maps store errors to API errors for one object.
func storeErr(err error, gr schema.GroupResource, name string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return apierrors.NewNotFound(gr, name)
	case errors.Is(err, store.ErrExists):
		return apierrors.NewAlreadyExists(gr, name)
	case errors.Is(err, store.ErrConflict):
		return errConflictModified(gr, name)
	case errors.Is(err, store.ErrCompacted):
		return apierrors.NewResourceExpired("The resourceVersion for the provided list is too old.")
	case errors.Is(err, store.ErrClosed):
		return apierrors.NewServiceUnavailable("storage is shutting down")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apierrors.NewTimeoutError("request did not complete within the allowed duration", 0)
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return err
	}
	return apierrors.NewInternalError(err)
}

func errConflictModified(gr schema.GroupResource, name string) error {
	return apierrors.NewConflict(gr, name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// getObject reads one object; it returns the typed object and its ModRevision.
func (s *Server) getObject(ctx context.Context, r *registry.Resource, ns, name string) (runtime.Object, int64, error) {
	kv, err := s.store.Get(ctx, objectKey(r, ns, name))
	if err != nil {
		return nil, 0, storeErr(err, r.GVR().GroupResource(), name)
	}
	obj, err := decodeStored(r, kv.Value, kv.ModRevision)
	if err != nil {
		return nil, 0, apierrors.NewInternalError(err)
	}
	return obj, kv.ModRevision, nil
}

// listAll reads every object under a collection at one revision (rev 0 =
// now), following store pages.
func (s *Server) listAll(ctx context.Context, r *registry.Resource, ns string, rev int64) ([]runtime.Object, int64, error) {
	var out []runtime.Object
	prefix := collectionPrefix(r, ns)
	start := ""
	for {
		res, err := s.store.List(ctx, prefix, store.ListOptions{Revision: rev, Limit: 500, StartKey: start})
		if err != nil {
			return nil, 0, err
		}
		rev = res.Revision
		for _, kv := range res.KVs {
			obj, err := decodeStored(r, kv.Value, kv.ModRevision)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, obj)
		}
		if !res.More || len(res.KVs) == 0 {
			return out, rev, nil
		}
		start = res.KVs[len(res.KVs)-1].Key + "\x00"
	}
}

// filter is a parsed label + field selector for one resource.
type filter struct {
	labels labels.Selector
	fields fields.Selector
}

func (f *filter) empty() bool {
	return (f.labels == nil || f.labels.Empty()) && (f.fields == nil || f.fields.Empty())
}

func (f *filter) matches(r *registry.Resource, obj runtime.Object) bool {
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	if f.labels != nil && !f.labels.Empty() && !f.labels.Matches(labels.Set(m.GetLabels())) {
		return false
	}
	if f.fields != nil && !f.fields.Empty() {
		set := fields.Set{"metadata.name": m.GetName()}
		if r.Namespaced {
			set["metadata.namespace"] = m.GetNamespace()
		}
		for k, v := range r.Strategy.SelectableFields(obj) {
			set[k] = v
		}
		if !f.fields.Matches(set) {
			return false
		}
	}
	return true
}

// checkFieldSelector rejects fields the resource does not support, with
// kube-apiserver's wording.
func checkFieldSelector(r *registry.Resource, sel fields.Selector) error {
	if sel == nil || sel.Empty() {
		return nil
	}
	allowed := r.Strategy.SelectableFields(r.New())
	for _, req := range sel.Requirements() {
		if req.Field == "metadata.name" || (req.Field == "metadata.namespace" && r.Namespaced) {
			continue
		}
		if _, ok := allowed[req.Field]; ok {
			continue
		}
		// Cluster-scoped resources accept metadata.namespace too (always "").
		if req.Field == "metadata.namespace" {
			continue
		}
		return apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
	}
	return nil
}

// parseRV parses a resourceVersion parameter ("" → 0).
func parseRV(rv string) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0, apierrors.NewBadRequest(field.Invalid(field.NewPath("resourceVersion"), rv, "invalid resource version").Error())
	}
	return n, nil
}

// errTooLargeRV mirrors kube-apiserver's answer to a resourceVersion newer
// than anything it has (it waits, then gives up with 504).
func errTooLargeRV(asked, current int64) error {
	err := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", asked, current), 1)
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}
	return err
}

// namespaceStatus checks that ns exists and is not terminating, for creates
// of namespaced objects (kube-apiserver's NamespaceLifecycle admission).
func (s *Server) checkNamespaceForCreate(ctx context.Context, ri *reqInfo, name string) error {
	if s.nsRes == nil || !ri.res.Namespaced {
		return nil
	}
	obj, _, err := s.getObject(ctx, s.nsRes, "", ri.namespace)
	if err != nil {
		return err
	}
	m, _ := meta.Accessor(obj)
	terminating := m.GetDeletionTimestamp() != nil
	if phase := namespacePhase(obj); phase == "Terminating" {
		terminating = true
	}
	if terminating {
		err := apierrors.NewForbidden(ri.gr(), name, fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ri.namespace))
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type: "NamespaceTerminating", Message: fmt.Sprintf("namespace %s is being terminated", ri.namespace), Field: "metadata.namespace"})
		return err
	}
	return nil
}
