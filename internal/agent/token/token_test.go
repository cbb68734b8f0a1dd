package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// clock is a settable clock for the manager (the API server keeps real time).
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) set(d time.Duration) {
	c.mu.Lock()
	c.off = d
	c.mu.Unlock()
}

// audiences is the aud claim: a string or a list of strings.
type audiences []string

func (a *audiences) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = []string{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

type claims struct {
	Aud        audiences `json:"aud"`
	Exp        int64     `json:"exp"`
	Iat        int64     `json:"iat"`
	Kubernetes struct {
		Namespace string `json:"namespace"`
		Pod       struct {
			Name, UID string
		} `json:"pod"`
		ServiceAccount struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

func decode(t *testing.T, tok []byte) claims {
	t.Helper()
	parts := strings.Split(string(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c claims
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// setup makes service account "app" and pod "web" using it.
func setup(t *testing.T) (*controllertest.API, *corev1.Pod) {
	t.Helper()
	api := controllertest.Start(t)
	ctx := context.Background()
	if _, err := api.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := api.Client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{ServiceAccountName: "app", NodeName: "n1",
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return api, pod
}

func TestGetCachesAndRefreshes(t *testing.T) {
	api, pod := setup(t)
	ctx := context.Background()
	clk := &clock{}
	m := New(api.Client, Options{Now: clk.now})

	tok, err := m.Get(ctx, pod, "", 3607)
	if err != nil {
		t.Fatal(err)
	}
	c := decode(t, tok)
	if c.Kubernetes.Pod.Name != "web" || c.Kubernetes.Pod.UID != string(pod.UID) ||
		c.Kubernetes.ServiceAccount.Name != "app" || c.Kubernetes.Namespace != "default" {
		t.Errorf("claims %+v", c)
	}
	// Cached: the same token until 80% of the TTL.
	clk.set(30 * time.Minute)
	if again, err := m.Get(ctx, pod, "", 3607); err != nil || string(again) != string(tok) {
		t.Fatalf("second Get: err %v, same token %v", err, string(again) == string(tok))
	}
	// Other audiences and lifetimes are other tokens.
	aud, err := m.Get(ctx, pod, "vault", 600)
	if err != nil {
		t.Fatal(err)
	}
	if c := decode(t, aud); len(c.Aud) != 1 || c.Aud[0] != "vault" || c.Exp-c.Iat != 600 {
		t.Errorf("audience token claims %+v", c)
	}
	if m.Len() != 2 {
		t.Errorf("%d cached tokens, want 2", m.Len())
	}
	// Past 80% of 3607 s: a new token.
	clk.set(50 * time.Minute)
	fresh, err := m.Get(ctx, pod, "", 3607)
	if err != nil {
		t.Fatal(err)
	}
	if string(fresh) == string(tok) {
		t.Error("token not refreshed after 80% of its TTL")
	}
	// Older than 24 h (a long-lived token) is refreshed too.
	long, err := m.Get(ctx, pod, "", 48*3600)
	if err != nil {
		t.Fatal(err)
	}
	clk.set(50*time.Minute + 24*time.Hour)
	if again, err := m.Get(ctx, pod, "", 48*3600); err != nil || string(again) == string(long) {
		t.Errorf("24h-old token: err %v, refreshed %v", err, string(again) != string(long))
	}

	m.Forget(pod.UID)
	if m.Len() != 0 {
		t.Errorf("%d cached tokens after Forget", m.Len())
	}
}

func TestRefreshFailureKeepsValidToken(t *testing.T) {
	api, pod := setup(t)
	ctx := context.Background()
	clk := &clock{}
	m := New(api.Client, Options{Now: clk.now})
	tok, err := m.Get(ctx, pod, "", 3600)
	if err != nil {
		t.Fatal(err)
	}
	// The pod is gone: refreshing fails, but the token is still valid.
	if err := api.Client.CoreV1().Pods("default").Delete(ctx, "web", *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	clk.set(55 * time.Minute)
	if again, err := m.Get(ctx, pod, "", 3600); err != nil || string(again) != string(tok) {
		t.Fatalf("failed refresh of a valid token: err %v, same %v", err, string(again) == string(tok))
	}
	// Once expired, the error surfaces, and cleanup drops the entry.
	clk.set(61 * time.Minute)
	_, err = m.Get(ctx, pod, "", 3600)
	if err == nil || !strings.Contains(err.Error(), "expired and refresh failed") || !strings.Contains(err.Error(), `pods "web" not found`) {
		t.Fatalf("expired token with failed refresh: %v", err)
	}
	m.cleanup()
	if m.Len() != 0 {
		t.Errorf("%d cached tokens after cleanup", m.Len())
	}
}

func TestGetErrors(t *testing.T) {
	api, pod := setup(t)
	m := New(api.Client, Options{})
	p := pod.DeepCopy()
	p.Spec.ServiceAccountName = "missing"
	_, err := m.Get(context.Background(), p, "", 3600)
	if err == nil || err.Error() != `failed to fetch token: serviceaccounts "missing" not found` {
		t.Fatalf("missing service account: %v", err)
	}
	if m.Len() != 0 {
		t.Errorf("a failed request was cached")
	}
}
