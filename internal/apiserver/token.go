package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-dev/skiff/internal/registry"
)

// TokenIssuer signs service account tokens for the serviceaccounts/token
// subresource (the TokenRequest API). The API server resolves and checks the
// objects; the issuer only knows about keys and claims.
type TokenIssuer interface {
	IssueToken(ctx context.Context, c TokenClaims) (string, error)
	// APIAudiences are the API server's own audiences: the default of a
	// TokenRequest that names none.
	APIAudiences() []string
}

// OpenIDMetadata is implemented by a TokenIssuer that publishes its keys
// (ServiceAccountIssuerDiscovery): /.well-known/openid-configuration and
// /openid/v1/jwks are served only then.
type OpenIDMetadata interface {
	OpenIDConfiguration() []byte // JSON
	KeySet() []byte              // JSON Web Key Set
}

// TokenClaims is a checked TokenRequest: what a token says.
type TokenClaims struct {
	ServiceAccount *corev1.ServiceAccount
	// At most one of Pod and Secret; Node is the bound node, or the node
	// a bound pod runs on (its UID empty when that node is gone).
	Pod       *corev1.Pod
	Secret    *corev1.Secret
	Node      *corev1.Node
	Audiences []string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// WarnAfter is set when the expiry was extended for a kubelet-style
	// pod-bound token (kube-apiserver's --service-account-extend-token-expiration).
	WarnAfter time.Time
}

const (
	// Paths of ServiceAccountIssuerDiscovery.
	openIDConfigPath = "/.well-known/openid-configuration"
	jwksPath         = "/openid/v1/jwks"

	minTokenSeconds = 10 * 60
	// kubelet asks for 3607s tokens; kube-apiserver then signs them for a
	// year and warns after the requested hour (safe rollout of bound tokens).
	warnOnlyTokenSeconds  = 60*60 + 7
	extendedTokenSeconds  = 365 * 24 * 60 * 60
	defaultTokenSeconds   = 60 * 60
	tokenSubresource      = "token"
	serviceAccountsPlural = "serviceaccounts"
)

var tokenRequestGVK = authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")

// withTokenSubresource returns r with "token" served when it is the core
// serviceaccounts resource (a copy: registry resources are shared).
func withTokenSubresource(r *registry.Resource) *registry.Resource {
	if r.Group != "" || r.Resource != serviceAccountsPlural || r.HasSubresource(tokenSubresource) {
		return r
	}
	cp := *r
	cp.Subresources = append(slices.Clone(r.Subresources), tokenSubresource)
	return &cp
}

// GetObject reads one stored object of a served resource: the lookup a
// token authenticator needs (does the service account / pod / secret /
// node still exist, with the same UID). The object is the caller's to keep.
func (s *Server) GetObject(ctx context.Context, gr schema.GroupResource, namespace, name string) (runtime.Object, error) {
	res := s.byGR[gr]
	if res == nil {
		return nil, apierrors.NewNotFound(gr, name)
	}
	if !res.Namespaced {
		namespace = ""
	}
	obj, _, err := s.getObject(ctx, res, namespace, name)
	return obj, err
}

