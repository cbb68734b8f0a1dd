package store_test

import (
	"context"
	"fmt"
	"path/filepath"
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
