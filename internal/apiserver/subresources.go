package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

var scaleGVK = autoscalingv1.SchemeGroupVersion.WithKind("Scale")

func toScale(acc registry.ScaleAccessor, obj runtime.Object) *autoscalingv1.Scale {
	om, _ := meta.Accessor(obj)
	spec, status, sel := acc.Scale(obj)
	sc := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: om.GetName(), Namespace: om.GetNamespace(), UID: om.GetUID(),
			ResourceVersion: om.GetResourceVersion(), CreationTimestamp: om.GetCreationTimestamp()},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel},
	}
	sc.APIVersion, sc.Kind = scaleGVK.GroupVersion().String(), scaleGVK.Kind
	return sc
}

func (s *Server) serveScale(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ctx := r.Context()
	acc, ok := ri.res.Strategy.(registry.ScaleAccessor)
	if !ok {
		s.writeError(w, r, errNotFoundPath())
		return
	}
	m, err := negotiate(r, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if r.Method == http.MethodGet {
		obj, _, err := s.getObject(ctx, ri.res, ri.namespace, ri.name)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeObject(w, http.StatusOK, toScale(acc, obj), m)
		return
	}
	if r.Method != http.MethodPut && r.Method != http.MethodPatch {
		s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
		return
	}
	kind := "UpdateOptions"
	if r.Method == http.MethodPatch {
		kind = "PatchOptions"
	}
	wr, err := parseWriteRequest(w, r, kind)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var warnings []string
	for attempt := 0; ; attempt++ {
		obj, rev, err := s.getObject(ctx, ri.res, ri.namespace, ri.name)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		cur := toScale(acc, obj)
		data := wr.body
		if wr.patchType != "" {
			curJSON, _ := json.Marshal(cur)
			if data, err = applyPatch(wr.patchType, curJSON, wr.body, &autoscalingv1.Scale{}); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		decoded, warns, err := s.decode(wr, data, scaleGVK, &autoscalingv1.Scale{})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		warnings = warns
		sc := decoded.(*autoscalingv1.Scale)
		if sc.Name != ri.name {
			s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", sc.Name, ri.name)))
			return
		}
		if sc.ResourceVersion != "" && sc.ResourceVersion != rvString(rev) {
			s.writeError(w, r, errConflictModified(ri.gr(), ri.name))
			return
		}
		if sc.Spec.Replicas < 0 {
			s.writeError(w, r, apierrors.NewInvalid(scaleGVK.GroupKind(), ri.name, field.ErrorList{
				field.Invalid(field.NewPath("spec", "replicas"), sc.Spec.Replicas, "must be greater than or equal to 0")}))
			return
		}
		updated := obj.DeepCopyObject()
		acc.SetReplicas(updated, sc.Spec.Replicas)
		ri2 := *ri
		ri2.sub = ""
		out, err := s.updateObject(ctx, &ri2, updated, obj, rev, modeMain, wr.dryRun)
		if retry(err, attempt) {
			continue
		}
		err = conflictOnRetry(err, ri)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		addWarnings(w, warnings)
		s.writeObject(w, http.StatusOK, toScale(acc, out), wr.media)
		return
	}
}

// bind serves POST pods/{name}/binding: the scheduler's write.
func (s *Server) bind(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	wr, err := parseWriteRequest(w, r, "CreateOptions")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	gvk := corev1.SchemeGroupVersion.WithKind("Binding")
	decoded, warnings, err := s.decode(wr, wr.body, gvk, &corev1.Binding{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	b := decoded.(*corev1.Binding)
	if b.Name != ri.name {
		s.writeError(w, r, apierrors.NewBadRequest("name in URL does not match name in Binding object"))
		return
	}
	if b.Namespace != "" && b.Namespace != ri.namespace {
		s.writeError(w, r, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
		return
	}
	var errs field.ErrorList
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		errs = append(errs, field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node", "<empty>"}))
	}
	if b.Target.Name == "" {
		errs = append(errs, field.Required(field.NewPath("target", "name"), ""))
	}
	if len(errs) > 0 {
		s.writeError(w, r, apierrors.NewInvalid(gvk.GroupKind(), b.Name, errs))
		return
	}
	if err := s.assignPod(r.Context(), ri, b, wr.dryRun); err != nil {
		s.writeError(w, r, err)
		return
	}
	addWarnings(w, warnings)
	st := &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated}
	st.Kind, st.APIVersion = "Status", "v1"
	s.writeObject(w, http.StatusCreated, st, wr.media)
}

func (s *Server) assignPod(ctx context.Context, ri *reqInfo, b *corev1.Binding, dryRun bool) error {
	bindingGR := ri.gr()
	bindingGR.Resource += "/binding"
	for attempt := 0; attempt < maxRetries; attempt++ {
		obj, rev, err := s.getObject(ctx, ri.res, ri.namespace, ri.name)
		if err != nil {
			return err
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return errNotFoundPath()
		}
		if pod.DeletionTimestamp != nil {
			return apierrors.NewConflict(bindingGR, pod.Name, fmt.Errorf("pod %v is being deleted, cannot be assigned to a host", pod.Name))
		}
		if pod.Spec.NodeName != "" {
			return apierrors.NewConflict(bindingGR, pod.Name, fmt.Errorf("pod %v is already assigned to node %q", pod.Name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodScheduled(pod)
		if dryRun {
			return nil
		}
		data, err := encodeForStore(ri.res, pod)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		if _, err := s.store.Update(ctx, objectKey(ri.res, pod.Namespace, pod.Name), data, rev); err != nil {
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			return storeErr(err, ri.gr(), pod.Name)
		}
		return nil
	}
	return errConflictModified(ri.gr(), ri.name)
}

func setPodScheduled(pod *corev1.Pod) {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type == corev1.PodScheduled {
			if c.Status != corev1.ConditionTrue {
				c.Status, c.LastTransitionTime, c.Reason, c.Message = corev1.ConditionTrue, now, "", ""
			}
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now})
}
