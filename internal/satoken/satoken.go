// Package satoken issues and verifies Kubernetes service account tokens:
// bound tokens for the TokenRequest API (serviceaccounts/token, projected
// volumes) and legacy tokens for kubernetes.io/service-account-token
// Secrets. Tokens are JWTs with kube-apiserver's claims, signed RS256 with
// the key in DATA/server/tls/service.key (ES256/384/512 for an EC key), so
// tokens from a real cluster's tooling look the same and OIDC relying
// parties can verify them from /openid/v1/jwks.
package satoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/skiff-dev/skiff/internal/apiserver"
)

const (
	// DefaultIssuer is k3s's service account issuer.
	DefaultIssuer = "https://kubernetes.default.svc.cluster.local"
	// LegacyIssuer is the issuer of Secret-based tokens.
	LegacyIssuer = "kubernetes/serviceaccount"
	// JWKSPath is where the API server publishes the verification keys.
	JWKSPath = "/openid/v1/jwks"
)

// Lookup reads stored objects; *apiserver.Server implements it (GetObject).
// NotFound errors must be apierrors NotFound.
type Lookup interface {
	GetObject(ctx context.Context, gr schema.GroupResource, namespace, name string) (runtime.Object, error)
}

// LookupFunc adapts a function to Lookup (e.g. a closure over an API
// server built after the Service).
type LookupFunc func(ctx context.Context, gr schema.GroupResource, namespace, name string) (runtime.Object, error)

// GetObject calls f.
func (f LookupFunc) GetObject(ctx context.Context, gr schema.GroupResource, namespace, name string) (runtime.Object, error) {
	return f(ctx, gr, namespace, name)
}

// Options configure a Service.
type Options struct {
	// Key signs tokens: *rsa.PrivateKey (RS256) or *ecdsa.PrivateKey. Required.
	Key crypto.Signer
	// Issuer is the iss of bound tokens. Default DefaultIssuer.
	Issuer string
	// APIAudiences are the audiences the API server accepts, and the
	// default of a TokenRequest. Default [Issuer].
	APIAudiences []string
	// JWKSURI is published in the OpenID configuration. Default Issuer+JWKSPath.
	JWKSURI string
	// Lookup resolves the objects a token names when verifying. Required
	// for Verify; issuing works without it.
	Lookup Lookup
	Logger *slog.Logger
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// Service issues and verifies tokens with one key. It is safe for
// concurrent use.
type Service struct {
	opts   Options
	log    *slog.Logger
	alg    jose.SignatureAlgorithm
	kid    string
	pub    crypto.PublicKey
	signer jose.Signer

	oidcConfig, keySet []byte
}

var (
	_ apiserver.TokenIssuer    = (*Service)(nil)
	_ apiserver.OpenIDMetadata = (*Service)(nil)
)

// New checks opts and prepares the signer and the discovery documents.
func New(opts Options) (*Service, error) {
	if opts.Key == nil {
		return nil, errors.New("satoken: Options.Key is required")
	}
	if opts.Issuer == "" {
		opts.Issuer = DefaultIssuer
	}
	if len(opts.APIAudiences) == 0 {
		opts.APIAudiences = []string{opts.Issuer}
	}
	opts.APIAudiences = slices.Clone(opts.APIAudiences)
	if opts.JWKSURI == "" {
		opts.JWKSURI = opts.Issuer + JWKSPath
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{opts: opts, log: opts.Logger.With("component", "serviceaccount-token"), pub: opts.Key.Public()}
	var err error
	if s.alg, err = algorithmFor(s.pub); err != nil {
		return nil, err
	}
	if s.kid, err = keyID(s.pub); err != nil {
		return nil, err
	}
	jwk := &jose.JSONWebKey{Algorithm: string(s.alg), Key: opts.Key, KeyID: s.kid, Use: "sig"}
	if s.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: jwk}, nil); err != nil {
		return nil, fmt.Errorf("satoken: signer: %w", err)
	}
	if err := s.buildDiscovery(); err != nil {
		return nil, err
	}
	return s, nil
}

// algorithmFor is kube-apiserver's choice of JWS algorithm for a key.
func algorithmFor(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return jose.RS256, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
		return "", errors.New("satoken: unknown private key curve, must be 256, 384, or 521")
	}
	return "", fmt.Errorf("satoken: unknown private key type %T, must be *rsa.PrivateKey or *ecdsa.PrivateKey", pub)
}

