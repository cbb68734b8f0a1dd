package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/internal/apiserver"
	"github.com/skiff-dev/skiff/internal/openapi"
	"github.com/skiff-dev/skiff/internal/pki"
	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/satoken"
	"github.com/skiff-dev/skiff/internal/store"
)

// KubernetesVersion is the API version skiff answers as.
const KubernetesVersion = "v1.32.0"

// Version is skiff's own version, set at link time (-X).
var Version = "dev"

// Server is the control plane of one skiff process.
type Server struct {
	cfg     Config
	res     resolved
	log     *slog.Logger
	baseLog *slog.Logger // without the component attribute, for the controllers
	tokens  *satoken.Service

	ready chan struct{} // closed once the API serves and bootstrap objects exist
	// Filled by Run, for the agent half and tests.
	restConfig *rest.Config
	token      string
}

// New checks cfg and fills defaults; it starts nothing.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	res, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg, res: res, log: log.With("component", "server"), baseLog: log, ready: make(chan struct{})}, nil
}

// Ready is closed once the API is serving and bootstrapped.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// RESTConfig is the admin client configuration (valid after Ready).
func (s *Server) RESTConfig() *rest.Config { return rest.CopyConfig(s.restConfig) }

// Token is the join token (valid after Ready).
func (s *Server) Token() string { return s.token }

// URL is the API server's address for in-process clients, such as the
// agent of `skiff server` (valid after Ready).
func (s *Server) URL() string { return s.restConfig.Host }

// NodeName is the name the server's own node registers under.
func (s *Server) NodeName() string { return s.res.nodeName }

// AdvertiseIP is the address the server advertises, its node's InternalIP.
func (s *Server) AdvertiseIP() net.IP { return s.res.advertiseIP }

// Run serves until ctx ends, then shuts down cleanly.
func (s *Server) Run(ctx context.Context) error {
	dir := s.cfg.serverDir()
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		return err
	}
	// The store fsyncs db/ when it creates the state file; make db/'s own
	// entry durable too, so a power cut after first start cannot lose it.
	if err := syncDir(dir); err != nil {
		return err
	}
	bundle, err := pki.LoadOrCreate(filepath.Join(dir, "tls"), s.servingNames())
	if err != nil {
		return err
	}
	if s.token, err = s.loadOrCreateToken(bundle.CA.CertPEM); err != nil {
		return err
	}

	st, err := store.OpenBolt(filepath.Join(dir, "db", "state.db"), store.BoltOptions{})
	if err != nil {
		return fmt.Errorf("open datastore: %w", err)
	}
	defer st.Close()

	var api *apiserver.Server // set below; the lookups run only once requests arrive
	resources, err := registry.Resources(registry.Config{
		ServiceCIDR:   s.res.serviceCIDR,
		NodePortFirst: s.res.nodePortFirst,
		NodePortLast:  s.res.nodePortLast,

		DefaultNotReadyTolerationSeconds:    s.cfg.DefaultNotReadyTolerationSeconds,
		DefaultUnreachableTolerationSeconds: s.cfg.DefaultUnreachableTolerationSeconds,

		Objects: registry.ObjectGetterFunc(func(ctx context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
			return api.GetObject(ctx, gr, ns, name)
		}),
	})
	if err != nil {
		return err
	}
	oapi, err := openapi.New(resources)
	if err != nil {
		return fmt.Errorf("build openapi documents: %w", err)
	}
	saKey, err := pki.LoadOrCreateServiceAccountKey(filepath.Join(dir, "tls"))
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	tokens, err := satoken.New(satoken.Options{
		Key: saKey,
		Lookup: satoken.LookupFunc(func(ctx context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
			return api.GetObject(ctx, gr, ns, name)
		}),
		Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.tokens = tokens
	certs := certAuthenticator()
	kubeletTLS, err := kubeletClientTLS(bundle.CA)
	if err != nil {
		return err
	}
	api, err = apiserver.New(apiserver.Config{
		Store:     st,
		Resources: resources,
		// Client certificates first, then service account bearer tokens.
		Authenticator: func(r *http.Request) (apiserver.Identity, bool) {
			if id, ok := certs(r); ok {
				return id, true
			}
			return tokens.AuthenticateRequest(r)
		},
		TokenIssuer: tokens,
		KubeletTLS:  kubeletTLS,
		Profiling:   true,
		OpenAPI:     oapi,
		Version:     versionInfo(),
		Logger:      s.log,
	})
	if err != nil {
		return err
	}
	if err := api.Init(ctx); err != nil {
		return fmt.Errorf("initialise registry: %w", err)
	}

	cert, err := tls.X509KeyPair(bundle.Serving.CertPEM, bundle.Serving.KeyPEM)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.HTTPSPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	// Long-lived watches take their context from serveCtx, so cancelling it
	// ends them and lets Shutdown finish.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	srv := &http.Server{
		Handler: s.withJoin(api, bundle.CA), // /cacerts and the join endpoint, then the API
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    bundle.CA.Pool(),
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return serveCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}

	server := fmt.Sprintf("https://%s", net.JoinHostPort(loopbackFor(s.cfg.BindAddress), strconv.Itoa(s.cfg.HTTPSPort)))
	s.restConfig = &rest.Config{
		Host:            server,
		TLSClientConfig: rest.TLSClientConfig{CAData: bundle.CA.CertPEM, CertData: bundle.Admin.CertPEM, KeyData: bundle.Admin.KeyPEM},
		UserAgent:       "skiff-server/" + Version,
		QPS:             100,
		Burst:           200,
	}

	// Open watches never go idle; end them when shutdown starts so
	// Shutdown does not wait for its deadline.
	srv.RegisterOnShutdown(api.StopWatches)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		s.log.Info("serving the Kubernetes API", "address", addr)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		stopServing()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	g.Go(func() error {
		client, err := kubernetes.NewForConfig(s.restConfig)
		if err != nil {
			return err
		}
		if err := s.bootstrap(gctx, client); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		if err := s.writeKubeconfig(server, bundle); err != nil {
			return err
		}
		close(s.ready)
		s.log.Info("skiff server is ready", "node", s.res.nodeName, "kubeconfig", s.cfg.WriteKubeconfig)
		return s.runControlPlane(gctx, bundle.CA, server)
	})
	err = g.Wait()
	s.log.Info("skiff server stopped")
	return err
}