// serveOpenID answers the two ServiceAccountIssuerDiscovery documents.
func (s *Server) serveOpenID(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != openIDConfigPath && r.URL.Path != jwksPath {
		return false
	}
	md, ok := s.cfg.TokenIssuer.(OpenIDMetadata)
	if !ok {
		s.writeError(w, r, errNotFoundPath())
		return true
	}
	if !s.readOnlyMethod(w, r) {
		return true
	}
	body, ct := md.OpenIDConfiguration(), "application/json"
	if r.URL.Path == jwksPath {
		body, ct = md.KeySet(), "application/jwk-set+json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return true
}

// serveToken is POST serviceaccounts/{name}/token, after kube-apiserver's
// TokenREST.Create.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	if r.Method != http.MethodPost {
		s.writeError(w, r, errMethodNotAllowed(ri.gr(), verbOf(r.Method)))
		return
	}
	wr, err := parseWriteRequest(w, r, "CreateOptions")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	decoded, warnings, err := s.decode(wr, wr.body, tokenRequestGVK, &authenticationv1.TokenRequest{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req := decoded.(*authenticationv1.TokenRequest)
	out, err := s.issueToken(r.Context(), ri, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	addWarnings(w, warnings)
	out.APIVersion, out.Kind = tokenRequestGVK.GroupVersion().String(), tokenRequestGVK.Kind
	s.writeObject(w, http.StatusCreated, out, wr.media)
}

func (s *Server) issueToken(ctx context.Context, ri *reqInfo, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	name, namespace := ri.name, ri.namespace
	gk := tokenRequestGVK.GroupKind()
	if req.Spec.ExpirationSeconds == nil { // SetDefaults_TokenRequestSpec
		secs := int64(defaultTokenSeconds)
		req.Spec.ExpirationSeconds = &secs
	}
	if req.Name != "" && req.Name != name {
		return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), req.Name, "must match the service account name if specified")})
	}
	if req.Namespace != "" && req.Namespace != namespace {
		return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(field.NewPath("metadata", "namespace"), req.Namespace, "must match the service account namespace if specified")})
	}
	saObj, _, err := s.getObject(ctx, ri.res, namespace, name)
	if err != nil {
		return nil, err
	}
	sa := saObj.(*corev1.ServiceAccount)
	if req.UID != "" && req.UID != sa.UID {
		return nil, apierrors.NewConflict(schema.GroupResource{Group: gk.Group, Resource: gk.Kind}, name,
			fmt.Errorf("the UID in the token request (%s) does not match the UID of the service account (%s)", req.UID, sa.UID))
	}
	apiAuds := s.cfg.TokenIssuer.APIAudiences()
	if len(req.Spec.Audiences) == 0 {
		req.Spec.Audiences = slices.Clone(apiAuds)
	}
	req.Name, req.Namespace, req.UID = sa.Name, sa.Namespace, sa.UID
	now := time.Now()
	req.CreationTimestamp = metav1.NewTime(now)
	req.Status = authenticationv1.TokenRequestStatus{}
	if errs := validateTokenRequest(req); len(errs) > 0 {
		return nil, apierrors.NewInvalid(gk, "", errs)
	}

	claims := TokenClaims{ServiceAccount: sa, Audiences: req.Spec.Audiences, IssuedAt: now}
	if ref := req.Spec.BoundObjectRef; ref != nil {
		if err := s.resolveBoundObject(ctx, name, namespace, ref, &claims); err != nil {
			return nil, err
		}
	}
	exp := *req.Spec.ExpirationSeconds
	if claims.Pod != nil && exp == warnOnlyTokenSeconds && subsetOf(req.Spec.Audiences, apiAuds) {
		claims.WarnAfter = now.Add(time.Duration(exp) * time.Second)
		exp = extendedTokenSeconds
	}
	claims.ExpiresAt = now.Add(time.Duration(exp) * time.Second)
	tok, err := s.cfg.TokenIssuer.IssueToken(ctx, claims)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("failed to generate token: %v", err))
	}
	out := req.DeepCopy()
	out.Status = authenticationv1.TokenRequestStatus{Token: tok,
		ExpirationTimestamp: metav1.NewTime(now.Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second))}
	return out, nil
}

// validateTokenRequest is ValidateTokenRequest for the bound kinds skiff
// serves (no webhook configurations, so no attestations).
func validateTokenRequest(req *authenticationv1.TokenRequest) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if secs := *req.Spec.ExpirationSeconds; secs < minTokenSeconds {
		errs = append(errs, field.Invalid(spec.Child("expirationSeconds"), secs, "may not specify a duration less than 10 minutes"))
	} else if secs > 1<<32 {
		errs = append(errs, field.Invalid(spec.Child("expirationSeconds"), secs, "may not specify a duration larger than 2^32 seconds"))
	}
	if len(req.Spec.Attestations) != 0 {
		return field.ErrorList{field.Invalid(spec.Child("attestations"), req.Spec.Attestations, "attestations may only be specified with a webhook bound object reference")}
	}
	return errs
}

// resolveBoundObject fetches the object a token is bound to and checks it
// as kube-apiserver does.
func (s *Server) resolveBoundObject(ctx context.Context, saName, namespace string, ref *authenticationv1.BoundObjectReference, c *TokenClaims) error {
	gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
	var uid types.UID
	get := func(resource, ns, name string) (runtime.Object, error) {
		return s.GetObject(ctx, schema.GroupResource{Resource: resource}, ns, name)
	}
	switch {
	case gvk.Group == "" && gvk.Kind == "Pod":
		obj, err := get("pods", namespace, ref.Name)
		if err != nil {
			return err
		}
		pod := obj.(*corev1.Pod)
		if pod.Spec.ServiceAccountName != saName {
			return apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", saName))
		}
		c.Pod, uid = pod, pod.UID
		if pod.Spec.NodeName != "" {
			// ServiceAccountTokenPodNodeInfo: name the node even if it is gone.
			nodeObj, err := get("nodes", "", pod.Spec.NodeName)
			switch {
			case apierrors.IsNotFound(err):
				c.Node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: pod.Spec.NodeName}}
			case err != nil:
				return apierrors.NewInternalError(err)
			default:
				c.Node = nodeObj.(*corev1.Node)
			}
		}
	case gvk.Group == "" && gvk.Kind == "Node":
		obj, err := get("nodes", "", ref.Name)
		if err != nil {
			return err
		}
		c.Node = obj.(*corev1.Node)
		uid = c.Node.UID
	case gvk.Group == "" && gvk.Kind == "Secret":
		obj, err := get("secrets", namespace, ref.Name)
		if err != nil {
			return err
		}
		c.Secret = obj.(*corev1.Secret)
		uid = c.Secret.UID
	default:
		return apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", gvk.String()))
	}
	if ref.UID != "" && uid != ref.UID {
		return apierrors.NewConflict(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, ref.Name,
			fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
	}
	return nil
}

func subsetOf(auds, of []string) bool {
	for _, a := range auds {
		if !slices.Contains(of, a) {
			return false
		}
	}
	return true
}
