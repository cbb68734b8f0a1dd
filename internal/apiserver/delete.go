package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

// Namespaces kube-apiserver refuses to delete.
var immortalNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

// returnsDeletedObject: resources whose DELETE answers with the object
// (kube-apiserver's ReturnDeletedObject); others answer with a Status.
var returnsDeletedObject = map[schema.GroupResource]bool{
	{Resource: "pods"}: true, {Resource: "services"}: true, {Resource: "namespaces"}: true, {Resource: "serviceaccounts"}: true,
}

// optionsDecoder decodes DeleteOptions bodies sent as meta.k8s.io/v1, or
// in the group version of the resource (client-go's typed clients send
// "apps/v1" to apps, older clients "v1"), in JSON, YAML or protobuf.
var optionsDecoder = func() runtime.Decoder {
	sch := runtime.NewScheme()
	metav1.AddToGroupVersion(sch, metav1.SchemeGroupVersion)
	seen := map[schema.GroupVersion]bool{metav1.SchemeGroupVersion: true}
	for gvk := range registry.Scheme.AllKnownTypes() {
		if gv := gvk.GroupVersion(); !seen[gv] && gv.Version != runtime.APIVersionInternal {
			seen[gv] = true
			metav1.AddToGroupVersion(sch, gv)
		}
	}
	if gv := (schema.GroupVersion{Version: "v1"}); !seen[gv] {
		metav1.AddToGroupVersion(sch, gv)
	}
	return serializer.NewCodecFactory(sch).UniversalDeserializer()
}()

// deleteOptions reads DeleteOptions from the body or the query.
func (s *Server) deleteOptions(w http.ResponseWriter, r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		if _, err := bodyFormatOf(r); err != nil {
			return nil, err
		}
		gvk := metav1.SchemeGroupVersion.WithKind("DeleteOptions")
		obj, _, err := optionsDecoder.Decode(body, &gvk, opts)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		o, ok := obj.(*metav1.DeleteOptions)
		if !ok {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("decoded object of type %T is not DeleteOptions", obj))
		}
		opts = o
	} else if err := metainternalversionscheme.ParameterCodec.DecodeParameters(r.URL.Query(), metav1.SchemeGroupVersion, opts); err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if dr := r.URL.Query()["dryRun"]; len(dr) > 0 && len(opts.DryRun) == 0 {
		opts.DryRun = dr
	}
	var errs field.ErrorList
	if opts.OrphanDependents != nil && opts.PropagationPolicy != nil {
		errs = append(errs, field.Invalid(field.NewPath("propagationPolicy"), *opts.PropagationPolicy, "orphanDependents and deletionPropagation cannot be both set"))
	}
	if p := opts.PropagationPolicy; p != nil && *p != metav1.DeletePropagationForeground && *p != metav1.DeletePropagationBackground && *p != metav1.DeletePropagationOrphan {
		errs = append(errs, field.NotSupported(field.NewPath("propagationPolicy"), *p, []string{string(metav1.DeletePropagationForeground), string(metav1.DeletePropagationBackground), string(metav1.DeletePropagationOrphan), "nil"}))
	}
	for i, v := range opts.DryRun {
		if v != metav1.DryRunAll {
			errs = append(errs, field.NotSupported(field.NewPath("dryRun").Index(i), v, []string{metav1.DryRunAll}))
		}
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "DeleteOptions"}, "", errs)
	}
	return opts, nil
}

