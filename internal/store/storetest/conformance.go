// Package storetest is the conformance suite every store.Backend must pass.
//
// A backend's test calls RunConformance with a function that opens a fresh,
// empty backend (and registers its cleanup), and optionally one that closes
// a backend and opens the same storage again, for durability tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.RunConformance(t, openFresh, reopenSame)
//	}
//
// The backend must not compact on its own during the suite (disable
// background compaction in the opener).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/store"
)

// OpenFunc opens a fresh, empty backend and arranges for it to be closed
// when t ends (a second Close must be harmless).
type OpenFunc func(t *testing.T) store.Backend

// ReopenFunc closes b and opens the same storage again.
type ReopenFunc func(t *testing.T, b store.Backend) store.Backend

// RunConformance runs every conformance test as a subtest. reopen may be nil:
// the durability tests are then skipped.
func RunConformance(t *testing.T, open OpenFunc, reopen ReopenFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open OpenFunc, reopen ReopenFunc)
	}{
		{"Revisions", testRevisions},
		{"CreateExists", testCreateExists},
		{"UpdatePreconditions", testUpdatePreconditions},
		{"DeletePreconditions", testDeletePreconditions},
		{"InvalidKey", testInvalidKey},
		{"GetList", testGetList},
		{"KeyEdges", testKeyEdges},
		{"ListOldRevisionPaging", testListOldRevisionPaging},
		{"ListRevisionErrors", testListRevisionErrors},
		{"WatchFromEveryRevision", testWatchFromEveryRevision},
		{"WatchLiveAndReplay", testWatchLiveAndReplay},
		{"WatchFromNow", testWatchFromNow},
		{"WatchRevisionErrors", testWatchRevisionErrors},
		{"WatchProgress", testWatchProgress},
		{"WatchCancel", testWatchCancel},
		{"Compaction", testCompaction},
		{"RandomHistory", testRandomHistory},
		{"Durability", testDurability},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentConflicts", testConcurrentConflicts},
		{"SameKeyRaces", testSameKeyRaces},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open, reopen) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustCreate(t *testing.T, b store.Backend, key, value string) int64 {
	t.Helper()
	rev, err := b.Create(context.Background(), key, []byte(value))
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	return rev
}

func mustUpdate(t *testing.T, b store.Backend, key, value string) int64 {
	t.Helper()
	rev, err := b.Update(context.Background(), key, []byte(value), 0)
	if err != nil {
		t.Fatalf("Update(%q): %v", key, err)
	}
	return rev
}

func mustDelete(t *testing.T, b store.Backend, key string) int64 {
	t.Helper()
	_, rev, err := b.Delete(context.Background(), key, 0)
	if err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
	return rev
}