func (s *Server) servingNames() pki.ServingNames {
	host, _ := os.Hostname()
	ips := []net.IP{s.res.advertiseIP}
	if ip := net.ParseIP(s.cfg.BindAddress); ip != nil && !ip.IsUnspecified() {
		ips = append(ips, ip)
	}
	names := pki.DefaultServingNames(strings.ToLower(host), net.IP(s.res.apiServiceIP.AsSlice()), ips...)
	names.DNSNames = append(names.DNSNames, "kubernetes.default.svc."+s.cfg.ClusterDomain)
	return names
}

// loadOrCreateToken keeps DATA/server/token: the configured token's secret
// when one is given (its CA hash must match ours), else a generated one.
func (s *Server) loadOrCreateToken(caPEM []byte) (string, error) {
	path := filepath.Join(s.cfg.serverDir(), "token")
	var secret string
	switch {
	case s.cfg.Token != "":
		t, err := pki.ParseToken(s.cfg.Token)
		if err != nil {
			return "", fmt.Errorf("--token: %w", err)
		}
		if !t.MatchesCA(caPEM) {
			return "", errors.New("--token: its CA hash does not match this server's CA")
		}
		secret = t.Secret
	default:
		if b, err := os.ReadFile(path); err == nil {
			if t, err := pki.ParseToken(string(b)); err == nil {
				secret = t.Secret
			}
		}
		if secret == "" {
			secret = pki.NewSecret()
		}
	}
	tok := pki.Token{CAHash: pki.CAHash(caPEM), User: "server", Secret: secret}.String()
	if !pki.SameFile(path, []byte(tok+"\n")) {
		if err := pki.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	return tok, nil
}

func (s *Server) writeKubeconfig(server string, b *pki.Bundle) error {
	if s.cfg.WriteKubeconfig == "" {
		return nil
	}
	data, err := pki.Kubeconfig(server, b.CA.CertPEM, b.Admin)
	if err != nil {
		return err
	}
	if err := pki.WriteFile(s.cfg.WriteKubeconfig, data, s.cfg.WriteKubeconfigMode); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// certAuthenticator accepts client certificates signed by the cluster CA:
// the user is the certificate's CN and the groups its O entries, as in
// Kubernetes. The TLS layer already verified the chain (VerifyClientCertIfGiven).
func certAuthenticator() apiserver.Authenticator {
	return func(r *http.Request) (apiserver.Identity, bool) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			return apiserver.Identity{}, false
		}
		leaf := r.TLS.VerifiedChains[0][0]
		return apiserver.Identity{Name: leaf.Subject.CommonName, Groups: leaf.Subject.Organization}, true
	}
}

func versionInfo() version.Info {
	return version.Info{
		Major: "1", Minor: "32",
		GitVersion:   KubernetesVersion + "+skiff-" + Version,
		GitTreeState: "clean",
		GoVersion:    goVersion(),
		Compiler:     "gc",
		Platform:     platform(),
	}
}

// loopbackFor is the address in-process clients and the kubeconfig use.
func loopbackFor(bind string) string {
	ip := net.ParseIP(bind)
	if ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
		return "127.0.0.1"
	}
	return bind
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// kubeletClientTLS is the API server's client side towards the nodes'
// kubelet endpoints: a certificate for system:kube-apiserver issued in
// memory, and the cluster CA to verify their serving certificates.
func kubeletClientTLS(ca *pki.CA) (*tls.Config, error) {
	kp, err := ca.IssueClient("system:kube-apiserver", []string{"system:masters"})
	if err != nil {
		return nil, fmt.Errorf("kubelet client certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}, nil
}
