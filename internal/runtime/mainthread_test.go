package runtime

import (
	"fmt"
	"os"
	"testing"
)

// mainMntNS is the main thread's mount namespace before any container.
var mainMntNS, _ = os.Readlink("/proc/self/ns/mnt")

// TestMainThreadStaysInHostMountNamespace: creating containers (libcontainer
// joins their mount namespaces from locked, exiting goroutines) never
// leaves the main thread in a container's mount namespace.
func TestMainThreadStaysInHostMountNamespace(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	rootfs := busyboxRootfs(t)
	for i := range 20 {
		run(t, r, ContainerConfig{ID: fmt.Sprintf("ns%d", i), Rootfs: Rootfs{Dir: rootfs}, Args: []string{"true"}})
		if got, _ := os.Readlink("/proc/self/ns/mnt"); got != mainMntNS {
			t.Fatalf("after %d containers the main thread is in mount namespace %s, not %s", i+1, got, mainMntNS)
		}
	}
}
