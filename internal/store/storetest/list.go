package storetest

import (
	"testing"

	"github.com/skiff-dev/skiff/internal/store"
)

func testGetList(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	h := runHistory(t, b)
	last := h.last()
	for key, want := range h.state(last) {
		got, err := b.Get(ctx, key)
		if err != nil || kvString(got) != kvString(want) {
			t.Fatalf("Get(%q) = %s, %v; want %s", key, kvString(got), err, kvString(want))
		}
	}
	_, err := b.Get(ctx, "/p/07")
	wantErr(t, "Get deleted", err, store.ErrNotFound)

	for _, prefix := range []string{"/p/", "/p", "/q/", "/", "", "/none/", "/p/0"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			res, err := b.List(ctx, prefix, store.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Revision != last {
				t.Fatalf("Revision = %d, want %d", res.Revision, last)
			}
			if res.More || res.RemainingCount != 0 {
				t.Fatalf("More=%v RemainingCount=%d without a limit", res.More, res.RemainingCount)
			}
			want := h.list(prefix, last)
			if err := sameKVs(res.KVs, want); err != nil {
				t.Fatal(err)
			}
			n, err := b.Count(ctx, prefix)
			if err != nil || n != int64(len(want)) {
				t.Fatalf("Count = %d, %v; want %d", n, err, len(want))
			}
		})
	}
}

// testListOldRevisionPaging lists every retained revision, whole and in
// pages of every size, the way the API server follows continue tokens: the
// next page starts just after the last key, at the first page's revision.
func testListOldRevisionPaging(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	h := runHistory(t, b)
	for rev := h.start; rev <= h.last(); rev++ {
		if rev == 0 {
			continue // 0 means "current"
		}
		for _, prefix := range []string{"/p/", "/"} {
			want := h.list(prefix, rev)
			for limit := int64(0); limit <= int64(len(want))+1; limit++ {
				var got []store.KeyValue
				opts := store.ListOptions{Revision: rev, Limit: limit}
				for page := 0; ; page++ {
					res, err := b.List(ctx, prefix, opts)
					if err != nil {
						t.Fatalf("rev %d prefix %q limit %d page %d: %v", rev, prefix, limit, page, err)
					}
					if res.Revision != rev {
						t.Fatalf("page Revision = %d, want %d", res.Revision, rev)
					}
					if limit > 0 && int64(len(res.KVs)) > limit {
						t.Fatalf("page has %d keys, limit %d", len(res.KVs), limit)
					}
					got = append(got, res.KVs...)
					remaining := int64(len(want) - len(got))
					if res.More != (remaining > 0) {
						t.Fatalf("rev %d prefix %q limit %d page %d: More=%v with %d remaining", rev, prefix, limit, page, res.More, remaining)
					}
					if !res.More {
						break
					}
					if res.RemainingCount != remaining {
						t.Fatalf("rev %d prefix %q limit %d page %d: RemainingCount=%d, want %d", rev, prefix, limit, page, res.RemainingCount, remaining)
					}
					if len(res.KVs) == 0 {
						t.Fatal("More with an empty page")
					}
					opts.StartKey = res.KVs[len(res.KVs)-1].Key + "\x00"
				}
				if err := sameKVs(got, want); err != nil {
					t.Fatalf("rev %d prefix %q limit %d: %v", rev, prefix, limit, err)
				}
			}
		}
	}
}

func testListRevisionErrors(t *testing.T, open OpenFunc, _ ReopenFunc) {
	b := open(t)
	ctx := ctxT(t)
	h := runHistory(t, b)
	_, err := b.List(ctx, "/", store.ListOptions{Revision: h.last() + 1})
	wantErr(t, "List at a future revision", err, store.ErrFutureRevision)

	mid := h.events[len(h.events)/2].KV.ModRevision
	if err := b.Compact(ctx, mid); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	_, err = b.List(ctx, "/", store.ListOptions{Revision: mid - 1})
	wantErr(t, "List below the compacted revision", err, store.ErrCompacted)
	for rev := mid; rev <= h.last(); rev++ {
		res, err := b.List(ctx, "/p/", store.ListOptions{Revision: rev})
		if err != nil {
			t.Fatalf("List at retained revision %d: %v", rev, err)
		}
		if err := sameKVs(res.KVs, h.list("/p/", rev)); err != nil {
			t.Fatalf("List at %d after compaction: %v", rev, err)
		}
	}
}
