// Package apiserver serves skiff's Kubernetes-compatible HTTP API: routing,
// discovery, the REST verbs with Kubernetes' semantics (preconditions,
// finalizers, graceful deletion, patch types), watch streaming, Table and
// PartialObjectMetadata output. What each resource does on a write lives in
// internal/registry; the objects themselves live in internal/store.
package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

// Identity is an authenticated caller.
type Identity struct {
	Name   string
	Groups []string
}

// Authenticator returns the caller's identity; ok == false means the request
// is unauthenticated. A nil Authenticator lets everyone in (tests).
type Authenticator func(r *http.Request) (Identity, bool)

// Config is what the API server is built from.
type Config struct {
	Store         store.Backend
	Resources     []*registry.Resource
	Authenticator Authenticator
	// OpenAPI is mounted at /openapi/v2 and /openapi/v3…; nil answers 404.
	OpenAPI http.Handler
	// Version is served at /version.
	Version version.Info
	// Profiling serves Go's /debug/pprof/ to members of system:masters,
	// as kube-apiserver's --profiling (on by default).
	Profiling bool
	// TokenIssuer serves serviceaccounts/token (TokenRequest) and, when it
	// implements OpenIDMetadata, the issuer discovery documents; nil leaves
	// them unserved.
	TokenIssuer TokenIssuer
	// KubeletTLS is the API server's client side towards the nodes' kubelet
	// endpoints (client certificate CN system:kube-apiserver, RootCAs the
	// cluster CA): with it pods/log, pods/exec, pods/attach and
	// pods/portforward are served; nil leaves them unserved.
	KubeletTLS *tls.Config
	Logger     *slog.Logger
}

// Server is the HTTP API server. Build it with New, call Init once, then
// serve Handler.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store store.Backend
	ready atomic.Bool

	groups  []*groupInfo // discovery order; the core group first when served
	byGVR   map[schema.GroupVersion]map[string]*registry.Resource
	byGR    map[schema.GroupResource]*registry.Resource
	nsRes   *registry.Resource // namespaces, for the existence checks
	codecs  codecs
	watches *watchHub
	kubelet *http.Transport // nil without Config.KubeletTLS

	stopOnce sync.Once
	stopped  chan struct{} // closed by StopWatches
}

type groupInfo struct {
	name      string
	versions  []string
	resources map[string][]*registry.Resource // version → resources in order
}

type identityKey struct{}

// IdentityFrom returns the authenticated caller of a request's context.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// New checks cfg and builds the routing tables. It starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("apiserver: Config.Store is required")
	}
	if len(cfg.Resources) == 0 {
		return nil, errors.New("apiserver: Config.Resources is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TokenIssuer != nil {
		cfg.Resources = slices.Clone(cfg.Resources) // the caller's slice stays as it was
		for i, r := range cfg.Resources {
			if r != nil {
				cfg.Resources[i] = withTokenSubresource(r)
			}
		}
	}
	if cfg.KubeletTLS != nil {
		cfg.Resources = slices.Clone(cfg.Resources)
		for i, r := range cfg.Resources {
			if r != nil {
				cfg.Resources[i] = withPodStreamSubresources(r)
			}
		}
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "apiserver"),
		store: cfg.Store,
		byGVR: map[schema.GroupVersion]map[string]*registry.Resource{},
		byGR:  map[schema.GroupResource]*registry.Resource{},
	}
	groups := map[string]*groupInfo{}
	for _, r := range cfg.Resources {
		if r == nil || r.Resource == "" || r.Kind == "" || r.Version == "" || r.New == nil || r.NewList == nil || r.Strategy == nil {
			return nil, fmt.Errorf("apiserver: incomplete resource %+v", r)
		}
		gv := r.GroupVersion()
		if s.byGVR[gv] == nil {
			s.byGVR[gv] = map[string]*registry.Resource{}
		}
		if _, dup := s.byGVR[gv][r.Resource]; dup {
			return nil, fmt.Errorf("apiserver: resource %s served twice", r.GVR())
		}
		s.byGVR[gv][r.Resource] = r
		s.byGR[r.GVR().GroupResource()] = r
		g := groups[r.Group]
		if g == nil {
			g = &groupInfo{name: r.Group, resources: map[string][]*registry.Resource{}}
			groups[r.Group] = g
			if r.Group == "" {
				s.groups = append([]*groupInfo{g}, s.groups...)
			} else {
				s.groups = append(s.groups, g)
			}
		}
		if _, ok := g.resources[r.Version]; !ok {
			g.versions = append(g.versions, r.Version)
		}
		g.resources[r.Version] = append(g.resources[r.Version], r)
		if r.Group == "" && r.Resource == "namespaces" {
			s.nsRes = r
		}
	}
	if cfg.KubeletTLS != nil {
		s.kubelet = newKubeletTransport(cfg.KubeletTLS)
	}
	s.stopped = make(chan struct{})
	s.codecs = newCodecs()
	s.watches = newWatchHub(s)
	return s, nil
}

