// Package join gets an agent its own credentials from a skiff server, as a
// k3s agent does: the join token pins the server's CA, and the node then
// holds a client certificate (CN=system:node:<name>, O=system:nodes) and a
// kubelet serving certificate signed by that CA. Agents never use the admin
// kubeconfig.
//
// Bootstrap, in order:
//
//  1. Parse the token (pki.ParseToken): "K10<sha256 of the CA PEM>::<user>:<secret>",
//     "K10<hash>::<id>.<secret>" (a bootstrap token from `skiff token create`),
//     or a bare secret.
//  2. Reuse: when DATA/agent/tls holds credentials for this node under a CA the
//     token accepts (the same hash; any saved CA for a bare secret), whose
//     certificates chain to it, match their keys, cover the node's serving
//     names and have more than a third of their lifetime left, they are used
//     without contacting the server (an agent restarts while the server is
//     down). The kubeconfig is rewritten only when it differs (a new server URL).
//  3. Trust: GET /cacerts without verifying TLS — the only request that does
//     not — and compare its sha256 with the token's hash; a mismatch is
//     refused (ErrCAMismatch, naming both hashes). A bare secret without a hash
//     is accepted only when a CA was saved by an earlier join (ErrNoCAHash
//     otherwise): unlike k3s, which warns and trusts the first CA it is shown,
//     skiff never trusts a server it was not told about.
//  4. Join: make two ECDSA keys, POST their CSRs to /v1-skiff/node-credentials
//     over TLS verified against the CA, with the token as bearer token; check
//     the answer (chains to the CA, right subject, matches our keys).
//  5. Write DATA/agent/tls/{ca.crt, client.crt, client.key, serving.crt,
//     serving.key} (keys 0600) and DATA/agent/kubelet.kubeconfig (0600).
//
// Transient failures (connection errors, 429, 5xx) are retried with back-off
// until ctx ends; refusals (ErrCAMismatch, ErrUnauthorized, ErrRejected,
// ErrNoCAHash) return at once.
//
// Credentials are checked only when Bootstrap runs: renewal while the agent
// keeps running is the caller's to schedule (call Bootstrap again after
// Credentials.RenewAt; it renews once a third of the lifetime is left).
package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/internal/pki"
)

// Options say which server to join, as whom.
type Options struct {
	DataDir   string   // DATA; credentials go to DATA/agent
	ServerURL string   // https://HOST:PORT
	Token     string   // join token (see the package doc)
	NodeName  string   // a DNS subdomain
	NodeIPs   []net.IP // go into the serving certificate
	Logger    *slog.Logger
}

// Credentials are the node's files and a client configuration using them.
type Credentials struct {
	CAFile, ClientCertFile, ClientKeyFile, ServingCertFile, ServingKeyFile, KubeconfigFile string
	CAPEM                                                                                  []byte
	// RenewAt is when a third of the shorter certificate lifetime is
	// left: Bootstrap called after it renews both.
	RenewAt time.Time
	// RESTConfig authenticates as system:node:<name> (cert and key in
	// memory, CA pinned). Set QPS, Burst and UserAgent to taste.
	RESTConfig *rest.Config
}

// Refusals: Bootstrap returns these (wrapped) without retrying.
var (
	ErrCAMismatch   = errors.New("the server's CA does not match the token's CA hash")
	ErrNoCAHash     = errors.New("the token does not pin the server's CA")
	ErrUnauthorized = errors.New("the server refused the token")
	ErrRejected     = errors.New("the server rejected the join request")
)

const (
	maxCABytes       = 1 << 20
	maxResponseBytes = 1 << 20
	requestTimeout   = 30 * time.Second
	retryMin         = 500 * time.Millisecond
	retryMax         = 10 * time.Second
)

// Paths under DATA.
func tlsDir(dataDir string) string { return filepath.Join(dataDir, "agent", "tls") }
func kubeconfigPath(dataDir string) string {
	return filepath.Join(dataDir, "agent", "kubelet.kubeconfig")
}

type files struct {
	ca, clientCert, clientKey, servingCert, servingKey, kubeconfig string
}

