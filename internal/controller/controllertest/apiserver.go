// Package controllertest starts a real skiff API server (bbolt store in a
// temporary directory, plain HTTP on loopback) for controller tests that
// want more than client-go's fake clientset: real validation, defaulting,
// resourceVersions, watches, finalizers and subresources (including
// serviceaccounts/token). The ServiceAccount admission of pods is off, as
// upstream's integration tests run kube-apiserver with
// --disable-admission-plugins=ServiceAccount: pods need no ServiceAccount.
package controllertest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/internal/apiserver"
	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/satoken"
	"github.com/skiff-dev/skiff/internal/store"
)

// API is a running test API server.
type API struct {
	Config *rest.Config
	Client kubernetes.Interface
}

// Start runs an API server until the test ends. The namespaces default,
// kube-system and kube-node-lease exist. Every request is admin.
func Start(t testing.TB) *API {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := registry.Resources(registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// serviceaccounts/token (TokenRequest) is served, signed with a
	// throwaway key (ECDSA: quick to make for every test).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var srv *apiserver.Server
	tokens, err := satoken.New(satoken.Options{Key: key, Lookup: satoken.LookupFunc(
		func(ctx context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
			return srv.GetObject(ctx, gr, ns, name)
		})})
	if err != nil {
		t.Fatal(err)
	}
	srv, err = apiserver.New(apiserver.Config{
		Store:       st,
		Resources:   res,
		TokenIssuer: tokens,
		Authenticator: func(*http.Request) (apiserver.Identity, bool) {
			return apiserver.Identity{Name: "test-admin", Groups: []string{"system:masters", "system:authenticated"}}, true
		},
		Version: version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.0-skiff"},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Init(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.RegisterOnShutdown(srv.StopWatches)
	hs.Start()
	t.Cleanup(func() {
		srv.StopWatches()
		hs.CloseClientConnections()
		hs.Close()
		st.Close()
	})
	cfg := &rest.Config{Host: hs.URL, QPS: -1}
	client := kubernetes.NewForConfigOrDie(cfg)
	for _, ns := range []string{"default", "kube-system", "kube-node-lease"} {
		_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	return &API{Config: cfg, Client: client}
}

// Context returns a controller.Context over the API, with a fresh informer
// factory and events recorded to the API. Start the factory with
// cc.Informers.Start(ctx.Done()) after building the controllers.
func (a *API) Context(t testing.TB) controller.Context {
	t.Helper()
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller logs:\n%s", logs)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	ev := controller.StartEvents(ctx, a.Client)
	t.Cleanup(func() { ev.Shutdown(); cancel() })
	return controller.Context{
		Client:    a.Client,
		Informers: informers.NewSharedInformerFactory(a.Client, 0),
		Metadata:  metadata.NewForConfigOrDie(a.Config),
		Dynamic:   dynamic.NewForConfigOrDie(a.Config),
		Recorder:  ev.Recorder,
		Log:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// logBuffer keeps controller logs and prints them only when the test failed;
// goroutines may still log after the test ends, which t.Log forbids.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
