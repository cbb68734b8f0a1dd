package garbagecollector

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/retry"
)

// restMappingError: the reference's apiVersion/kind is not (yet) served.
type restMappingError struct{ kind, version string }

func (r *restMappingError) Error() string {
	vk := r.version + "/" + r.kind
	return fmt.Sprintf("unable to get REST mapping for %s. If %s is a non-namespaced object (e.g. Node), "+
		"please check that the apiVersion and kind are correct and the object is in the cluster.", vk, vk)
}

// apiResource maps apiVersion/kind to the resource to call and whether it
// is namespaced.
func (gc *Controller) apiResource(apiVersion, kind string) (schema.GroupVersionResource, bool, error) {
	gvk := schema.FromAPIVersionAndKind(apiVersion, kind)
	m, err := gc.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return schema.GroupVersionResource{}, false, &restMappingError{kind: kind, version: apiVersion}
	}
	return m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

func namespaceFor(namespaced bool, ns string) string {
	if namespaced {
		return ns
	}
	return ""
}

func (gc *Controller) client(id objectReference) (metadata.ResourceInterface, error) {
	gvr, namespaced, err := gc.apiResource(id.APIVersion, id.Kind)
	if err != nil {
		return nil, err
	}
	return gc.metadata.Resource(gvr).Namespace(namespaceFor(namespaced, id.Namespace)), nil
}

// getObject reads the object from the API, not a cache: every decision to
// delete or patch is made on the live state.
func (gc *Controller) getObject(ctx context.Context, id objectReference) (*metav1.PartialObjectMetadata, error) {
	rc, err := gc.client(id)
	if err != nil {
		return nil, err
	}
	return rc.Get(ctx, id.Name, metav1.GetOptions{})
}

// deleteObject deletes id if it is still the same object (UID) with the
// same owners: a resourceVersion precondition, retried without it when
// only unrelated fields changed (so busy objects are not starved).
func (gc *Controller) deleteObject(ctx context.Context, id objectReference, rv string, owners []metav1.OwnerReference, policy metav1.DeletionPropagation) error {
	rc, err := gc.client(id)
	if err != nil {
		return err
	}
	uid := id.UID
	pre := metav1.Preconditions{UID: &uid}
	if rv != "" {
		pre.ResourceVersion = &rv
	}
	opts := metav1.DeleteOptions{Preconditions: &pre, PropagationPolicy: &policy}
	err = rc.Delete(ctx, id.Name, opts)
	if apierrors.IsConflict(err) && rv != "" {
		live, lerr := rc.Get(ctx, id.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(lerr) {
			return nil
		}
		if lerr == nil && live.UID == id.UID && live.ResourceVersion != rv && reflect.DeepEqual(live.OwnerReferences, owners) {
			pre.ResourceVersion = nil
			err = rc.Delete(ctx, id.Name, opts)
		}
	}
	return err
}

// patch applies a strategic merge patch; resources that do not take one
// (custom resources) get the JSON merge patch jmp computes from the live
// object instead.
func (gc *Controller) patch(ctx context.Context, id objectReference, smp []byte, jmp func(*metav1.PartialObjectMetadata) ([]byte, error)) error {
	rc, err := gc.client(id)
	if err != nil {
		return err
	}
	_, err = rc.Patch(ctx, id.Name, types.StrategicMergePatchType, smp, metav1.PatchOptions{})
	if !apierrors.IsUnsupportedMediaType(err) {
		return err
	}
	live, err := rc.Get(ctx, id.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if live.UID != id.UID {
		return apierrors.NewNotFound(schema.GroupResource{Resource: id.Kind}, id.Name)
	}
	p, err := jmp(live)
	if err != nil {
		return err
	}
	_, err = rc.Patch(ctx, id.Name, types.MergePatchType, p, metav1.PatchOptions{})
	return err
}

// deleteOwnerRefsSMP is a strategic merge patch removing the owner
// references with the given UIDs; the dependent's UID guards against a
// same-named replacement.
func deleteOwnerRefsSMP(dependent types.UID, owners []types.UID) []byte {
	refs := make([]map[string]string, 0, len(owners))
	for _, u := range owners {
		refs = append(refs, map[string]string{"$patch": "delete", "uid": string(u)})
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"uid": dependent, "ownerReferences": refs}})
	return b
}

// deleteOwnerRefsJMP is the JSON merge patch equivalent, computed from the
// live object and guarded by its resourceVersion.
func deleteOwnerRefsJMP(live *metav1.PartialObjectMetadata, owners ...types.UID) ([]byte, error) {
	drop := map[types.UID]bool{}
	for _, u := range owners {
		drop[u] = true
	}
	keep := []metav1.OwnerReference{}
	for _, r := range live.OwnerReferences {
		if !drop[r.UID] {
			keep = append(keep, r)
		}
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{
		"uid": live.UID, "resourceVersion": live.ResourceVersion, "ownerReferences": keep}})
}

// unblockOwnerRefsSMP sets blockOwnerDeletion=false on n's blocking
// references (breaking foreground-deletion cycles).
func unblockOwnerRefsSMP(uid types.UID, owners []metav1.OwnerReference) []byte {
	f := false
	var refs []metav1.OwnerReference
	for _, r := range owners {
		if isTrue(r.BlockOwnerDeletion) {
			r.BlockOwnerDeletion = &f
			refs = append(refs, r)
		}
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"uid": uid, "ownerReferences": refs}})
	return b
}

func unblockOwnerRefsJMP(live *metav1.PartialObjectMetadata) ([]byte, error) {
	f := false
	refs := []metav1.OwnerReference{}
	for _, r := range live.OwnerReferences {
		if isTrue(r.BlockOwnerDeletion) {
			r.BlockOwnerDeletion = &f
		}
		refs = append(refs, r)
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{
		"uid": live.UID, "resourceVersion": live.ResourceVersion, "ownerReferences": refs}})
}

// removeFinalizer drops finalizer f from the owner with a JSON merge patch
// of metadata.finalizers guarded by resourceVersion, retrying conflicts.
// When it was the last finalizer of an object being deleted, the API
// removes the object.
func (gc *Controller) removeFinalizer(ctx context.Context, id objectReference, f string) error {
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		obj, err := gc.getObject(ctx, id)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot finalize owner %s, because cannot get it: %w. The garbage collector will retry later", id, err)
		}
		if obj.UID != id.UID {
			return nil
		}
		var keep []string
		found := false
		for _, x := range obj.Finalizers {
			if x == f {
				found = true
				continue
			}
			keep = append(keep, x)
		}
		if !found {
			return nil
		}
		p, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": obj.ResourceVersion, "finalizers": keep}})
		if err != nil {
			return err
		}
		rc, err := gc.client(id)
		if err != nil {
			return err
		}
		_, err = rc.Patch(ctx, id.Name, types.MergePatchType, p, metav1.PatchOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("updateMaxRetries(%d) has reached. The garbage collector will retry later for owner %v", retry.DefaultBackoff.Steps, id)
	}
	return err
}