func pathsFor(dataDir string) files {
	d := tlsDir(dataDir)
	return files{
		ca:          filepath.Join(d, "ca.crt"),
		clientCert:  filepath.Join(d, "client.crt"),
		clientKey:   filepath.Join(d, "client.key"),
		servingCert: filepath.Join(d, "serving.crt"),
		servingKey:  filepath.Join(d, "serving.key"),
		kubeconfig:  kubeconfigPath(dataDir),
	}
}

// Bootstrap returns the node's credentials, reusing valid ones on disk and
// joining the server otherwise (see the package doc).
func Bootstrap(ctx context.Context, o Options) (*Credentials, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "join")
	server, err := checkOptions(&o)
	if err != nil {
		return nil, err
	}
	tok, err := pki.ParseToken(o.Token)
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	p := pathsFor(o.DataDir)
	names := pki.NodeServingNames(o.NodeName, o.NodeIPs)

	savedCA, err := os.ReadFile(p.ca)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if len(savedCA) > 0 && tok.MatchesCA(savedCA) {
		if client, serving, why := loadValid(p, savedCA, o.NodeName, names, time.Now()); why == "" {
			log.Info("reusing node credentials", "node", o.NodeName, "expires", earlier(client.Cert.NotAfter, serving.Cert.NotAfter))
			return finish(p, server, savedCA, client, serving)
		} else {
			log.Info("renewing node credentials", "node", o.NodeName, "reason", why)
		}
	}

	var caPEM []byte
	if tok.CAHash == "" {
		if len(savedCA) == 0 {
			return nil, fmt.Errorf("%w: use the full K10… token (the server's DATA/server/token, or `skiff token create`); "+
				"a bare secret is accepted only once %s holds the CA from an earlier join", ErrNoCAHash, p.ca)
		}
		caPEM = savedCA
		log.Info("the token has no CA hash; trusting the CA saved by an earlier join", "ca", p.ca, "hash", pki.CAHash(savedCA))
	} else {
		err := retry(ctx, log, "fetch the server's CA", func() error {
			caPEM, err = fetchCA(ctx, server)
			return err
		})
		if err != nil {
			return nil, err
		}
		if !tok.MatchesCA(caPEM) {
			return nil, fmt.Errorf("%w: %s serves a CA with hash %s, the token pins %s", ErrCAMismatch, server, pki.CAHash(caPEM), tok.CAHash)
		}
	}
	pool, err := caPool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("the server's CA: %w", err)
	}

	clientCSR, clientKey, err := pki.NewNodeCSR(o.NodeName, pki.ServingNames{})
	if err != nil {
		return nil, err
	}
	servingCSR, servingKey, err := pki.NewNodeCSR(o.NodeName, names)
	if err != nil {
		return nil, err
	}
	var resp *pki.NodeCredentialsResponse
	err = retry(ctx, log, "request node credentials", func() error {
		resp, err = requestCredentials(ctx, server, pool, strings.TrimSpace(o.Token), pki.NodeCredentialsRequest{
			NodeName: o.NodeName, ClientCSR: string(clientCSR), ServingCSR: string(servingCSR),
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	client, err := checkPair([]byte(resp.ClientCertificate), clientKey, pool, x509.ExtKeyUsageClientAuth, o.NodeName, now)
	if err != nil {
		return nil, fmt.Errorf("%w: the issued client certificate: %v", ErrRejected, err)
	}
	serving, err := checkPair([]byte(resp.ServingCertificate), servingKey, pool, x509.ExtKeyUsageServerAuth, o.NodeName, now)
	if err != nil {
		return nil, fmt.Errorf("%w: the issued serving certificate: %v", ErrRejected, err)
	}
	if !covers(serving.Cert, names) {
		return nil, fmt.Errorf("%w: the issued serving certificate does not cover %v %v", ErrRejected, names.DNSNames, names.IPs)
	}
	if err := os.MkdirAll(tlsDir(o.DataDir), 0o700); err != nil {
		return nil, err
	}
	// Keys before certificates and the CA last: a crash in between leaves a
	// pair that fails loadValid, never one that looks valid but is not.
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{p.clientKey, client.KeyPEM, 0o600},
		{p.servingKey, serving.KeyPEM, 0o600},
		{p.clientCert, client.CertPEM, 0o644},
		{p.servingCert, serving.CertPEM, 0o644},
		{p.ca, caPEM, 0o644},
	} {
		if err := pki.WriteFile(f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("writing node credentials: %w", err)
		}
	}
	log.Info("joined the cluster", "node", o.NodeName, "server", server, "user", client.Cert.Subject.CommonName,
		"expires", client.Cert.NotAfter)
	return finish(p, server, caPEM, client, serving)
}

func checkOptions(o *Options) (string, error) {
	if o.DataDir == "" {
		return "", errors.New("join: DataDir is required")
	}
	if err := pki.ValidateNodeName(o.NodeName); err != nil {
		return "", fmt.Errorf("join: %w", err)
	}
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(o.ServerURL), "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("join: server URL %q: want https://HOST[:PORT]", o.ServerURL)
	}
	return u.Scheme + "://" + u.Host, nil
}

// finish writes the kubeconfig (when it differs) and builds Credentials.
func finish(p files, server string, caPEM []byte, client, serving pki.KeyPair) (*Credentials, error) {
	kc, err := pki.Kubeconfig(server, caPEM, client)
	if err != nil {
		return nil, err
	}
	if !pki.SameFile(p.kubeconfig, kc) {
		if err := pki.WriteFile(p.kubeconfig, kc, 0o600); err != nil {
			return nil, fmt.Errorf("writing the node kubeconfig: %w", err)
		}
	}
	return &Credentials{
		CAFile: p.ca, ClientCertFile: p.clientCert, ClientKeyFile: p.clientKey,
		ServingCertFile: p.servingCert, ServingKeyFile: p.servingKey, KubeconfigFile: p.kubeconfig,
		CAPEM:   caPEM,
		RenewAt: earlier(renewAt(client.Cert), renewAt(serving.Cert)),
		RESTConfig: &rest.Config{
			Host: server,
			TLSClientConfig: rest.TLSClientConfig{
				CAData: caPEM, CertData: client.CertPEM, KeyData: client.KeyPEM,
			},
		},
	}, nil
}

// loadValid returns the saved client and serving pairs, or why they cannot
// be reused.
func loadValid(p files, caPEM []byte, nodeName string, names pki.ServingNames, now time.Time) (client, serving pki.KeyPair, why string) {
	pool, err := caPool(caPEM)
	if err != nil {
		return client, serving, "saved CA: " + err.Error()
	}
	load := func(certPath, keyPath string, usage x509.ExtKeyUsage) (pki.KeyPair, error) {
		certPEM, err := os.ReadFile(certPath)
		if err != nil {
			return pki.KeyPair{}, err
		}
		keyPEM, err := os.ReadFile(keyPath)
		if err != nil {
			return pki.KeyPair{}, err
		}
		kp, err := checkPair(certPEM, keyPEM, pool, usage, nodeName, now)
		if err != nil {
			return kp, fmt.Errorf("%s: %w", certPath, err)
		}
		if !now.Before(renewAt(kp.Cert)) {
			return kp, fmt.Errorf("%s expires at %s, within the last third of its lifetime", certPath, kp.Cert.NotAfter.Format(time.RFC3339))
		}
		return kp, nil
	}
	if client, err = load(p.clientCert, p.clientKey, x509.ExtKeyUsageClientAuth); err != nil {
		return client, serving, err.Error()
	}
	if serving, err = load(p.servingCert, p.servingKey, x509.ExtKeyUsageServerAuth); err != nil {
		return client, serving, err.Error()
	}
	if !covers(serving.Cert, names) {
		return client, serving, fmt.Sprintf("the serving certificate does not cover %v %v", names.DNSNames, names.IPs)
	}
	return client, serving, ""
}

// checkPair parses a certificate and its key and checks that they match,
// that the certificate chains to pool for usage at now, and that it names
// the node.
func checkPair(certPEM, keyPEM []byte, pool *x509.CertPool, usage x509.ExtKeyUsage, nodeName string, now time.Time) (pki.KeyPair, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return pki.KeyPair{}, err
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return pki.KeyPair{}, err
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return pki.KeyPair{}, err
	}
	if want := pki.NodeUser(nodeName); cert.Subject.CommonName != want {
		return pki.KeyPair{}, fmt.Errorf("certificate is for %q, not %q", cert.Subject.CommonName, want)
	}
	if !slices.Equal(cert.Subject.Organization, []string{pki.NodesGroup}) {
		return pki.KeyPair{}, fmt.Errorf("certificate groups %q, want [%s]", cert.Subject.Organization, pki.NodesGroup)
	}
	return pki.KeyPair{CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}, nil
}

