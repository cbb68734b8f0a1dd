// Package token is the agent's service account token manager, after the
// kubelet's pkg/kubelet/token/token_manager.go: pods' projected
// serviceAccountToken volumes get their tokens from the TokenRequest API
// (POST serviceaccounts/NAME/token), bound to the pod (boundObjectRef kind
// Pod, name, uid), so a token dies with its pod.
//
// Tokens are cached by (namespace, service account, audience, expiration,
// pod UID) and fetched again when older than 80% of their TTL (with up to
// 10 s of jitter) or older than 24 h, or when the clock went backwards past
// their issue time. A failed refresh keeps returning the cached token while it
// is still valid. Forget drops a pod's tokens when the pod is gone; Run drops
// expired ones every minute.
//
// Manager.Get is a podconfig.TokenFunc:
//
//	tokens := token.New(nodeClient, token.Options{Logger: log})
//	go tokens.Run(ctx)
//	podconfig.WriteVolumes(ctx, podDir, pod, sources, podconfig.VolumeOptions{Token: tokens.Get, …})
//	…
//	tokens.Forget(pod.UID) // once the pod is removed
package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/agent/podconfig"
)

var _ podconfig.TokenFunc = (*Manager)(nil).Get

const (
	maxTTL    = 24 * time.Hour
	gcPeriod  = time.Minute
	maxJitter = 10 * time.Second
	// DefaultExpirationSeconds is used when Get is asked for 0 seconds
	// (the API's default for a projection without expirationSeconds).
	DefaultExpirationSeconds = 3600
)

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// Manager fetches and caches pod-bound service account tokens. It is safe
// for concurrent use.
type Manager struct {
	client kubernetes.Interface
	log    *slog.Logger
	now    func() time.Time

	mu    sync.RWMutex
	cache map[key]*authenticationv1.TokenRequest
}

// key names a cached token; it holds nothing secret and may be logged.
type key struct {
	namespace, serviceAccount, audience string
	expirationSeconds                   int64
	podUID                              types.UID
}

func (k key) String() string {
	return fmt.Sprintf("%q/%q/%q/%d/%s", k.namespace, k.serviceAccount, k.audience, k.expirationSeconds, k.podUID)
}

// New returns a Manager that requests tokens with client (the node's
// credentials). It starts nothing; Run collects expired tokens.
func New(client kubernetes.Interface, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Manager{
		client: client,
		log:    opts.Logger.With("component", "token-manager"),
		now:    opts.Now,
		cache:  map[key]*authenticationv1.TokenRequest{},
	}
}

// Run drops expired tokens every minute until ctx ends. It returns nil.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(gcPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.cleanup()
		}
	}
}

// Get returns a token for pod's service account bound to the pod, for
// audience ("" = the API server's audiences) valid for expirationSeconds
// (0 = 3600). It implements podconfig.TokenFunc.
func (m *Manager) Get(ctx context.Context, pod *corev1.Pod, audience string, expirationSeconds int64) ([]byte, error) {
	if pod.Spec.ServiceAccountName == "" {
		return nil, fmt.Errorf("pod %s/%s has no service account", pod.Namespace, pod.Name)
	}
	if expirationSeconds == 0 {
		expirationSeconds = DefaultExpirationSeconds
	}
	var auds []string
	if audience != "" {
		auds = []string{audience}
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         auds,
		ExpirationSeconds: &expirationSeconds,
		BoundObjectRef: &authenticationv1.BoundObjectReference{
			APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
		},
	}}
	out, err := m.ServiceAccountToken(ctx, pod.Namespace, pod.Spec.ServiceAccountName, tr)
	if err != nil {
		return nil, err
	}
	return []byte(out.Status.Token), nil
}

// ServiceAccountToken is the kubelet's GetServiceAccountToken: the cached
// token for this request when it needs no refresh, else a new one from the
// TokenRequest API; when that fails, the cached token while it is valid.
func (m *Manager) ServiceAccountToken(ctx context.Context, namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	k := keyOf(namespace, name, tr)
	m.mu.RLock()
	cached, ok := m.cache[k]
	m.mu.RUnlock()
	if ok && !m.requiresRefresh(cached) {
		return cached, nil
	}
	fresh, err := m.request(ctx, namespace, name, tr)
	if err != nil {
		switch {
		case !ok:
			return nil, fmt.Errorf("failed to fetch token: %w", err)
		case m.expired(cached):
			return nil, fmt.Errorf("token %s expired and refresh failed: %w", k, err)
		default:
			m.log.Error("couldn't update token", "cacheKey", k.String(), "err", err)
			return cached, nil
		}
	}
	m.mu.Lock()
	m.cache[k] = fresh
	m.mu.Unlock()
	return fresh, nil
}

func (m *Manager) request(ctx context.Context, namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	if m.client == nil {
		return nil, errors.New("cannot use the token manager without an API server")
	}
	out, err := m.client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, tr.DeepCopy(), metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	if out.Status.Token == "" {
		return nil, apierrors.NewInternalError(errors.New("the API server returned an empty token"))
	}
	// The request's lifetime is what refreshes are computed from; keep it
	// even if the server's echo lost it.
	if out.Spec.ExpirationSeconds == nil {
		out.Spec.ExpirationSeconds = tr.Spec.ExpirationSeconds
	}
	return out, nil
}

// Forget drops the tokens of a pod (when it is gone).
func (m *Manager) Forget(podUID types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.cache {
		if k.podUID == podUID {
			delete(m.cache, k)
		}
	}
}

// Len is the number of cached tokens.
func (m *Manager) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.cache)
}

func (m *Manager) cleanup() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, tr := range m.cache {
		if m.expired(tr) {
			delete(m.cache, k)
		}
	}
}

func (m *Manager) expired(tr *authenticationv1.TokenRequest) bool {
	return m.now().After(tr.Status.ExpirationTimestamp.Time)
}

// requiresRefresh: the token is older than 24 h or than 80% of its TTL
// (minus a jitter of up to 10 s), or was issued in the future (the clock
// went back).
func (m *Manager) requiresRefresh(tr *authenticationv1.TokenRequest) bool {
	if tr.Spec.ExpirationSeconds == nil {
		return false
	}
	now := m.now()
	ttl := time.Duration(*tr.Spec.ExpirationSeconds) * time.Second
	exp := tr.Status.ExpirationTimestamp.Time
	iat := exp.Add(-ttl)
	jitter := time.Duration(rand.Float64() * float64(maxJitter))
	if now.After(iat.Add(maxTTL - jitter)) {
		return true
	}
	if now.After(exp.Add(-ttl*20/100 - jitter)) {
		return true
	}
	return now.Before(iat)
}

func keyOf(namespace, name string, tr *authenticationv1.TokenRequest) key {
	k := key{namespace: namespace, serviceAccount: name}
	if tr.Spec.ExpirationSeconds != nil {
		k.expirationSeconds = *tr.Spec.ExpirationSeconds
	}
	if len(tr.Spec.Audiences) > 0 {
		k.audience = fmt.Sprintf("%q", tr.Spec.Audiences)
	}
	if ref := tr.Spec.BoundObjectRef; ref != nil {
		k.podUID = ref.UID
	}
	return k
}
