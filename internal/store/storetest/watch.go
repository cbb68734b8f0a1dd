package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/store"
)

// next receives one event (skipping progress events unless wanted) or fails.
func next(t *testing.T, w <-chan store.Event, progress bool) store.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-w:
			if !ok {
				t.Fatal("watch channel closed")
			}
			if ev.Type == store.EventProgress && !progress {
				continue
			}
			return ev
		case <-timeout:
			t.Fatal("timed out waiting for a watch event")
		}
	}
}

func sameEvent(t *testing.T, got, want store.Event) {
	t.Helper()
	if eventString(got) != eventString(want) {
		t.Fatalf("event:\n got  %s\n want %s", eventString(got), eventString(want))
	}
}

// testWatchFromEveryRevision opens one watch per retained revision and per
// prefix, all at once, and checks each gets exactly the model's events, then
// the next live one.
func testWatchFromEveryRevision(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	h := runHistory(t, b)
	type watch struct {
		prefix string
		from   int64
		ch     <-chan store.Event
	}
	var watches []watch
	for from := max(h.start, 1); from <= h.last(); from++ {
		for _, prefix := range []string{"/p/", "/", "/q/"} {
			ch, err := b.Watch(ctx, prefix, from, store.WatchOptions{})
			if err != nil {
				t.Fatalf("Watch(%q, %d): %v", prefix, from, err)
			}
			watches = append(watches, watch{prefix, from, ch})
		}
	}
	marker := mustCreate(t, b, "/p/zz", "marker")
	mustCreate(t, b, "/q/zz", "marker")
	for _, w := range watches {
		t.Run(fmt.Sprintf("%s@%d", w.prefix, w.from), func(t *testing.T) {
			for _, want := range h.eventsAfter(w.prefix, w.from) {
				sameEvent(t, next(t, w.ch, false), want)
			}
			ev := next(t, w.ch, false)
			if w.prefix != "/q/" && (ev.KV.Key != "/p/zz" || ev.KV.ModRevision != marker) {
				t.Fatalf("after the history got %s, want the marker /p/zz@%d", eventString(ev), marker)
			}
			if w.prefix == "/q/" && ev.KV.Key != "/q/zz" {
				t.Fatalf("after the history got %s, want the marker /q/zz", eventString(ev))
			}
		})
	}
}

// testWatchLiveAndReplay starts watches from recent revisions while several
// writers run, so replay and live delivery overlap. Every revision is a
// write under the watched prefix, so each watch must see one contiguous run.
func testWatchLiveAndReplay(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	const writers, perWriter = 4, 100
	for i := range writers {
		mustCreate(t, b, fmt.Sprintf("/live/%d", i), "0")
	}
	created := mustRev(t, b) // watches start after the creates: all updates
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := 1; j <= perWriter; j++ {
				if _, err := b.Update(ctx, fmt.Sprintf("/live/%d", i), fmt.Appendf(nil, "%d", j), 0); err != nil {
					t.Errorf("Update: %v", err)
					return
				}
			}
		})
	}
	type watch struct {
		from int64
		ch   <-chan store.Event
	}
	var watches []watch
	for range 20 {
		cur := mustRev(t, b)
		from := max(cur-5, created)
		ch, err := b.Watch(ctx, "/live/", from, store.WatchOptions{})
		if err != nil {
			t.Fatalf("Watch from %d: %v", from, err)
		}
		watches = append(watches, watch{from, ch})
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	final := mustRev(t, b)
	for _, w := range watches {
		lastMod := map[string]int64{}
		for rev := w.from + 1; rev <= final; rev++ {
			ev := next(t, w.ch, false)
			if ev.KV.ModRevision != rev {
				t.Fatalf("watch from %d: got revision %d, want %d", w.from, ev.KV.ModRevision, rev)
			}
			if ev.PrevKV == nil {
				t.Fatalf("watch from %d: update at %d without PrevKV", w.from, rev)
			}
			if seen, ok := lastMod[ev.KV.Key]; ok && ev.PrevKV.ModRevision != seen {
				t.Fatalf("watch from %d: %s: PrevKV.ModRevision %d, last seen %d", w.from, ev.KV.Key, ev.PrevKV.ModRevision, seen)
			}
			lastMod[ev.KV.Key] = rev
		}
	}
}

