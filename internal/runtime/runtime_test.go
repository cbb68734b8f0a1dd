package runtime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/cgroups"
	"time"
)

func TestRunEchoAndExitCodes(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	rootfs := busyboxRootfs(t)
	out := filepath.Join(t.TempDir(), "out")
	st := run(t, r, ContainerConfig{ID: "echo", Rootfs: Rootfs{Dir: rootfs}, Args: []string{"echo", "hello"}, StdoutPath: out})
	if st.Status != StatusExited || st.ExitCode != 0 || st.ExitCodeUnknown || st.OOMKilled {
		t.Fatalf("state %+v", st)
	}
	if got := readFile(t, out); got != "hello\n" {
		t.Fatalf("stdout %q", got)
	}
	if st.StartedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) || st.StartedAt.Before(st.CreatedAt) {
		t.Errorf("times created %v started %v finished %v", st.CreatedAt, st.StartedAt, st.FinishedAt)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"false"}, 1},
		{[]string{"/no/such/binary"}, -1},
	} {
		id := "code" + string(rune('a'+tc.code%26))
		if tc.code < 0 {
			_, err := r.Create(context.Background(), ContainerConfig{ID: "missing", Rootfs: Rootfs{Dir: rootfs}, Args: tc.args})
			if err == nil {
				if err := r.Start(context.Background(), "missing"); err == nil {
					t.Errorf("%v: started", tc.args)
				}
			}
			continue
		}
		st := run(t, r, ContainerConfig{ID: id, Rootfs: Rootfs{Dir: rootfs}, Args: tc.args})
		if st.ExitCode != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.args, st.ExitCode, tc.code)
		}
	}
}