// parseDeleteRequest is the preamble of delete and deletecollection.
func (s *Server) parseDeleteRequest(w http.ResponseWriter, r *http.Request) (media, *metav1.DeleteOptions, error) {
	m, err := negotiate(r, false)
	if err != nil {
		return media{}, nil, err
	}
	opts, err := s.deleteOptions(w, r)
	return m, opts, err
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	m, opts, err := s.parseDeleteRequest(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, deleted, err := s.deleteObject(r.Context(), ri.res, ri.namespace, ri.name, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	foreground := (opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationForeground) ||
		(opts.OrphanDependents != nil && !*opts.OrphanDependents)
	if !deleted && foreground {
		code = http.StatusAccepted
	}
	if deleted && !returnsDeletedObject[ri.gr()] {
		om, _ := meta.Accessor(out)
		st := &metav1.Status{Status: metav1.StatusSuccess, Details: &metav1.StatusDetails{
			Name: om.GetName(), Group: ri.res.Group, Kind: ri.res.Resource, UID: om.GetUID()}}
		st.Kind, st.APIVersion = "Status", "v1"
		s.writeObject(w, code, st, m)
		return
	}
	s.writeObject(w, code, out, m)
}

// deleteObject implements kube-apiserver's delete: preconditions, graceful
// deletion, finalizers (incl. the GC ones for propagationPolicy), then
// removal. deleted says whether the object is gone.
func (s *Server) deleteObject(ctx context.Context, res *registry.Resource, ns, name string, opts *metav1.DeleteOptions) (runtime.Object, bool, error) {
	gr := res.GVR().GroupResource()
	dryRun := len(opts.DryRun) > 0
	if res.Group == "" && res.Resource == "namespaces" && immortalNamespaces[name] {
		return nil, false, apierrors.NewForbidden(gr, name, errors.New("this namespace may not be deleted"))
	}
	for attempt := 0; ; attempt++ {
		obj, rev, err := s.getObject(ctx, res, ns, name)
		if err != nil {
			return nil, false, err
		}
		om, _ := meta.Accessor(obj)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != om.GetUID() {
				return nil, false, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, om.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != om.GetResourceVersion() {
				return nil, false, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, om.GetResourceVersion()))
			}
		}
		out, deleted, err := s.deleteOnce(ctx, res, obj, rev, opts, dryRun)
		if errors.Is(err, errRetry) && attempt < maxRetries {
			continue
		}
		if errors.Is(err, errRetry) {
			err = errConflictModified(gr, name)
		}
		return out, deleted, err
	}
}

func (s *Server) deleteOnce(ctx context.Context, res *registry.Resource, obj runtime.Object, rev int64, opts *metav1.DeleteOptions, dryRun bool) (runtime.Object, bool, error) {
	gr := res.GVR().GroupResource()
	om, _ := meta.Accessor(obj)
	key := objectKey(res, om.GetNamespace(), om.GetName())
	now := time.Now()
	changed := false

	// Namespaces: the first delete only starts termination; the namespace
	// controller empties it, finalizes, and deletes again.
	if nsObj, ok := obj.(*corev1.Namespace); ok {
		if nsObj.DeletionTimestamp == nil {
			t := metav1.NewTime(now.Truncate(time.Second))
			nsObj.DeletionTimestamp = &t
			nsObj.Status.Phase = corev1.NamespaceTerminating
			addGCFinalizers(om, opts)
			return s.writeMarked(ctx, res, obj, key, rev, dryRun)
		}
		if len(nsObj.Spec.Finalizers) > 0 {
			if addGCFinalizers(om, opts) {
				return s.writeMarked(ctx, res, obj, key, rev, dryRun)
			}
			return obj, false, nil
		}
	}

	graceful := false
	if gd, ok := res.Strategy.(registry.GracefulDeleter); ok {
		secs, isGraceful := gd.GracePeriod(obj, opts)
		if isGraceful && secs > 0 {
			if dt := om.GetDeletionTimestamp(); dt != nil {
				// Already being deleted: only a shorter period changes it.
				cur := om.GetDeletionGracePeriodSeconds()
				if cur == nil || secs >= *cur {
					graceful = cur != nil && *cur > 0
				} else {
					start := dt.Add(-time.Duration(*cur) * time.Second)
					t := metav1.NewTime(start.Add(time.Duration(secs) * time.Second))
					om.SetDeletionTimestamp(&t)
					om.SetDeletionGracePeriodSeconds(&secs)
					graceful, changed = true, true
				}
			} else {
				t := metav1.NewTime(now.Add(time.Duration(secs) * time.Second))
				om.SetDeletionTimestamp(&t)
				om.SetDeletionGracePeriodSeconds(&secs)
				graceful, changed = true, true
			}
		}
	}
	if addGCFinalizers(om, opts) {
		changed = true
	}
	if graceful || len(om.GetFinalizers()) > 0 {
		if om.GetDeletionTimestamp() == nil {
			t := metav1.NewTime(now.Truncate(time.Second))
			om.SetDeletionTimestamp(&t)
			changed = true
		}
		if !graceful {
			if g := om.GetDeletionGracePeriodSeconds(); g == nil || *g != 0 {
				zero := int64(0)
				om.SetDeletionGracePeriodSeconds(&zero)
				changed = true
			}
		}
		if !changed {
			return obj, false, nil
		}
		return s.writeMarked(ctx, res, obj, key, rev, dryRun)
	}
	if dryRun {
		return obj, true, nil
	}
	kv, delRev, err := s.store.Delete(ctx, key, rev)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, false, errRetry
		}
		return nil, false, storeErr(err, gr, om.GetName())
	}
	_ = kv
	_ = delRev
	s.afterDelete(ctx, res, obj)
	return obj, true, nil
}