// keyID derives the kid from the public key as kube-apiserver does
// (base64url of the SHA-256 of its PKIX DER), so it is stable across restarts.
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("satoken: serialize public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// Issuer is the iss of bound tokens.
func (s *Service) Issuer() string { return s.opts.Issuer }

// APIAudiences are the audiences the API server accepts.
func (s *Service) APIAudiences() []string { return slices.Clone(s.opts.APIAudiences) }

// privateClaims is the "kubernetes.io" claim of bound tokens.
type privateClaims struct {
	Kubernetes kubernetesClaims `json:"kubernetes.io,omitempty"`
}

type kubernetesClaims struct {
	Namespace string           `json:"namespace,omitempty"`
	Svcacct   ref              `json:"serviceaccount,omitempty"`
	Pod       *ref             `json:"pod,omitempty"`
	Secret    *ref             `json:"secret,omitempty"`
	Node      *ref             `json:"node,omitempty"`
	WarnAfter *jwt.NumericDate `json:"warnafter,omitempty"`
}

type ref struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
}

// legacyClaims are the private claims of Secret-based tokens.
type legacyClaims struct {
	ServiceAccountName string `json:"kubernetes.io/serviceaccount/service-account.name"`
	ServiceAccountUID  string `json:"kubernetes.io/serviceaccount/service-account.uid"`
	SecretName         string `json:"kubernetes.io/serviceaccount/secret.name"`
	Namespace          string `json:"kubernetes.io/serviceaccount/namespace"`
}

// Username is a service account's user name: system:serviceaccount:NS:NAME.
func Username(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// IssueToken signs a bound token (the TokenRequest API).
func (s *Service) IssueToken(_ context.Context, c apiserver.TokenClaims) (string, error) {
	sa := c.ServiceAccount
	if sa == nil {
		return "", errors.New("no service account")
	}
	if c.Secret != nil && (c.Pod != nil || c.Node != nil) {
		return "", errors.New("internal error, token can only be bound to one object type")
	}
	public := &jwt.Claims{
		Issuer:    s.opts.Issuer,
		Subject:   Username(sa.Namespace, sa.Name),
		Audience:  jwt.Audience(c.Audiences),
		IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
		NotBefore: jwt.NewNumericDate(c.IssuedAt),
		Expiry:    jwt.NewNumericDate(c.ExpiresAt),
		ID:        string(uuid.NewUUID()),
	}
	k := kubernetesClaims{Namespace: sa.Namespace, Svcacct: ref{Name: sa.Name, UID: string(sa.UID)}}
	switch {
	case c.Pod != nil:
		k.Pod = &ref{Name: c.Pod.Name, UID: string(c.Pod.UID)}
		if c.Node != nil {
			k.Node = &ref{Name: c.Node.Name, UID: string(c.Node.UID)}
		}
	case c.Secret != nil:
		k.Secret = &ref{Name: c.Secret.Name, UID: string(c.Secret.UID)}
	case c.Node != nil:
		k.Node = &ref{Name: c.Node.Name, UID: string(c.Node.UID)}
	}
	if !c.WarnAfter.IsZero() {
		k.WarnAfter = jwt.NewNumericDate(c.WarnAfter)
	}
	return jwt.Signed(s.signer).Claims(&privateClaims{Kubernetes: k}).Claims(public).Serialize()
}

// LegacyToken signs the token of a kubernetes.io/service-account-token
// Secret (no expiry, no audience; valid while the Secret holds it).
func (s *Service) LegacyToken(sa *corev1.ServiceAccount, secret *corev1.Secret) (string, error) {
	public := &jwt.Claims{Issuer: LegacyIssuer, Subject: Username(sa.Namespace, sa.Name)}
	private := &legacyClaims{Namespace: sa.Namespace, ServiceAccountName: sa.Name,
		ServiceAccountUID: string(sa.UID), SecretName: secret.Name}
	return jwt.Signed(s.signer).Claims(private).Claims(public).Serialize()
}

// OpenIDConfiguration is the /.well-known/openid-configuration document.
func (s *Service) OpenIDConfiguration() []byte { return s.oidcConfig }

// KeySet is the /openid/v1/jwks document.
func (s *Service) KeySet() []byte { return s.keySet }

func (s *Service) buildDiscovery() error {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: s.pub, KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"}}}
	var err error
	if s.keySet, err = json.Marshal(set); err != nil {
		return fmt.Errorf("satoken: marshal JWKS: %w", err)
	}
	s.oidcConfig, err = json.Marshal(struct {
		Issuer        string   `json:"issuer"`
		JWKSURI       string   `json:"jwks_uri"`
		ResponseTypes []string `json:"response_types_supported"`
		SubjectTypes  []string `json:"subject_types_supported"`
		SigningAlgs   []string `json:"id_token_signing_alg_values_supported"`
	}{s.opts.Issuer, s.opts.JWKSURI, []string{"id_token"}, []string{"public"}, []string{string(s.alg)}})
	if err != nil {
		return fmt.Errorf("satoken: marshal OpenID configuration: %w", err)
	}
	return nil
}
