package image

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Secret types and keys of imagePullSecrets (as in k8s.io/api/core/v1).
const (
	SecretTypeDockerConfigJSON = "kubernetes.io/dockerconfigjson"
	SecretTypeDockercfg        = "kubernetes.io/dockercfg"
	DockerConfigJSONKey        = ".dockerconfigjson"
	DockerConfigKey            = ".dockercfg"
)

// Credential is one registry login from a docker config.
type Credential struct {
	// Server as written in the config: "https://index.docker.io/v1/",
	// "registry.example.com:5000", "*.example.com/team".
	Server        string
	Username      string
	Password      string
	IdentityToken string
	RegistryToken string
}

// ParseDockerConfig reads credentials from a secret's data: either
// .dockerconfigjson ({"auths": {server: {…}}}) or the older .dockercfg
// ({server: {…}}); "auth" (base64 user:password) fills username and password.
func ParseDockerConfig(data []byte) ([]Credential, error) {
	type entry struct {
		Username      string `json:"username"`
		Password      string `json:"password"`
		Auth          string `json:"auth"`
		IdentityToken string `json:"identitytoken"`
		RegistryToken string `json:"registrytoken"`
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%w: docker config: %v", ErrInvalid, err)
	}
	entries := map[string]entry{}
	if raw, ok := probe["auths"]; ok {
		if err := json.Unmarshal(raw, &entries); err != nil {
			return nil, fmt.Errorf("%w: docker config auths: %v", ErrInvalid, err)
		}
	} else if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("%w: dockercfg: %v", ErrInvalid, err)
	}
	var out []Credential
	for server, e := range entries {
		c := Credential{Server: server, Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken}
		if e.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("%w: docker config %s: auth is not base64", ErrInvalid, server)
			}
			u, p, ok := strings.Cut(string(dec), ":")
			if !ok {
				return nil, fmt.Errorf("%w: docker config %s: auth is not user:password", ErrInvalid, server)
			}
			c.Username, c.Password = u, p
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Server < out[j].Server })
	return out, nil
}

// KeychainFromSecrets builds a keychain from imagePullSecrets' data
// (.dockerconfigjson or .dockercfg values, in the pod's order). Secrets that
// do not parse are an error: Kubernetes reports them rather than pulling
// anonymously.
func KeychainFromSecrets(secrets ...[]byte) (authn.Keychain, error) {
	var all []Credential
	for _, b := range secrets {
		c, err := ParseDockerConfig(b)
		if err != nil {
			return nil, err
		}
		all = append(all, c...)
	}
	return Keychain(all), nil
}

// Keychain returns a keychain that picks, for a repository, the credential
// whose server matches it most specifically, as the kubelet does: the
// registry host (Docker Hub under any of its names, "*" globs per DNS label),
// the port if given, and a repository path prefix if given. No match is
// anonymous access.
func Keychain(creds []Credential) authn.Keychain { return keychain(creds) }

type keychain []Credential

func (k keychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	reg := res.RegistryStr()
	repo := ""
	if r, ok := res.(name.Repository); ok {
		repo = r.RepositoryStr()
	}
	best, bestLen := -1, -1
	for i, c := range k {
		host, p, ok := splitServer(c.Server)
		if !ok || !hostMatch(host, reg) {
			continue
		}
		if p != "" && repo != "" && repo != p && !strings.HasPrefix(repo, p+"/") {
			continue
		}
		if l := len(host) + len(p); l > bestLen {
			best, bestLen = i, l
		}
	}
	if best < 0 {
		return authn.Anonymous, nil
	}
	c := k[best]
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken}), nil
}

// splitServer turns a config key into host[:port] and a path prefix.
func splitServer(server string) (host, p string, ok bool) {
	s := server
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", "", false
	}
	host = strings.ToLower(u.Host)
	p = strings.Trim(u.Path, "/")
	if isDockerHub(host) {
		host = name.DefaultRegistry
		if p == "v1" || p == "v2" {
			p = ""
		}
	}
	return host, p, true
}

func isDockerHub(h string) bool {
	switch h {
	case "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return true
	}
	return false
}

// hostMatch compares a config host (maybe with "*" labels, maybe a port) to
// the registry being pulled from.
func hostMatch(pattern, reg string) bool {
	reg = strings.ToLower(reg)
	if isDockerHub(reg) {
		reg = name.DefaultRegistry
	}
	ph, pp := splitPort(pattern)
	rh, rp := splitPort(reg)
	if pp != rp {
		return false
	}
	pl, rl := strings.Split(ph, "."), strings.Split(rh, ".")
	if len(pl) != len(rl) {
		return false
	}
	for i := range pl {
		if pl[i] == "*" {
			continue
		}
		if pl[i] != rl[i] {
			return false
		}
	}
	return true
}

func splitPort(h string) (string, string) {
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.Contains(h[i:], "]") {
		return h[:i], h[i+1:]
	}
	return h, ""
}
