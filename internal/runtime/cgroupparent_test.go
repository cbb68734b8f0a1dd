package runtime

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// A pod's containers go under its QoS cgroup, which RemoveCgroup removes
// once they are deleted.
func TestContainerCgroupParent(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	ctx := context.Background()
	const pod = "kubepods/burstable/pod1234"
	st := run(t, r, ContainerConfig{ID: "grouped", Rootfs: Rootfs{Dir: busyboxRootfs(t)}, Args: []string{"true"}, CgroupParent: pod})
	var dirs []string
	for _, p := range st.CgroupPaths {
		if !strings.Contains(p, "/"+pod+"/grouped") {
			t.Errorf("cgroup %s is not under %s", p, pod)
		}
		dirs = append(dirs, strings.TrimSuffix(p, "/grouped"))
	}
	if err := r.Delete(ctx, "grouped"); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveCgroup("kubepods"); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pod cgroup %s left: %v", d, err)
		}
	}
	for _, bad := range []string{"/abs", "../up", "a/../../b", "a//b"} {
		if _, err := r.Create(ctx, ContainerConfig{ID: "bad", Rootfs: Rootfs{Dir: "/"}, Args: []string{"true"}, CgroupParent: bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("CgroupParent %q: %v, want ErrInvalid", bad, err)
		}
	}
}
