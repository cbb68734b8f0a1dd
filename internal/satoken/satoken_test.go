package satoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-dev/skiff/internal/apiserver"
)

var (
	keyOnce sync.Once
	rsaKeys [2]*rsa.PrivateKey
)

// testKeys generates two RSA keys once per test binary (RSA keygen is slow
// under -race).
func testKeys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keyOnce.Do(func() {
		for i := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[i] = k
		}
	})
	return rsaKeys[0], rsaKeys[1]
}

// fakeLookup is an in-memory object store keyed by resource/ns/name.
type fakeLookup struct {
	mu   sync.Mutex
	objs map[string]runtime.Object
}

func newLookup(objs ...runtime.Object) *fakeLookup {
	l := &fakeLookup{objs: map[string]runtime.Object{}}
	for _, o := range objs {
		l.put(o)
	}
	return l
}

func lookupKey(resource, ns, name string) string { return resource + "/" + ns + "/" + name }

func (l *fakeLookup) put(o runtime.Object) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch v := o.(type) {
	case *corev1.ServiceAccount:
		l.objs[lookupKey("serviceaccounts", v.Namespace, v.Name)] = v
	case *corev1.Pod:
		l.objs[lookupKey("pods", v.Namespace, v.Name)] = v
	case *corev1.Secret:
		l.objs[lookupKey("secrets", v.Namespace, v.Name)] = v
	case *corev1.Node:
		l.objs[lookupKey("nodes", "", v.Name)] = v
	}
}

func (l *fakeLookup) del(resource, ns, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.objs, lookupKey(resource, ns, name))
}

func (l *fakeLookup) GetObject(_ context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.objs[lookupKey(gr.Resource, ns, name)]
	if !ok {
		return nil, apierrors.NewNotFound(gr, name)
	}
	return o.DeepCopyObject(), nil
}

func meta(ns, name, uid string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}
}

func sa(name, uid string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: meta("ns1", name, uid)}
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

