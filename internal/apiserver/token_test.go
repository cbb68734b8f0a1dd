package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// fakeIssuer records what it was asked to sign.
type fakeIssuer struct {
	mu   sync.Mutex
	last TokenClaims
}

func (f *fakeIssuer) IssueToken(_ context.Context, c TokenClaims) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = c
	return "signed-" + c.ServiceAccount.Name, nil
}

func (f *fakeIssuer) APIAudiences() []string {
	return []string{"https://kubernetes.default.svc.cluster.local"}
}

func (f *fakeIssuer) claims() TokenClaims {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

type fakeOIDCIssuer struct{ fakeIssuer }

func (*fakeOIDCIssuer) OpenIDConfiguration() []byte { return []byte(`{"issuer":"x"}`) }
func (*fakeOIDCIssuer) KeySet() []byte              { return []byte(`{"keys":[]}`) }

func withIssuer(i TokenIssuer) envOption { return func(c *Config) { c.TokenIssuer = i } }

func int64p(v int64) *int64 { return &v }

func TestTokenRequest(t *testing.T) {
	iss := &fakeIssuer{}
	env := newTestEnv(t, withIssuer(iss))
	ctx := context.Background()
	sas := env.client.CoreV1().ServiceAccounts("default")
	acct, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("defaults", func(t *testing.T) {
		before := time.Now().Truncate(time.Second)
		tr, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Status.Token != "signed-builder" {
			t.Errorf("token = %q", tr.Status.Token)
		}
		if tr.Name != "builder" || tr.Namespace != "default" || tr.UID != acct.UID {
			t.Errorf("metadata = %+v", tr.ObjectMeta)
		}
		if tr.Spec.ExpirationSeconds == nil || *tr.Spec.ExpirationSeconds != 3600 {
			t.Errorf("expirationSeconds = %v, want 3600", tr.Spec.ExpirationSeconds)
		}
		if strings.Join(tr.Spec.Audiences, ",") != "https://kubernetes.default.svc.cluster.local" {
			t.Errorf("audiences = %v", tr.Spec.Audiences)
		}
		exp := tr.Status.ExpirationTimestamp.Time
		if exp.Before(before.Add(time.Hour)) || exp.After(time.Now().Add(time.Hour+time.Second)) {
			t.Errorf("expirationTimestamp = %v, want about an hour from now", exp)
		}
		c := iss.claims()
		if c.ServiceAccount.UID != acct.UID || c.Pod != nil || c.Secret != nil || c.Node != nil || !c.WarnAfter.IsZero() {
			t.Errorf("claims = %+v", c)
		}
		if got := c.ExpiresAt.Sub(c.IssuedAt); got != time.Hour {
			t.Errorf("token lifetime = %v", got)
		}
	})

	t.Run("protobuf request", func(t *testing.T) {
		// kubelet-style clients send protobuf.
		cfg := rest.CopyConfig(env.cfg)
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
		pc := kubernetes.NewForConfigOrDie(cfg)
		tr, err := pc.CoreV1().ServiceAccounts("default").CreateToken(ctx, "builder", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: int64p(1200)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Status.Token != "signed-builder" || *tr.Spec.ExpirationSeconds != 1200 {
			t.Errorf("token request = %+v", tr)
		}
	})

	t.Run("audiences and expiry kept", func(t *testing.T) {
		tr, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{"vault"}, ExpirationSeconds: int64p(7200)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if tr.Spec.Audiences[0] != "vault" || iss.claims().Audiences[0] != "vault" || *tr.Spec.ExpirationSeconds != 7200 {
			t.Errorf("spec = %+v", tr.Spec)
		}
	})

	t.Run("expirationSeconds too short", func(t *testing.T) {
		_, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: int64p(60)}}, metav1.CreateOptions{})
		want := `TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes`
		if !apierrors.IsInvalid(err) || err.Error() != want {
			t.Fatalf("err = %v\nwant %s", err, want)
		}
	})

	t.Run("missing service account", func(t *testing.T) {
		_, err := sas.CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if !apierrors.IsNotFound(err) || err.Error() != `serviceaccounts "nobody" not found` {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("name mismatch", func(t *testing.T) {
		_, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "must match the service account name if specified") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("service account uid mismatch", func(t *testing.T) {
		_, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{ObjectMeta: metav1.ObjectMeta{UID: "nope"}}, metav1.CreateOptions{})
		if !apierrors.IsConflict(err) {
			t.Fatalf("err = %v", err)
		}
	})

	pods := env.client.CoreV1().Pods("default")
	web := pod("web")
	web.Spec.ServiceAccountName = "builder"
	web.Spec.NodeName = "gone-node"
	webPod, err := pods.Create(ctx, web, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pods.Create(ctx, pod("other"), metav1.CreateOptions{}) // runs as "default"
	if err != nil {
		t.Fatal(err)
	}
	bound := func(kind, name string, uid types.UID, secs int64) error {
		_, err := sas.CreateToken(ctx, "builder", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: int64p(secs),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: kind, APIVersion: "v1", Name: name, UID: uid}}}, metav1.CreateOptions{})
		return err
	}

	t.Run("bound pod", func(t *testing.T) {
		if err := bound("Pod", "web", webPod.UID, 3600); err != nil {
			t.Fatal(err)
		}
		c := iss.claims()
		if c.Pod == nil || c.Pod.UID != webPod.UID || c.Node == nil || c.Node.Name != "gone-node" || c.Node.UID != "" {
			t.Errorf("claims pod=%v node=%v", c.Pod, c.Node)
		}
	})

	t.Run("bound pod kubelet expiry is extended", func(t *testing.T) {
		if err := bound("Pod", "web", "", 3607); err != nil {
			t.Fatal(err)
		}
		c := iss.claims()
		if c.ExpiresAt.Sub(c.IssuedAt) != 365*24*time.Hour || c.WarnAfter.Sub(c.IssuedAt) != 3607*time.Second {
			t.Errorf("lifetime %v, warn after %v", c.ExpiresAt.Sub(c.IssuedAt), c.WarnAfter.Sub(c.IssuedAt))
		}
	})

	t.Run("bound pod of another service account", func(t *testing.T) {
		err := bound("Pod", "other", other.UID, 3600)
		want := `cannot bind token for serviceaccount "builder" to pod running with different serviceaccount name.`
		if !apierrors.IsBadRequest(err) || err.Error() != want {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("bound pod uid mismatch", func(t *testing.T) {
		err := bound("Pod", "web", "stale-uid", 3600)
		if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "The object might have been deleted and then recreated") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("bound pod missing", func(t *testing.T) {
		if err := bound("Pod", "ghost", "", 3600); !apierrors.IsNotFound(err) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("bound secret and node", func(t *testing.T) {
		sec, err := env.client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := bound("Secret", "s", sec.UID, 3600); err != nil || iss.claims().Secret == nil {
			t.Fatalf("secret: %v", err)
		}
		node, err := env.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := bound("Node", "n1", node.UID, 3600); err != nil || iss.claims().Node == nil || iss.claims().Node.UID != node.UID {
			t.Fatalf("node: %v", err)
		}
	})

	t.Run("unsupported kind", func(t *testing.T) {
		err := bound("ConfigMap", "x", "", 3600)
		if !apierrors.IsBadRequest(err) || err.Error() != "cannot bind token to object of type /v1, Kind=ConfigMap" {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("only POST", func(t *testing.T) {
		resp := env.do(t, http.MethodGet, "/api/v1/namespaces/default/serviceaccounts/builder/token", "", nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET status = %d", resp.StatusCode)
		}
	})
}

func TestTokenSubresourceDiscovery(t *testing.T) {
	env := newTestEnv(t, withIssuer(&fakeIssuer{}))
	_, lists, err := env.client.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	var found *metav1.APIResource
	for _, l := range lists {
		if l.GroupVersion != "v1" {
			continue
		}
		for i := range l.APIResources {
			if l.APIResources[i].Name == "serviceaccounts/token" {
				found = &l.APIResources[i]
			}
		}
	}
	if found == nil {
		t.Fatal("serviceaccounts/token is not in discovery")
	}
	if found.Group != "authentication.k8s.io" || found.Version != "v1" || found.Kind != "TokenRequest" ||
		strings.Join(found.Verbs, ",") != "create" || !found.Namespaced {
		t.Errorf("serviceaccounts/token = %+v", *found)
	}
	// Without an issuer the subresource does not exist.
	plain := newTestEnv(t)
	if _, err := plain.client.CoreV1().ServiceAccounts("default").Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = plain.client.CoreV1().ServiceAccounts("default").CreateToken(context.Background(), "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("token without an issuer: %v", err)
	}
}

func TestOpenIDDiscoveryEndpoints(t *testing.T) {
	env := newTestEnv(t, withIssuer(&fakeOIDCIssuer{}))
	for path, ct := range map[string]string{
		"/.well-known/openid-configuration": "application/json",
		"/openid/v1/jwks":                   "application/jwk-set+json",
	} {
		resp := env.do(t, http.MethodGet, path, "", nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ct || !json.Valid(body) {
			t.Errorf("%s: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	resp := env.do(t, http.MethodGet, "/", "", nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "/openid/v1/jwks") {
		t.Errorf("root paths lack the discovery documents: %s", body)
	}
	// An issuer that does not publish keys: 404 as before.
	env2 := newTestEnv(t, withIssuer(&fakeIssuer{}))
	resp = env2.do(t, http.MethodGet, "/openid/v1/jwks", "", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("jwks without OpenIDMetadata: %d", resp.StatusCode)
	}
}

func TestGetObject(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	created, err := env.client.CoreV1().Pods("default").Create(ctx, pod("p"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := env.srv.GetObject(ctx, schema.GroupResource{Resource: "pods"}, "default", "p")
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := obj.(*corev1.Pod); !ok || p.UID != created.UID {
		t.Errorf("GetObject = %#v", obj)
	}
	if _, err := env.srv.GetObject(ctx, schema.GroupResource{Resource: "pods"}, "default", "nope"); !apierrors.IsNotFound(err) {
		t.Errorf("missing pod: %v", err)
	}
	if _, err := env.srv.GetObject(ctx, schema.GroupResource{Resource: "widgets"}, "", "x"); !apierrors.IsNotFound(err) {
		t.Errorf("unserved resource: %v", err)
	}
}
