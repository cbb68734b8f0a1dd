package podconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// kubecontainer.ExpandContainerCommandAndArgs + containerd's command merge
// (upstream TestExpandCommandAndArgs and the Kubernetes docs table "Notes on
// Entrypoint and Cmd").
func TestCommandArgs(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/ep-1", "foo"}, Cmd: []string{"bar"}}
	env := []corev1.EnvVar{{Name: "V", Value: "val"}, {Name: "W", Value: "$(V)-w"}}
	for _, tc := range []struct {
		name          string
		command, args []string
		img           ImageConfig
		want          []string
		err           error
	}{
		{"image only", nil, nil, img, []string{"/ep-1", "foo", "bar"}, nil},
		{"command drops Cmd", []string{"/cmd"}, nil, img, []string{"/cmd"}, nil},
		{"args replace Cmd", nil, []string{"zoo", "boo"}, img, []string{"/ep-1", "foo", "zoo", "boo"}, nil},
		{"both", []string{"/cmd"}, []string{"zoo"}, img, []string{"/cmd", "zoo"}, nil},
		{"expansion", []string{"echo", "$(V)", "$(W)", "$$(V)", "$(UNSET)"}, []string{"$(V)$(V)"}, img,
			[]string{"echo", "val", "val-w", "$(V)", "$(UNSET)", "valval"}, nil},
		{"image env not expanded", []string{"echo", "$(HOME)"}, nil, ImageConfig{Env: []string{"HOME=/root"}},
			[]string{"echo", "$(HOME)"}, nil},
		{"empty entrypoint string", nil, nil, ImageConfig{Entrypoint: []string{""}, Cmd: []string{"sh"}}, []string{"sh"}, nil},
		{"no command", nil, nil, ImageConfig{}, nil, ErrNoCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod(corev1.Container{Name: "c", Command: tc.command, Args: tc.args, Env: env})
			spec, err := Build(pod, &pod.Spec.Containers[0], tc.img, nil, Options{})
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && !reflect.DeepEqual(spec.Args, tc.want) {
				t.Fatalf("args %q, want %q", spec.Args, tc.want)
			}
		})
	}
}

func TestWorkingDir(t *testing.T) {
	for _, tc := range []struct{ c, img, want string }{
		{"/c", "/img", "/c"}, {"", "/img", "/img"}, {"", "", "/"},
	} {
		pod := testPod(corev1.Container{Name: "c", Command: []string{"x"}, WorkingDir: tc.c})
		spec, err := Build(pod, &pod.Spec.Containers[0], ImageConfig{WorkingDir: tc.img}, nil, Options{})
		if err != nil || spec.WorkingDir != tc.want {
			t.Errorf("%+v: %q %v", tc, spec.WorkingDir, err)
		}
	}
}