func mustRev(t *testing.T, b store.Backend) int64 {
	t.Helper()
	rev, err := b.CurrentRevision(context.Background())
	if err != nil {
		t.Fatalf("CurrentRevision: %v", err)
	}
	return rev
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func kvString(kv store.KeyValue) string {
	return fmt.Sprintf("%s=%q@%d/%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision)
}

func eventString(ev store.Event) string {
	s := [...]string{"PUT", "DELETE", "PROGRESS"}[ev.Type] + " " + kvString(ev.KV)
	if ev.PrevKV != nil {
		s += " prev " + kvString(*ev.PrevKV)
	}
	return s
}

func testRevisions(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	r0 := mustRev(t, b)
	r1 := mustCreate(t, b, "/a", "1")
	r2 := mustCreate(t, b, "/b", "1")
	r3 := mustUpdate(t, b, "/a", "2")
	r4 := mustDelete(t, b, "/b")
	for i, pair := range [][2]int64{{r0, r1}, {r1, r2}, {r2, r3}, {r3, r4}} {
		if pair[1] <= pair[0] {
			t.Fatalf("write %d: revision %d not after %d", i, pair[1], pair[0])
		}
	}
	if got := mustRev(t, b); got != r4 {
		t.Fatalf("CurrentRevision = %d, want %d", got, r4)
	}
	// Failed writes do not advance the revision.
	_, err := b.Create(ctx, "/a", []byte("x"))
	wantErr(t, "Create existing", err, store.ErrExists)
	_, err = b.Update(ctx, "/missing", []byte("x"), 0)
	wantErr(t, "Update missing", err, store.ErrNotFound)
	if got := mustRev(t, b); got != r4 {
		t.Fatalf("CurrentRevision after failed writes = %d, want %d", got, r4)
	}
	kv, err := b.Get(ctx, "/a")
	if err != nil {
		t.Fatal(err)
	}
	if kv.CreateRevision != r1 || kv.ModRevision != r3 || string(kv.Value) != "2" {
		t.Fatalf("Get(/a) = %s, want create %d mod %d value 2", kvString(kv), r1, r3)
	}
}

func testCreateExists(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	rev := mustCreate(t, b, "/k", "v1")
	_, err := b.Create(ctx, "/k", []byte("v2"))
	wantErr(t, "second Create", err, store.ErrExists)
	kv, err := b.Get(ctx, "/k")
	if err != nil || string(kv.Value) != "v1" || kv.ModRevision != rev {
		t.Fatalf("Get after failed create = %s, %v", kvString(kv), err)
	}
	// A deleted key can be created again, with a new CreateRevision.
	mustDelete(t, b, "/k")
	rev2 := mustCreate(t, b, "/k", "v3")
	kv, err = b.Get(ctx, "/k")
	if err != nil || kv.CreateRevision != rev2 || kv.ModRevision != rev2 {
		t.Fatalf("Get after re-create = %s, %v; want create=mod=%d", kvString(kv), err, rev2)
	}
}

func testUpdatePreconditions(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	mustCreate(t, b, "/other", "x") // so that r1-1 is a real, stale revision
	r1 := mustCreate(t, b, "/k", "v1")
	cases := []struct {
		name   string
		key    string
		expect int64
		want   error
	}{
		{"missing key", "/nope", 0, store.ErrNotFound},
		{"missing key with precondition", "/nope", r1, store.ErrNotFound},
		{"stale revision", "/k", r1 - 1, store.ErrConflict},
		{"future revision", "/k", r1 + 100, store.ErrConflict},
		{"matching revision", "/k", r1, nil},
		{"now stale", "/k", r1, store.ErrConflict},
		{"unconditional", "/k", 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := mustRev(t, b)
			rev, err := b.Update(ctx, c.key, []byte(c.name), c.expect)
			wantErr(t, "Update", err, c.want)
			if c.want != nil {
				if got, _ := b.Get(ctx, "/k"); c.key == "/k" && string(got.Value) == c.name {
					t.Fatal("failed update changed the value")
				}
				return
			}
			if rev <= before {
				t.Fatalf("rev %d not after %d", rev, before)
			}
			kv, err := b.Get(ctx, c.key)
			if err != nil || string(kv.Value) != c.name || kv.ModRevision != rev || kv.CreateRevision != r1 {
				t.Fatalf("Get = %s, %v; want value %q mod %d create %d", kvString(kv), err, c.name, rev, r1)
			}
		})
	}
}

func testDeletePreconditions(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	r1 := mustCreate(t, b, "/k", "v1")
	r2 := mustUpdate(t, b, "/k", "v2")
	_, _, err := b.Delete(ctx, "/nope", 0)
	wantErr(t, "Delete missing", err, store.ErrNotFound)
	_, _, err = b.Delete(ctx, "/k", r1)
	wantErr(t, "Delete stale", err, store.ErrConflict)
	kv, rev, err := b.Delete(ctx, "/k", r2)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if rev <= r2 || string(kv.Value) != "v2" || kv.ModRevision != r2 || kv.CreateRevision != r1 {
		t.Fatalf("Delete = %s at %d; want the last value v2@%d/%d and a revision after %d", kvString(kv), rev, r1, r2, r2)
	}
	if got := mustRev(t, b); got != rev {
		t.Fatalf("CurrentRevision = %d, want %d", got, rev)
	}
	_, err = b.Get(ctx, "/k")
	wantErr(t, "Get deleted", err, store.ErrNotFound)
	_, _, err = b.Delete(ctx, "/k", 0)
	wantErr(t, "Delete twice", err, store.ErrNotFound)
}

func testInvalidKey(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	if _, err := b.Create(ctxT(t), "", []byte("x")); err == nil {
		t.Fatal("Create with empty key succeeded")
	}
	// The store keeps working after a rejected key.
	mustCreate(t, b, "/ok", "x")
}

func testClosed(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	mustCreate(t, b, "/k", "v")
	w, err := b.Watch(ctx, "/", 0, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	drainUntilClosed(t, w)
	_, err = b.Create(ctx, "/x", nil)
	wantErr(t, "Create after Close", err, store.ErrClosed)
	_, err = b.Get(ctx, "/k")
	wantErr(t, "Get after Close", err, store.ErrClosed)
	_, err = b.List(ctx, "/", store.ListOptions{})
	wantErr(t, "List after Close", err, store.ErrClosed)
	_, err = b.Watch(ctx, "/", 0, store.WatchOptions{})
	wantErr(t, "Watch after Close", err, store.ErrClosed)
}

func drainUntilClosed(t *testing.T, w <-chan store.Event) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-w:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch channel not closed")
		}
	}
}
