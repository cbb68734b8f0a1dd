package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/skiff-dev/skiff/internal/store"
)

// testKeyEdges: prefixes that end mid-segment, keys with bytes 0x00 and
// 0xff, and StartKey before, inside and past the prefix, at the current and
// at older revisions.
func testKeyEdges(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	r := newRecorder(t, b)
	keys := []string{
		"/registry/pods/default/a", "/registry/pods/default/b", "/registry/pods/def",
		"/registry/pods/defx/a", "/registry/pods/kube-system/a",
		"/k/\x00", "/k/a\x00b", "/k/a", "/k/\xff", "/k/\xff\xff", "/k/a\xff", "/k\xff", "/k",
	}
	for i, k := range keys {
		r.put(k, fmt.Sprint(i))
	}
	mid := r.h.last()
	r.del("/registry/pods/default/a")
	r.put("/registry/pods/default/b", "b2")
	r.del("/k/\x00")
	r.put("/k/\xff", "ff2")
	r.put("/registry/pods/default/c", "c")
	h := r.h
	prefixes := []string{"/registry/pods/def", "/registry/pods/default/", "/registry/pods/", "/k/", "/k/a", "/k/\xff", "/k\xff", "/k", ""}
	starts := []string{"", "/", "/a", "/k/", "/k/a\x00", "/k/\xff\x00", "/registry/pods/default/b", "/registry/pods/e", "/z", "\xff\xff\xff"}
	for _, rev := range []int64{mid, mid + 2, h.last()} {
		for _, prefix := range prefixes {
			for _, start := range starts {
				var want []store.KeyValue
				for _, kv := range h.list(prefix, rev) {
					if kv.Key >= start {
						want = append(want, kv)
					}
				}
				for limit := int64(0); limit <= int64(len(want))+1; limit++ {
					res, err := b.List(ctx, prefix, store.ListOptions{Revision: rev, StartKey: start, Limit: limit})
					if err != nil {
						t.Fatalf("List(%q, rev %d, start %q, limit %d): %v", prefix, rev, start, limit, err)
					}
					w := want
					if limit > 0 && int64(len(w)) > limit {
						w = w[:limit]
					}
					if err := sameKVs(res.KVs, w); err != nil {
						t.Fatalf("List(%q, rev %d, start %q, limit %d): %v", prefix, rev, start, limit, err)
					}
					rem := int64(len(want) - len(w))
					if res.More != (rem > 0) || res.RemainingCount != rem {
						t.Fatalf("List(%q, rev %d, start %q, limit %d): More=%v RemainingCount=%d, want %d remaining",
							prefix, rev, start, limit, res.More, res.RemainingCount, rem)
					}
				}
			}
		}
	}
	for _, prefix := range prefixes {
		n, err := b.Count(ctx, prefix)
		if err != nil || n != int64(len(h.list(prefix, h.last()))) {
			t.Fatalf("Count(%q) = %d, %v; want %d", prefix, n, err, len(h.list(prefix, h.last())))
		}
		w, err := b.Watch(ctx, prefix, mid, store.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range h.eventsAfter(prefix, mid) {
			sameEvent(t, next(t, w, false), want)
		}
	}
	for _, k := range []string{"/k/\x00", "/k/\xff", "/k\xff"} {
		kv, err := b.Get(ctx, k)
		want, ok := h.state(h.last())[k]
		if ok != (err == nil) || (ok && kvString(kv) != kvString(want)) {
			t.Fatalf("Get(%q) = %s, %v; want %s (exists %v)", k, kvString(kv), err, kvString(want), ok)
		}
	}
}

// testSameKeyRaces: many writers hit one key at once, so that several of
// their ops share a commit batch. Preconditioned writers with the same
// expected revision: exactly one wins. Mixed create/update/delete: every
// success is visible in the watch, in order, and the final state agrees.
func testSameKeyRaces(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	const n = 16
	rev := mustCreate(t, b, "/race", "0")
	for round := range 20 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wins []int64
		var delWin bool
		for i := range n {
			wg.Go(func() {
				var r int64
				var err error
				if i == 0 && round%2 == 1 {
					_, r, err = b.Delete(ctx, "/race", rev)
				} else {
					r, err = b.Update(ctx, "/race", fmt.Appendf(nil, "%d-%d", round, i), rev)
				}
				// A delete that won first makes the rest ErrNotFound.
				if err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("round %d writer %d: %v", round, i, err)
				}
				if err == nil {
					mu.Lock()
					wins = append(wins, r)
					delWin = delWin || (i == 0 && round%2 == 1)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(wins) != 1 {
			t.Fatalf("round %d: %d writers with expected revision %d won, want exactly 1", round, len(wins), rev)
		}
		if got := mustRev(t, b); got != wins[0] {
			t.Fatalf("round %d: current revision %d, winner got %d", round, got, wins[0])
		}
		rev = wins[0]
		if delWin {
			rev = mustCreate(t, b, "/race", "again")
		}
	}

	// Unconditioned mixed ops on one key: the watch shows a consistent
	// sequence (a create only when absent, update/delete only when present).
	start := mustRev(t, b)
	w, err := b.Watch(ctx, "/mixed", start, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	okRevs := map[int64]bool{}
	for i := range 3 * n {
		wg.Go(func() {
			for j := range 10 {
				var r int64
				var err error
				switch (i + j) % 3 {
				case 0:
					r, err = b.Create(ctx, "/mixed", fmt.Appendf(nil, "c%d-%d", i, j))
				case 1:
					r, err = b.Update(ctx, "/mixed", fmt.Appendf(nil, "u%d-%d", i, j), 0)
				default:
					_, r, err = b.Delete(ctx, "/mixed", 0)
				}
				if err != nil && !errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("op: %v", err)
				}
				if err == nil {
					mu.Lock()
					if okRevs[r] {
						t.Errorf("revision %d returned twice", r)
					}
					okRevs[r] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	final := mustRev(t, b)
	if int64(len(okRevs)) != final-start {
		t.Fatalf("%d successful writes, revision moved %d", len(okRevs), final-start)
	}
	var cur *store.KeyValue
	for r := start + 1; r <= final; r++ {
		ev := next(t, w, false)
		if ev.KV.ModRevision != r || !okRevs[r] {
			t.Fatalf("watch: %s, want revision %d", eventString(ev), r)
		}
		switch {
		case ev.Type == store.EventPut && ev.PrevKV == nil:
			if cur != nil {
				t.Fatalf("create at %d while the key exists (%s)", r, kvString(*cur))
			}
		case cur == nil:
			t.Fatalf("%s while the key is absent", eventString(ev))
		case kvString(*ev.PrevKV) != kvString(*cur):
			t.Fatalf("%s: PrevKV differs from %s", eventString(ev), kvString(*cur))
		}
		if ev.Type == store.EventDelete {
			cur = nil
		} else {
			kv := ev.KV
			cur = &kv
		}
	}
	kv, err := b.Get(context.Background(), "/mixed")
	if (cur == nil) != errors.Is(err, store.ErrNotFound) || (cur != nil && kvString(kv) != kvString(*cur)) {
		t.Fatalf("Get = %s, %v; watch ended at %v", kvString(kv), err, cur)
	}
}
