package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

const maxRetries = 10

// errRetry marks a store conflict that an unconditional write retries.
var errRetry = errors.New("retry")

func generateName(base string) string {
	const maxGeneratedNameLength = 58
	if len(base) > maxGeneratedNameLength {
		base = base[:maxGeneratedNameLength]
	}
	return base + utilrand.String(5)
}

// validateNameSegment keeps names usable as one store-key/URL segment.
func validateNameSegment(name string) field.ErrorList {
	var errs field.ErrorList
	if name == "" {
		return nil
	}
	for _, msg := range path.IsValidPathSegmentName(name) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), name, msg))
	}
	return errs
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	wr, err := parseWriteRequest(w, r, "CreateOptions")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, warnings, err := s.decode(wr, wr.body, ri.res.GVK(), ri.res.New())
	if err == nil {
		obj, err = s.createObject(r.Context(), ri, obj, wr.dryRun)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	addWarnings(w, warnings)
	s.writeObject(w, http.StatusCreated, obj, wr.media)
}

// createObject runs the create pipeline on a decoded object.
func (s *Server) createObject(ctx context.Context, ri *reqInfo, obj runtime.Object, dryRun bool) (runtime.Object, error) {
	res := ri.res
	om, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if res.Namespaced {
		if om.GetNamespace() == "" {
			om.SetNamespace(ri.namespace)
		} else if om.GetNamespace() != ri.namespace {
			return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
	} else {
		om.SetNamespace("")
	}
	if rv, err := strconv.ParseUint(om.GetResourceVersion(), 10, 64); err == nil && rv != 0 {
		// kube-apiserver's storage refuses this (as a 500); it is the
		// client's mistake, so 400 here.
		return nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
	}
	res.Strategy.Default(obj)
	// System fields are the server's (rest.FillObjectMetaSystemFields).
	om.SetUID(uuid.NewUUID())
	om.SetCreationTimestamp(metav1.NewTime(time.Now().Truncate(time.Second)))
	om.SetDeletionTimestamp(nil)
	om.SetDeletionGracePeriodSeconds(nil)
	om.SetResourceVersion("")
	om.SetSelfLink("")
	om.SetManagedFields(nil)
	generated := om.GetName() == "" && om.GetGenerateName() != ""
	if generated {
		om.SetName(generateName(om.GetGenerateName()))
	}
	if err := s.checkNamespaceForCreate(ctx, ri, om.GetName()); err != nil {
		return nil, err
	}
	if a, ok := res.Strategy.(registry.Admitter); ok {
		name := om.GetName()
		if generated {
			name = om.GetGenerateName()
		}
		if err := a.Admit(ctx, obj, name); err != nil {
			return nil, err
		}
	}
	res.Strategy.PrepareForCreate(ctx, obj)
	errs := res.Strategy.Validate(ctx, obj)
	errs = append(errs, validateNameSegment(om.GetName())...)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(res.GVK().GroupKind(), om.GetName(), errs)
	}
	for attempt := 0; ; attempt++ {
		var undo func()
		if h, ok := res.Strategy.(registry.CreateHook); ok {
			u, err := h.BeforeCreate(ctx, obj, dryRun)
			if err != nil {
				return nil, err
			}
			undo = u
		}
		if dryRun {
			if undo != nil {
				undo()
			}
			return obj, nil
		}
		data, err := encodeForStore(res, obj)
		if err != nil {
			if undo != nil {
				undo()
			}
			return nil, apierrors.NewInternalError(err)
		}
		rev, err := s.store.Create(ctx, objectKey(res, om.GetNamespace(), om.GetName()), data)
		if err != nil {
			if undo != nil {
				undo()
			}
			if errors.Is(err, store.ErrExists) && generated && attempt < 8 {
				om.SetName(generateName(om.GetGenerateName()))
				continue
			}
			return nil, storeErr(err, ri.gr(), om.GetName())
		}
		setRV(obj, rev)
		return obj, nil
	}
}

type updateMode int

const (
	modeMain updateMode = iota
	modeStatus
	modeFinalize
)

