package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/munnerz/goautoneg"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"sigs.k8s.io/yaml"

	"github.com/skiff-dev/skiff/internal/registry"
)

type codecs struct {
	json, jsonStrict, yaml, yamlStrict, protobuf runtime.Serializer
}

func newCodecs() codecs {
	mk := func(isYAML, strict bool) runtime.Serializer {
		return serializerjson.NewSerializerWithOptions(serializerjson.DefaultMetaFactory, registry.Scheme, registry.Scheme,
			serializerjson.SerializerOptions{Yaml: isYAML, Strict: strict})
	}
	return codecs{json: mk(false, false), jsonStrict: mk(false, true), yaml: mk(true, false), yamlStrict: mk(true, true),
		protobuf: protobuf.NewSerializer(registry.Scheme, registry.Scheme)}
}

// outputKind is what the client asked the object to be rendered as.
type outputKind int

const (
	outObject outputKind = iota
	outTable
	outPartial // PartialObjectMetadata(List)
)

// media is the negotiated response form.
type media struct {
	yaml    bool
	proto   bool // application/vnd.kubernetes.protobuf (objects and lists only)
	kind    outputKind
	version string // meta.k8s.io version for Table/PartialObjectMetadata
	include metav1.IncludeObjectPolicy
}

func errNotAcceptable() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusNotAcceptable,
		Reason:  metav1.StatusReasonNotAcceptable,
		Message: "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json;as=Table;v=v1;g=meta.k8s.io"}}
}

// negotiate picks the first Accept entry this server can produce.
// transform says whether Table / PartialObjectMetadata make sense here.
func negotiate(r *http.Request, transform bool) (media, error) {
	header := r.Header.Get("Accept")
	if strings.TrimSpace(header) == "" {
		return media{}, nil
	}
	for _, a := range goautoneg.ParseAccept(header) {
		if a.Q == 0 {
			continue
		}
		var m media
		switch {
		case a.Type == "application" && a.SubType == "json":
		case a.Type == "application" && a.SubType == "yaml":
			m.yaml = true
		case a.Type == "application" && a.SubType == "vnd.kubernetes.protobuf":
			if a.Params["as"] != "" {
				continue // Tables and metadata are served as JSON only
			}
			m.proto = true
		case a.Type == "*" || (a.Type == "application" && a.SubType == "*"):
		default:
			continue
		}
		as := a.Params["as"]
		if as == "" {
			return m, nil
		}
		if !transform || a.Params["g"] != metav1.GroupName || (a.Params["v"] != "v1" && a.Params["v"] != "v1beta1") {
			continue
		}
		m.version = a.Params["v"]
		switch as {
		case "Table":
			m.kind = outTable
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			m.kind = outPartial
		default:
			continue
		}
		return m, nil
	}
	return media{}, errNotAcceptable()
}

// writeJSON writes v as JSON (for non-negotiated bodies: /version, discovery).
func (s *Server) writeJSON(w http.ResponseWriter, code int, v interface{}) {
	data, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode response", "err", err)
		code, data = http.StatusInternalServerError, []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"InternalError","code":500}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// writeObject writes obj in the negotiated encoding.
func (s *Server) writeObject(w http.ResponseWriter, code int, obj interface{}, m media) {
	if m.proto {
		if data, ok := s.protoBytes(obj); ok {
			w.Header().Set("Content-Type", protobufType)
			w.WriteHeader(code)
			_, _ = w.Write(data)
			return
		}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		s.log.Error("encode response", "err", err)
		s.writeStatus(w, nil, &apierrors.NewInternalError(err).ErrStatus)
		return
	}
	ct := "application/json"
	if m.yaml {
		if y, err := yaml.JSONToYAML(data); err == nil {
			data, ct = y, "application/yaml"
		}
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

func (s *Server) writeStatus(w http.ResponseWriter, _ *http.Request, st *metav1.Status) {
	st.Kind, st.APIVersion = "Status", "v1"
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	s.writeJSON(w, code, st)
}

// writeError answers err as a Status. Errors that are not API errors are
// server faults (500) and are logged.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		if r != nil {
			s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		se = apierrors.NewInternalError(err)
	}
	st := se.Status()
	s.writeStatus(w, r, &st)
}

// addWarnings sets Warning headers the way kube-apiserver does.
func addWarnings(w http.ResponseWriter, warnings []string) {
	for _, text := range warnings {
		if h, err := utilnet.NewWarningHeader(299, "-", text); err == nil {
			w.Header().Add("Warning", h)
		}
	}
}

func errBadRequest(format string, args ...interface{}) error {
	return apierrors.NewBadRequest(fmt.Sprintf(format, args...))
}

const protobufType = "application/vnd.kubernetes.protobuf"

// protoBytes encodes obj in Kubernetes' protobuf envelope, or reports false
// when it cannot (not a typed object with apiVersion/kind set, or a type
// without protobuf support): the caller then answers JSON, which every
// client that asks for protobuf also accepts.
func (s *Server) protoBytes(obj interface{}) ([]byte, bool) {
	ro, ok := obj.(runtime.Object)
	if !ok || ro.GetObjectKind().GroupVersionKind().Empty() {
		return nil, false
	}
	var buf bytes.Buffer
	if err := s.codecs.protobuf.Encode(ro, &buf); err != nil {
		return nil, false
	}
	return buf.Bytes(), true
}
