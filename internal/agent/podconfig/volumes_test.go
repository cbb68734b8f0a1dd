package podconfig

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		filepath.WalkDir(filepath.Join(dir, e.Name()), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p) // follows the user-visible symlink
			if err != nil {
				t.Fatal(err)
			}
			if fi.IsDir() {
				// WalkDir does not descend through the top-level symlink.
				sub := readTree(t, p)
				rel, _ := filepath.Rel(dir, p)
				for k, v := range sub {
					out[rel+"/"+k] = v
				}
				return filepath.SkipDir
			}
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[rel] = string(b) + "|" + fi.Mode().Perm().String()
			return nil
		})
	}
	return out
}

// Upstream pkg/volume/util TestWriteOnce/TestUpdate/TestMultipleUpdates.
func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	wrote, err := WriteAtomic(dir, map[string]FileProjection{
		"a":     {Data: []byte("1"), Mode: 0o644},
		"d/b":   {Data: []byte("2"), Mode: 0o600},
		"d/e/c": {Data: []byte("3"), Mode: 0o400},
	})
	if err != nil || !wrote {
		t.Fatal(wrote, err)
	}
	if got := readTree(t, dir); len(got) != 3 || got["a"] != "1|-rw-r--r--" || got["d/b"] != "2|-rw-------" || got["d/e/c"] != "3|-r--------" {
		t.Fatalf("tree %v", got)
	}
	ts1, _ := os.Readlink(filepath.Join(dir, "..data"))
	if !strings.HasPrefix(ts1, "..20") {
		t.Fatalf("..data -> %q", ts1)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "d")); l != "..data/d" {
		t.Fatalf("d -> %q", l)
	}

	// Same payload: nothing written, same timestamped dir.
	wrote, err = WriteAtomic(dir, map[string]FileProjection{
		"a": {Data: []byte("1"), Mode: 0o644}, "d/b": {Data: []byte("2"), Mode: 0o600}, "d/e/c": {Data: []byte("3"), Mode: 0o400},
	})
	if err != nil || wrote {
		t.Fatal("rewrote identical payload", err)
	}
	// Mode change alone is an update.
	wrote, _ = WriteAtomic(dir, map[string]FileProjection{
		"a": {Data: []byte("1"), Mode: 0o640}, "d/b": {Data: []byte("2"), Mode: 0o600}, "d/e/c": {Data: []byte("3"), Mode: 0o400},
	})
	if !wrote {
		t.Fatal("mode change not written")
	}

	// A reader holding the old path through ..data keeps a consistent view
	// until the swap; afterwards the old version is gone.
	ts2, _ := os.Readlink(filepath.Join(dir, "..data"))
	if ts2 == ts1 {
		t.Fatal("..data not swapped")
	}
	if _, err := os.Stat(filepath.Join(dir, ts1)); !os.IsNotExist(err) {
		t.Fatal("old version not removed")
	}

	// Update: change a, remove d entirely, add f.
	if _, err := WriteAtomic(dir, map[string]FileProjection{
		"a": {Data: []byte("new"), Mode: 0o644}, "f": {Data: []byte("6"), Mode: 0o644},
	}); err != nil {
		t.Fatal(err)
	}
	got := readTree(t, dir)
	if len(got) != 2 || got["a"] != "new|-rw-r--r--" || got["f"] != "6|-rw-r--r--" {
		t.Fatalf("after update %v", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Fatal("removed key's symlink kept")
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 4 { // ..<ts>, ..data, a, f
		t.Fatalf("entries %v", names)
	}

	// Empty payload (optional source missing): empty but valid volume.
	if _, err := WriteAtomic(dir, nil); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, dir); len(got) != 0 {
		t.Fatalf("after emptying %v", got)
	}
}

