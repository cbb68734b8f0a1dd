package runtime

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestDeleteRunningConcurrently: deleting running containers (kill, wait,
// remove) races with the recording of their exit; it must never leave a
// container directory behind or fail.
func TestDeleteRunningConcurrently(t *testing.T) {
	requireRoot(t)
	r := newTestRuntime(t)
	rootfs := busyboxRootfs(t)
	ctx := context.Background()
	const n = 20
	for i := range n {
		id := fmt.Sprintf("del%d", i)
		if _, err := r.Create(ctx, ContainerConfig{ID: id, Rootfs: Rootfs{Dir: rootfs}, Args: []string{"sleep", "3600"}}); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("del%d", i)
			go r.State(id) // a concurrent reader, as a pod worker's status sync
			if i%2 == 0 {  // the pod worker's way: stop, then delete
				if _, err := r.Stop(ctx, id, 0); err != nil {
					t.Errorf("stop %s: %v", id, err)
				}
			}
			if err := r.Delete(ctx, id); err != nil {
				t.Errorf("delete %s: %v", id, err)
			}
		}()
	}
	wg.Wait()
	if cs, _ := r.List(); len(cs) != 0 {
		t.Errorf("%d containers left", len(cs))
	}
}