// addGCFinalizers adds the garbage collector's finalizer that the
// propagation policy asks for; it reports whether the list changed.
func addGCFinalizers(om metav1.Object, opts *metav1.DeleteOptions) bool {
	var want string
	switch {
	case opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationForeground,
		opts.OrphanDependents != nil && !*opts.OrphanDependents:
		want = metav1.FinalizerDeleteDependents
	case opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationOrphan,
		opts.OrphanDependents != nil && *opts.OrphanDependents:
		want = metav1.FinalizerOrphanDependents
	case opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationBackground:
		// An explicit background delete drops a GC finalizer an earlier
		// foreground or orphan delete left, as upstream's
		// deletionFinalizersForGarbageCollection does.
		var out []string
		for _, f := range om.GetFinalizers() {
			if f != metav1.FinalizerDeleteDependents && f != metav1.FinalizerOrphanDependents {
				out = append(out, f)
			}
		}
		if len(out) == len(om.GetFinalizers()) {
			return false
		}
		om.SetFinalizers(out)
		return true
	default:
		return false
	}
	fins := om.GetFinalizers()
	for _, f := range fins {
		if f == want {
			return false
		}
	}
	// The two GC finalizers exclude each other.
	var out []string
	for _, f := range fins {
		if f != metav1.FinalizerDeleteDependents && f != metav1.FinalizerOrphanDependents {
			out = append(out, f)
		}
	}
	om.SetFinalizers(append(out, want))
	return true
}

// writeMarked stores an object marked for deletion.
func (s *Server) writeMarked(ctx context.Context, res *registry.Resource, obj runtime.Object, key string, rev int64, dryRun bool) (runtime.Object, bool, error) {
	if dryRun {
		return obj, false, nil
	}
	data, err := encodeForStore(res, obj)
	if err != nil {
		return nil, false, apierrors.NewInternalError(err)
	}
	newRev, err := s.store.Update(ctx, key, data, rev)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, false, errRetry
		}
		om, _ := meta.Accessor(obj)
		return nil, false, storeErr(err, res.GVR().GroupResource(), om.GetName())
	}
	setRV(obj, newRev)
	return obj, false, nil
}

func (s *Server) deleteCollection(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	m, opts, err := s.parseDeleteRequest(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	lopts, f, err := s.listOptions(r, ri, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	lopts.Limit, lopts.Continue = 0, ""
	objs, lm, err := s.listPage(r, ri, lopts, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var out []runtime.Object
	for _, o := range objs {
		om, _ := meta.Accessor(o)
		if res, _, err := s.deleteObject(r.Context(), ri.res, om.GetNamespace(), om.GetName(), opts); err == nil {
			out = append(out, res)
		} else if !apierrors.IsNotFound(err) {
			s.writeError(w, r, err)
			return
		}
	}
	s.writeObject(w, http.StatusOK, s.renderList(r, ri.res, out, lm, media{}), m)
}
