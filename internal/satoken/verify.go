package satoken

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-dev/skiff/internal/apiserver"
)

// Leeway is the clock skew tolerated on exp/nbf/iat, and how long an
// object marked for deletion keeps its tokens valid (kube-apiserver uses
// go-jose's default leeway, one minute, for both).
const Leeway = jwt.DefaultLeeway

// legacyTokenInvalidatedLabel marks a Secret whose legacy token must no
// longer be accepted (LegacyServiceAccountTokenCleanUp).
const legacyTokenInvalidatedLabel = "kubernetes.io/legacy-token-invalid-since"

// ErrNotServiceAccountToken: the token is not a JWT from one of our issuers;
// another authenticator may know it.
var ErrNotServiceAccountToken = errors.New("not a service account token")

// AuthenticateRequest authenticates a request's bearer token. It has the
// shape of apiserver.Authenticator, to be tried after client certificates.
func (s *Service) AuthenticateRequest(r *http.Request) (apiserver.Identity, bool) {
	auth := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return apiserver.Identity{}, false
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return apiserver.Identity{}, false
	}
	id, err := s.Verify(r.Context(), token)
	if err != nil {
		if !errors.Is(err, ErrNotServiceAccountToken) {
			s.log.Debug("rejected service account token", "err", err)
		}
		return apiserver.Identity{}, false
	}
	return id, true
}

// Verify checks a token's signature, issuer, audience and validity window,
// then that the service account (and the pod, secret or node the token is
// bound to) still exists with the UID the token names.
func (s *Service) Verify(ctx context.Context, token string) (apiserver.Identity, error) {
	iss, ok := unverifiedIssuer(token)
	if !ok || (iss != s.opts.Issuer && iss != LegacyIssuer) {
		return apiserver.Identity{}, ErrNotServiceAccountToken
	}
	if s.opts.Lookup == nil {
		return apiserver.Identity{}, errors.New("satoken: no Lookup configured")
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{s.alg})
	if err != nil {
		return apiserver.Identity{}, ErrNotServiceAccountToken
	}
	for _, h := range tok.Headers {
		if h.KeyID != "" && h.KeyID != s.kid {
			return apiserver.Identity{}, errors.New("invalid signature, no keys found")
		}
	}
	public := &jwt.Claims{}
	var bound privateClaims
	var legacy legacyClaims
	if err := tok.Claims(s.pub, public, &bound, &legacy); err != nil {
		return apiserver.Identity{}, fmt.Errorf("invalid token: %w", err)
	}
	// The issuer was read before the signature was checked; look again.
	if public.Issuer != iss {
		return apiserver.Identity{}, fmt.Errorf("token issuer %q is invalid", public.Issuer)
	}
	tokenAuds := []string(public.Audience)
	if len(tokenAuds) == 0 {
		tokenAuds = s.opts.APIAudiences // legacy tokens carry none
	}
	if !slices.ContainsFunc(tokenAuds, func(a string) bool { return slices.Contains(s.opts.APIAudiences, a) }) {
		return apiserver.Identity{}, fmt.Errorf("token audiences %q is invalid for the target audiences %q", tokenAuds, s.opts.APIAudiences)
	}
	var ns, name string
	if iss == LegacyIssuer {
		ns, name, err = s.validateLegacy(ctx, token, public, &legacy)
	} else {
		ns, name, err = s.validateBound(ctx, public, &bound.Kubernetes)
	}
	if err != nil {
		return apiserver.Identity{}, err
	}
	return apiserver.Identity{Name: Username(ns, name),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}, nil
}

// unverifiedIssuer reads iss from a compact JWS without checking anything,
// to tell our tokens from other bearer tokens cheaply.
func unverifiedIssuer(token string) (string, bool) {
	if strings.HasPrefix(strings.TrimSpace(token), "{") {
		return "", false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return "", false
	}
	return c.Issuer, true
}

