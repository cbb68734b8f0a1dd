package pki

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Bootstrap tokens are kubeadm's: a Secret "bootstrap-token-<id>" of type
// bootstrap.kubernetes.io/token in kube-system (the keys below, as in
// k8s.io/cluster-bootstrap/token/api), and the token "<id>.<secret>" with
// id [a-z0-9]{6} and secret [a-z0-9]{16}. `skiff token create` prints it
// behind the CA hash: K10<sha256 of the CA>::<id>.<secret>. The join
// endpoint accepts one whose Secret exists, has not expired and has
// usage-bootstrap-authentication=true.
const (
	BootstrapTokenSecretPrefix = "bootstrap-token-"

	BootstrapTokenIDKey          = "token-id"
	BootstrapTokenSecretKey      = "token-secret"
	BootstrapTokenExpirationKey  = "expiration"
	BootstrapTokenDescriptionKey = "description"
	BootstrapTokenExtraGroupsKey = "auth-extra-groups"
	BootstrapTokenUsagePrefix    = "usage-bootstrap-"

	UsageAuthentication = "authentication"
	UsageSigning        = "signing"
)

var bootstrapTokenRE = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)

// ErrBootstrapToken: a Secret that is not a usable bootstrap token.
var ErrBootstrapToken = errors.New("invalid bootstrap token")

// BootstrapToken is a bootstrap token and what its Secret says about it.
type BootstrapToken struct {
	ID, Secret  string
	Description string
	Expires     time.Time // zero: never
	Usages      []string  // sorted: "authentication", "signing"
	Groups      []string  // auth-extra-groups
}

// String is "<id>.<secret>".
func (t BootstrapToken) String() string { return t.ID + "." + t.Secret }

// SecretName is the Secret that holds the token in kube-system.
func (t BootstrapToken) SecretName() string { return BootstrapTokenSecretPrefix + t.ID }

// Expired reports whether the token has expired at now.
func (t BootstrapToken) Expired(now time.Time) bool {
	return !t.Expires.IsZero() && !now.Before(t.Expires)
}

// HasUsage reports whether the token may be used for u.
func (t BootstrapToken) HasUsage(u string) bool {
	for _, x := range t.Usages {
		if x == u {
			return true
		}
	}
	return false
}

// NewBootstrapToken makes a random token (id and secret from [a-z0-9]).
func NewBootstrapToken() BootstrapToken {
	return BootstrapToken{ID: randomLowerAlnum(6), Secret: randomLowerAlnum(16)}
}

func randomLowerAlnum(n int) string {
	const chars = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	max := big.NewInt(int64(len(chars)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		b[i] = chars[v.Int64()]
	}
	return string(b)
}

// ParseBootstrapToken splits "<id>.<secret>".
func ParseBootstrapToken(s string) (id, secret string, ok bool) {
	m := bootstrapTokenRE.FindStringSubmatch(s)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// IsBootstrapTokenID reports whether s is a token ID ([a-z0-9]{6}).
func IsBootstrapTokenID(s string) bool {
	_, _, ok := ParseBootstrapToken(s + ".0000000000000000")
	return ok
}

// BootstrapTokenSecret renders t as the kube-system Secret kubeadm writes.
func BootstrapTokenSecret(t BootstrapToken) *corev1.Secret {
	data := map[string][]byte{
		BootstrapTokenIDKey:     []byte(t.ID),
		BootstrapTokenSecretKey: []byte(t.Secret),
	}
	if t.Description != "" {
		data[BootstrapTokenDescriptionKey] = []byte(t.Description)
	}
	if !t.Expires.IsZero() {
		data[BootstrapTokenExpirationKey] = []byte(t.Expires.UTC().Format(time.RFC3339))
	}
	for _, u := range t.Usages {
		data[BootstrapTokenUsagePrefix+u] = []byte("true")
	}
	if len(t.Groups) > 0 {
		data[BootstrapTokenExtraGroupsKey] = []byte(strings.Join(t.Groups, ","))
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: t.SecretName(), Namespace: metav1.NamespaceSystem},
		Type:       corev1.SecretTypeBootstrapToken,
		Data:       data,
	}
}

// BootstrapTokenFromSecret reads a bootstrap token Secret, checking its
// type, name and token format (not its expiry: see Expired).
func BootstrapTokenFromSecret(s *corev1.Secret) (BootstrapToken, error) {
	if s.Type != corev1.SecretTypeBootstrapToken {
		return BootstrapToken{}, fmt.Errorf("%w: secret %s/%s has type %q", ErrBootstrapToken, s.Namespace, s.Name, s.Type)
	}
	t := BootstrapToken{ID: string(s.Data[BootstrapTokenIDKey]), Secret: string(s.Data[BootstrapTokenSecretKey])}
	if _, _, ok := ParseBootstrapToken(t.String()); !ok {
		return BootstrapToken{}, fmt.Errorf("%w: secret %s/%s does not hold a well-formed token", ErrBootstrapToken, s.Namespace, s.Name)
	}
	if s.Name != t.SecretName() {
		return BootstrapToken{}, fmt.Errorf("%w: secret %s/%s holds token ID %q", ErrBootstrapToken, s.Namespace, s.Name, t.ID)
	}
	if exp := string(s.Data[BootstrapTokenExpirationKey]); exp != "" {
		at, err := time.Parse(time.RFC3339, exp)
		if err != nil {
			return BootstrapToken{}, fmt.Errorf("%w: secret %s/%s: expiration %q: %v", ErrBootstrapToken, s.Namespace, s.Name, exp, err)
		}
		t.Expires = at
	}
	t.Description = string(s.Data[BootstrapTokenDescriptionKey])
	for k, v := range s.Data {
		if u, ok := strings.CutPrefix(k, BootstrapTokenUsagePrefix); ok && string(v) == "true" {
			t.Usages = append(t.Usages, u)
		}
	}
	sort.Strings(t.Usages)
	if g := strings.TrimSpace(string(s.Data[BootstrapTokenExtraGroupsKey])); g != "" {
		for _, x := range strings.Split(g, ",") {
			if x = strings.TrimSpace(x); x != "" {
				t.Groups = append(t.Groups, x)
			}
		}
	}
	return t, nil
}

// SecretMatches compares secrets in constant time.
func SecretMatches(got, want string) bool {
	return len(want) > 0 && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