// Upstream TestValidatePath: payload paths as API validation would reject.
func TestWriteAtomicHostilePaths(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"../escape", "a/../../escape", "/etc/passwd", "..data", "..data/x", "..hidden", "", "a/" + strings.Repeat("x", 256), "."} {
		if _, err := WriteAtomic(filepath.Join(dir, "v"), map[string]FileProjection{p: {Data: []byte("x"), Mode: 0o644}}); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); !os.IsNotExist(err) {
		t.Fatal("escaped")
	}
	// ".." within a name is fine, as upstream ("a..b", "..").
	if _, err := WriteAtomic(filepath.Join(dir, "v"), map[string]FileProjection{"a..b": {Data: []byte("x"), Mode: 0o644}}); err != nil {
		t.Fatal(err)
	}
}

// A concurrent reader always sees a complete version through the symlinks.
func TestWriteAtomicConcurrentReader(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	payload := func(v string) map[string]FileProjection {
		return map[string]FileProjection{"x": {Data: []byte(v), Mode: 0o644}, "y": {Data: []byte(v), Mode: 0o644}}
	}
	if _, err := WriteAtomic(dir, payload("0")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(dir, "..data", "x"))
			if err != nil && !os.IsNotExist(err) { // old dir removed between readlink and open
				bad = err
				return
			}
			if err == nil && len(b) == 0 {
				bad = errors.New("empty read")
				return
			}
		}
	}()
	for i := 1; i < 50; i++ {
		if _, err := WriteAtomic(dir, payload(strings.Repeat("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad != nil {
		t.Fatal(bad)
	}
}

// Upstream pkg/volume/hostpath TestOSFileTypeChecker / checkType.
func TestHostPathTypes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	chr := filepath.Join(dir, "chr")
	if err := unix.Mknod(chr, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	blk := filepath.Join(dir, "blk")
	if err := unix.Mknod(blk, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))); err != nil {
		t.Fatal(err)
	}
	typ := func(s corev1.HostPathType) *corev1.HostPathType { return &s }
	for _, tc := range []struct {
		path string
		typ  *corev1.HostPathType
		err  string
	}{
		{dir, nil, ""},
		{filepath.Join(dir, "unset-created"), nil, ""},
		{dir, typ(corev1.HostPathDirectory), ""},
		{file, typ(corev1.HostPathDirectory), "hostPath type check failed: " + file + " is not a directory"},
		{filepath.Join(dir, "none"), typ(corev1.HostPathDirectory), "hostPath type check failed: " + filepath.Join(dir, "none") + " is not a directory"},
		{filepath.Join(dir, "new/dir"), typ(corev1.HostPathDirectoryOrCreate), ""},
		{file, typ(corev1.HostPathDirectoryOrCreate), "hostPath type check failed: " + file + " is not a directory"},
		{file, typ(corev1.HostPathFile), ""},
		{dir, typ(corev1.HostPathFile), "hostPath type check failed: " + dir + " is not a file"},
		{filepath.Join(dir, "newfile"), typ(corev1.HostPathFileOrCreate), ""},
		{dir, typ(corev1.HostPathFileOrCreate), "hostPath type check failed: " + dir + " is not a file"},
		{sock, typ(corev1.HostPathSocket), ""},
		{file, typ(corev1.HostPathSocket), "hostPath type check failed: " + file + " is not a socket file"},
		{chr, typ(corev1.HostPathCharDev), ""},
		{blk, typ(corev1.HostPathCharDev), "hostPath type check failed: " + blk + " is not a character device"},
		{blk, typ(corev1.HostPathBlockDev), ""},
		{chr, typ(corev1.HostPathBlockDev), "hostPath type check failed: " + chr + " is not a block device"},
		{dir, typ("Bogus"), "Bogus is an invalid volume type"},
		{"relative", nil, `hostPath "relative" must be an absolute path`},
	} {
		err := checkHostPath(tc.path, tc.typ)
		if (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%s %v: err %v, want %q", tc.path, tc.typ, err, tc.err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "new/dir")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("DirectoryOrCreate: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "newfile")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("FileOrCreate: %v %v", fi, err)
	}
}

// kubeAPIAccess is the projected volume the ServiceAccount admission plugin
// adds (kube-api-access-xxxxx).
func kubeAPIAccess() corev1.Volume {
	return corev1.Volume{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr(int32(0o644)),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr(int64(3607)), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}}
}

