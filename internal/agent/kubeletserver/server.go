// Package kubeletserver is the agent's HTTPS endpoint on port 10250: what the
// API server calls to serve pods/log, pods/exec, pods/attach and
// pods/portforward, at the paths the kubelet serves them
// (pkg/kubelet/server/server.go):
//
//	GET      /healthz
//	GET      /containerLogs/{namespace}/{pod}/{container}   ?follow&tailLines&sinceSeconds&sinceTime&timestamps&limitBytes&previous
//	GET|POST /exec/{namespace}/{pod}/{container}            ?command=…&input=1&output=1&error=1&tty=1 (upgrade)
//	GET|POST /attach/{namespace}/{pod}/{container}          ?input=1&output=1&error=1&tty=1 (upgrade)
//	GET|POST /portForward/{namespace}/{pod}                 (upgrade; ?port= for WebSocket)
//
// # Authentication
//
// TLS with the node's serving certificate; clients must present a certificate
// signed by the cluster CA (Config.ClientCA), and only the API server's kubelet
// client (CN "system:kube-apiserver") is let in: anything else gets 403.
//
// # Protocols
//
// Exec and attach are served by k8s.io/cri-streaming's remotecommand package
// (SPDY v1–v4 as kubectl < 1.30 speaks, WebSocket channel.k8s.io v1–v4),
// plus WebSocket v5.channel.k8s.io (v4 with the CLOSE signal, what kubectl ≥
// 1.30 speaks) handled here with k8s.io/streaming's wsstream: kube-apiserver
// translates v5 to SPDY before the kubelet (StreamTranslator); skiff's API
// server passes the upgrade through and the agent speaks v5 itself.
// Port-forward is cri-streaming's portforward package (SPDY
// portforward.k8s.io, and WebSocket v4.channel.k8s.io), plus SPDY tunneled
// through WebSocket ("SPDY/3.1+portforward.k8s.io", kubectl ≥ 1.31), which is
// unwrapped here with client-go's tunneling connection and then served as SPDY.
// Forwarded connections are dialed inside the pod's network namespace
// (runtime.DialInNetNS) to 127.0.0.1:<port>, then [::1]:<port>.
//
// # Sessions
//
// An exec's exit code goes back on the error stream (v4/v5 status with a
// NonZeroExitCode cause), so kubectl exits with it. A client that goes away
// (its connection ends) cancels the session: a running exec is killed, an
// attach detaches (the container keeps running). Attach to a container
// without a TTY streams its output from now on through OutputAttacher when
// Pods implements it, else by following its log file.
//
// cri-streaming reports some errors through klog (k8s.io/streaming's
// runtime.HandleError): route klog to slog in main to keep them structured.
//
// # Errors
//
// Errors of Pods are apierrors and keep their status code; the body is the
// plain-text message, as the kubelet writes it, which the API server turns
// into a Status (400 → BadRequest with the message, as kube-apiserver's
// GenericHttpResponseChecker).
package kubeletserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// APIServerUser is the only client certificate CN let in.
const APIServerUser = "system:kube-apiserver"

// Pods is what the server needs from the pod worker (implemented by
// *podworker.Manager).
//
// Errors are apierrors (NotFound, BadRequest) and map to their HTTP status.
type Pods interface {
	// ContainerID is the runtime ID of the container's current instance and whether it runs.
	ContainerID(namespace, pod, container string) (id string, running bool, err error)
	// ContainerLog is the CRI log file of the container's current run (previous: the run before) and a
	// channel closed once that run's output is completely written (already closed when it has ended).
	ContainerLog(namespace, pod, container string, previous bool) (path string, done <-chan struct{}, err error)
	// PodNetNS is the pod sandbox's network namespace path (for port-forward via runtime.DialInNetNS).
	PodNetNS(namespace, pod string) (string, error)
}

// OutputAttacher may be implemented by Pods as well: it streams a non-TTY
// container's raw output from now on (logs.Writer.Attach) until ctx ends or
// the container's output ends. Without it, `kubectl attach` to a container
// without a TTY follows the container's log file instead (same lines, as
// written to the log).
type OutputAttacher interface {
	AttachOutput(ctx context.Context, namespace, pod, container string, stdout, stderr io.Writer) error
}

// Runtime is the part of *runtime.Runtime the server uses.
type Runtime interface {
	Exec(ctx context.Context, id string, cfg runtime.ExecConfig) (int, error)
	Attach(ctx context.Context, id string, cfg runtime.AttachConfig) error
	Wait(ctx context.Context, id string) (*runtime.State, error)
}

var _ Runtime = (*runtime.Runtime)(nil)

// DialFunc dials addr ("IP:port") inside the network namespace at nsPath.
type DialFunc func(ctx context.Context, nsPath, network, addr string) (net.Conn, error)

// Config configures a Server.
type Config struct {
	// Addr to listen on; default ":10250".
	Addr string
	// CertFile and KeyFile are the serving certificate (DATA/agent/tls/serving.*),
	// re-read when they change.
	CertFile, KeyFile string
	// ClientCA verifies client certificates (the cluster CA). Either it or
	// ClientCAPEM is required.
	ClientCA    *x509.CertPool
	ClientCAPEM []byte
	Pods        Pods
	Runtime     Runtime
	// Dial defaults to runtime.DialInNetNS.
	Dial DialFunc
	// StreamIdleTimeout ends exec/attach/port-forward sessions without
	// traffic for that long (the kubelet's streamingConnectionIdleTimeout,
	// default 4 h).
	StreamIdleTimeout time.Duration
	// StreamCreationTimeout bounds the wait for a client's SPDY streams
	// (default 30 s).
	StreamCreationTimeout time.Duration
	// Logger; component=kubeletserver is added. Default slog.Default().
	Logger *slog.Logger
}

