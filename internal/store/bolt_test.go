package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/skiff-dev/skiff/internal/store"
	"github.com/skiff-dev/skiff/internal/store/storetest"
)

// testOptions: real fsync (the suite is small), no background compaction so
// the suite controls history.
var testOptions = store.BoltOptions{CompactInterval: -1}

func openBolt(t *testing.T, path string, opts store.BoltOptions) *store.Bolt {
	t.Helper()
	b, err := store.OpenBolt(path, opts)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBoltConformance(t *testing.T) {
	paths := map[store.Backend]string{}
	storetest.RunConformance(t,
		func(t *testing.T) store.Backend {
			path := filepath.Join(t.TempDir(), "state.db")
			b := openBolt(t, path, testOptions)
			paths[b] = path
			return b
		},
		func(t *testing.T, old store.Backend) store.Backend {
			if err := old.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			b := openBolt(t, paths[old], testOptions)
			paths[b] = paths[old]
			return b
		})
}

func TestBoltSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openBolt(t, path, testOptions)
	start := time.Now()
	if b, err := store.OpenBolt(path, testOptions); err == nil {
		b.Close()
		t.Fatal("second OpenBolt of a file in use succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("second OpenBolt hung")
	}
}

func TestBoltCloseTwice(t *testing.T) {
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != store.ErrClosed {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if err := b.Compact(context.Background(), 0); err != store.ErrClosed {
		t.Fatalf("Compact after Close = %v, want ErrClosed", err)
	}
}

// TestBoltBackgroundCompaction: churn past RetainRevisions triggers
// compaction without waiting for the timer.
func TestBoltBackgroundCompaction(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "state.db"),
		store.BoltOptions{CompactInterval: time.Hour, RetainRevisions: 100, NoSync: true})
	ctx := context.Background()
	mustCreate(t, b, "/k")
	for i := range 300 {
		if _, err := b.Update(ctx, "/k", fmt.Appendf(nil, "%d", i), 0); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, _ := b.CompactedRevision(ctx)
		cur, _ := b.CurrentRevision(ctx)
		if c > 0 && cur-c <= 125+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("compacted %d, current %d: background compaction did not run", c, cur)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBoltTimedCompaction: with a short interval and retention, old history
// goes even without churn.
func TestBoltTimedCompaction(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "state.db"),
		store.BoltOptions{CompactInterval: 20 * time.Millisecond, RetainDuration: 50 * time.Millisecond, NoSync: true})
	ctx := context.Background()
	rev := mustCreate(t, b, "/k")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _ := b.CompactedRevision(ctx); c >= rev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("timed compaction did not run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.Get(ctx, "/k"); err != nil {
		t.Fatalf("Get after compaction: %v", err)
	}
}

// TestBoltSlowWatcher: a watcher that does not read does not hold up
// writers; it is cut off (its channel closes after what was queued).
func TestBoltSlowWatcher(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "state.db"),
		store.BoltOptions{CompactInterval: -1, WatchQueue: 10, NoSync: true})
	ctx := context.Background()
	slow, err := b.Watch(ctx, "/", 0, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		mustCreate(t, b, fmt.Sprintf("/k/%d", i))
	}
	var last int64
	n := 0
	for ev := range slow {
		if ev.KV.ModRevision != last+1 {
			t.Fatalf("slow watcher: revision %d after %d", ev.KV.ModRevision, last)
		}
		last = ev.KV.ModRevision
		n++
	}
	if n >= 500 {
		t.Fatalf("slow watcher got all %d events; expected it to be cut off", n)
	}
}

func mustCreate(t *testing.T, b store.Backend, key string) int64 {
	t.Helper()
	rev, err := b.Create(context.Background(), key, []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestBoltNewerSchemaRefused: a file written by a newer binary is not
// opened (and so not damaged) by this one.
func TestBoltNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := store.OpenBolt(path, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, b, "/k")
	b.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte{0, 0, 0, 0, 0, 0, 0, 99})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := store.OpenBolt(path, testOptions); err == nil {
		b.Close()
		t.Fatal("OpenBolt accepted schema version 99")
	}
}

// failOnce returns a fault that fails the first call only.
func failOnce(err error) func() error {
	var n atomic.Int32
	return func() error {
		if n.Add(1) == 1 {
			return err
		}
		return nil
	}
}

