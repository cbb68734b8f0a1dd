package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/apiserver"
	"github.com/skiff-dev/skiff/internal/pki"
)

// Joining (k3s style, on the API port, in front of the API's authentication):
//
//	GET  /cacerts                    the cluster CA, unauthenticated: an agent
//	                                 fetches it without verifying TLS and checks
//	                                 it against the CA hash in its token.
//	POST /v1-skiff/node-credentials  Authorization: Bearer <token>, where token
//	                                 is the server token (full K10… or its bare
//	                                 secret) or a bootstrap token ("<id>.<secret>",
//	                                 bare or behind K10<hash>::). The body carries
//	                                 the node's name and two CSRs; the answer the
//	                                 signed client and serving certificates.
//
// See pki.NodeCredentialsRequest for the wire format. Every refusal is a
// Kubernetes Status: 401 (bad or missing token), 400 (bad input), 405, 413,
// 429 (too many joins at once).

// maxConcurrentJoins bounds the CSR checks and signatures running at once.
const maxConcurrentJoins = 8

type joinHandler struct {
	next         http.Handler
	ca           *pki.CA
	serverSecret string
	ownNode      string
	reserved     pki.ServingNames // the API server's SANs: not for other nodes
	secret       func(ctx context.Context, name string) (*corev1.Secret, error)
	now          func() time.Time
	log          *slog.Logger
	sem          chan struct{}
}

// withJoin puts the join endpoints in front of the API handler.
func (s *Server) withJoin(api *apiserver.Server, ca *pki.CA) http.Handler {
	tok, _ := pki.ParseToken(s.token) // s.token is ours, always well-formed
	return &joinHandler{
		next:         api.Handler(),
		ca:           ca,
		serverSecret: tok.Secret,
		ownNode:      s.res.nodeName,
		reserved:     s.servingNames(),
		secret: func(ctx context.Context, name string) (*corev1.Secret, error) {
			obj, err := api.GetObject(ctx, schema.GroupResource{Resource: "secrets"}, metav1.NamespaceSystem, name)
			if err != nil {
				return nil, err
			}
			sec, ok := obj.(*corev1.Secret)
			if !ok {
				return nil, fmt.Errorf("secret %s: unexpected type %T", name, obj)
			}
			return sec, nil
		},
		now: time.Now,
		log: s.log.With("component", "join"),
		sem: make(chan struct{}, maxConcurrentJoins),
	}
}

func (h *joinHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case pki.CACertsPath:
		h.serveCACerts(w, r)
	case pki.NodeCredentialsPath:
		h.serveNodeCredentials(w, r)
	default:
		h.next.ServeHTTP(w, r)
	}
}

func (h *joinHandler) serveCACerts(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "cacerts"}, r.Method))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", fmt.Sprint(len(h.ca.CertPEM)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(h.ca.CertPEM)
	}
}

func (h *joinHandler) serveNodeCredentials(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "node-credentials"}, r.Method))
		return
	}
	via, ok := h.authenticate(r)
	if !ok {
		writeStatus(w, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure,
			Message: "Unauthorized", Reason: metav1.StatusReasonUnauthorized, Code: http.StatusUnauthorized}})
		return
	}
	select {
	case h.sem <- struct{}{}:
		defer func() { <-h.sem }()
	default:
		writeStatus(w, apierrors.NewTooManyRequests("too many node credential requests at once, please try again later", 1))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, pki.MaxNodeCredentialsRequest))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeStatus(w, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", pki.MaxNodeCredentialsRequest)))
			return
		}
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("reading the request body: %v", err)))
		return
	}
	var req pki.NodeCredentialsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("decoding the request body: %v", err)))
		return
	}
	if err := pki.ValidateNodeName(req.NodeName); err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	reserved := h.reserved
	if req.NodeName == h.ownNode {
		// The server's own agent serves on the server's addresses.
		reserved = pki.ServingNames{}
	}
	client, err := h.ca.SignNodeClient(req.NodeName, []byte(req.ClientCSR))
	if err == nil {
		var serving pki.KeyPair
		if serving, err = h.ca.SignNodeServing(req.NodeName, []byte(req.ServingCSR), reserved); err == nil {
			h.log.Info("issued node credentials", "node", req.NodeName, "token", via, "remote", r.RemoteAddr,
				"servingNames", append(append([]string{}, serving.Cert.DNSNames...), ipStrings(serving.Cert)...))
			writeJSON(w, http.StatusOK, pki.NodeCredentialsResponse{
				ClientCertificate:  string(client.CertPEM),
				ServingCertificate: string(serving.CertPEM),
				CA:                 string(h.ca.CertPEM),
			})
			return
		}
	}
	if errors.Is(err, pki.ErrInvalidCSR) {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	h.log.Error("signing node credentials", "node", req.NodeName, "err", err)
	writeStatus(w, apierrors.NewInternalError(errors.New("signing node credentials failed")))
}

// authenticate checks the bearer token: the server's join secret, or a
// bootstrap token that exists, has not expired and may authenticate. It
// names the token used (for the log), never its secret.
func (h *joinHandler) authenticate(r *http.Request) (string, bool) {
	raw, ok := bearerToken(r)
	if !ok {
		return "", false
	}
	tok, err := pki.ParseToken(raw)
	if err != nil {
		return "", false
	}
	if !tok.MatchesCA(h.ca.CertPEM) {
		h.log.Warn("join refused: the token pins another CA", "remote", r.RemoteAddr)
		return "", false
	}
	if pki.SecretMatches(tok.Secret, h.serverSecret) {
		return "server", true
	}
	id, secret, ok := pki.ParseBootstrapToken(tok.Secret)
	if !ok {
		return "", false
	}
	sec, err := h.secret(r.Context(), pki.BootstrapTokenSecretPrefix+id)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			h.log.Warn("join refused: reading the bootstrap token", "id", id, "err", err)
		}
		return "", false
	}
	bt, err := pki.BootstrapTokenFromSecret(sec)
	if err != nil {
		h.log.Warn("join refused", "id", id, "err", err)
		return "", false
	}
	switch {
	case !pki.SecretMatches(secret, bt.Secret):
		return "", false
	case sec.DeletionTimestamp != nil:
		return "", false
	case bt.Expired(h.now()):
		h.log.Info("join refused: bootstrap token expired", "id", id, "expired", bt.Expires)
		return "", false
	case !bt.HasUsage(pki.UsageAuthentication):
		h.log.Info("join refused: bootstrap token lacks usage-bootstrap-authentication", "id", id)
		return "", false
	}
	return "bootstrap-token-" + id, true
}

func bearerToken(r *http.Request) (string, bool) {
	const prefix = "bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || !equalFoldASCII(h[:len(prefix)], prefix) {
		return "", false
	}
	return h[len(prefix):], true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	writeJSON(w, int(st.Code), st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"encoding the response failed","code":500}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func ipStrings(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.IPAddresses))
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}
