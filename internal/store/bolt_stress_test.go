package store_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/skiff-dev/skiff/internal/store"
)

// TestBoltCloseUnderLoad: Close while writers and watchers run. No panic;
// every write gets success or ErrClosed; every acknowledged write is there
// after reopening, with its revision; watch channels all close.
func TestBoltCloseUnderLoad(t *testing.T) {
	for round := range 5 {
		path := filepath.Join(t.TempDir(), "state.db")
		b, err := store.OpenBolt(path, store.BoltOptions{CompactInterval: -1, NoSync: round%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		var mu sync.Mutex
		acked := map[string]int64{}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for j := 0; ; j++ {
					key := fmt.Sprintf("/w/%d/%d", i, j)
					rev, err := b.Create(ctx, key, []byte(key))
					if errors.Is(err, store.ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("Create: %v", err)
						return
					}
					mu.Lock()
					acked[key] = rev
					mu.Unlock()
				}
			})
		}
		for i := range 8 {
			wg.Go(func() {
				for {
					from, _ := b.CurrentRevision(ctx)
					from -= int64(i)
					w, err := b.Watch(ctx, "/w/", max(from, 0), store.WatchOptions{ProgressInterval: time.Millisecond})
					if errors.Is(err, store.ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("Watch: %v", err)
						return
					}
					for range w {
					}
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		b = openBolt(t, path, testOptions)
		for key, rev := range acked {
			kv, err := b.Get(ctx, key)
			if err != nil || kv.ModRevision != rev {
				t.Fatalf("round %d: acknowledged %s@%d: got %v@%d, %v", round, key, rev, kv.Key, kv.ModRevision, err)
			}
		}
		if n, _ := b.Count(ctx, "/w/"); n != int64(len(acked)) {
			t.Fatalf("round %d: %d keys after reopen, %d acknowledged", round, n, len(acked))
		}
		b.Close()
	}
}

// TestBoltCompactionRacesReaders: background compaction runs hard while
// readers page through old revisions and watch from them. Every page is
// either right or ErrCompacted; every watch delivers a correct prefix of the
// history and then closes or continues, never a wrong event.
func TestBoltCompactionRacesReaders(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "state.db"),
		store.BoltOptions{CompactInterval: time.Millisecond, RetainDuration: time.Millisecond, RetainRevisions: 50, NoSync: true})
	ctx := context.Background()
	// The full history, recorded by a watch that starts before any write.
	all, err := b.Watch(ctx, "/", 0, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var events []store.Event
	var evMu sync.Mutex
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		for ev := range all {
			evMu.Lock()
			events = append(events, ev)
			evMu.Unlock()
		}
	}()
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for i := range 4 {
		writers.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("/s/%02d", (i*7+j)%23)
				if j%5 == 4 {
					b.Delete(ctx, key, 0)
				} else if _, err := b.Update(ctx, key, fmt.Appendf(nil, "%d-%d", i, j), 0); errors.Is(err, store.ErrNotFound) {
					b.Create(ctx, key, fmt.Appendf(nil, "%d-%d", i, j))
				}
			}
		})
	}
	type listing struct {
		rev int64
		kvs []store.KeyValue
	}
	type watched struct {
		from int64
		evs  []store.Event
	}
	var lmu sync.Mutex
	var listings []listing
	var watches []watched
	var readers sync.WaitGroup
	begin := time.Now()
	for i := range 4 {
		readers.Go(func() {
			for n := 0; time.Since(begin) < time.Second; n++ {
				rev, _ := b.CurrentRevision(ctx)
				rev -= int64(n % 40)
				if rev < 1 {
					continue
				}
				if i%2 == 0 {
					var kvs []store.KeyValue
					opts := store.ListOptions{Revision: rev, Limit: 2}
					for {
						res, err := b.List(ctx, "/s/", opts)
						if errors.Is(err, store.ErrCompacted) {
							kvs = nil
							break
						}
						if err != nil {
							t.Errorf("List at %d: %v", rev, err)
							return
						}
						kvs = append(kvs, res.KVs...)
						if !res.More {
							lmu.Lock()
							listings = append(listings, listing{rev, kvs})
							lmu.Unlock()
							break
						}
						opts.StartKey = res.KVs[len(res.KVs)-1].Key + "\x00"
						time.Sleep(100 * time.Microsecond)
					}
					continue
				}
				wctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
				w, err := b.Watch(wctx, "/s/", rev, store.WatchOptions{})
				if errors.Is(err, store.ErrCompacted) || errors.Is(err, context.DeadlineExceeded) {
					cancel()
					continue
				}
				if err != nil {
					cancel()
					t.Errorf("Watch from %d: %v", rev, err)
					return
				}
				var evs []store.Event
				for ev := range w {
					evs = append(evs, ev)
				}
				cancel()
				lmu.Lock()
				watches = append(watches, watched{rev, evs})
				lmu.Unlock()
			}
		})
	}
	readers.Wait()
	close(stop)
	writers.Wait()
	final, _ := b.CurrentRevision(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		evMu.Lock()
		n := len(events)
		caughtUp := n > 0 && events[n-1].KV.ModRevision == final
		evMu.Unlock()
		if caughtUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorder stuck at %d events, revision %d", n, final)
		}
		time.Sleep(time.Millisecond)
	}
	evMu.Lock()
	defer evMu.Unlock()
	for i, ev := range events {
		if ev.KV.ModRevision != int64(i+1) {
			t.Fatalf("recorder: event %d has revision %d", i, ev.KV.ModRevision)
		}
	}
	stateAt := func(rev int64) []string {
		m := map[string]string{}
		for _, ev := range events[:rev] {
			if ev.Type == store.EventDelete {
				delete(m, ev.KV.Key)
			} else {
				m[ev.KV.Key] = evString(ev)
			}
		}
		var out []string
		for _, v := range m {
			out = append(out, v)
		}
		sort.Strings(out)
		return out
	}
	for _, l := range listings {
		if l.kvs == nil {
			continue
		}
		var got []string
		for _, kv := range l.kvs {
			got = append(got, evString(store.Event{KV: kv}))
		}
		if want := stateAt(l.rev); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("paged list at %d:\n got  %v\n want %v", l.rev, got, want)
		}
	}
	for _, w := range watches {
		for i, ev := range w.evs {
			want := events[w.from+int64(i)]
			if evString(ev) != evString(want) || prevString(ev) != prevString(want) {
				t.Fatalf("watch from %d, event %d: got %s, want %s", w.from, i, evString(ev), evString(want))
			}
		}
	}
	t.Logf("%d revisions, %d lists, %d watches checked", final, len(listings), len(watches))
}