func covers(cert *x509.Certificate, names pki.ServingNames) bool {
	for _, d := range names.DNSNames {
		if !slices.Contains(cert.DNSNames, d) {
			return false
		}
	}
	for _, ip := range names.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func caPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %q is not a CA", c.Subject.CommonName)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return pool, nil
}

// transient marks an error worth retrying.
type transient struct{ err error }

func (t transient) Error() string { return t.err.Error() }
func (t transient) Unwrap() error { return t.err }

func retry(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	delay := retryMin
	for {
		err := f()
		var tr transient
		if err == nil || !errors.As(err, &tr) {
			return err
		}
		log.Info("join: will retry", "step", what, "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, retryMax)
	}
}

// fetchCA is the one request made without verifying the server: its answer
// is trusted only if it hashes to the token's CA hash.
func fetchCA(ctx context.Context, server string) ([]byte, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // checked against the token's hash
		Proxy:           http.ProxyFromEnvironment,
	}
	defer tr.CloseIdleConnections()
	body, code, err := do(ctx, &http.Client{Transport: tr, Timeout: requestTimeout}, http.MethodGet, server+pki.CACertsPath, "", nil, maxCABytes)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, httpError("GET "+pki.CACertsPath, code, body)
	}
	return body, nil
}

func requestCredentials(ctx context.Context, server string, pool *x509.CertPool, token string, req pki.NodeCredentialsRequest) (*pki.NodeCredentialsResponse, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Proxy:           http.ProxyFromEnvironment,
	}
	defer tr.CloseIdleConnections()
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	body, code, err := do(ctx, &http.Client{Transport: tr, Timeout: requestTimeout}, http.MethodPost, server+pki.NodeCredentialsPath, token, payload, maxResponseBytes)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, httpError("POST "+pki.NodeCredentialsPath, code, body)
	}
	var resp pki.NodeCredentialsResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("%w: decoding the answer: %v", ErrRejected, err)
	}
	return &resp, nil
}

