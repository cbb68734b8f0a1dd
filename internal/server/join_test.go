package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/pki"
	"github.com/skiff-dev/skiff/internal/server"
	"github.com/skiff-dev/skiff/internal/server/servertest"
)

func insecureClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func TestCACertsServesTheCATheTokenPins(t *testing.T) {
	s := servertest.Start(t, server.Config{})
	c := insecureClient()
	resp, err := c.Get(s.URL + pki.CACertsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want, err := os.ReadFile(filepath.Join(s.DataDir, "server", "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("GET /cacerts: %d %q", resp.StatusCode, body)
	}
	tok, err := pki.ParseToken(s.Token())
	if err != nil || !tok.MatchesCA(body) {
		t.Fatalf("token %q does not pin the served CA (%v)", s.Token(), err)
	}
	resp, err = c.Post(s.URL+pki.CACertsPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /cacerts: %d", resp.StatusCode)
	}
}

type csrOpts struct {
	cn     string
	orgs   []string
	dns    []string
	ips    []net.IP
	emails []string
	rsa    int // RSA key bits; 0 = ECDSA P-256
}

func makeCSR(t *testing.T, o csrOpts) string {
	t.Helper()
	var key any
	if o.rsa > 0 {
		k, err := rsa.GenerateKey(rand.Reader, o.rsa)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: o.cn, Organization: o.orgs},
		DNSNames: o.dns, IPAddresses: o.ips, EmailAddresses: o.emails,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestNodeCredentialsRefusesBadRequestsWithAStatusAndNever5xx(t *testing.T) {
	s := servertest.Start(t, server.Config{})
	tok, _ := pki.ParseToken(s.Token())
	c := insecureClient()

	node := func(name string) csrOpts {
		return csrOpts{cn: "system:node:" + name, orgs: []string{"system:nodes"}}
	}
	serving := func(name string, ips ...string) csrOpts {
		o := node(name)
		o.dns = []string{name, "localhost"}
		for _, ip := range ips {
			o.ips = append(o.ips, net.ParseIP(ip))
		}
		return o
	}
	body := func(name string, client, serve csrOpts) string {
		b, _ := json.Marshal(pki.NodeCredentialsRequest{NodeName: name, ClientCSR: makeCSR(t, client), ServingCSR: makeCSR(t, serve)})
		return string(b)
	}
	tampered := func() string {
		csr := makeCSR(t, node("n1"))
		b, _ := pem.Decode([]byte(csr))
		b.Bytes[len(b.Bytes)-3] ^= 0xff // inside the signature
		req, _ := json.Marshal(pki.NodeCredentialsRequest{NodeName: "n1", ClientCSR: string(pem.EncodeToMemory(b)), ServingCSR: makeCSR(t, serving("n1"))})
		return string(req)
	}()
	otherCA := pki.Token{CAHash: strings.Repeat("ab", 32), Secret: tok.Secret}.String()

	for _, tc := range []struct {
		name   string
		method string
		auth   string
		body   string
		code   int
		reason metav1.StatusReason
	}{
		{"no token", "POST", "", body("n1", node("n1"), serving("n1")), 401, metav1.StatusReasonUnauthorized},
		{"wrong secret", "POST", "Bearer " + pki.Token{CAHash: tok.CAHash, Secret: "wrong"}.String(), body("n1", node("n1"), serving("n1")), 401, metav1.StatusReasonUnauthorized},
		{"token for another CA", "POST", "Bearer " + otherCA, body("n1", node("n1"), serving("n1")), 401, metav1.StatusReasonUnauthorized},
		{"unknown bootstrap token", "POST", "Bearer abcdef.0123456789abcdef", body("n1", node("n1"), serving("n1")), 401, metav1.StatusReasonUnauthorized},
		{"basic auth", "POST", "Basic c2VydmVyOg==", body("n1", node("n1"), serving("n1")), 401, metav1.StatusReasonUnauthorized},
		{"GET", "GET", "Bearer " + s.Token(), "", 405, metav1.StatusReasonMethodNotAllowed},
		{"huge body", "POST", "Bearer " + s.Token(), `{"nodeName":"` + strings.Repeat("a", 1<<20) + `"}`, 413, metav1.StatusReasonRequestEntityTooLarge},
		{"not JSON", "POST", "Bearer " + s.Token(), "\x00\xffnot json", 400, metav1.StatusReasonBadRequest},
		{"no node name", "POST", "Bearer " + s.Token(), `{}`, 400, metav1.StatusReasonBadRequest},
		{"bad node name", "POST", "Bearer " + s.Token(), body("Bad_Name", node("Bad_Name"), serving("Bad_Name")), 400, metav1.StatusReasonBadRequest},
		{"bad PEM", "POST", "Bearer " + s.Token(), `{"nodeName":"n1","clientCSR":"-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n","servingCSR":"x"}`, 400, metav1.StatusReasonBadRequest},
		{"a certificate instead of a CSR", "POST", "Bearer " + s.Token(), `{"nodeName":"n1","clientCSR":` + jsonString(t, caPEM(t, s)) + `}`, 400, metav1.StatusReasonBadRequest},
		{"CN of another node", "POST", "Bearer " + s.Token(), body("n1", node("n2"), serving("n1")), 400, metav1.StatusReasonBadRequest},
		{"admin CN", "POST", "Bearer " + s.Token(), body("n1", csrOpts{cn: "system:admin", orgs: []string{"system:masters"}}, serving("n1")), 400, metav1.StatusReasonBadRequest},
		{"extra group", "POST", "Bearer " + s.Token(), body("n1", csrOpts{cn: "system:node:n1", orgs: []string{"system:nodes", "system:masters"}}, serving("n1")), 400, metav1.StatusReasonBadRequest},
		{"client CSR with SANs", "POST", "Bearer " + s.Token(), body("n1", serving("n1"), serving("n1")), 400, metav1.StatusReasonBadRequest},
		{"serving DNS name of someone else", "POST", "Bearer " + s.Token(), body("n1", node("n1"), csrOpts{cn: "system:node:n1", orgs: []string{"system:nodes"}, dns: []string{"example.com"}}), 400, metav1.StatusReasonBadRequest},
		{"serving email SAN", "POST", "Bearer " + s.Token(), body("n1", node("n1"), csrOpts{cn: "system:node:n1", orgs: []string{"system:nodes"}, dns: []string{"n1"}, emails: []string{"a@b.c"}}), 400, metav1.StatusReasonBadRequest},
		{"serving IP of the API service", "POST", "Bearer " + s.Token(), body("n1", node("n1"), serving("n1", "10.43.0.1")), 400, metav1.StatusReasonBadRequest},
		{"node named like the API server", "POST", "Bearer " + s.Token(), body("kubernetes", node("kubernetes"), serving("kubernetes")), 400, metav1.StatusReasonBadRequest},
		{"unspecified IP", "POST", "Bearer " + s.Token(), body("n1", node("n1"), serving("n1", "0.0.0.0")), 400, metav1.StatusReasonBadRequest},
		{"weak RSA key", "POST", "Bearer " + s.Token(), body("n1", csrOpts{cn: "system:node:n1", orgs: []string{"system:nodes"}, rsa: 1024}, serving("n1")), 400, metav1.StatusReasonBadRequest},
		{"bad signature", "POST", "Bearer " + s.Token(), tampered, 400, metav1.StatusReasonBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.URL+pki.NodeCredentialsPath, strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var st metav1.Status
			if err := json.Unmarshal(b, &st); err != nil || st.Kind != "Status" {
				t.Fatalf("%d: not a Status: %q (%v)", resp.StatusCode, b, err)
			}
			if resp.StatusCode != tc.code || int(st.Code) != tc.code || st.Reason != tc.reason {
				t.Fatalf("got %d %s %q, want %d %s", resp.StatusCode, st.Reason, st.Message, tc.code, tc.reason)
			}
		})
	}

	t.Run("good request", func(t *testing.T) {
		// The server's own node may have the API server's addresses.
		for _, n := range []struct{ name, ip string }{{"n1", "192.0.2.7"}, {"server-node", "10.43.0.1"}} {
			req, _ := http.NewRequest("POST", s.URL+pki.NodeCredentialsPath, strings.NewReader(body(n.name, node(n.name), serving(n.name, n.ip))))
			req.Header.Set("Authorization", "Bearer "+tok.Secret) // the bare secret works too
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var out pki.NodeCredentialsResponse
			if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil {
				t.Fatalf("%s: %d %s", n.name, resp.StatusCode, b)
			}
			blk, _ := pem.Decode([]byte(out.ServingCertificate))
			cert, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.VerifyHostname(n.ip); err != nil || cert.Subject.CommonName != "system:node:"+n.name {
				t.Fatalf("%s: serving cert %v %v", n.name, cert.Subject, err)
			}
			if out.CA != string(caPEM(t, s)) {
				t.Fatal("answer carries another CA")
			}
		}
	})
}

func caPEM(t *testing.T, s *servertest.Running) []byte {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "server", "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonString(t *testing.T, b []byte) string {
	out, err := json.Marshal(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