func TestEnvCwdUser(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	out := filepath.Join(t.TempDir(), "out")
	st := run(t, r, ContainerConfig{
		ID: "env", Rootfs: Rootfs{Dir: busyboxRootfs(t)},
		Args:       []string{"sh", "-c", `echo "$FOO"; pwd; id -u; id -g; id -G; hostname`},
		Env:        []string{"FOO=bar baz"},
		WorkingDir: "/tmp", UID: 1000, GID: 1001, AdditionalGIDs: []uint32{2000},
		Hostname:   "pod-a",
		StdoutPath: out, StderrPath: out,
	})
	if st.ExitCode != 0 {
		t.Fatalf("exit %d: %s", st.ExitCode, readFile(t, out))
	}
	want := "bar baz\n/tmp\n1000\n1001\n1001 2000\npod-a\n"
	if got := readFile(t, out); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestOOMKilled(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	// tail keeps a line-less stream in memory: far beyond the limit.
	st := run(t, r, ContainerConfig{
		ID: "oom", Rootfs: Rootfs{Dir: busyboxRootfs(t)},
		Args: []string{"sh", "-c", "head -c 512m /dev/zero | tail > /dev/null"},
		// 48 MiB: room for libcontainer's init under -race (~20 MiB).
		Resources: Resources{MemoryLimit: 48 << 20},
	})
	if !st.OOMKilled || st.ExitCode == 0 {
		t.Fatalf("state %+v, want OOMKilled", st)
	}
	// The same without a limit is no OOM.
	st = run(t, r, ContainerConfig{ID: "nooom", Rootfs: Rootfs{Dir: busyboxRootfs(t)}, Args: []string{"sh", "-c", "head -c 1m /dev/zero | tail > /dev/null"}})
	if st.OOMKilled || st.ExitCode != 0 {
		t.Fatalf("state %+v", st)
	}
}

func TestCgroupLimits(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ctx := context.Background()
	if _, err := r.Create(ctx, ContainerConfig{
		ID: "limits", Rootfs: Rootfs{Dir: busyboxRootfs(t)}, Args: []string{"sleep", "100"},
		Resources: Resources{CPUShares: CPUShares(250), CPUQuota: CPUQuota(500), MemoryLimit: 64 << 20, PidsLimit: 50},
	}); err != nil {
		t.Fatal(err)
	}
	st, err := r.State("limits")
	if err != nil {
		t.Fatal(err)
	}
	if cgroups.IsCgroup2UnifiedMode() {
		p := st.CgroupPaths[""]
		checkFile(t, filepath.Join(p, "cpu.max"), "50000 100000")
		checkFile(t, filepath.Join(p, "memory.max"), "67108864")
		checkFile(t, filepath.Join(p, "pids.max"), "50")
	} else {
		checkFile(t, filepath.Join(st.CgroupPaths["cpu"], "cpu.cfs_quota_us"), "50000")
		checkFile(t, filepath.Join(st.CgroupPaths["cpu"], "cpu.cfs_period_us"), "100000")
		checkFile(t, filepath.Join(st.CgroupPaths["cpu"], "cpu.shares"), "256")
		checkFile(t, filepath.Join(st.CgroupPaths["memory"], "memory.limit_in_bytes"), "67108864")
		checkFile(t, filepath.Join(st.CgroupPaths["pids"], "pids.max"), "50")
	}
	if !strings.Contains(st.CgroupPaths["pids"]+st.CgroupPaths[""], "/skiff-test-") {
		t.Errorf("cgroup not under the parent: %v", st.CgroupPaths)
	}
}

func checkFile(t *testing.T, p, want string) {
	t.Helper()
	if got := strings.TrimSpace(readFile(t, p)); got != want {
		t.Errorf("%s = %q, want %q", p, got, want)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "out")
	if _, err := r.Create(ctx, ContainerConfig{ID: "stubborn", Rootfs: Rootfs{Dir: busyboxRootfs(t)},
		Args: []string{"sh", "-c", "trap '' TERM; while true; do sleep 1; done"}, StdoutPath: out, StderrPath: out}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "stubborn"); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.State("stubborn"); st.Status != StatusRunning || st.Pid == 0 {
		t.Fatalf("state %+v", st)
	}
	start := time.Now()
	st, err := r.Stop(ctx, "stubborn", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("stopped after %v, before the grace period", d)
	}
	if st.ExitCode != 137 || st.Status != StatusExited {
		t.Fatalf("state %+v, want exit 137; output %q", st, readFile(t, out))
	}
	// A process that handles SIGTERM stops within the grace period.
	if _, err := r.Create(ctx, ContainerConfig{ID: "polite", Rootfs: Rootfs{Dir: busyboxRootfs(t)},
		Args: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "polite"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let sh install its trap
	if st, err = r.Stop(ctx, "polite", 10*time.Second); err != nil || st.ExitCode != 0 {
		t.Fatalf("polite stop: %+v %v", st, err)
	}
}

func TestExec(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ctx := context.Background()
	if _, err := r.Create(ctx, ContainerConfig{ID: "box", Rootfs: Rootfs{Dir: busyboxRootfs(t)}, Args: []string{"sleep", "1000"},
		Env: []string{"A=1"}, WorkingDir: "/tmp"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "box"); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code, err := r.Exec(ctx, "box", ExecConfig{Args: []string{"sh", "-c", "echo $A$B; pwd; echo oops >&2; exit 7"},
		Env: []string{"B=2"}, Stdout: &out, Stderr: &errb})
	if err != nil || code != 7 {
		t.Fatalf("exec: %d %v", code, err)
	}
	if out.String() != "12\n/tmp\n" || errb.String() != "oops\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
	out.Reset()
	code, err = r.Exec(ctx, "box", ExecConfig{Args: []string{"cat"}, Stdin: strings.NewReader("from stdin"), Stdout: &out})
	if err != nil || code != 0 || out.String() != "from stdin" {
		t.Fatalf("stdin exec: %d %v %q", code, err, out.String())
	}
	out.Reset()
	code, err = r.Exec(ctx, "box", ExecConfig{Args: []string{"sh", "-c", "tty; stty size"}, Tty: true, Stdout: &out})
	if err != nil || code != 0 || !strings.Contains(out.String(), "/dev/pts/") {
		t.Fatalf("tty exec: %d %v %q", code, err, out.String())
	}
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := r.Exec(tctx, "box", ExecConfig{Args: []string{"sleep", "100"}}); err == nil {
		t.Fatal("exec outlived its context")
	}
	if _, err := r.Exec(ctx, "nope", ExecConfig{Args: []string{"true"}}); err == nil {
		t.Fatal("exec in a missing container")
	}
}

func TestSandboxSharedLoopback(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: "pod1", Hostname: "pod1-host"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sb.NetNSPath); err != nil {
		t.Fatal(err)
	}
	rootfs := busyboxRootfs(t)
	if _, err := r.Create(ctx, ContainerConfig{ID: "server", SandboxID: "pod1", Rootfs: Rootfs{Dir: rootfs},
		// The handler's output goes to the shared rootfs: nc's own stdout
		// races with its stdin (/dev/null) ending.
		Args: []string{"nc", "-l", "-p", "8080", "-e", "sh", "-c", "read x; echo $x > /tmp/got"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, "server"); err != nil {
		t.Fatal(err)
	}
	cout := filepath.Join(t.TempDir(), "cout")
	st := run(t, r, ContainerConfig{ID: "client", SandboxID: "pod1", Rootfs: Rootfs{Dir: rootfs},
		Args:       []string{"sh", "-c", "hostname; for i in $(seq 100); do echo ping | nc 127.0.0.1 8080 && exit 0; sleep 0.05; done; exit 1"},
		StdoutPath: cout, StderrPath: cout})
	if st.ExitCode != 0 {
		t.Fatalf("client: %+v %s", st, readFile(t, cout))
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.Wait(wctx, "server"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(rootfs, "tmp/got")); got != "ping\n" {
		t.Fatalf("server got %q", got)
	}
	if got := readFile(t, cout); !strings.HasPrefix(got, "pod1-host\n") {
		t.Fatalf("client output %q", got)
	}
	// A container outside the sandbox cannot reach it.
	st = run(t, r, ContainerConfig{ID: "outsider", Rootfs: Rootfs{Dir: rootfs}, Args: []string{"sh", "-c", "echo x | nc 127.0.0.1 8080"}})
	if st.ExitCode == 0 {
		t.Fatal("outsider reached the sandbox's loopback")
	}
	for _, id := range []string{"server", "client", "outsider"} {
		if err := r.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.RemoveSandbox(ctx, "pod1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sb.NetNSPath); !os.IsNotExist(err) {
		t.Fatalf("netns file still there: %v", err)
	}
	if ms := mountsUnder(t, sb.NetNSPath); len(ms) != 0 {
		t.Fatalf("netns still mounted: %v", ms)
	}
}

func TestBindMounts(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "in"), []byte("ro-data"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	st := run(t, r, ContainerConfig{ID: "mounts", Rootfs: Rootfs{Dir: busyboxRootfs(t)},
		Mounts: []Mount{{Source: ro, Destination: "/data/ro", ReadOnly: true}, {Source: rw, Destination: "/data/rw"}},
		Args:   []string{"sh", "-c", "cat /data/ro/in && echo written > /data/rw/f && ! touch /data/ro/x 2>/dev/null"}, StdoutPath: out})
	if st.ExitCode != 0 {
		t.Fatalf("exit %d", st.ExitCode)
	}
	if got := readFile(t, out); got != "ro-data" {
		t.Errorf("stdout %q", got)
	}
	if got := readFile(t, filepath.Join(rw, "f")); got != "written\n" {
		t.Errorf("rw file %q", got)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Error("wrote through a read-only mount")
	}
}

func TestOverlayRootfs(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	base := busyboxRootfs(t)
	top := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(base, "etc/greeting"), []byte("bottom\n"), 0o644))
	must(os.WriteFile(filepath.Join(base, "etc/only-bottom"), []byte("base\n"), 0o644))
	must(os.MkdirAll(filepath.Join(top, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(top, "etc/greeting"), []byte("top\n"), 0o644))
	out := filepath.Join(t.TempDir(), "out")
	ctx := context.Background()
	st := run(t, r, ContainerConfig{ID: "ovl", Rootfs: Rootfs{Lowerdirs: []string{top, base}},
		Args: []string{"sh", "-c", "cat /etc/greeting /etc/only-bottom && echo new > /new && rm /etc/only-bottom"}, StdoutPath: out})
	if st.ExitCode != 0 || readFile(t, out) != "top\nbase\n" {
		t.Fatalf("exit %d, stdout %q", st.ExitCode, readFile(t, out))
	}
	dir := r.containerDir("ovl")
	if got := readFile(t, filepath.Join(dir, "upper/new")); got != "new\n" {
		t.Errorf("upper/new %q", got)
	}
	if _, err := os.Stat(filepath.Join(base, "etc/only-bottom")); err != nil {
		t.Error("the container changed a lowerdir")
	}
	if len(mountsUnder(t, dir)) != 1 {
		b, _ := os.ReadFile("/proc/thread-self/mountinfo")
		t.Errorf("mounts under %s: %v\n%s", dir, mountsUnder(t, dir), b)
	}
	must(r.Delete(ctx, "ovl"))
	if ms := mountsUnder(t, dir); len(ms) != 0 {
		t.Errorf("mounts left: %v", ms)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("container dir left: %v", err)
	}
	if _, err := r.State("ovl"); err == nil {
		t.Error("state of a deleted container")
	}
}

func TestVersion(t *testing.T) {
	if v := Version(); !strings.HasPrefix(v, "runc://1.") {
		t.Fatalf("Version() = %q", v)
	}
}

func BenchmarkCreateStartWait(b *testing.B) {
	requireRoot(b)
	r := newTestRuntime(b)
	rootfs := busyboxRootfs(b)
	ctx := context.Background()
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		id := "bench" + string(rune('a'+i%26)) + time.Now().Format("150405.000000000")
		start := time.Now()
		run(b, r, ContainerConfig{ID: id, Rootfs: Rootfs{Dir: rootfs}, Args: []string{"true"}})
		total += time.Since(start)
		b.StopTimer()
		if err := r.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/start")
}

func TestOverlayManyLayers(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	layers := filepath.Join(t.TempDir(), "layers")
	var lower []string
	for i := 0; i < 50; i++ { // 50 × ~115 characters of absolute paths: more than a page
		d := filepath.Join(layers, "sha256-"+strings.Repeat("0", 60)+strconv.Itoa(100+i))
		if err := os.MkdirAll(filepath.Join(d, "layers"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "layers", strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		lower = append([]string{d}, lower...)
	}
	base := filepath.Join(layers, "base")
	if err := os.Rename(busyboxRootfs(t), base); err != nil {
		t.Fatal(err)
	}
	lower = append(lower, base)
	out := filepath.Join(t.TempDir(), "out")
	st := run(t, r, ContainerConfig{ID: "layers", Rootfs: Rootfs{Lowerdirs: lower},
		Args: []string{"sh", "-c", "ls /layers | wc -l"}, StdoutPath: out})
	if st.ExitCode != 0 || strings.TrimSpace(readFile(t, out)) != "50" {
		t.Fatalf("exit %d, stdout %q", st.ExitCode, readFile(t, out))
	}
}

// BenchmarkCreateStartWaitParallel starts containers from as many
// goroutines as -cpu says (e.g. -cpu 10,50 for 10 and 50 at once).
func BenchmarkCreateStartWaitParallel(b *testing.B) {
	requireRoot(b)
	r := newTestRuntime(b)
	rootfs := busyboxRootfs(b)
	var seq atomic.Int64
	b.SetParallelism(1)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			id := "pbench" + strconv.FormatInt(seq.Add(1), 10)
			run(b, r, ContainerConfig{ID: id, Rootfs: Rootfs{Dir: rootfs}, Args: []string{"true"}})
			if err := r.Delete(ctx, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
