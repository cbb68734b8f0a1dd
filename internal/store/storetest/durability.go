package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/skiff-dev/skiff/internal/store"
)

func testCompaction(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	if c, err := b.CompactedRevision(ctx); err != nil || c != 0 {
		t.Fatalf("CompactedRevision of a new store = %d, %v; want 0", c, err)
	}
	h := runHistory(t, b)
	err := b.Compact(ctx, h.last()+1)
	wantErr(t, "Compact a future revision", err, store.ErrFutureRevision)
	mid := h.events[len(h.events)/2].KV.ModRevision
	if err := b.Compact(ctx, mid); err != nil {
		t.Fatal(err)
	}
	if c, err := b.CompactedRevision(ctx); err != nil || c != mid {
		t.Fatalf("CompactedRevision = %d, %v; want %d", c, err, mid)
	}
	// Compaction drops history, not state.
	res, err := b.List(ctx, "/", store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sameKVs(res.KVs, h.list("/", h.last())); err != nil {
		t.Fatal(err)
	}
	// Compacting to the current revision keeps current lists and watches
	// from now working.
	if err := b.Compact(ctx, h.last()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.List(ctx, "/", store.ListOptions{Revision: h.last()}); err != nil {
		t.Fatalf("List at the compacted (current) revision: %v", err)
	}
	w, err := b.Watch(ctx, "/", h.last(), store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rev := mustCreate(t, b, "/after", "x")
	if ev := next(t, w, false); ev.KV.ModRevision != rev {
		t.Fatalf("got %s, want the create at %d", eventString(ev), rev)
	}
}

func testDurability(t *testing.T, open OpenFunc, reopen ReopenFunc) {
	if reopen == nil {
		t.Skip("backend has no reopen")
	}
	b := open(t)
	ctx := ctxT(t)
	h := runHistory(t, b)
	mid := h.events[len(h.events)/2].KV.ModRevision
	if err := b.Compact(ctx, mid); err != nil {
		t.Fatal(err)
	}
	b = reopen(t, b)

	if got := mustRev(t, b); got != h.last() {
		t.Fatalf("CurrentRevision after reopen = %d, want %d", got, h.last())
	}
	if c, err := b.CompactedRevision(ctx); err != nil || c != mid {
		t.Fatalf("CompactedRevision after reopen = %d, %v; want %d", c, err, mid)
	}
	for rev := mid; rev <= h.last(); rev++ {
		res, err := b.List(ctx, "/", store.ListOptions{Revision: rev})
		if err != nil {
			t.Fatalf("List at %d after reopen: %v", rev, err)
		}
		if err := sameKVs(res.KVs, h.list("/", rev)); err != nil {
			t.Fatalf("List at %d after reopen: %v", rev, err)
		}
	}
	for key, want := range h.state(h.last()) {
		got, err := b.Get(ctx, key)
		if err != nil || kvString(got) != kvString(want) {
			t.Fatalf("Get(%q) after reopen = %s, %v; want %s", key, kvString(got), err, kvString(want))
		}
	}
	_, err := b.Watch(ctx, "/", mid-1, store.WatchOptions{})
	wantErr(t, "Watch below compacted after reopen", err, store.ErrCompacted)
	w, err := b.Watch(ctx, "/", mid, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range h.eventsAfter("/", mid) {
		sameEvent(t, next(t, w, false), want)
	}
	rev := mustCreate(t, b, "/after-restart", "x")
	if rev <= h.last() {
		t.Fatalf("first write after reopen got revision %d, not after %d", rev, h.last())
	}
	if ev := next(t, w, false); ev.KV.ModRevision != rev {
		t.Fatalf("got %s, want the create at %d", eventString(ev), rev)
	}
}

// testConcurrentWriters: every successful write gets its own revision, and
// the revisions of all writers together are one gapless sequence.
func testConcurrentWriters(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	const writers, perWriter = 8, 40
	start := mustRev(t, b)
	w, err := b.Watch(ctx, "/c/", start, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range perWriter {
				key := fmt.Sprintf("/c/%d/%d", i, j)
				rev, err := b.Create(ctx, key, []byte(key))
				if err != nil {
					t.Errorf("Create(%s): %v", key, err)
					return
				}
				mu.Lock()
				if other, dup := seen[rev]; dup {
					t.Errorf("revision %d given to %s and %s", rev, other, key)
				}
				seen[rev] = key
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	total := int64(writers * perWriter)
	if got := mustRev(t, b); got != start+total {
		t.Fatalf("CurrentRevision = %d after %d writes from %d", got, total, start)
	}
	if n, err := b.Count(ctx, "/c/"); err != nil || n != total {
		t.Fatalf("Count = %d, %v; want %d", n, err, total)
	}
	for rev := start + 1; rev <= start+total; rev++ {
		ev := next(t, w, false)
		if ev.KV.ModRevision != rev || ev.KV.Key != seen[rev] {
			t.Fatalf("watch got %s, want %s at %d", eventString(ev), seen[rev], rev)
		}
	}
}

// testConcurrentConflicts: optimistic read-modify-write loops on one key lose
// no increments.
func testConcurrentConflicts(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	const workers, increments = 8, 15
	mustCreate(t, b, "/counter", "0")
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for done := 0; done < increments; {
				kv, err := b.Get(ctx, "/counter")
				if err != nil {
					t.Error(err)
					return
				}
				n, _ := strconv.Atoi(string(kv.Value))
				_, err = b.Update(ctx, "/counter", []byte(strconv.Itoa(n+1)), kv.ModRevision)
				switch {
				case err == nil:
					done++
				case errors.Is(err, store.ErrConflict):
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	kv, err := b.Get(context.Background(), "/counter")
	if err != nil || string(kv.Value) != strconv.Itoa(workers*increments) {
		t.Fatalf("counter = %q, %v; want %d", kv.Value, err, workers*increments)
	}
}

// testRandomHistory: random writes on a few keys, compacting now and then;
// after each compaction every retained revision must still list and watch
// exactly as the model says (values of keys last written long ago included).
func testRandomHistory(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	r := newRecorder(t, b)
	for round := range 6 {
		for i := range 150 {
			key := fmt.Sprintf("/r/%d", rnd.IntN(12))
			if _, ok := r.cur[key]; ok && rnd.IntN(4) == 0 {
				r.del(key)
			} else {
				r.put(key, fmt.Sprintf("%d-%d", round, i))
			}
		}
		h := r.h
		compactTo := h.events[len(h.events)-1-rnd.IntN(100)].KV.ModRevision
		if err := b.Compact(ctx, compactTo); err != nil {
			t.Fatal(err)
		}
		for rev := compactTo; rev <= h.last(); rev += 7 {
			res, err := b.List(ctx, "/r/", store.ListOptions{Revision: rev})
			if err != nil {
				t.Fatalf("round %d: List at %d: %v", round, rev, err)
			}
			if err := sameKVs(res.KVs, h.list("/r/", rev)); err != nil {
				t.Fatalf("round %d: List at %d: %v", round, rev, err)
			}
		}
		w, err := b.Watch(ctx, "/r/", compactTo, store.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range h.eventsAfter("/r/", compactTo) {
			sameEvent(t, next(t, w, false), want)
		}
	}
}
