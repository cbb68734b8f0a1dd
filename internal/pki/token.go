package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A join token pins the cluster CA: "K10<sha256 hex of ca.crt>::server:<secret>".
// An agent given it fetches the CA, hashes it and refuses a server whose CA
// hash differs. A bare secret (no K10 prefix) is accepted where the CA is
// already trusted by other means.
const tokenPrefix = "K10"

// ErrBadToken: the token is not in a form skiff understands.
var ErrBadToken = errors.New("invalid token format")

// Token is a parsed join token.
type Token struct {
	CAHash string // hex sha256 of the CA certificate PEM; empty for a bare secret
	User   string // "server" for server tokens; "" for bootstrap tokens (<id>.<secret>)
	Secret string
}

// NewSecret returns a random 32-character hex secret.
func NewSecret() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// CAHash is the hash a token pins.
func CAHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// String renders the full token: K10<hash>::<user>:<secret>, or
// K10<hash>::<id>.<secret> for a bootstrap token (as k3s prints them).
func (t Token) String() string {
	user := t.User
	if t.CAHash == "" {
		return t.Secret
	}
	if user == "" {
		if _, _, ok := ParseBootstrapToken(t.Secret); ok {
			return fmt.Sprintf("%s%s::%s", tokenPrefix, t.CAHash, t.Secret)
		}
		user = "server"
	}
	return fmt.Sprintf("%s%s::%s:%s", tokenPrefix, t.CAHash, user, t.Secret)
}

// ParseToken parses a full K10 token or a bare secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, ErrBadToken
	}
	if !strings.HasPrefix(s, tokenPrefix) {
		if strings.ContainsAny(s, " \t\n:") {
			return Token{}, ErrBadToken
		}
		return Token{User: defaultUser(s), Secret: s}, nil
	}
	hash, cred, ok := strings.Cut(strings.TrimPrefix(s, tokenPrefix), "::")
	if !ok || len(hash) != 64 {
		return Token{}, ErrBadToken
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return Token{}, ErrBadToken
	}
	user, secret, ok := strings.Cut(cred, ":")
	if !ok {
		user, secret = defaultUser(cred), cred
	}
	if secret == "" || (user == "" && ok) {
		return Token{}, ErrBadToken
	}
	return Token{CAHash: hash, User: user, Secret: secret}, nil
}

// MatchesCA reports whether the token pins caPEM (true for bare secrets).
func (t Token) MatchesCA(caPEM []byte) bool {
	if t.CAHash == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(t.CAHash), []byte(CAHash(caPEM))) == 1
}

// defaultUser is the user of a token that names none: "server", or none
// for a bootstrap token.
func defaultUser(secret string) string {
	if _, _, ok := ParseBootstrapToken(secret); ok {
		return ""
	}
	return "server"
}