func testWatchFromNow(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	mustCreate(t, b, "/a", "old")
	w, err := b.Watch(ctx, "/", 0, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rev := mustUpdate(t, b, "/a", "new")
	ev := next(t, w, false)
	if ev.Type != store.EventPut || ev.KV.ModRevision != rev || string(ev.KV.Value) != "new" ||
		ev.PrevKV == nil || string(ev.PrevKV.Value) != "old" {
		t.Fatalf("got %s, want the update at %d with PrevKV old", eventString(ev), rev)
	}
	_, drev, err := b.Delete(ctx, "/a", 0)
	if err != nil {
		t.Fatal(err)
	}
	ev = next(t, w, false)
	if ev.Type != store.EventDelete || ev.KV.ModRevision != drev || string(ev.KV.Value) != "new" ||
		ev.PrevKV == nil || ev.PrevKV.ModRevision != rev {
		t.Fatalf("got %s, want the delete at %d carrying the last value", eventString(ev), drev)
	}
}

func testWatchRevisionErrors(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	h := runHistory(t, b)
	_, err := b.Watch(ctx, "/", h.last()+1, store.WatchOptions{})
	wantErr(t, "Watch from a future revision", err, store.ErrFutureRevision)
	// The current revision itself is fine: nothing yet, then live events.
	w, err := b.Watch(ctx, "/", h.last(), store.WatchOptions{})
	if err != nil {
		t.Fatalf("Watch from the current revision: %v", err)
	}
	rev := mustCreate(t, b, "/new", "x")
	if ev := next(t, w, false); ev.KV.ModRevision != rev {
		t.Fatalf("got %s, want the create at %d", eventString(ev), rev)
	}

	mid := h.events[len(h.events)/2].KV.ModRevision
	if err := b.Compact(ctx, mid); err != nil {
		t.Fatal(err)
	}
	_, err = b.Watch(ctx, "/", mid-1, store.WatchOptions{})
	wantErr(t, "Watch from below the compacted revision", err, store.ErrCompacted)
	w, err = b.Watch(ctx, "/p/", mid, store.WatchOptions{})
	if err != nil {
		t.Fatalf("Watch from the compacted revision: %v", err)
	}
	for _, want := range h.eventsAfter("/p/", mid) {
		sameEvent(t, next(t, w, false), want)
	}
}

func testWatchProgress(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	mustCreate(t, b, "/other", "x")
	w, err := b.Watch(ctx, "/p/", 0, store.WatchOptions{ProgressInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cur := mustRev(t, b)
	ev := next(t, w, true)
	if ev.Type != store.EventProgress || ev.KV.ModRevision < cur {
		t.Fatalf("got %s, want a progress event at >= %d", eventString(ev), cur)
	}
	// Writes outside the prefix move progress forward too.
	rev := mustCreate(t, b, "/other2", "x")
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev := next(t, w, true)
		if ev.Type != store.EventProgress {
			t.Fatalf("unexpected event %s", eventString(ev))
		}
		if ev.KV.ModRevision >= rev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress stuck at %d, want >= %d", ev.KV.ModRevision, rev)
		}
	}
	prev := int64(0)
	for range 3 {
		ev := next(t, w, true)
		if ev.KV.ModRevision < prev {
			t.Fatalf("progress went back from %d to %d", prev, ev.KV.ModRevision)
		}
		prev = ev.KV.ModRevision
	}
}

func testWatchCancel(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.Watch(ctx, "/", 0, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, b, "/a", "x")
	cancel()
	drainUntilClosed(t, w)
}
