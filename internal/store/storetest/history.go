package storetest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/internal/store"
)

// history is a model of what a backend should contain: the state after each
// revision and the event each revision made, recorded while a fixed script
// of writes runs against the backend.
type history struct {
	start  int64                               // revision before the script
	states map[int64]map[string]store.KeyValue // state after each revision
	events []store.Event                       // in revision order
}

func (h *history) last() int64 { return h.events[len(h.events)-1].KV.ModRevision }

func (h *history) state(rev int64) map[string]store.KeyValue {
	for ; rev >= h.start; rev-- {
		if s, ok := h.states[rev]; ok {
			return s
		}
	}
	return map[string]store.KeyValue{}
}

// list returns the model's answer for a prefix at rev, in key order.
func (h *history) list(prefix string, rev int64) []store.KeyValue {
	var out []store.KeyValue
	for k, kv := range h.state(rev) {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kv)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// eventsAfter returns the model's events under prefix with revision > rev.
func (h *history) eventsAfter(prefix string, rev int64) []store.Event {
	var out []store.Event
	for _, ev := range h.events {
		if ev.KV.ModRevision > rev && strings.HasPrefix(ev.KV.Key, prefix) {
			out = append(out, ev)
		}
	}
	return out
}

// recorder applies writes to a backend, checks each result, and records the
// model.
type recorder struct {
	t   *testing.T
	b   store.Backend
	h   *history
	cur map[string]store.KeyValue
}

func newRecorder(t *testing.T, b store.Backend) *recorder {
	return &recorder{t: t, b: b, cur: map[string]store.KeyValue{},
		h: &history{start: mustRev(t, b), states: map[int64]map[string]store.KeyValue{}}}
}

func (r *recorder) record(ev store.Event) {
	if n := len(r.h.events); n > 0 && ev.KV.ModRevision <= r.h.last() {
		r.t.Fatalf("revision %d after %d", ev.KV.ModRevision, r.h.last())
	}
	next := make(map[string]store.KeyValue, len(r.cur)+1)
	for k, v := range r.cur {
		next[k] = v
	}
	if ev.Type == store.EventDelete {
		delete(next, ev.KV.Key)
	} else {
		next[ev.KV.Key] = ev.KV
	}
	r.cur = next
	r.h.states[ev.KV.ModRevision] = next
	r.h.events = append(r.h.events, ev)
}

// put creates or updates key (with a precondition).
func (r *recorder) put(key, value string) {
	r.t.Helper()
	ctx := context.Background()
	prev, existed := r.cur[key]
	var rev int64
	var err error
	if existed {
		rev, err = r.b.Update(ctx, key, []byte(value), prev.ModRevision)
	} else {
		rev, err = r.b.Create(ctx, key, []byte(value))
	}
	if err != nil {
		r.t.Fatalf("put %s: %v", key, err)
	}
	ev := store.Event{Type: store.EventPut, KV: store.KeyValue{Key: key, Value: []byte(value), CreateRevision: rev, ModRevision: rev}}
	if existed {
		p := prev
		ev.PrevKV = &p
		ev.KV.CreateRevision = prev.CreateRevision
	}
	r.record(ev)
}

func (r *recorder) del(key string) {
	r.t.Helper()
	prev := r.cur[key]
	kv, rev, err := r.b.Delete(context.Background(), key, prev.ModRevision)
	if err != nil {
		r.t.Fatalf("delete %s: %v", key, err)
	}
	if kvString(kv) != kvString(prev) {
		r.t.Fatalf("delete %s returned %s, want %s", key, kvString(kv), kvString(prev))
	}
	r.record(store.Event{Type: store.EventDelete, PrevKV: &prev,
		KV: store.KeyValue{Key: key, Value: prev.Value, CreateRevision: prev.CreateRevision, ModRevision: rev}})
}

// runHistory writes a script of creates, updates and deletes, under "/p/" and
// beside it ("/pa", "/q/").
func runHistory(t *testing.T, b store.Backend) *history {
	t.Helper()
	r := newRecorder(t, b)
	for i := range 8 {
		r.put(fmt.Sprintf("/p/%02d", i), fmt.Sprintf("v%d", i))
	}
	r.put("/pa", "outside")
	r.put("/q/1", "outside")
	r.put("/p/03", "v3b")
	r.del("/p/05")
	r.put("/p/08", "v8")
	r.put("/p/00", "v0b")
	r.del("/p/01")
	r.put("/p/05", "v5 again")
	r.put("/q/1", "outside b")
	r.put("/p/03", "v3c")
	r.del("/p/07")
	r.del("/pa")
	r.put("/p/01", "v1 again")
	return r.h
}

func sameKVs(got, want []store.KeyValue) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d keys %v, want %d %v", len(got), kvStrings(got), len(want), kvStrings(want))
	}
	for i := range got {
		if kvString(got[i]) != kvString(want[i]) {
			return fmt.Errorf("key %d: got %s, want %s", i, kvString(got[i]), kvString(want[i]))
		}
	}
	return nil
}

func kvStrings(kvs []store.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kvString(kv)
	}
	return out
}
