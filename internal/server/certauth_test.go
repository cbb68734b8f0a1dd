package server

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/skiff-dev/skiff/internal/apiserver"
	"github.com/skiff-dev/skiff/internal/pki"
)

// A node certificate from the join endpoint's signer authenticates, through
// the TLS settings and authenticator Run uses, as system:node:<name> in
// system:nodes.
func TestNodeCertificateAuthenticatesAsTheNode(t *testing.T) {
	b, err := pki.LoadOrCreate(t.TempDir(), pki.DefaultServingNames("h", nil))
	if err != nil {
		t.Fatal(err)
	}
	csr, key, err := pki.NewNodeCSR("node-a", pki.ServingNames{})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := b.CA.SignNodeClient("node-a", csr)
	if err != nil {
		t.Fatal(err)
	}
	auth := certAuthenticator()
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := auth(r)
		_ = json.NewEncoder(w).Encode(struct {
			OK bool
			ID apiserver.Identity
		}{ok, id})
	}))
	hs.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: b.CA.Pool()}
	hs.StartTLS()
	t.Cleanup(hs.Close)

	cert, err := tls.X509KeyPair(kp.CertPEM, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		certs []tls.Certificate
		ok    bool
	}{{[]tls.Certificate{cert}, true}, {nil, false}} {
		tr := hs.Client().Transport.(*http.Transport).Clone() // a new connection each time
		tr.TLSClientConfig.Certificates = tc.certs
		c := &http.Client{Transport: tr}
		resp, err := c.Get(hs.URL)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			OK bool
			ID apiserver.Identity
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || got.OK != tc.ok {
			t.Fatalf("authenticated %v (%v), want %v", got.OK, err, tc.ok)
		}
		if tc.ok && (got.ID.Name != "system:node:node-a" || !slices.Equal(got.ID.Groups, []string{"system:nodes"})) {
			t.Fatalf("identity %+v", got.ID)
		}
	}
}