func TestWriteVolumes(t *testing.T) {
	podDir := t.TempDir()
	hostDir := filepath.Join(t.TempDir(), "host")
	cfg := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "cfg"},
		Data: map[string]string{"app.conf": "v1", "other": "o"}, BinaryData: map[string][]byte{"bin": {0, 1}}}
	src := cmSources(cfg,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": "CA"}}).
		withSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "sec"}, Data: map[string][]byte{"pw": []byte("s3cret"), "user": []byte("u")}})
	pod := testPod(corev1.Container{Name: "c", Command: []string{"x"},
		Env:       []corev1.EnvVar{{Name: "SUB", Value: "logs"}},
		Resources: corev1.ResourceRequirements{Limits: rl("memory", "256Mi")},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "cfg", MountPath: "/etc/app"},
			{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "app.conf"},
			{Name: "cache", MountPath: "/var/log/app", SubPathExpr: "$(SUB)/$(POD)"},
			{Name: "host", MountPath: "/host", ReadOnly: true},
			{Name: "kube-api-access-abcde", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
		}})
	pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "POD",
		ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}})
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "cfg-items", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
			DefaultMode: ptr(int32(0o400)),
			Items:       []corev1.KeyToPath{{Key: "app.conf", Path: "conf/app.conf", Mode: ptr(int32(0o600))}, {Key: "bin", Path: "b"}}}}},
		{Name: "opt", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr(true)}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", Items: []corev1.KeyToPath{{Key: "pw", Path: "password"}}}}},
		{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr(rl("x", "64Mi")["x"])}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
		{Name: "down", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "mem_limit", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.memory", Divisor: rl("x", "1Mi")["x"]}},
			{Path: "./cpu_limit", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.cpu"}},
		}}}},
		kubeAPIAccess(),
	}
	var tmpfs []string
	var tokens []string
	opts := VolumeOptions{
		NodeAllocatable: rl("memory", "8Gi", "cpu", "2"),
		MountTmpfs: func(dir string, size int64) error {
			tmpfs = append(tmpfs, filepath.Base(dir)+":"+itoa(size))
			return nil
		},
		Token: func(_ context.Context, p *corev1.Pod, aud string, exp int64) ([]byte, error) {
			tokens = append(tokens, p.Spec.ServiceAccountName+"|"+aud+"|"+itoa(exp))
			return []byte("TOKEN" + itoa(int64(len(tokens)))), nil
		},
	}
	vols, err := WriteVolumes(context.Background(), podDir, pod, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	check := func(vol string, want map[string]string) {
		t.Helper()
		got := readTree(t, vols[vol].HostPath)
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", vol, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s/%s = %q, want %q", vol, k, got[k], v)
			}
		}
	}
	check("cfg", map[string]string{"app.conf": "v1|-rw-r--r--", "other": "o|-rw-r--r--", "bin": "\x00\x01|-rw-r--r--"})
	check("cfg-items", map[string]string{"conf/app.conf": "v1|-rw-------", "b": "\x00\x01|-r--------"})
	check("opt", map[string]string{})
	check("sec", map[string]string{"password": "s3cret|-rw-r--r--"})
	check("kube-api-access-abcde", map[string]string{"token": "TOKEN1|-rw-r--r--", "ca.crt": "CA|-rw-r--r--", "namespace": "ns1|-rw-r--r--"})
	check("down", map[string]string{"labels": "app=\"web\"\ntier=\"front\"|-rw-r--r--", "mem_limit": "256|-rw-r--r--", "cpu_limit": "2|-rw-r--r--"})
	if vols["cfg"].HostPath != filepath.Join(podDir, "volumes/kubernetes.io~configmap/cfg") || !vols["cfg"].ReadOnly || vols["cfg"].Tmpfs != nil {
		t.Errorf("cfg volume %+v", vols["cfg"])
	}
	if v := vols["mem"]; v.Tmpfs == nil || v.Tmpfs.SizeBytes != 64<<20 || v.ReadOnly {
		t.Errorf("mem volume %+v", v)
	}
	if v := vols["sec"]; v.Tmpfs == nil || v.Tmpfs.SizeBytes != 256<<20 {
		t.Errorf("secret volume %+v", v) // pod memory limit < allocatable
	}
	if v := vols["host"]; v.HostPath != hostDir || v.ReadOnly {
		t.Errorf("host volume %+v", v)
	}
	if fi, err := os.Stat(vols["cache"].HostPath); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("emptyDir %v %v", fi, err)
	}
	sort.Strings(tmpfs)
	if strings.Join(tmpfs, " ") != "down:268435456 kube-api-access-abcde:268435456 mem:67108864 sec:268435456" {
		t.Errorf("tmpfs mounts %v", tmpfs)
	}
	if strings.Join(tokens, " ") != "sa1||3607" {
		t.Errorf("token requests %v", tokens)
	}

	// Mounts of the container: subPath through the configMap's symlinks
	// resolves to the file in the current version; subPathExpr is created.
	spec, err := Build(pod, &pod.Spec.Containers[0], ImageConfig{}, src, Options{Volumes: vols})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range spec.Mounts {
		src, _ := filepath.Rel(podDir, m.Source)
		if m.Source == hostDir {
			src = "HOST"
		}
		got = append(got, src+">"+m.Destination+map[bool]string{true: ":ro", false: ""}[m.ReadOnly])
	}
	ts, _ := os.Readlink(filepath.Join(vols["cfg"].HostPath, "..data"))
	want := []string{
		"volumes/kubernetes.io~configmap/cfg>/etc/app:ro",
		"volumes/kubernetes.io~configmap/cfg/" + ts + "/app.conf>/etc/app.conf:ro",
		"volumes/kubernetes.io~empty-dir/cache/logs/web-0>/var/log/app",
		"HOST>/host:ro",
		"volumes/kubernetes.io~projected/kube-api-access-abcde>/var/run/secrets/kubernetes.io/serviceaccount:ro",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("mounts\n got %s\nwant %s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fi, err := os.Stat(filepath.Join(vols["cache"].HostPath, "logs/web-0")); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("subPathExpr dir: %v %v", fi, err)
	}

	// A later sync with changed data updates atomically and drops keys.
	cfg.Data = map[string]string{"app.conf": "v2"}
	if _, err := WriteVolumes(context.Background(), podDir, pod, src, opts); err != nil {
		t.Fatal(err)
	}
	check("cfg", map[string]string{"app.conf": "v2|-rw-r--r--", "bin": "\x00\x01|-rw-r--r--"})
	check("kube-api-access-abcde", map[string]string{"token": "TOKEN2|-rw-r--r--", "ca.crt": "CA|-rw-r--r--", "namespace": "ns1|-rw-r--r--"})

	// A required key gone: the volume fails with upstream's text, others work.
	cfg.Data = map[string]string{"other": "x"}
	_, err = WriteVolumes(context.Background(), podDir, pod, src, opts)
	if err == nil || err.Error() != `MountVolume.SetUp failed for volume "cfg-items" : configmap references non-existent config key: app.conf` {
		t.Errorf("err %v", err)
	}
	check("cfg", map[string]string{"other": "x|-rw-r--r--", "bin": "\x00\x01|-rw-r--r--"})
}

