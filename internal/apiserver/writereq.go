package apiserver

import (
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// writeRequest is the request preamble every write shares: the response
// media type, the options from the query, and the body.
type writeRequest struct {
	media     media
	dryRun    bool
	directive string          // fieldValidation
	patchType types.PatchType // PatchOptions only
	format    bodyFormat      // JSON for patches (the patched document)
	body      []byte
}

// parseWriteRequest parses the preamble in kube-apiserver's order: Accept,
// options, Content-Type, body. optsKind ("CreateOptions", "UpdateOptions",
// "PatchOptions") names the options in errors; for PatchOptions the
// Content-Type must be a patch type.
func parseWriteRequest(w http.ResponseWriter, r *http.Request, optsKind string) (*writeRequest, error) {
	wr := &writeRequest{}
	var err error
	if wr.media, err = negotiate(r, false); err != nil {
		return nil, err
	}
	if wr.dryRun, err = checkDryRun(r, optsKind); err != nil {
		return nil, err
	}
	if wr.directive, err = fieldValidation(r, optsKind); err != nil {
		return nil, err
	}
	if optsKind == "PatchOptions" {
		if wr.patchType, err = patchTypeOf(r); err != nil {
			return nil, err
		}
	}
	if wr.body, err = readBody(w, r); err != nil {
		return nil, err
	}
	if wr.patchType == "" {
		if wr.format, err = bodyFormatOf(r); err != nil {
			return nil, err
		}
	}
	return wr, nil
}

// decode decodes data (the body, or a patched document) as gvk.
func (s *Server) decode(wr *writeRequest, data []byte, gvk schema.GroupVersionKind, into runtime.Object) (runtime.Object, []string, error) {
	return s.decodeInto(data, wr.format, wr.directive, gvk, into)
}
