package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestBoltOneBatch feeds one batch straight to commit, so that ops on the
// same key really share a transaction: each sees the ones before it, and
// one op's failure touches no other.
func TestBoltOneBatch(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{CompactInterval: -1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	base, err := b.Create(ctx, "/k", []byte("0"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.Watch(ctx, "/", base, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	req := func(kind opKind, key, value string, expect int64) *writeReq {
		return &writeReq{kind: kind, key: key, value: []byte(value), expect: expect, done: make(chan writeResult, 1)}
	}
	batch := []*writeReq{
		req(opUpdate, "/k", "1", base),    // base+1
		req(opUpdate, "/k", "x", base),    // same expectation: loses
		req(opCreate, "/n", "n1", 0),      // base+2
		req(opCreate, "/n", "n2", 0),      // exists now
		req(opUpdate, "/n", "n3", base+2), // base+3: sees the create
		req(opDelete, "/n", "", base+3),   // base+4
		req(opDelete, "/n", "", 0),        // gone now
		req(opCreate, "/n", "n4", 0),      // base+5: new life
		req(opDelete, "/k", "", base),     // stale
		req(opUpdate, "/k", "2", 0),       // base+6
	}
	b.commit(batch)
	want := []struct {
		rev int64
		err error
	}{
		{base + 1, nil}, {0, ErrConflict}, {base + 2, nil}, {0, ErrExists}, {base + 3, nil},
		{base + 4, nil}, {0, ErrNotFound}, {base + 5, nil}, {0, ErrConflict}, {base + 6, nil},
	}
	for i, r := range batch {
		got := <-r.done
		if got.rev != want[i].rev || !errors.Is(got.err, want[i].err) || (want[i].err == nil) != (got.err == nil) {
			t.Fatalf("op %d: rev %d err %v; want rev %d err %v", i, got.rev, got.err, want[i].rev, want[i].err)
		}
		if i == 5 && (string(got.prev.Value) != "n3" || got.prev.ModRevision != base+3 || got.prev.CreateRevision != base+2) {
			t.Fatalf("delete returned %+v, want n3@%d/%d", got.prev, base+2, base+3)
		}
	}
	if cur, _ := b.CurrentRevision(ctx); cur != base+6 {
		t.Fatalf("CurrentRevision %d, want %d", cur, base+6)
	}
	for key, want := range map[string]KeyValue{
		"/k": {Key: "/k", Value: []byte("2"), CreateRevision: base, ModRevision: base + 6},
		"/n": {Key: "/n", Value: []byte("n4"), CreateRevision: base + 5, ModRevision: base + 5},
	} {
		kv, err := b.Get(ctx, key)
		if err != nil || string(kv.Value) != string(want.Value) || kv.CreateRevision != want.CreateRevision || kv.ModRevision != want.ModRevision {
			t.Fatalf("Get(%s) = %+v, %v; want %+v", key, kv, err, want)
		}
	}
	// Every revision of the batch lists as the ops left it.
	lists := map[int64]string{base + 1: "/k=1", base + 2: "/k=1 /n=n1", base + 3: "/k=1 /n=n3",
		base + 4: "/k=1", base + 5: "/k=1 /n=n4", base + 6: "/k=2 /n=n4"}
	for rev, want := range lists {
		res, err := b.List(ctx, "/", ListOptions{Revision: rev})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for i, kv := range res.KVs {
			if i > 0 {
				got += " "
			}
			got += kv.Key + "=" + string(kv.Value)
		}
		if got != want {
			t.Fatalf("List at %d = %q, want %q", rev, got, want)
		}
	}
	wantEvents := []string{"0 /k=1 prev 0", "0 /n=n1", "0 /n=n3 prev n1", "1 /n=n3 prev n3", "0 /n=n4", "0 /k=2 prev 1"}
	for i, we := range wantEvents {
		ev := <-w
		got := string(rune('0'+ev.Type)) + " " + ev.KV.Key + "=" + string(ev.KV.Value)
		if ev.PrevKV != nil {
			got += " prev " + string(ev.PrevKV.Value)
		}
		if got != we || ev.KV.ModRevision != base+1+int64(i) {
			t.Fatalf("event %d: %q@%d, want %q@%d", i, got, ev.KV.ModRevision, we, base+1+int64(i))
		}
	}
}

// TestBoltBrokenRefusesQueued: writes already queued when a visible commit
// failure stops the store are refused, not committed.
func TestBoltBrokenRefusesQueued(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), BoltOptions{CompactInterval: -1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	failed := errors.New("fdatasync failed")
	b.broken.Store(&failed)
	r := &writeReq{kind: opCreate, key: "/k", value: []byte("v"), done: make(chan writeResult, 1)}
	b.commit([]*writeReq{r})
	if got := <-r.done; !errors.Is(got.err, failed) {
		t.Fatalf("queued write after the failure: %+v", got)
	}
	if _, err := b.Get(context.Background(), "/k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v, want ErrNotFound", err)
	}
}