// TestBoltCommitFailureRolledBack: a batch whose transaction fails fails
// every op in it and leaves no trace: the revision does not move, watchers
// see nothing, and the next write takes the next revision.
func TestBoltCommitFailureRolledBack(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "state.db"), testOptions)
	ctx := context.Background()
	before := mustCreate(t, b, "/a")
	w, err := b.Watch(ctx, "/", before, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	diskFull := errors.New("no space left on device")
	b.SetCommitFaults(failOnce(diskFull), nil)
	if _, err := b.Create(ctx, "/b", []byte("b")); !errors.Is(err, diskFull) {
		t.Fatalf("Create in a failed commit: %v, want %v", err, diskFull)
	}
	if _, err := b.Update(ctx, "/a", []byte("a2"), 0); err != nil {
		t.Fatal(err)
	}
	if rev, _ := b.CurrentRevision(ctx); rev != before+1 {
		t.Fatalf("revision %d after a failed and a good commit from %d", rev, before)
	}
	if _, err := b.Get(ctx, "/b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a failed create: %v", err)
	}
	if ev := <-w; ev.KV.Key != "/a" || ev.KV.ModRevision != before+1 {
		t.Fatalf("watch got %s@%d, want /a@%d", ev.KV.Key, ev.KV.ModRevision, before+1)
	}
}

// TestBoltCommitFailureVisible: when bbolt reports a failed commit that the
// file nevertheless shows (its meta page was written, only the fsync
// failed), the store must not hand the same revisions out again: that would
// overwrite log records that index entries still point at, and Get would
// return another key's value.
func TestBoltCommitFailureVisible(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	opts := testOptions
	opts.Logger = slog.New(slog.DiscardHandler) // the failure is logged: expected here
	b := openBolt(t, path, opts)
	ctx := context.Background()
	mustCreate(t, b, "/a")
	w, err := b.Watch(ctx, "/", 0, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fsyncFailed := errors.New("fdatasync: input/output error")
	b.SetCommitFaults(nil, failOnce(fsyncFailed))
	bRev, err := b.Create(ctx, "/b", []byte("b"))
	if !errors.Is(err, fsyncFailed) {
		t.Fatalf("Create in a failed commit: rev %d, %v; want %v", bRev, err, fsyncFailed)
	}
	// Writes stop until the store is reopened.
	if _, err := b.Create(ctx, "/c", []byte("c")); !errors.Is(err, fsyncFailed) {
		t.Fatalf("Create after a failed fsync: %v, want it refused with %v", err, fsyncFailed)
	}
	// Reads go on, and agree with each other: the file shows /b, so do
	// the revision and the watch.
	res, err := b.List(ctx, "/", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := b.CurrentRevision(ctx); cur != res.Revision {
		t.Fatalf("CurrentRevision %d, List read at %d", cur, res.Revision)
	}
	if len(res.KVs) == 2 {
		if ev := <-w; ev.KV.Key != "/b" || ev.KV.ModRevision != res.Revision {
			t.Fatalf("watch got %s@%d, want /b@%d", ev.KV.Key, ev.KV.ModRevision, res.Revision)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBolt(t, path, opts)
	if w, err = b.Watch(ctx, "/", 1, store.WatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cRev, err := b.Create(ctx, "/c", []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(b store.Backend, when string) {
		t.Helper()
		for key, want := range map[string]string{"/b": "b", "/c": "c"} {
			kv, err := b.Get(ctx, key)
			if errors.Is(err, store.ErrNotFound) && key == "/b" {
				continue // the failed create did not stick: fine too
			}
			if err != nil || string(kv.Value) != want {
				t.Fatalf("%s: Get(%s) = %q@%d, %v; want %q", when, key, kv.Value, kv.ModRevision, err, want)
			}
		}
		res, err := b.List(ctx, "/", store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int64]string{}
		for _, kv := range res.KVs {
			if other, dup := seen[kv.ModRevision]; dup {
				t.Fatalf("%s: %s and %s share revision %d", when, other, kv.Key, kv.ModRevision)
			}
			seen[kv.ModRevision] = kv.Key
		}
		if cur, _ := b.CurrentRevision(ctx); cur != res.Revision || cur < cRev {
			t.Fatalf("%s: CurrentRevision %d, list at %d, /c written at %d", when, cur, res.Revision, cRev)
		}
	}
	check(b, "after reopening")
	// The watch agrees with the file: every event it delivers is in order
	// and ends at /c.
	var last int64
	for ev := range w {
		if ev.KV.ModRevision <= last {
			t.Fatalf("watch: revision %d after %d", ev.KV.ModRevision, last)
		}
		last = ev.KV.ModRevision
		if ev.KV.Key == "/c" {
			break
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	check(openBolt(t, path, testOptions), "after reopening twice")
}
