package apiserver

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// maxBodyBytes is kube-apiserver's default --max-request-bytes for JSON/YAML.
const maxBodyBytes = 3 * 1024 * 1024

// bodyReadTimeout bounds reading a request body, so a client that trickles
// one does not hold a handler forever (kube-apiserver's request timeout).
var bodyReadTimeout = 60 * time.Second

// readBody reads a request body up to the limit (413 beyond it).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", maxBodyBytes))
	}
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(bodyReadTimeout)) == nil
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		// The deadline stays, so the server's drain of the rest of the
		// body cannot hang on the same client either.
		return nil, apierrors.NewBadRequest(fmt.Sprintf("unable to read request body: %v", err))
	}
	if deadline {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if len(data) > maxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", maxBodyBytes))
	}
	return data, nil
}

func errUnsupportedMediaType(ct string, accepted ...string) error {
	return apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "",
		fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s", strings.Join(accepted, ", ")), 0, false)
}

// bodyFormat is the encoding of a request body.
type bodyFormat int

const (
	formatJSON bodyFormat = iota
	formatYAML
	formatProtobuf
)

var acceptedBodyTypes = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"}

// bodyFormatOf tells the body encoding by Content-Type. kubectl sends
// protobuf for built-in types (e.g. `kubectl create namespace`).
func bodyFormatOf(r *http.Request) (bodyFormat, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return formatJSON, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, errUnsupportedMediaType(ct, acceptedBodyTypes...)
	}
	switch mt {
	case "application/json", "*/*":
		return formatJSON, nil
	case "application/yaml", "application/x-yaml", "text/yaml":
		return formatYAML, nil
	case "application/vnd.kubernetes.protobuf":
		return formatProtobuf, nil
	}
	return 0, errUnsupportedMediaType(ct, acceptedBodyTypes...)
}

// fieldValidation returns the fieldValidation directive (default Warn).
func fieldValidation(r *http.Request, kind string) (string, error) {
	v := r.URL.Query().Get("fieldValidation")
	switch v {
	case "":
		return metav1.FieldValidationWarn, nil
	case metav1.FieldValidationIgnore, metav1.FieldValidationWarn, metav1.FieldValidationStrict:
		return v, nil
	}
	return "", apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: kind}, "", field.ErrorList{
		field.NotSupported(field.NewPath("fieldValidation"), v, []string{metav1.FieldValidationIgnore, metav1.FieldValidationWarn, metav1.FieldValidationStrict})})
}

// checkDryRun validates the dryRun parameter; true means "All".
func checkDryRun(r *http.Request, kind string) (bool, error) {
	vals := r.URL.Query()["dryRun"]
	for _, v := range vals {
		if v != metav1.DryRunAll {
			return false, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: kind}, "", field.ErrorList{
				field.NotSupported(field.NewPath("dryRun"), vals, []string{metav1.DryRunAll})})
		}
	}
	return len(vals) > 0, nil
}

// decodeInto decodes body into a fresh object of gvk (into's type), applying
// the fieldValidation directive. It returns warnings for Warn.
func (s *Server) decodeInto(body []byte, format bodyFormat, directive string, gvk schema.GroupVersionKind, into runtime.Object) (runtime.Object, []string, error) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized (must be of type %s): Object 'Kind' is missing in ''", gvk.Kind))
	}
	dec := s.codecs.json
	if directive != metav1.FieldValidationIgnore {
		dec = s.codecs.jsonStrict
	}
	switch format {
	case formatYAML:
		dec = s.codecs.yaml
		if directive != metav1.FieldValidationIgnore {
			dec = s.codecs.yamlStrict
		}
	case formatProtobuf:
		dec = s.codecs.protobuf
	}
	obj, got, err := dec.Decode(body, &gvk, into)
	var warnings []string
	if err != nil {
		if !runtime.IsStrictDecodingError(err) || obj == nil {
			return nil, nil, transformDecodeError(err, gvk, got, body)
		}
		if sde, ok := runtime.AsStrictDecodingError(err); ok {
			switch directive {
			case metav1.FieldValidationStrict:
				// kube-apiserver: `Pod in version "v1" cannot be handled as
				// a Pod: strict decoding error: unknown field "spec.foo"`.
				return nil, nil, transformDecodeError(err, gvk, &gvk, body)
			case metav1.FieldValidationWarn:
				for _, e := range sde.Errors() {
					warnings = append(warnings, e.Error())
				}
			}
		}
	}
	if got != nil && got.GroupVersion() != gvk.GroupVersion() {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", got.GroupVersion(), gvk.GroupVersion()))
	}
	if got != nil && got.Kind != gvk.Kind {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: converting (%s.%s) to (%s): unknown conversion",
			got.Kind, got.Version, gvk.Kind, got.Version, got.Kind, gvk.Kind))
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, warnings, nil
}

// transformDecodeError words decode failures as kube-apiserver does.
func transformDecodeError(err error, want schema.GroupVersionKind, got *schema.GroupVersionKind, body []byte) error {
	if got != nil && got.Kind != "" {
		return apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", got.Kind, got.Version, want.Kind, err))
	}
	summary := string(body)
	if len(summary) > 30 {
		summary = summary[:30] + "..."
	}
	summary = strings.ToValidUTF8(summary, "\uFFFD")
	return apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized (must be of type %s): %v (%s)", want.Kind, err, summary))
}