func modeOf(ri *reqInfo) updateMode {
	switch ri.sub {
	case "status":
		return modeStatus
	case "finalize":
		return modeFinalize
	}
	return modeMain
}

// checkNames enforces that the object names the URL's object.
func checkNames(ri *reqInfo, obj runtime.Object) error {
	om, err := meta.Accessor(obj)
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	if om.GetName() != ri.name {
		return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", om.GetName(), ri.name))
	}
	if ri.res.Namespaced {
		if om.GetNamespace() == "" {
			om.SetNamespace(ri.namespace)
		} else if om.GetNamespace() != ri.namespace {
			return apierrors.NewBadRequest(fmt.Sprintf("the namespace of the object (%s) does not match the namespace on the URL (%s)", om.GetNamespace(), ri.namespace))
		}
	} else {
		om.SetNamespace("")
	}
	return nil
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ctx := r.Context()
	wr, err := parseWriteRequest(w, r, "UpdateOptions")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, warnings, err := s.decode(wr, wr.body, ri.res.GVK(), ri.res.New())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkNames(ri, obj); err != nil {
		s.writeError(w, r, err)
		return
	}
	om, _ := meta.Accessor(obj)
	want, err := parseRV(om.GetResourceVersion())
	if err != nil {
		s.writeError(w, r, errObjectRV(om.GetResourceVersion()))
		return
	}
	var out runtime.Object
	for attempt := 0; ; attempt++ {
		old, oldRev, err := s.getObject(ctx, ri.res, ri.namespace, ri.name)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if want > 0 && want != oldRev {
			s.writeError(w, r, errConflictModified(ri.gr(), ri.name))
			return
		}
		cand := obj.DeepCopyObject()
		if want == 0 {
			// Unconditional update: it applies to the current version.
			setRV(cand, oldRev)
		}
		out, err = s.updateObject(ctx, ri, cand, old, oldRev, modeOf(ri), wr.dryRun)
		if retry(err, attempt) && want == 0 {
			continue
		}
		err = conflictOnRetry(err, ri)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		break
	}
	addWarnings(w, warnings)
	s.writeObject(w, http.StatusOK, out, wr.media)
}