func newService(t *testing.T, key crypto.Signer, l Lookup, clk *clock, mod ...func(*Options)) *Service {
	t.Helper()
	o := Options{Key: key, Lookup: l, Now: clk.Now}
	for _, m := range mod {
		m(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(s *apiserver.TokenClaims, now time.Time, ttl time.Duration) apiserver.TokenClaims {
	c := *s
	c.IssuedAt, c.ExpiresAt = now, now.Add(ttl)
	return c
}

func payload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a compact JWS", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBoundTokenClaimsAndIdentity(t *testing.T) {
	k, _ := testKeys(t)
	now := time.Now().Truncate(time.Second)
	clk := &clock{t: now}
	acct := sa("builder", "sa-uid")
	pod := &corev1.Pod{ObjectMeta: meta("ns1", "web-0", "pod-uid")}
	node := &corev1.Node{ObjectMeta: meta("", "node-a", "node-uid")}
	l := newLookup(acct, pod, node)
	s := newService(t, k, l, clk)

	tok, err := s.IssueToken(context.Background(), claimsFor(&apiserver.TokenClaims{ServiceAccount: acct, Pod: pod, Node: node,
		Audiences: s.APIAudiences()}, now, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := payload(t, tok)
	if p["iss"] != DefaultIssuer || p["sub"] != "system:serviceaccount:ns1:builder" {
		t.Errorf("iss/sub = %v %v", p["iss"], p["sub"])
	}
	// go-jose (as in kube-apiserver) writes a single audience as a string.
	if p["aud"] != DefaultIssuer {
		t.Errorf("aud = %v, want %s", p["aud"], DefaultIssuer)
	}
	if p["exp"].(float64) != float64(now.Add(time.Hour).Unix()) || p["iat"].(float64) != float64(now.Unix()) || p["nbf"].(float64) != float64(now.Unix()) {
		t.Errorf("exp/iat/nbf = %v %v %v", p["exp"], p["iat"], p["nbf"])
	}
	if jti, _ := p["jti"].(string); jti == "" {
		t.Error("no jti")
	}
	kube, _ := json.Marshal(p["kubernetes.io"])
	want := `{"namespace":"ns1","node":{"name":"node-a","uid":"node-uid"},"pod":{"name":"web-0","uid":"pod-uid"},"serviceaccount":{"name":"builder","uid":"sa-uid"}}`
	if string(kube) != want {
		t.Errorf("kubernetes.io = %s\nwant %s", kube, want)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h map[string]any
	_ = json.Unmarshal(hdr, &h)
	if h["alg"] != "RS256" || h["kid"] == "" {
		t.Errorf("header = %v", h)
	}

	id, err := s.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	wantID := apiserver.Identity{Name: "system:serviceaccount:ns1:builder",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"}}
	if id.Name != wantID.Name || strings.Join(id.Groups, ",") != strings.Join(wantID.Groups, ",") {
		t.Errorf("identity = %+v, want %+v", id, wantID)
	}

	// The header form the API server sees.
	r, _ := http.NewRequest(http.MethodGet, "/api", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if got, ok := s.AuthenticateRequest(r); !ok || got.Name != wantID.Name {
		t.Errorf("AuthenticateRequest = %+v %v", got, ok)
	}
	for _, h := range []string{"", "Basic " + tok, "Bearer", "Bearer not-a-jwt", "Bearer a.b.c"} {
		r.Header.Set("Authorization", h)
		if _, ok := s.AuthenticateRequest(r); ok {
			t.Errorf("Authorization %q authenticated", h)
		}
	}
}

func TestBoundTokenRejected(t *testing.T) {
	k, other := testKeys(t)
	now := time.Now().Truncate(time.Second)
	ctx := context.Background()
	type env struct {
		s   *Service
		l   *fakeLookup
		clk *clock
	}
	acct := sa("default", "sa-1")
	pod := &corev1.Pod{ObjectMeta: meta("ns1", "p", "pod-1")}
	secret := &corev1.Secret{ObjectMeta: meta("ns1", "s", "sec-1")}
	node := &corev1.Node{ObjectMeta: meta("", "n", "node-1")}
	deleted := metav1.NewTime(now.Add(-2 * Leeway))

	for _, tc := range []struct {
		name   string
		claims apiserver.TokenClaims
		ttl    time.Duration
		mutate func(e env) string // returns a replacement token, or ""
		want   string             // substring of the error; "" = accepted
	}{
		{name: "valid", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour},
		{name: "expired", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour,
			mutate: func(e env) string { e.clk.Set(now.Add(time.Hour + Leeway + time.Second)); return "" }, want: "has expired"},
		{name: "expired within leeway", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour,
			mutate: func(e env) string { e.clk.Set(now.Add(time.Hour + Leeway/2)); return "" }},
		{name: "not yet valid", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour,
			mutate: func(e env) string { e.clk.Set(now.Add(-Leeway - time.Minute)); return "" }, want: "not valid yet"},
		{name: "wrong audience", claims: apiserver.TokenClaims{ServiceAccount: acct, Audiences: []string{"vault"}}, ttl: time.Hour,
			want: "token audiences"},
		{name: "one of several audiences", claims: apiserver.TokenClaims{ServiceAccount: acct, Audiences: []string{"vault", DefaultIssuer}}, ttl: time.Hour},
		{name: "service account deleted", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour,
			mutate: func(e env) string { e.l.del("serviceaccounts", "ns1", "default"); return "" }, want: "not found"},
		{name: "service account recreated", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour,
			mutate: func(e env) string { e.l.put(sa("default", "sa-2")); return "" }, want: "does not match claim"},
		{name: "service account terminating", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour,
			mutate: func(e env) string {
				x := acct.DeepCopy()
				x.DeletionTimestamp = &deleted
				e.l.put(x)
				return ""
			}, want: "has been deleted"},
		{name: "bound pod deleted", claims: apiserver.TokenClaims{ServiceAccount: acct, Pod: pod}, ttl: time.Hour,
			mutate: func(e env) string { e.l.del("pods", "ns1", "p"); return "" }, want: "invalidated"},
		{name: "bound pod recreated", claims: apiserver.TokenClaims{ServiceAccount: acct, Pod: pod}, ttl: time.Hour,
			mutate: func(e env) string { e.l.put(&corev1.Pod{ObjectMeta: meta("ns1", "p", "pod-2")}); return "" }, want: "pod UID"},
		{name: "bound secret deleted", claims: apiserver.TokenClaims{ServiceAccount: acct, Secret: secret}, ttl: time.Hour,
			mutate: func(e env) string { e.l.del("secrets", "ns1", "s"); return "" }, want: "invalidated"},
		{name: "bound node recreated", claims: apiserver.TokenClaims{ServiceAccount: acct, Node: node}, ttl: time.Hour,
			mutate: func(e env) string { e.l.put(&corev1.Node{ObjectMeta: meta("", "n", "node-2")}); return "" }, want: "node UID"},
		{name: "pod-bound token does not need its node", claims: apiserver.TokenClaims{ServiceAccount: acct, Pod: pod, Node: node}, ttl: time.Hour,
			mutate: func(e env) string { e.l.del("nodes", "", "n"); return "" }},
		{name: "signed by another key", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour,
			mutate: func(e env) string {
				forged := newService(t, other, e.l, e.clk)
				tok, _ := forged.IssueToken(ctx, claimsFor(&apiserver.TokenClaims{ServiceAccount: acct, Audiences: e.s.APIAudiences()}, now, time.Hour))
				return tok
			}, want: "no keys found"},
		{name: "other issuer", claims: apiserver.TokenClaims{ServiceAccount: acct}, ttl: time.Hour,
			mutate: func(e env) string {
				o := newService(t, k, e.l, e.clk, func(o *Options) { o.Issuer = "https://elsewhere"; o.APIAudiences = []string{DefaultIssuer} })
				tok, _ := o.IssueToken(ctx, claimsFor(&apiserver.TokenClaims{ServiceAccount: acct, Audiences: []string{DefaultIssuer}}, now, time.Hour))
				return tok
			}, want: ErrNotServiceAccountToken.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{t: now}
			l := newLookup(acct, pod, secret, node)
			s := newService(t, k, l, clk)
			c := claimsFor(&tc.claims, now, tc.ttl)
			if len(c.Audiences) == 0 {
				c.Audiences = s.APIAudiences()
			}
			tok, err := s.IssueToken(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if tc.mutate != nil {
				if repl := tc.mutate(env{s, l, clk}); repl != "" {
					tok = repl
				}
			}
			_, err = s.Verify(ctx, tok)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTamperedToken(t *testing.T) {
	k, _ := testKeys(t)
	now := time.Now()
	acct := sa("default", "sa-1")
	s := newService(t, k, newLookup(acct, sa("admin", "sa-9")), &clock{t: now})
	tok, err := s.IssueToken(context.Background(), claimsFor(&apiserver.TokenClaims{ServiceAccount: acct, Audiences: s.APIAudiences()}, now, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	body = []byte(strings.ReplaceAll(string(body), `"default"`, `"admin"`))
	parts[1] = base64.RawURLEncoding.EncodeToString(body)
	if _, err := s.Verify(context.Background(), strings.Join(parts, ".")); err == nil {
		t.Fatal("a token with an edited payload was accepted")
	}
}

func TestLegacyToken(t *testing.T) {
	k, _ := testKeys(t)
	ctx := context.Background()
	acct := sa("deployer", "sa-1")
	secret := &corev1.Secret{ObjectMeta: meta("ns1", "deployer-token", "sec-1"), Type: corev1.SecretTypeServiceAccountToken}
	setup := func(t *testing.T) (*Service, *fakeLookup, string) {
		l := newLookup(acct)
		s := newService(t, k, l, &clock{t: time.Now()})
		tok, err := s.LegacyToken(acct, secret)
		if err != nil {
			t.Fatal(err)
		}
		sec := secret.DeepCopy()
		sec.Data = map[string][]byte{corev1.ServiceAccountTokenKey: []byte(tok)}
		l.put(sec)
		return s, l, tok
	}
	t.Run("claims", func(t *testing.T) {
		_, _, tok := setup(t)
		p := payload(t, tok)
		for k, v := range map[string]string{"iss": LegacyIssuer, "sub": "system:serviceaccount:ns1:deployer",
			"kubernetes.io/serviceaccount/namespace": "ns1", "kubernetes.io/serviceaccount/secret.name": "deployer-token",
			"kubernetes.io/serviceaccount/service-account.name": "deployer", "kubernetes.io/serviceaccount/service-account.uid": "sa-1"} {
			if p[k] != v {
				t.Errorf("%s = %v, want %q", k, p[k], v)
			}
		}
		if _, ok := p["exp"]; ok {
			t.Error("legacy tokens do not expire")
		}
	})
	t.Run("accepted", func(t *testing.T) {
		s, _, tok := setup(t)
		id, err := s.Verify(ctx, tok)
		if err != nil || id.Name != "system:serviceaccount:ns1:deployer" {
			t.Fatalf("Verify = %+v, %v", id, err)
		}
	})
	for name, tc := range map[string]struct {
		mutate func(l *fakeLookup)
		want   string
	}{
		"secret deleted": {func(l *fakeLookup) { l.del("secrets", "ns1", "deployer-token") }, "invalidated"},
		"secret holds another token": {func(l *fakeLookup) {
			sec := secret.DeepCopy()
			sec.Data = map[string][]byte{corev1.ServiceAccountTokenKey: []byte("x")}
			l.put(sec)
		}, "does not match server's copy"},
		"service account recreated": {func(l *fakeLookup) { l.put(sa("deployer", "sa-2")) }, "does not match claim"},
		"service account deleted":   {func(l *fakeLookup) { l.del("serviceaccounts", "ns1", "deployer") }, "not found"},
	} {
		t.Run(name, func(t *testing.T) {
			s, l, tok := setup(t)
			tc.mutate(l)
			if _, err := s.Verify(ctx, tok); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("invalidated label", func(t *testing.T) {
		s, l, tok := setup(t)
		obj, _ := l.GetObject(ctx, schema.GroupResource{Resource: "secrets"}, "ns1", "deployer-token")
		sec := obj.(*corev1.Secret)
		sec.Labels = map[string]string{legacyTokenInvalidatedLabel: "2026-01-01"}
		l.put(sec)
		if _, err := s.Verify(ctx, tok); err == nil {
			t.Fatal("an invalidated legacy token was accepted")
		}
	})
}

func TestDiscoveryDocuments(t *testing.T) {
	k, _ := testKeys(t)
	now := time.Now()
	acct := sa("default", "sa-1")
	s := newService(t, k, newLookup(acct), &clock{t: now})
	var cfg map[string]any
	if err := json.Unmarshal(s.OpenIDConfiguration(), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["issuer"] != DefaultIssuer || cfg["jwks_uri"] != DefaultIssuer+JWKSPath {
		t.Errorf("config = %v", cfg)
	}
	if algs, _ := cfg["id_token_signing_alg_values_supported"].([]any); len(algs) != 1 || algs[0] != "RS256" {
		t.Errorf("algs = %v", cfg["id_token_signing_alg_values_supported"])
	}
	// A relying party verifies a token with nothing but the JWKS.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.KeySet(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || !set.Keys[0].IsPublic() || set.Keys[0].Use != "sig" {
		t.Fatalf("keys = %+v", set.Keys)
	}
	tok, _ := s.IssueToken(context.Background(), claimsFor(&apiserver.TokenClaims{ServiceAccount: acct, Audiences: []string{"vault"}}, now, time.Hour))
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("no JWKS key for kid %q", jws.Signatures[0].Header.KeyID)
	}
	if _, err := jws.Verify(keys[0]); err != nil {
		t.Fatalf("JWKS key does not verify the token: %v", err)
	}
}

func TestECKeyAndOptions(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	acct := sa("default", "sa-1")
	s := newService(t, ec, newLookup(acct), &clock{t: now}, func(o *Options) {
		o.Issuer, o.APIAudiences = "https://skiff.example", []string{"https://skiff.example", "k3s"}
	})
	tok, err := s.IssueToken(context.Background(), claimsFor(&apiserver.TokenClaims{ServiceAccount: acct, Audiences: []string{"k3s"}}, now, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(s.OpenIDConfiguration()), `"ES256"`) {
		t.Errorf("config = %s", s.OpenIDConfiguration())
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without a key succeeded")
	}
	noLookup := newService(t, ec, nil, &clock{t: now}, func(o *Options) { o.Issuer = "https://skiff.example" })
	if _, err := noLookup.Verify(context.Background(), tok); err == nil || errors.Is(err, ErrNotServiceAccountToken) {
		t.Errorf("Verify without Lookup = %v", err)
	}
}
