package apiserver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeDefaultValidate drives arbitrary bodies through create (decode →
// default → prepare → validate → hooks, as a dry run) and update of several
// resources. Whatever the input, the answer is never a 5xx (a recovered
// panic is a 500) and always a Status or an object.
func FuzzDecodeDefaultValidate(f *testing.F) {
	e := newTestEnv(f)
	h := e.srv.Handler()
	paths := []string{
		"/api/v1/namespaces/default/pods",
		"/api/v1/namespaces/default/services",
		"/apis/apps/v1/namespaces/default/deployments",
		"/api/v1/namespaces/default/configmaps",
		"/apis/networking.k8s.io/v1/namespaces/default/ingresses",
		"/api/v1/nodes",
	}
	types := []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"}
	// An object "x" of each kind exists, so a PUT reaches update
	// validation (immutable fields, ...) instead of stopping at 404.
	existing := []string{
		`{"metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`,
		`{"metadata":{"name":"x"},"spec":{"type":"NodePort","ports":[{"port":80}]}}`,
		`{"metadata":{"name":"x"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}`,
		`{"metadata":{"name":"x"},"data":{"a":"b"}}`,
		`{"metadata":{"name":"x"},"spec":{"defaultBackend":{"service":{"name":"s","port":{"number":80}}}}}`,
		`{"metadata":{"name":"x"}}`,
	}
	for i, body := range existing {
		req := httptest.NewRequest(http.MethodPost, paths[i], strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			f.Fatalf("creating %s/x: %d %s", paths[i], rec.Code, rec.Body)
		}
		// The same object back, and one with changes updates refuse.
		f.Add(uint8(i), uint8(0), []byte(body))
	}
	f.Add(uint8(0), uint8(0), []byte(`{"metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"nginx"},{"name":"d","image":"y"}],"nodeName":"n"}}`))
	f.Add(uint8(1), uint8(1), []byte("metadata: {name: x}\nspec: {type: ClusterIP, clusterIP: 10.43.9.9, ports: [{port: 81}]}\n"))
	f.Add(uint8(2), uint8(0), []byte(`{"metadata":{"name":"x"},"spec":{"selector":{"matchLabels":{"a":"c"}},"template":{"metadata":{"labels":{"a":"c"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}`))
	for _, seed := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`,
		`{"metadata":{"name":"s"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080}]}}`,
		`{"metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}`,
		"metadata:\n  name: y\ndata:\n  a: b\n",
		`{"metadata":{"name":"a\u00ff","generateName":"-"},"spec":{"foo":1e999}}`,
		`[]`,
	} {
		f.Add(uint8(0), uint8(0), []byte(seed))
	}
	f.Add(uint8(1), uint8(0), []byte(`{"metadata":{"name":"s"},"spec":{"ports":[{"port":-1}],"clusterIP":"1.2.3"}}`))
	f.Add(uint8(2), uint8(1), []byte("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\nspec: {replicas: -3}\n"))
	f.Fuzz(func(t *testing.T, which, ct uint8, body []byte) {
		path := paths[int(which)%len(paths)]
		for _, method := range []string{http.MethodPost, http.MethodPut} {
			p := path + "?dryRun=All&fieldValidation=Strict"
			if method == http.MethodPut {
				p = path + "/x?dryRun=All"
			}
			req := httptest.NewRequest(method, p, bytes.NewReader(body))
			req.Header.Set("Content-Type", types[int(ct)%len(types)])
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s: %d %s", method, p, rec.Code, rec.Body.String())
			}
			if rec.Header().Get("Content-Type") == "" {
				t.Fatalf("no Content-Type")
			}
		}
	})
}