// Server is the agent's kubelet API endpoint.
type Server struct {
	cfg  Config
	log  *slog.Logger
	pool *x509.CertPool

	certMu   sync.Mutex
	cert     *tls.Certificate
	certMod  [2]time.Time
	certNext time.Time
}

// New checks cfg and fills defaults; it starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Pods == nil || cfg.Runtime == nil {
		return nil, errors.New("kubeletserver: Config.Pods and Config.Runtime are required")
	}
	if cfg.Addr == "" {
		cfg.Addr = ":10250"
	}
	if cfg.Dial == nil {
		cfg.Dial = runtime.DialInNetNS
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = 4 * time.Hour
	}
	if cfg.StreamCreationTimeout <= 0 {
		cfg.StreamCreationTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pool := cfg.ClientCA
	if pool == nil && len(cfg.ClientCAPEM) > 0 {
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.ClientCAPEM) {
			return nil, errors.New("kubeletserver: Config.ClientCAPEM holds no certificate")
		}
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "kubeletserver"), pool: pool}, nil
}

// Serve listens on Config.Addr and serves until ctx ends. It needs
// CertFile, KeyFile and a client CA.
func (s *Server) Serve(ctx context.Context) error {
	if s.cfg.CertFile == "" || s.cfg.KeyFile == "" || s.pool == nil {
		return errors.New("kubeletserver: Serve needs CertFile, KeyFile and ClientCA")
	}
	if _, err := s.getCertificate(nil); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("kubeletserver: listen on %s: %w", s.cfg.Addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves on ln (closed when done) until ctx ends.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	s.log.Info("serving", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // hijacked streams are not tracked by Shutdown; their contexts ended with ctx
	}
	return nil
}

// TLSConfig is the server side of the connection: the serving certificate
// (re-read when its files change) and required client certificates.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: s.getCertificate,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      s.pool,
		MinVersion:     tls.VersionTLS12,
		// HTTP/1.1 only: upgrades (SPDY, WebSocket) need it.
		NextProtos: []string{"http/1.1"},
	}
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.certMu.Lock()
	defer s.certMu.Unlock()
	now := time.Now()
	if s.cert != nil && now.Before(s.certNext) {
		return s.cert, nil
	}
	s.certNext = now.Add(10 * time.Second)
	var mod [2]time.Time
	for i, f := range []string{s.cfg.CertFile, s.cfg.KeyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			if s.cert != nil {
				return s.cert, nil
			}
			return nil, fmt.Errorf("kubeletserver: serving certificate: %w", err)
		}
		mod[i] = fi.ModTime()
	}
	if s.cert != nil && mod == s.certMod {
		return s.cert, nil
	}
	c, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		if s.cert != nil {
			s.log.Warn("reloading the serving certificate failed; keeping the old one", "err", err)
			return s.cert, nil
		}
		return nil, fmt.Errorf("kubeletserver: serving certificate: %w", err)
	}
	s.cert, s.certMod = &c, mod
	return s.cert, nil
}

// Handler serves the kubelet API; it checks the client certificate of
// each request (r.TLS), so it must be served over TLS with client
// certificates verified against the cluster CA.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	user := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.VerifiedChains) > 0 {
		user = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if user == "" {
		writeText(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	if user != APIServerUser {
		// As the kubelet's authorization failure.
		writeText(w, http.StatusForbidden, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=(%s))",
			user, verbOf(r.Method), subresourceOf(segs[0])))
		return
	}
	if segs[0] == "exec" || segs[0] == "attach" || segs[0] == "portForward" {
		var cancel context.CancelFunc
		w, r, cancel = withDisconnect(w, r)
		defer cancel()
	}
	switch {
	case len(segs) == 1 && segs[0] == "healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok")
	case len(segs) == 4 && segs[0] == "containerLogs" && r.Method == http.MethodGet:
		s.containerLogs(w, r, segs[1], segs[2], segs[3])
	case len(segs) == 4 && segs[0] == "exec" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		s.exec(w, r, segs[1], segs[2], segs[3])
	case len(segs) == 4 && segs[0] == "attach" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		s.attach(w, r, segs[1], segs[2], segs[3])
	case len(segs) == 3 && segs[0] == "portForward" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		s.portForward(w, r, segs[1], segs[2])
	default:
		writeText(w, http.StatusNotFound, "404 page not found")
	}
}

func verbOf(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "get"
	case http.MethodPost:
		return "create"
	}
	return strings.ToLower(method)
}

func subresourceOf(first string) string {
	switch first {
	case "containerLogs":
		return "log"
	case "exec", "attach", "portForward":
		return "proxy"
	case "healthz":
		return "healthz"
	}
	return "proxy"
}

// writeError answers err as the kubelet does: its message as plain text,
// with the status of an apierror and def otherwise.
func writeError(w http.ResponseWriter, err error, def int) {
	code := def
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Code != 0 {
		code = int(se.Status().Code)
	}
	writeText(w, code, err.Error())
}

// writeText writes a plain-text answer (without http.Error's newline, as
// the kubelet's go-restful WriteError).
func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}
