package image

import (
	"errors"
	"testing"
)

func TestParseReference(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		"busybox":                         "docker.io/library/busybox:latest",
		"busybox:1.36":                    "docker.io/library/busybox:1.36",
		"user/app":                        "docker.io/user/app:latest",
		"docker.io/busybox":               "docker.io/library/busybox:latest",
		"index.docker.io/library/busybox": "docker.io/library/busybox:latest",
		"registry-1.docker.io/x/y:2":      "docker.io/x/y:2",
		"ghcr.io/org/app:v1":              "ghcr.io/org/app:v1",
		"localhost:5000/app":              "localhost:5000/app:latest",
		"127.0.0.1:5000/a/b/c:t":          "127.0.0.1:5000/a/b/c:t",
		"busybox@" + d:                    "docker.io/library/busybox@" + d,
		"busybox:1.36@" + d:               "docker.io/library/busybox:1.36@" + d,
		"localhost:5000/app@" + d:         "localhost:5000/app@" + d,
	} {
		got, err := NormalizeReference(in)
		if err != nil || got != want {
			t.Errorf("%s → %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", " busybox", "Busybox", "busybox@sha256:short", "a:b:c"} {
		if _, err := ParseReference(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: err %v, want ErrInvalid", in, err)
		}
	}
}

func TestPullPolicy(t *testing.T) {
	for _, c := range []struct {
		policy  PullPolicy
		ref     string
		present bool
		pull    bool
		err     error
	}{
		{"", "busybox", true, true, nil},
		{"", "busybox:latest", true, true, nil},
		{"", "busybox:1.36", true, false, nil},
		{"", "busybox:1.36", false, true, nil},
		{"", "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true, false, nil},
		{PullAlways, "busybox:1.36", true, true, nil},
		{PullIfNotPresent, "busybox", true, false, nil},
		{PullIfNotPresent, "busybox", false, true, nil},
		{PullNever, "busybox", true, false, nil},
		{PullNever, "busybox", false, false, ErrNeverPull},
		{"Sometimes", "busybox", false, false, ErrInvalid},
	} {
		pull, err := ShouldPull(c.policy, c.ref, c.present)
		if pull != c.pull || !errors.Is(err, c.err) {
			t.Errorf("%q %s present=%v: %v %v; want %v %v", c.policy, c.ref, c.present, pull, err, c.pull, c.err)
		}
	}
	if DefaultPullPolicy("busybox") != PullAlways || DefaultPullPolicy("busybox:1") != PullIfNotPresent {
		t.Error("DefaultPullPolicy")
	}
}

func TestKeychainMatching(t *testing.T) {
	creds := []Credential{
		{Server: "https://index.docker.io/v1/", Username: "hub"},
		{Server: "*.example.com", Username: "wild"},
		{Server: "reg.example.com/team", Username: "team"},
		{Server: "reg.example.com:5000", Username: "port"},
	}
	for _, c := range []struct{ repo, user string }{
		{"busybox", "hub"},
		{"docker.io/user/app", "hub"},
		{"reg.example.com/team/app", "team"},
		{"reg.example.com/other/app", "wild"},
		{"x.example.com/app", "wild"},
		{"reg.example.com:5000/app", "port"},
		{"a.b.example.com/app", ""},
		{"ghcr.io/app", ""},
	} {
		r, _ := ParseReference(c.repo)
		gr, err := r.ggcrRef(false)
		if err != nil {
			t.Fatal(err)
		}
		a, err := Keychain(creds).Resolve(gr.Context())
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := a.Authorization()
		if cfg.Username != c.user {
			t.Errorf("%s: user %q, want %q", c.repo, cfg.Username, c.user)
		}
	}
}
