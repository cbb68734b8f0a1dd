package controller

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// RefManager claims objects for a controller owner as Kubernetes'
// ControllerRefManager does: it adopts orphans that match the owner's
// selector, releases owned objects that stop matching, and leaves objects
// controlled by someone else alone. Adoption and release are strategic
// merge patches that carry the object's UID, so they fail rather than touch
// a same-named replacement.
type RefManager struct {
	Owner    metav1.Object
	OwnerGVK schema.GroupVersionKind
	Selector labels.Selector
	// Patch applies a strategic merge patch to the named dependent (in the
	// owner's namespace).
	Patch func(ctx context.Context, name string, data []byte) error
	// CanAdopt is called once before the first adoption; adoption is
	// refused when it errors (e.g. the owner was deleted meanwhile, checked
	// with an uncached read, as upstream's RecheckDeletionTimestamp).
	CanAdopt func(ctx context.Context) error

	canAdoptErr  error
	canAdoptDone bool
}

// Claim returns the objects of candidates the owner controls after adopting
// and releasing as needed. Errors from individual patches are returned
// together; objects that could not be claimed are left out.
func (m *RefManager) Claim(ctx context.Context, candidates []metav1.Object) ([]metav1.Object, error) {
	var claimed []metav1.Object
	var errs []error
	for _, obj := range candidates {
		ok, err := m.claimOne(ctx, obj)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			claimed = append(claimed, obj)
		}
	}
	if len(errs) > 0 {
		return claimed, fmt.Errorf("claim objects for %s: %w", m.Owner.GetName(), joinErrors(errs))
	}
	return claimed, nil
}

func (m *RefManager) claimOne(ctx context.Context, obj metav1.Object) (bool, error) {
	ref := metav1.GetControllerOfNoCopy(obj)
	matches := m.Selector.Matches(labels.Set(obj.GetLabels()))
	if ref != nil {
		if ref.UID != m.Owner.GetUID() {
			return false, nil // someone else's
		}
		if matches {
			return true, nil
		}
		if m.Owner.GetDeletionTimestamp() != nil {
			return false, nil // owner going away: GC handles dependents
		}
		err := m.release(ctx, obj)
		if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
			return false, nil // gone, or UID precondition failed: gone too
		}
		return false, err
	}
	// An orphan.
	if !matches || m.Owner.GetDeletionTimestamp() != nil || obj.GetDeletionTimestamp() != nil {
		return false, nil
	}
	if obj.GetNamespace() != m.Owner.GetNamespace() {
		return false, nil
	}
	if err := m.adopt(ctx, obj); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func (m *RefManager) adopt(ctx context.Context, obj metav1.Object) error {
	if !m.canAdoptDone {
		m.canAdoptDone = true
		if m.CanAdopt != nil {
			m.canAdoptErr = m.CanAdopt(ctx)
		}
	}
	if m.canAdoptErr != nil {
		return fmt.Errorf("can't adopt %s: %w", obj.GetName(), m.canAdoptErr)
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"ownerReferences": []metav1.OwnerReference{*metav1.NewControllerRef(m.Owner, m.OwnerGVK)},
			"uid":             obj.GetUID(),
		},
	})
	if err != nil {
		return err
	}
	return m.Patch(ctx, obj.GetName(), patch)
}

func (m *RefManager) release(ctx context.Context, obj metav1.Object) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"ownerReferences": []map[string]any{{"$patch": "delete", "uid": m.Owner.GetUID()}},
			"uid":             obj.GetUID(),
		},
	})
	if err != nil {
		return err
	}
	return m.Patch(ctx, obj.GetName(), patch)
}

// RecheckDeletion returns a CanAdopt function that reads the owner fresh
// with get and refuses adoption when it is being deleted or was replaced
// (different UID).
func RecheckDeletion(owner metav1.Object, get func(ctx context.Context) (metav1.Object, error)) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		fresh, err := get(ctx)
		if err != nil {
			return err
		}
		if fresh.GetUID() != owner.GetUID() {
			return fmt.Errorf("original %s/%s is gone: got uid %v, wanted %v", owner.GetNamespace(), owner.GetName(), fresh.GetUID(), owner.GetUID())
		}
		if fresh.GetDeletionTimestamp() != nil {
			return fmt.Errorf("%s/%s has just been deleted at %v", owner.GetNamespace(), owner.GetName(), fresh.GetDeletionTimestamp())
		}
		return nil
	}
}

// PatchType is the patch type RefManager's patches use.
const PatchType = types.StrategicMergePatchType

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msg := errs[0].Error()
	for _, e := range errs[1:] {
		msg += "; " + e.Error()
	}
	return fmt.Errorf("%s", msg)
}