func evString(ev store.Event) string {
	return fmt.Sprintf("%d %s=%q@%d/%d", ev.Type, ev.KV.Key, ev.KV.Value, ev.KV.CreateRevision, ev.KV.ModRevision)
}

func prevString(ev store.Event) string {
	if ev.PrevKV == nil {
		return "-"
	}
	return evString(store.Event{KV: *ev.PrevKV})
}

// TestBoltWatchGoroutines: watches opened and cancelled while writes run
// leave no goroutines behind.
func TestBoltWatchGoroutines(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{CompactInterval: -1, NoSync: true})
	ctx := context.Background()
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b.Create(ctx, fmt.Sprintf("/g/%d", i), nil)
		}
	})
	var watchers sync.WaitGroup
	for i := range 200 {
		watchers.Go(func() {
			wctx, cancel := context.WithCancel(ctx)
			w, err := b.Watch(wctx, "/g/", 0, store.WatchOptions{ProgressInterval: time.Millisecond})
			if err != nil {
				t.Error(err)
				cancel()
				return
			}
			if i%2 == 0 {
				<-w // sometimes read, sometimes never
			}
			cancel()
		})
	}
	watchers.Wait()
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBoltInterruptedCompaction: a compaction big enough to take several
// transactions stops after the first (as a crash there would). After reopening, the compacted
// revision is the one that began, every retained revision still lists
// right, and a later compaction cleans up what the first one left.
func TestBoltInterruptedCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := store.OpenBolt(path, store.BoltOptions{CompactInterval: -1, NoSync: true, WatchQueue: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// 17 writers, one key each, so commits batch; the model is rebuilt
	// from a watch that sees every revision.
	rec, err := b.Watch(ctx, "/", 0, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 17 {
		wg.Go(func() {
			key := fmt.Sprintf("/i/%d", g)
			exists := false
			// More than compactChunk (10000) records in all: several
			// transactions to delete.
			for i := range 720 {
				var err error
				switch {
				case exists && i%11 == 0:
					_, _, err = b.Delete(ctx, key, 0)
					exists = false
				case exists:
					_, err = b.Update(ctx, key, fmt.Appendf(nil, "%d", i), 0)
				default:
					_, err = b.Create(ctx, key, fmt.Appendf(nil, "%d", i))
					exists = true
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	type state = map[string]string
	states := []state{{}} // states[rev]
	cur := state{}
	final, _ := b.CurrentRevision(ctx)
	for int64(len(states)) <= final {
		ev := <-rec
		if ev.KV.ModRevision != int64(len(states)) {
			t.Fatalf("recorder: revision %d, want %d", ev.KV.ModRevision, len(states))
		}
		if ev.Type == store.EventDelete {
			delete(cur, ev.KV.Key)
		} else {
			cur[ev.KV.Key] = string(ev.KV.Value)
		}
		next := make(state, len(cur))
		for k, v := range cur {
			next[k] = v
		}
		states = append(states, next)
	}
	last := int64(len(states) - 1)
	target := last - 50
	crash := errors.New("crash")
	b.SetCompactFault(func() error { return crash })
	if err := b.Compact(ctx, target); !errors.Is(err, crash) {
		t.Fatalf("Compact: %v, want it stopped after its first chunk", err)
	}
	b.Close()
	check := func(b store.Backend, from int64) {
		t.Helper()
		for rev := from; rev <= last; rev++ {
			res, err := b.List(ctx, "/i/", store.ListOptions{Revision: rev})
			if err != nil {
				t.Fatalf("List at %d: %v", rev, err)
			}
			if len(res.KVs) != len(states[rev]) {
				t.Fatalf("List at %d: %d keys, want %d", rev, len(res.KVs), len(states[rev]))
			}
			for _, kv := range res.KVs {
				if states[rev][kv.Key] != string(kv.Value) {
					t.Fatalf("List at %d: %s=%q, want %q", rev, kv.Key, kv.Value, states[rev][kv.Key])
				}
			}
		}
	}
	b = openBolt(t, path, testOptions)
	if c, _ := b.CompactedRevision(ctx); c != target {
		t.Fatalf("compacted revision %d after reopening, want %d", c, target)
	}
	if _, err := b.List(ctx, "/i/", store.ListOptions{Revision: target - 1}); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("List below the compacted revision: %v", err)
	}
	check(b, target)
	w, err := b.Watch(ctx, "/i/", target, store.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for rev := target + 1; rev <= last; rev++ {
		if ev := <-w; ev.KV.ModRevision != rev {
			t.Fatalf("watch from %d: got revision %d, want %d", target, ev.KV.ModRevision, rev)
		}
	}
	if err := b.Compact(ctx, last-10); err != nil {
		t.Fatal(err)
	}
	check(b, last-10)
	// Nothing the first compaction left behind survives the second: at
	// most one record per key at or below the compacted revision.
	b.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := 0
	db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("log")).Cursor()
		for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= last-10; k, _ = c.Next() {
			old++
		}
		return nil
	})
	if old > 17 {
		t.Fatalf("%d log records at or below the compacted revision, want at most one per key (17)", old)
	}
}

// TestBoltProgressNeverAhead: with writes inside and outside the prefix
// racing frequent progress ticks, a progress event at P always comes after
// every matching event at or below P, and nothing at or below P follows it.
func TestBoltProgressNeverAhead(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{CompactInterval: -1, NoSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type watched struct{ evs []store.Event }
	var ws []*watched
	var readers sync.WaitGroup
	for i := range 8 {
		var from int64
		if i%2 == 1 {
			from, _ = b.CurrentRevision(ctx)
		}
		w, err := b.Watch(ctx, "/p/", from, store.WatchOptions{ProgressInterval: 200 * time.Microsecond})
		if err != nil {
			t.Fatal(err)
		}
		rec := &watched{}
		ws = append(ws, rec)
		readers.Go(func() {
			for ev := range w {
				rec.evs = append(rec.evs, ev)
			}
		})
	}
	var writers sync.WaitGroup
	var mu sync.Mutex
	pRevs := map[int64]bool{}
	for i := range 6 {
		writers.Go(func() {
			for j := range 300 {
				prefix := "/p/"
				if i%2 == 1 {
					prefix = "/other/"
				}
				rev, err := b.Create(ctx, fmt.Sprintf("%s%d/%d", prefix, i, j), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if prefix == "/p/" {
					mu.Lock()
					pRevs[rev] = true
					mu.Unlock()
				}
			}
		})
	}
	writers.Wait()
	time.Sleep(20 * time.Millisecond)
	cancel()
	readers.Wait()
	for i, w := range ws {
		var last int64 // highest revision the watch has vouched for
		progress := 0
		for _, ev := range w.evs {
			if ev.KV.ModRevision < last || (ev.Type != store.EventProgress && ev.KV.ModRevision == last) {
				t.Fatalf("watch %d: %d event at %d after reaching %d", i, ev.Type, ev.KV.ModRevision, last)
			}
			if ev.Type == store.EventProgress {
				progress++
				// Every /p/ write at or below this must have come already.
				for r := range pRevs {
					if r <= ev.KV.ModRevision && r > last {
						t.Fatalf("watch %d: progress %d before the event at %d", i, ev.KV.ModRevision, r)
					}
				}
			}
			last = ev.KV.ModRevision
		}
		if progress == 0 {
			t.Logf("watch %d saw no progress events", i)
		}
	}
}
