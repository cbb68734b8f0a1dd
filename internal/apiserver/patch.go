package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/mergepatch"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// maxJSONPatchOperations is kube-apiserver's cap on json-patch length.
const maxJSONPatchOperations = 10000

var patchTypes = []string{string(types.JSONPatchType), string(types.MergePatchType), string(types.StrategicMergePatchType)}

func patchTypeOf(r *http.Request) (types.PatchType, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		switch types.PatchType(mt) {
		case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType:
			return types.PatchType(mt), nil
		}
	}
	// application/apply-patch+yaml (server-side apply) is not served:
	// clients use client-side apply.
	return "", errUnsupportedMediaType(ct, patchTypes...)
}

// applyPatch applies a patch document to the JSON of the current object.
func applyPatch(pt types.PatchType, current, patch []byte, schemaObj runtime.Object) ([]byte, error) {
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		if len(p) > maxJSONPatchOperations {
			return nil, apierrors.NewRequestEntityTooLargeError(
				fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(p)))
		}
		out, err := p.Apply(current)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		return out, nil
	case types.MergePatchType:
		out, err := jsonpatch.MergePatch(current, patch)
		if err != nil {
			if errors.Is(err, jsonpatch.ErrBadJSONPatch) || errors.Is(err, jsonpatch.ErrBadJSONDoc) {
				return nil, apierrors.NewBadRequest(err.Error())
			}
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		return out, nil
	case types.StrategicMergePatchType:
		var pm map[string]interface{}
		if err := json.Unmarshal(patch, &pm); err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		out, err := strategicpatch.StrategicMergePatch(current, patch, schemaObj)
		if err != nil {
			switch {
			case errors.Is(err, mergepatch.ErrBadJSONDoc), errors.Is(err, mergepatch.ErrBadPatchFormatForPrimitiveList),
				errors.Is(err, mergepatch.ErrBadPatchFormatForRetainKeys), errors.Is(err, mergepatch.ErrBadPatchFormatForSetElementOrderList),
				errors.Is(err, mergepatch.ErrUnsupportedStrategicMergePatchFormat):
				return nil, apierrors.NewBadRequest(err.Error())
			}
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		return out, nil
	}
	return nil, errUnsupportedMediaType(string(pt), patchTypes...)
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	ctx := r.Context()
	wr, err := parseWriteRequest(w, r, "PatchOptions")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var out runtime.Object
	var warnings []string
	for attempt := 0; ; attempt++ {
		old, oldRev, err := s.getObject(ctx, ri.res, ri.namespace, ri.name)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		current, err := json.Marshal(old)
		if err != nil {
			s.writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		patched, err := applyPatch(wr.patchType, current, wr.body, ri.res.New())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		obj, warns, err := s.decode(wr, patched, ri.res.GVK(), ri.res.New())
		if err != nil {
			if wr.patchType == types.StrategicMergePatchType && wr.directive == metav1.FieldValidationStrict {
				// Strategic merge reports strict errors unprefixed.
				if _, _, serr := s.codecs.jsonStrict.Decode(patched, nil, ri.res.New()); runtime.IsStrictDecodingError(serr) {
					err = apierrors.NewBadRequest(serr.Error())
				}
			}
			s.writeError(w, r, err)
			return
		}
		warnings = warns
		if err := checkNames(ri, obj); err != nil {
			s.writeError(w, r, err)
			return
		}
		om, _ := meta.Accessor(obj)
		if rv := om.GetResourceVersion(); rv != "" {
			if _, err := parseRV(rv); err != nil {
				s.writeError(w, r, errObjectRV(rv))
				return
			}
		}
		if rv := om.GetResourceVersion(); rv != "" && rv != rvString(oldRev) {
			// The patch itself carried a resourceVersion precondition.
			s.writeError(w, r, errConflictModified(ri.gr(), ri.name))
			return
		}
		om.SetResourceVersion(rvString(oldRev))
		out, err = s.updateObject(ctx, ri, obj, old, oldRev, modeOf(ri), wr.dryRun)
		if retry(err, attempt) {
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