// Init hands every Initializer strategy its stored objects (so allocators
// know what is taken), then marks the server ready.
func (s *Server) Init(ctx context.Context) error {
	for _, r := range s.cfg.Resources {
		in, ok := r.Strategy.(registry.Initializer)
		if !ok {
			continue
		}
		objs, _, err := s.listAll(ctx, r, "", 0)
		if err != nil {
			return fmt.Errorf("apiserver: init %s: %w", r.GVR(), err)
		}
		if err := in.Init(ctx, objs); err != nil {
			return fmt.Errorf("apiserver: init %s: %w", r.GVR(), err)
		}
	}
	s.ready.Store(true)
	return nil
}

// StopWatches ends every open watch (clients re-watch elsewhere or later).
// http.Server.Shutdown waits for idle connections, which a watch never
// is: register this with http.Server.RegisterOnShutdown.
func (s *Server) StopWatches() { s.stopOnce.Do(func() { close(s.stopped) }) }

// Handler serves the whole API.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("panic: %v", p)))
		}
	}()
	path := r.URL.Path
	switch path {
	case "/healthz", "/livez", "/readyz":
		s.serveHealth(w, r, path[1:], "")
		return
	case "/version":
		if s.readOnlyMethod(w, r) {
			s.writeJSON(w, http.StatusOK, s.cfg.Version)
		}
		return
	}
	for _, ep := range []string{"healthz", "livez", "readyz"} {
		if sub, ok := strings.CutPrefix(path, "/"+ep+"/"); ok {
			s.serveHealth(w, r, ep, sub)
			return
		}
	}
	if s.cfg.Authenticator != nil {
		id, ok := s.cfg.Authenticator(r)
		if !ok {
			s.writeStatus(w, r, &metav1.Status{Status: metav1.StatusFailure, Message: "Unauthorized",
				Reason: metav1.StatusReasonUnauthorized, Code: http.StatusUnauthorized})
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
	}
	if s.cfg.TokenIssuer != nil && s.serveOpenID(w, r) {
		return
	}
	if s.cfg.Profiling && strings.HasPrefix(path, "/debug/pprof/") {
		s.servePprof(w, r)
		return
	}
	if path == "/openapi/v2" || path == "/openapi/v3" || strings.HasPrefix(path, "/openapi/v3/") {
		if s.cfg.OpenAPI == nil {
			s.writeError(w, r, errNotFoundPath())
			return
		}
		if !s.readOnlyMethod(w, r) {
			return
		}
		s.cfg.OpenAPI.ServeHTTP(w, r)
		return
	}
	s.route(w, r)
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(text))
}

// errNotFoundPath is kube-apiserver's answer for a path it does not serve.
func errNotFoundPath() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure,
		Message: "the server could not find the requested resource", Reason: metav1.StatusReasonNotFound,
		Details: &metav1.StatusDetails{}, Code: http.StatusNotFound}}
}

func errMethodNotAllowed(gr schema.GroupResource, verb string) error {
	return apierrors.NewMethodNotSupported(gr, verb)
}

// newObject returns an empty typed object of r with apiVersion/kind set.
func newObject(r *registry.Resource) runtime.Object {
	obj := r.New()
	obj.GetObjectKind().SetGroupVersionKind(r.GVK())
	return obj
}