func do(ctx context.Context, c *http.Client, method, u, token string, payload []byte, limit int64) ([]byte, int, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, 0, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, */*")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		var unknown x509.UnknownAuthorityError
		var host x509.HostnameError
		switch {
		case errors.As(err, &unknown):
			// The server presents a certificate the pinned CA did not sign.
			return nil, 0, fmt.Errorf("%w: %s presents a certificate not signed by it: %v", ErrCAMismatch, u, err)
		case errors.As(err, &host):
			return nil, 0, fmt.Errorf("the server's certificate does not cover the host in %s (use a name or IP it was issued for): %w", u, err)
		case ctx.Err() != nil:
			return nil, 0, err
		}
		return nil, 0, transient{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, 0, transient{err}
	}
	if int64(len(data)) > limit {
		return nil, 0, fmt.Errorf("%w: %s answered more than %d bytes", ErrRejected, u, limit)
	}
	return data, resp.StatusCode, nil
}

// httpError turns a non-200 answer into a refusal or a transient error,
// with the server's Status message when it sent one.
func httpError(what string, code int, body []byte) error {
	msg := strings.TrimSpace(string(body))
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		msg = st.Message
	}
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	err := fmt.Errorf("%s: %d %s: %s", what, code, http.StatusText(code), msg)
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%w: %v", ErrUnauthorized, err)
	case code == http.StatusTooManyRequests || code >= 500:
		return transient{err}
	default:
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
}

// renewAt is when c enters the last third of its lifetime.
func renewAt(c *x509.Certificate) time.Time {
	return c.NotAfter.Add(-c.NotAfter.Sub(c.NotBefore) / 3)
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