// updateObject validates and writes obj as the replacement of old (read at
// oldRev). A store conflict returns errRetry. When the write empties the
// finalizers of an object being deleted, the object is removed.
func (s *Server) updateObject(ctx context.Context, ri *reqInfo, obj, old runtime.Object, oldRev int64, mode updateMode, dryRun bool) (runtime.Object, error) {
	res := ri.res
	st := res.Strategy
	fs, hasFinalize := st.(finalizeStrategy)
	if mode == modeFinalize && !hasFinalize {
		// Only spec.finalizers may change through /finalize.
		ns, ok1 := obj.(*corev1.Namespace)
		oldNS, ok2 := old.(*corev1.Namespace)
		if !ok1 || !ok2 {
			return nil, errNotFoundPath()
		}
		fin := ns.Spec.Finalizers
		ns = oldNS.DeepCopy()
		ns.Spec.Finalizers = fin
		obj = ns
	}
	om, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	oldMeta, _ := meta.Accessor(old)
	st.Default(obj)
	// rest.BeforeUpdate: clients cannot change these.
	if om.GetUID() == "" {
		om.SetUID(oldMeta.GetUID())
	}
	if ct := oldMeta.GetCreationTimestamp(); !ct.IsZero() {
		om.SetCreationTimestamp(oldMeta.GetCreationTimestamp())
	}
	om.SetDeletionTimestamp(oldMeta.GetDeletionTimestamp())
	if oldMeta.GetDeletionGracePeriodSeconds() != nil || om.GetDeletionGracePeriodSeconds() != nil {
		om.SetDeletionGracePeriodSeconds(oldMeta.GetDeletionGracePeriodSeconds())
	}
	om.SetGeneration(oldMeta.GetGeneration())
	om.SetManagedFields(nil)
	om.SetSelfLink("")
	var errs field.ErrorList
	switch {
	case mode == modeFinalize && hasFinalize:
		fs.PrepareForFinalize(ctx, obj, old)
		errs = fs.ValidateFinalize(ctx, obj, old)
	case mode == modeFinalize:
		errs = st.ValidateUpdate(ctx, obj, old)
	case mode == modeStatus:
		st.PrepareForStatusUpdate(ctx, obj, old)
		errs = st.ValidateStatusUpdate(ctx, obj, old)
	default:
		st.PrepareForUpdate(ctx, obj, old)
		errs = st.ValidateUpdate(ctx, obj, old)
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(res.GVK().GroupKind(), om.GetName(), errs)
	}
	var commit, undo func()
	if h, ok := st.(registry.UpdateHook); ok {
		commit, undo, err = h.BeforeUpdate(ctx, obj, old, dryRun)
		if err != nil {
			return nil, err
		}
	}
	finish := func(ok bool) {
		if ok && commit != nil {
			commit()
		} else if !ok && undo != nil {
			undo()
		}
	}
	if om.GetDeletionTimestamp() != nil && len(om.GetFinalizers()) == 0 && !namespaceHasSpecFinalizers(obj) {
		// The last finalizer is gone: the object goes now.
		if dryRun {
			finish(false)
			return obj, nil
		}
		kv, rev, err := s.store.Delete(ctx, objectKey(res, om.GetNamespace(), om.GetName()), oldRev)
		if err != nil {
			finish(false)
			if errors.Is(err, store.ErrConflict) {
				return nil, errRetry
			}
			return nil, storeErr(err, ri.gr(), om.GetName())
		}
		finish(true)
		_ = kv
		setRV(obj, rev)
		s.afterDelete(ctx, res, obj)
		return obj, nil
	}
	data, err := encodeForStore(res, obj)
	if err != nil {
		finish(false)
		return nil, apierrors.NewInternalError(err)
	}
	if dryRun {
		finish(false)
		return obj, nil
	}
	if oldData, err := encodeForStore(res, old); err == nil && bytes.Equal(oldData, data) {
		// No change: kube-apiserver skips the write and keeps the RV.
		finish(true)
		setRV(obj, oldRev)
		return obj, nil
	}
	rev, err := s.store.Update(ctx, objectKey(res, om.GetNamespace(), om.GetName()), data, oldRev)
	if err != nil {
		finish(false)
		if errors.Is(err, store.ErrConflict) {
			return nil, errRetry
		}
		return nil, storeErr(err, ri.gr(), om.GetName())
	}
	finish(true)
	setRV(obj, rev)
	return obj, nil
}

// finalizeStrategy is what the namespace strategy offers for writes to
// namespaces/{name}/finalize (registry.FinalizeStrategy).
type finalizeStrategy interface {
	PrepareForFinalize(ctx context.Context, obj, old runtime.Object)
	ValidateFinalize(ctx context.Context, obj, old runtime.Object) field.ErrorList
}

func namespaceHasSpecFinalizers(obj runtime.Object) bool {
	ns, ok := obj.(*corev1.Namespace)
	return ok && len(ns.Spec.Finalizers) > 0
}

func namespacePhase(obj runtime.Object) corev1.NamespacePhase {
	if ns, ok := obj.(*corev1.Namespace); ok {
		return ns.Status.Phase
	}
	return ""
}

func (s *Server) afterDelete(ctx context.Context, res *registry.Resource, obj runtime.Object) {
	if h, ok := res.Strategy.(registry.DeleteHook); ok {
		h.AfterDelete(ctx, obj)
	}
}

// errObjectRV refuses a metadata.resourceVersion that is not a number.
func errObjectRV(rv string) error {
	return apierrors.NewBadRequest(fmt.Sprintf("metadata.resourceVersion: Invalid value: %q: must be an integer", rv))
}

// retry tells whether a write that hit a store conflict may go again.
func retry(err error, attempt int) bool {
	return errors.Is(err, errRetry) && attempt < maxRetries
}

// conflictOnRetry turns a store conflict that is not retried into a 409.
func conflictOnRetry(err error, ri *reqInfo) error {
	if errors.Is(err, errRetry) {
		return errConflictModified(ri.gr(), ri.name)
	}
	return err
}

func rvString(rev int64) string { return strconv.FormatInt(rev, 10) }