// generateLinuxContainerResources: milliCPUToShares / milliCPUToQuota.
func TestContainerResources(t *testing.T) {
	for _, tc := range []struct {
		name     string
		req, lim corev1.ResourceList
		want     runtime.Resources
	}{
		{"none", nil, nil, runtime.Resources{CPUShares: 2}},
		{"requests", rl("cpu", "500m", "memory", "64Mi"), nil, runtime.Resources{CPUShares: 512}},
		{"limits only", nil, rl("cpu", "2", "memory", "1Gi"),
			runtime.Resources{CPUShares: 2048, CPUQuota: 200000, CPUPeriod: 100000, MemoryLimit: 1 << 30}},
		{"both", rl("cpu", "100m"), rl("cpu", "250m", "memory", "100M"),
			runtime.Resources{CPUShares: 102, CPUQuota: 25000, CPUPeriod: 100000, MemoryLimit: 100000000}},
		{"tiny limit", nil, rl("cpu", "1m"), runtime.Resources{CPUShares: 2, CPUQuota: 1000, CPUPeriod: 100000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := corev1.Container{Resources: corev1.ResourceRequirements{Requests: tc.req, Limits: tc.lim}}
			if got := ContainerResources(&c); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// qos.GetPodQOS (upstream TestGetPodQOS) and the cgroupfs pod cgroup names.
func TestQOSAndCgroupParent(t *testing.T) {
	res := func(req, lim corev1.ResourceList) corev1.Container {
		return corev1.Container{Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}
	}
	for _, tc := range []struct {
		name   string
		cs     []corev1.Container
		inits  []corev1.Container
		want   corev1.PodQOSClass
		parent string
	}{
		{"besteffort", []corev1.Container{res(nil, nil)}, nil, corev1.PodQOSBestEffort, "/kubepods/besteffort/pod1234-abcd"},
		{"zero requests", []corev1.Container{res(rl("cpu", "0"), nil)}, nil, corev1.PodQOSBestEffort, "/kubepods/besteffort/pod1234-abcd"},
		{"guaranteed", []corev1.Container{res(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))}, nil, corev1.PodQOSGuaranteed, "/kubepods/pod1234-abcd"},
		{"limits only", []corev1.Container{res(nil, rl("cpu", "1", "memory", "1Gi"))}, nil, corev1.PodQOSBurstable, "/kubepods/burstable/pod1234-abcd"},
		{"cpu only", []corev1.Container{res(rl("cpu", "1"), rl("cpu", "1"))}, nil, corev1.PodQOSBurstable, "/kubepods/burstable/pod1234-abcd"},
		{"one besteffort container", []corev1.Container{res(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi")), res(nil, nil)}, nil, corev1.PodQOSBurstable, "/kubepods/burstable/pod1234-abcd"},
		{"init besteffort", []corev1.Container{res(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))}, []corev1.Container{res(nil, nil)}, corev1.PodQOSBurstable, "/kubepods/burstable/pod1234-abcd"},
		{"requests differ", []corev1.Container{res(rl("cpu", "500m", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))}, nil, corev1.PodQOSBurstable, "/kubepods/burstable/pod1234-abcd"},
		{"ignored resource", []corev1.Container{res(rl("nvidia.com/gpu", "1"), rl("nvidia.com/gpu", "1"))}, nil, corev1.PodQOSBestEffort, "/kubepods/besteffort/pod1234-abcd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod(tc.cs...)
			pod.Spec.InitContainers = tc.inits
			if got := QOSClass(pod); got != tc.want {
				t.Fatalf("qos %s, want %s", got, tc.want)
			}
			if got := PodCgroupParent("", pod); got != tc.parent {
				t.Fatalf("parent %s, want %s", got, tc.parent)
			}
		})
	}
	pod := testPod()
	pod.Status.QOSClass = corev1.PodQOSGuaranteed
	if got := PodCgroupParent("/skiff/pods", pod); got != "/skiff/pods/pod1234-abcd" {
		t.Fatal(got)
	}
}

const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www:x:33:333:www:/var/www:/bin/sh
# comment
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`
const group = `root:x:0:
daemon:x:1:
www:x:333:
web:x:400:www,other
audio:x:29:daemon,www
nogroup:x:65534:
`

func mapReader(files map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
}

func TestResolveUser(t *testing.T) {
	rd := mapReader(map[string]string{"/etc/passwd": passwd, "/etc/group": group})
	for _, tc := range []struct {
		name    string
		imgUser string
		podSC   *corev1.PodSecurityContext
		cSC     *corev1.SecurityContext
		read    func(string) ([]byte, error)
		want    User
		wantErr string
	}{
		{name: "default root", read: rd, want: User{0, 0, []uint32{0}, "root"}},
		{name: "image name", imgUser: "www", read: rd, want: User{33, 333, []uint32{333, 400, 29}, "www"}},
		{name: "image name:group", imgUser: "www:web", read: rd, want: User{33, 400, []uint32{400, 29}, "www"}},
		{name: "image uid", imgUser: "33", read: rd, want: User{33, 333, []uint32{333, 400, 29}, "www"}},
		{name: "image uid:gid", imgUser: "1000:1000", read: rd, want: User{1000, 1000, []uint32{1000}, ""}},
		{name: "image uid unknown", imgUser: "1000", read: rd, want: User{1000, 0, []uint32{0}, ""}},
		{name: "numeric without rootfs", imgUser: "5:6", want: User{5, 6, []uint32{6}, ""}},
		{name: "unknown name", imgUser: "ghost", read: rd, wantErr: "unable to find user ghost: no matching entries in passwd file"},
		{name: "name without rootfs", imgUser: "www", wantErr: "unable to find user www: no matching entries in passwd file"},
		{name: "unknown group", imgUser: "www:ghosts", read: rd, wantErr: "unable to find group ghosts: no matching entries in group file"},
		{name: "pod runAsUser beats image", imgUser: "www", read: rd,
			podSC: &corev1.PodSecurityContext{RunAsUser: ptr(int64(1))},
			want:  User{1, 1, []uint32{1, 29}, "daemon"}},
		{name: "container beats pod", read: rd,
			podSC: &corev1.PodSecurityContext{RunAsUser: ptr(int64(1)), RunAsGroup: ptr(int64(7))},
			cSC:   &corev1.SecurityContext{RunAsUser: ptr(int64(2000)), RunAsGroup: ptr(int64(3000))},
			want:  User{2000, 3000, []uint32{3000}, ""}},
		{name: "pod runAsGroup", imgUser: "www", read: rd,
			podSC: &corev1.PodSecurityContext{RunAsGroup: ptr(int64(5))},
			want:  User{33, 5, []uint32{5, 400, 29}, "www"}},
		{name: "fsGroup and supplementalGroups", imgUser: "1000", read: rd,
			podSC: &corev1.PodSecurityContext{FSGroup: ptr(int64(2000)), SupplementalGroups: []int64{10, 2000, 11}},
			want:  User{1000, 0, []uint32{0, 2000, 10, 11}, ""}},
		{name: "strict policy", imgUser: "www", read: rd,
			podSC: &corev1.PodSecurityContext{SupplementalGroupsPolicy: ptr(corev1.SupplementalGroupsPolicyStrict), SupplementalGroups: []int64{10}},
			want:  User{33, 333, []uint32{333, 10}, "www"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod()
			pod.Spec.SecurityContext = tc.podSC
			pod.Spec.Containers[0].SecurityContext = tc.cSC
			got, err := ResolveUser(pod, &pod.Spec.Containers[0], tc.imgUser, tc.read)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestLowerdirReader(t *testing.T) {
	top, mid, bottom := t.TempDir(), t.TempDir(), t.TempDir()
	write := func(dir, p, s string) {
		t.Helper()
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(bottom, "etc/passwd", "bottom")
	write(bottom, "etc/group", "bottom-group")
	write(bottom, "usr/lib/shadowed", "old")
	write(mid, "etc/passwd", "mid")
	write(mid, "usr/lib/real-group", "via-link")
	if err := os.Symlink("../usr/lib/real-group", filepath.Join(top, "etc-group-link")); err != nil {
		t.Fatal(err)
	}
	// Whiteout of /etc/group in the top layer (char device 0/0).
	if err := os.MkdirAll(filepath.Join(top, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mknodWhiteout(filepath.Join(top, "etc/group")); err != nil {
		t.Skipf("mknod: %v", err)
	}
	read := LowerdirReader([]string{top, mid, bottom})
	if b, err := read("/etc/passwd"); err != nil || string(b) != "mid" {
		t.Errorf("passwd %q %v", b, err)
	}
	if _, err := read("/etc/group"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("whiteout: %v", err)
	}
	if b, err := read("/etc-group-link"); err != nil || string(b) != "via-link" {
		t.Errorf("symlink %q %v", b, err)
	}
	if _, err := read("/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

// Upstream TestVerifyRunAsNonRoot.
func TestRunAsNonRoot(t *testing.T) {
	pod := `"web-0_ns1(1234-abcd)"`
	for _, tc := range []struct {
		name    string
		podSC   *corev1.PodSecurityContext
		cSC     *corev1.SecurityContext
		imgUser string
		err     string
	}{
		{"not set", nil, nil, "", ""},
		{"image root", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)}, nil, "",
			"container has runAsNonRoot and image will run as root (pod: " + pod + ", container: c)"},
		{"image uid 0", nil, &corev1.SecurityContext{RunAsNonRoot: ptr(true)}, "0:5",
			"container has runAsNonRoot and image will run as root (pod: " + pod + ", container: c)"},
		{"image numeric", nil, &corev1.SecurityContext{RunAsNonRoot: ptr(true)}, "1000", ""},
		{"image name", nil, &corev1.SecurityContext{RunAsNonRoot: ptr(true)}, "www",
			"container has runAsNonRoot and image has non-numeric user (www), cannot verify user is non-root (pod: " + pod + ", container: c)"},
		{"runAsUser 0", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)}, &corev1.SecurityContext{RunAsUser: ptr(int64(0))}, "1000",
			"container's runAsUser breaks non-root policy (pod: " + pod + ", container: c)"},
		{"runAsUser wins over image name", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(7))}, nil, "www", ""},
		{"container allows root", &corev1.PodSecurityContext{RunAsNonRoot: ptr(true)}, &corev1.SecurityContext{RunAsNonRoot: ptr(false)}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPod(corev1.Container{Name: "c", Command: []string{"x"}, SecurityContext: tc.cSC})
			p.Spec.SecurityContext = tc.podSC
			_, err := Build(p, &p.Spec.Containers[0], ImageConfig{User: tc.imgUser}, nil,
				Options{ReadRootfsFile: mapReader(map[string]string{"/etc/passwd": passwd, "/etc/group": group})})
			if (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

func TestPodCgroupName(t *testing.T) {
	pod := testPod()
	if got := PodCgroupName(pod); got != "besteffort/pod1234-abcd" {
		t.Fatal(got)
	}
}
