package openapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	openapi_v3 "github.com/google/gnostic-models/openapiv3"
	"github.com/munnerz/goautoneg"
	"google.golang.org/protobuf/proto"
)

// Media types, as kube-openapi's handlers accept and answer them.
const (
	mimeJSON        = "application/json"
	subtypeJSON     = "json"
	subtypeV2Proto  = "com.github.proto-openapi.spec.v2.v1.0+protobuf"
	subtypeV2ProtoD = "com.github.proto-openapi.spec.v2@v1.0+protobuf" // what client-go asks for
	subtypeV3Proto  = "com.github.proto-openapi.spec.v3.v1.0+protobuf"
	subtypeV3ProtoD = "com.github.proto-openapi.spec.v3@v1.0+protobuf"
)

// body is one serialized representation, gzipped on first demand.
type body struct {
	data   []byte
	gzOnce sync.Once
	gz     []byte
}

func (b *body) gzipped() []byte {
	b.gzOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		zw.Write(b.data)
		zw.Close()
		b.gz = buf.Bytes()
	})
	return b.gz
}

// document is one served document: its JSON, and its protobuf form made
// on first request (gnostic's conversion is the slow part of the build,
// and only kubectl's v2 download needs it).
type document struct {
	json    body
	etag    string // hex SHA-512 of the JSON, as kube-openapi computes it
	toProto func([]byte) ([]byte, error)
	pbOnce  sync.Once
	pb      body
	pbErr   error
	modTime time.Time
}

func newDocument(v any, toProto func([]byte) ([]byte, error)) (*document, error) {
	data, err := marshal(v)
	if err != nil {
		return nil, fmt.Errorf("openapi: encoding document: %w", err)
	}
	return &document{
		json:    body{data: data},
		etag:    fmt.Sprintf("%X", sha512.Sum512(data)),
		toProto: toProto,
		modTime: time.Now(),
	}, nil
}

func (d *document) protobuf() (*body, error) {
	d.pbOnce.Do(func() {
		data, err := d.toProto(d.json.data)
		d.pb, d.pbErr = body{data: data}, err
		d.toProto = nil // release what the conversion needed
	})
	return &d.pb, d.pbErr
}

func protoV2(data []byte) ([]byte, error) {
	doc, err := openapi_v2.ParseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("openapi: v2 to protobuf: %w", err)
	}
	return proto.Marshal(doc)
}

func protoV3(data []byte) ([]byte, error) {
	doc, err := openapi_v3.ParseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("openapi: v3 to protobuf: %w", err)
	}
	return proto.Marshal(doc)
}

// ServeHTTP serves GET /openapi/v2, /openapi/v3 and /openapi/v3/<group-version>.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch p := r.URL.Path; {
	case p == "/openapi/v2":
		h.serveNegotiated(w, r, h.v2, subtypeV2Proto, subtypeV2ProtoD, false)
	case p == "/openapi/v3":
		w.Header().Set("Content-Type", mimeJSON)
		serveBody(w, r, &h.v3Index.json, h.v3Index.etag, h.v3Index.modTime)
	case strings.HasPrefix(p, "/openapi/v3/"):
		d, ok := h.v3[strings.TrimPrefix(p, "/openapi/v3/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if hash := r.URL.Query().Get("hash"); hash != "" && hash != d.etag {
			// An outdated link: send the client to the current document.
			http.Redirect(w, r, p+"?hash="+d.etag, http.StatusMovedPermanently)
			return
		}
		h.serveNegotiated(w, r, d, subtypeV3Proto, subtypeV3ProtoD, r.URL.Query().Has("hash"))
	default:
		http.NotFound(w, r)
	}
}

// serveNegotiated serves d as JSON or protobuf, whichever the Accept header
// prefers. With immutable set (a ?hash= URL) the response may be cached for
// good: a changed document gets a new hash, hence a new URL.
func (h *Handler) serveNegotiated(w http.ResponseWriter, r *http.Request, d *document, pbType, pbTypeDeprecated string, immutable bool) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		accept = "*/*"
	}
	w.Header().Add("Vary", "Accept")
	for _, c := range goautoneg.ParseAccept(accept) {
		if c.Type != "application" && c.Type != "*" {
			continue
		}
		var b *body
		var contentType string
		switch c.SubType {
		case subtypeJSON, "*":
			b, contentType = &d.json, mimeJSON
		case pbType, pbTypeDeprecated:
			pb, err := d.protobuf()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			b, contentType = pb, "application/"+pbType
		default:
			continue
		}
		w.Header().Set("Content-Type", contentType)
		if immutable {
			w.Header().Set("Cache-Control", "public, immutable")
			w.Header().Set("Expires", time.Now().AddDate(1, 0, 0).UTC().Format(http.TimeFormat))
		}
		serveBody(w, r, b, d.etag, d.modTime)
		return
	}
	http.Error(w, "none of the accepted media types is served: "+accept, http.StatusNotAcceptable)
}

// serveBody writes b with its ETag, answering 304 to a matching
// If-None-Match, gzipped when the client accepts it.
func serveBody(w http.ResponseWriter, r *http.Request, b *body, etag string, modTime time.Time) {
	quoted := strconv.Quote(etag)
	hdr := w.Header()
	hdr.Set("Etag", quoted)
	hdr.Set("Last-Modified", modTime.UTC().Format(http.TimeFormat))
	hdr.Add("Vary", "Accept-Encoding")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, quoted) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	data := b.data
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		data = b.gzipped()
		hdr.Set("Content-Encoding", "gzip")
	}
	hdr.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(data)
	}
}

func etagMatches(header, quoted string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == quoted {
			return true
		}
	}
	return false
}

func acceptsGzip(header string) bool {
	for _, c := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(c), ";")
		if strings.TrimSpace(name) == "gzip" && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