func (s *Service) validateBound(ctx context.Context, public *jwt.Claims, k *kubernetesClaims) (string, string, error) {
	now := s.opts.Now()
	switch err := public.ValidateWithLeeway(jwt.Expected{Time: now}, Leeway); {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return "", "", errors.New("service account token has expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return "", "", errors.New("service account token is not valid yet")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return "", "", errors.New("service account token is issued in the future")
	default:
		return "", "", fmt.Errorf("service account token claims could not be validated: %w", err)
	}
	if public.Expiry == nil {
		return "", "", errors.New("service account token has no expiry")
	}
	// Things deleted more than a leeway ago no longer vouch for a token.
	deletedBefore := now.Add(-Leeway)
	gone := func(m metav1.Object) bool {
		return m.GetDeletionTimestamp() != nil && m.GetDeletionTimestamp().Time.Before(deletedBefore)
	}
	ns, sref := k.Namespace, k.Svcacct
	if ns == "" || sref.Name == "" {
		return "", "", errors.New("service account token is missing its kubernetes.io claims")
	}
	sa, err := get[*corev1.ServiceAccount](ctx, s.opts.Lookup, "serviceaccounts", ns, sref.Name)
	if err != nil {
		return "", "", err
	}
	if string(sa.UID) != sref.UID {
		return "", "", fmt.Errorf("service account UID (%s) does not match claim (%s)", sa.UID, sref.UID)
	}
	if gone(sa) {
		return "", "", fmt.Errorf("service account %s/%s has been deleted", ns, sref.Name)
	}
	invalidated := errors.New("service account token has been invalidated")
	if r := k.Secret; r != nil {
		secret, err := get[*corev1.Secret](ctx, s.opts.Lookup, "secrets", ns, r.Name)
		if err != nil {
			return "", "", invalidated
		}
		if string(secret.UID) != r.UID {
			return "", "", fmt.Errorf("secret UID (%s) does not match service account secret ref claim (%s)", secret.UID, r.UID)
		}
		if gone(secret) {
			return "", "", invalidated
		}
	}
	if r := k.Pod; r != nil {
		pod, err := get[*corev1.Pod](ctx, s.opts.Lookup, "pods", ns, r.Name)
		if err != nil {
			return "", "", invalidated
		}
		if string(pod.UID) != r.UID {
			return "", "", fmt.Errorf("pod UID (%s) does not match service account pod ref claim (%s)", pod.UID, r.UID)
		}
		if gone(pod) {
			return "", "", invalidated
		}
	} else if r := k.Node; r != nil {
		// A node-bound token (a pod-bound one only names its node).
		node, err := get[*corev1.Node](ctx, s.opts.Lookup, "nodes", "", r.Name)
		if err != nil {
			return "", "", invalidated
		}
		if string(node.UID) != r.UID {
			return "", "", fmt.Errorf("node UID (%s) does not match service account node ref claim (%s)", node.UID, r.UID)
		}
		if gone(node) {
			return "", "", invalidated
		}
	}
	return ns, sref.Name, nil
}

func (s *Service) validateLegacy(ctx context.Context, token string, public *jwt.Claims, c *legacyClaims) (string, string, error) {
	switch {
	case public.Subject == "":
		return "", "", errors.New("sub claim is missing")
	case c.Namespace == "":
		return "", "", errors.New("namespace claim is missing")
	case c.SecretName == "":
		return "", "", errors.New("secretName claim is missing")
	case c.ServiceAccountName == "":
		return "", "", errors.New("serviceAccountName claim is missing")
	case c.ServiceAccountUID == "":
		return "", "", errors.New("serviceAccountUID claim is missing")
	case public.Subject != Username(c.Namespace, c.ServiceAccountName):
		return "", "", errors.New("sub claim is invalid")
	}
	invalidated := errors.New("service account token has been invalidated")
	secret, err := get[*corev1.Secret](ctx, s.opts.Lookup, "secrets", c.Namespace, c.SecretName)
	if err != nil {
		return "", "", invalidated
	}
	if secret.DeletionTimestamp != nil && secret.DeletionTimestamp.Time.Before(s.opts.Now().Add(-Leeway)) {
		return "", "", invalidated
	}
	if subtle.ConstantTimeCompare(secret.Data[corev1.ServiceAccountTokenKey], []byte(token)) != 1 {
		return "", "", errors.New("service account token does not match server's copy")
	}
	sa, err := get[*corev1.ServiceAccount](ctx, s.opts.Lookup, "serviceaccounts", c.Namespace, c.ServiceAccountName)
	if err != nil {
		return "", "", err
	}
	if sa.DeletionTimestamp != nil && sa.DeletionTimestamp.Time.Before(s.opts.Now().Add(-Leeway)) {
		return "", "", fmt.Errorf("service account %s/%s has been deleted", c.Namespace, c.ServiceAccountName)
	}
	if string(sa.UID) != c.ServiceAccountUID {
		return "", "", fmt.Errorf("service account UID (%s) does not match claim (%s)", sa.UID, c.ServiceAccountUID)
	}
	if _, ok := secret.Labels[legacyTokenInvalidatedLabel]; ok {
		return "", "", invalidated
	}
	return c.Namespace, c.ServiceAccountName, nil
}

// get reads one object through the Lookup as type T.
func get[T runtime.Object](ctx context.Context, l Lookup, resource, ns, name string) (T, error) {
	var zero T
	obj, err := l.GetObject(ctx, schema.GroupResource{Resource: resource}, ns, name)
	if err != nil {
		return zero, err
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("lookup of %s %s/%s returned %T", resource, ns, name, obj)
	}
	return t, nil
}
