package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// DockerHub is the registry name Kubernetes (and containerd) show for Docker
// Hub images: "busybox" becomes "docker.io/library/busybox:latest".
const DockerHub = "docker.io"

// Reference is a parsed, normalised image reference.
type Reference struct {
	Registry   string // "docker.io", "ghcr.io", "127.0.0.1:5000"
	Repository string // "library/busybox"
	Tag        string // "latest"; empty when pulled by digest only
	Digest     string // "sha256:…"; empty when pulled by tag
}

// Repo is registry/repository: "docker.io/library/busybox".
func (r Reference) Repo() string { return r.Registry + "/" + r.Repository }

// String is the normalised reference: repo:tag, repo@digest, or (when both
// were given, as Kubernetes allows) repo:tag@digest.
func (r Reference) String() string {
	s := r.Repo()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// ParseReference normalises an image reference as Kubernetes and containerd
// do: "busybox" → docker.io/library/busybox:latest, "user/app" →
// docker.io/user/app:latest, "index.docker.io/x" → docker.io/library/x:latest;
// a reference with a digest gets no implicit tag.
func ParseReference(ref string) (Reference, error) {
	if ref == "" || strings.TrimSpace(ref) != ref {
		return Reference{}, fmt.Errorf("%w: image reference %q", ErrInvalid, ref)
	}
	var out Reference
	base := ref
	if i := strings.Index(ref, "@"); i >= 0 {
		d, err := name.NewDigest(repoOnly(ref[:i]) + ref[i:])
		if err != nil {
			return Reference{}, fmt.Errorf("%w: image reference %q: %v", ErrInvalid, ref, err)
		}
		out.Digest = d.DigestStr()
		base = ref[:i]
		if t, err := name.NewTag(base); err == nil && strings.Contains(tagPart(base), ":") {
			out.Tag = t.TagStr()
		}
		out.Registry, out.Repository = registryName(d.Context()), d.Context().RepositoryStr()
		return out, nil
	}
	t, err := name.NewTag(base)
	if err != nil {
		return Reference{}, fmt.Errorf("%w: image reference %q: %v", ErrInvalid, ref, err)
	}
	out.Registry, out.Repository, out.Tag = registryName(t.Context()), t.Context().RepositoryStr(), t.TagStr()
	return out, nil
}

// NormalizeReference is ParseReference(ref).String().
func NormalizeReference(ref string) (string, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

// tagPart is what follows the last "/" (where a tag would be).
func tagPart(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// repoOnly strips a tag from "repo:tag".
func repoOnly(s string) string {
	tp := tagPart(s)
	if i := strings.LastIndex(tp, ":"); i >= 0 {
		return s[:len(s)-len(tp)+i]
	}
	return s
}

func registryName(r name.Repository) string {
	reg := r.RegistryStr()
	if reg == name.DefaultRegistry || reg == "registry-1.docker.io" || reg == DockerHub {
		return DockerHub
	}
	return reg
}

// ggcrRef turns a normalised reference into what go-containerregistry pulls.
func (r Reference) ggcrRef(insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	if r.Digest != "" {
		return name.NewDigest(r.Repo()+"@"+r.Digest, opts...)
	}
	return name.NewTag(r.Repo()+":"+r.Tag, opts...)
}

// PullPolicy is a container's imagePullPolicy.
type PullPolicy string

const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// DefaultPullPolicy is Kubernetes' default for an image: Always when the tag is
// "latest" or absent (and no digest is given), IfNotPresent otherwise.
func DefaultPullPolicy(ref string) PullPolicy {
	r, err := ParseReference(ref)
	if err != nil {
		return PullIfNotPresent
	}
	if r.Digest == "" && r.Tag == "latest" {
		return PullAlways
	}
	return PullIfNotPresent
}

// ShouldPull reports whether an image must be pulled under the policy, given
// whether the store already has it. An empty policy means the default for ref.
// With PullNever and no image it returns ErrNeverPull.
func ShouldPull(policy PullPolicy, ref string, present bool) (bool, error) {
	if policy == "" {
		policy = DefaultPullPolicy(ref)
	}
	switch policy {
	case PullAlways:
		return true, nil
	case PullIfNotPresent:
		return !present, nil
	case PullNever:
		if !present {
			return false, fmt.Errorf("%w: %s", ErrNeverPull, ref)
		}
		return false, nil
	}
	return false, fmt.Errorf("%w: imagePullPolicy %q", ErrInvalid, policy)
}