func TestWriteVolumesErrorsAndFSGroup(t *testing.T) {
	src := cmSources().withSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "sec"}, Data: map[string][]byte{"k": []byte("v")}})
	for _, tc := range []struct {
		vol  corev1.VolumeSource
		want string
	}{
		{corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}}, `configmap "x" not found`},
		{corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "x"}}, `secret "x" not found`},
		{corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", Items: []corev1.KeyToPath{{Key: "nope", Path: "p"}}}}, `references non-existent secret key: nope`},
		{corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", Items: []corev1.KeyToPath{{Key: "k", Path: "../../etc/evil"}}}}, `invalid path: must not contain '..': ../../etc/evil`},
		{corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", Items: []corev1.KeyToPath{{Key: "k", Path: "/abs"}}}}, `invalid path: must be relative path: /abs`},
		{corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "t"}}}}}, `no service account token source`},
		{corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}, `unsupported volume type`},
	} {
		podDir := t.TempDir()
		pod := testPod()
		pod.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: tc.vol}}
		_, err := WriteVolumes(context.Background(), podDir, pod, src, VolumeOptions{})
		if err == nil || err.Error() != `MountVolume.SetUp failed for volume "v" : `+tc.want {
			t.Errorf("err %v, want %q", err, tc.want)
		}
	}

	// fsGroup: files group-owned and group-readable, token 0640, emptyDir setgid.
	podDir := t.TempDir()
	pod := testPod()
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr(int64(4321))}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: ptr(int32(0o400))}}},
		{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}},
	}
	vols, err := WriteVolumes(context.Background(), podDir, pod, src, VolumeOptions{Token: func(context.Context, *corev1.Pod, string, int64) ([]byte, error) { return []byte("t"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, mode string }{
		{filepath.Join(vols["s"].HostPath, "k"), "-r--r-----"},
		{filepath.Join(vols["p"].HostPath, "token"), "-rw-r-----"},
	} {
		var st unix.Stat_t
		if err := unix.Stat(c.path, &st); err != nil || st.Gid != 4321 {
			t.Errorf("%s gid %d %v", c.path, st.Gid, err)
		}
		if fi, _ := os.Stat(c.path); fi.Mode().String() != c.mode {
			t.Errorf("%s mode %s, want %s", c.path, fi.Mode(), c.mode)
		}
	}
	if fi, _ := os.Stat(vols["e"].HostPath); fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("emptyDir mode %s", fi.Mode())
	}
	// Idempotent: a second sync writes nothing new.
	ts, _ := os.Readlink(filepath.Join(vols["s"].HostPath, "..data"))
	if _, err := WriteVolumes(context.Background(), podDir, pod, src, VolumeOptions{Token: func(context.Context, *corev1.Pod, string, int64) ([]byte, error) { return []byte("t"), nil }}); err != nil {
		t.Fatal(err)
	}
	if ts2, _ := os.Readlink(filepath.Join(vols["s"].HostPath, "..data")); ts2 != ts {
		t.Error("unchanged secret rewritten")
	}
}

// Upstream makeMounts: subPath validation and symlink confinement.
func TestSubPath(t *testing.T) {
	vol := t.TempDir()
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(vol, "escape"))
	os.Symlink("/etc", filepath.Join(vol, "abs"))
	for _, tc := range []struct {
		sub, want, err string
	}{
		{"a/b", filepath.Join(vol, "a/b"), ""},
		{"/abs", "", "error SubPath `/abs` must not be an absolute path"},
		{"a/../../x", "", "unable to provision SubPath `a/../../x`: must not contain '..'"},
		{"escape/x", filepath.Join(vol, outside, "x"), ""}, // an absolute symlink target is taken inside the volume
		{"abs", filepath.Join(vol, "etc"), ""},
	} {
		got, err := resolveSubPath(vol, tc.sub, "v", "c")
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s: err %v, want %q", tc.sub, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.sub, got, err, tc.want)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Error("created outside the volume")
	}
	if _, err := expandSubPath("$(A)/$(B)/$(C)", map[string]string{"A": "a", "C": ""}); err == nil || err.Error() != "missing value for B, C" {
		t.Errorf("subPathExpr err %v", err)
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

func TestRemovePodDir(t *testing.T) {
	podDir := filepath.Join(t.TempDir(), "pod")
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "keep"), []byte("x"), 0o644)
	pod := testPod()
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{{Path: "n", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
		{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}}},
	}
	vols, err := WriteVolumes(context.Background(), podDir, pod, nil, VolumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A symlink to the host dir inside the emptyDir must not be followed.
	os.Symlink(hostDir, filepath.Join(vols["e"].HostPath, "link"))
	var unmounted []string
	if err := RemovePodDir(podDir, func(dir string) error {
		unmounted = append(unmounted, filepath.Base(dir))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(unmounted)
	if strings.Join(unmounted, " ") != "d e" {
		t.Errorf("unmounted %v", unmounted)
	}
	if _, err := os.Stat(podDir); !os.IsNotExist(err) {
		t.Error("pod dir left")
	}
	if _, err := os.Stat(filepath.Join(hostDir, "keep")); err != nil {
		t.Error("hostPath content removed")
	}
}
