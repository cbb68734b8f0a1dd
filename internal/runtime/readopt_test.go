package runtime

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHelperStartContainers is the "old agent" of TestReadoptAfterRestart:
// run as a subprocess, it starts containers and exits.
func TestHelperStartContainers(t *testing.T) {
	root := os.Getenv("SKIFF_RUNTIME_HELPER_ROOT")
	if root == "" {
		t.Skip("helper for TestReadoptAfterRestart")
	}
	r, err := Open(root, Options{CgroupParent: os.Getenv("SKIFF_RUNTIME_HELPER_PARENT"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rootfs := os.Getenv("SKIFF_RUNTIME_HELPER_ROOTFS")
	ctx := context.Background()
	for _, c := range []ContainerConfig{
		{ID: "long", Rootfs: Rootfs{Dir: rootfs}, Args: []string{"sleep", "1000"}, Labels: map[string]string{"pod": "p1"}},
		{ID: "short", Rootfs: Rootfs{Dir: rootfs}, Args: []string{"sh", "-c", "sleep 1.5; exit 5"}},
		{ID: "created", Rootfs: Rootfs{Dir: rootfs}, Args: []string{"sh", "-c", "exit 6"}},
	} {
		if _, err := r.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		if c.ID != "created" {
			if err := r.Start(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// pidfdExitSupported: PIDFD_INFO_EXIT needs Linux 6.15.
func pidfdExitSupported() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, _ := strconv.Atoi(parts[0])
	min, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return maj > 6 || maj == 6 && min >= 15
}

func TestReadoptAfterRestart(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	root, parent := r.root, r.opts.CgroupParent
	r.Close()
	rootfs := busyboxRootfs(t)

	// As the agent will: orphaned container inits come to us and are reaped.
	if err := SetChildSubreaper(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ReapOrphans(ctx, nil)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStartContainers$", "-test.v")
	cmd.Env = append(os.Environ(), "SKIFF_RUNTIME_HELPER_ROOT="+root,
		"SKIFF_RUNTIME_HELPER_PARENT="+parent, "SKIFF_RUNTIME_HELPER_ROOTFS="+rootfs)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: TestHelperStartContainers") {
		t.Fatalf("helper: %v\n%s", err, out)
	}

	r2, err := Open(root, Options{CgroupParent: parent, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	list, err := r2.List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*State{}
	for _, st := range list {
		got[st.ID] = st
	}
	if len(got) != 3 || got["long"] == nil || got["long"].Status != StatusRunning || got["long"].Pid == 0 ||
		got["long"].Labels["pod"] != "p1" || got["short"] == nil || got["short"].Status != StatusRunning ||
		got["created"] == nil || got["created"].Status != StatusCreated {
		for _, st := range list {
			t.Logf("%+v", *st)
		}
		t.Fatal("re-adopted containers are not as started")
	}
	// A created container can be started by the new runtime.
	if err := r2.Start(ctx, "created"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	for id, code := range map[string]int{"short": 5, "created": 6} {
		st, err := r2.Wait(wctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if pidfdExitSupported() {
			if st.ExitCodeUnknown || st.ExitCode != code {
				t.Errorf("%s: exit %d (unknown %v), want %d", id, st.ExitCode, st.ExitCodeUnknown, code)
			}
		} else if st.Status != StatusExited {
			t.Errorf("%s: %+v", id, st)
		}
	}
	// Exec works in a re-adopted container.
	var out strings.Builder
	if code, err := r2.Exec(wctx, "long", ExecConfig{Args: []string{"sh", "-c", "echo in-long; exit 4"}, Stdout: &out}); err != nil || code != 4 || out.String() != "in-long\n" {
		t.Fatalf("exec: %d %v %q", code, err, out.String())
	}
	st, err := r2.Stop(wctx, "long", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if pidfdExitSupported() && (st.ExitCode != 137 || st.ExitCodeUnknown) {
		t.Errorf("long: %+v, want 137", st)
	}
	// The record survives another restart.
	r3, err := Open(root, Options{CgroupParent: parent})
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if st3, err := r3.State("short"); err != nil || st3.ExitCode != got5(st3) {
		t.Errorf("after another restart: %+v %v", st3, err)
	}
}

func got5(st *State) int {
	if st.ExitCodeUnknown {
		return st.ExitCode
	}
	return 5
}
