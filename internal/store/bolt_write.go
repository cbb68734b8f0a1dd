package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit. Every write becomes a writeReq on b.writes; one goroutine,
// the commit loop, takes whatever is queued (up to MaxBatch), applies it in
// one bbolt transaction (one fsync), and only then publishes the events and
// answers the writers. Revisions are assigned in the order ops are applied,
// so commit order, revision order and publish order are the same. An op that
// fails its own check (ErrExists, ErrNotFound, ErrConflict) gets that error
// and no revision; the rest of the batch still commits.

type opKind int

const (
	opCreate opKind = iota
	opUpdate
	opDelete
)

type writeReq struct {
	kind   opKind
	key    string
	value  []byte
	expect int64 // ModRevision precondition; 0 = none
	done   chan writeResult
}

type writeResult struct {
	rev  int64
	prev KeyValue // deletes: the deleted KV
	err  error
}

func (b *Bolt) Create(ctx context.Context, key string, value []byte) (int64, error) {
	r := b.submit(ctx, &writeReq{kind: opCreate, key: key, value: value})
	return r.rev, r.err
}

func (b *Bolt) Update(ctx context.Context, key string, value []byte, expectedModRevision int64) (int64, error) {
	r := b.submit(ctx, &writeReq{kind: opUpdate, key: key, value: value, expect: expectedModRevision})
	return r.rev, r.err
}

func (b *Bolt) Delete(ctx context.Context, key string, expectedModRevision int64) (KeyValue, int64, error) {
	r := b.submit(ctx, &writeReq{kind: opDelete, key: key, expect: expectedModRevision})
	return r.prev, r.rev, r.err
}

// submit queues req and waits for its commit. Once queued, the write is
// waited for even if ctx ends, so a nil error always means durable.
func (b *Bolt) submit(ctx context.Context, req *writeReq) writeResult {
	if err := ctx.Err(); err != nil {
		return writeResult{err: err}
	}
	if req.key == "" || len(req.key) > bolt.MaxKeySize {
		return writeResult{err: fmt.Errorf("store: invalid key length %d", len(req.key))}
	}
	// The caller may reuse its slice; events and the file keep this copy.
	req.value = append([]byte{}, req.value...)
	req.done = make(chan writeResult, 1)
	if err := b.brokenErr(); err != nil {
		return writeResult{err: err}
	}
	b.closeMu.RLock()
	if b.closed.Load() {
		b.closeMu.RUnlock()
		return writeResult{err: ErrClosed}
	}
	select {
	case b.writes <- req:
	case <-ctx.Done():
		b.closeMu.RUnlock()
		return writeResult{err: ctx.Err()}
	}
	b.closeMu.RUnlock()
	return <-req.done
}

// The commit loop lingers briefly for stragglers: writers acknowledged by
// the last commit usually come straight back, and without waiting for them
// the batches would settle at half the writers each (one half in the fsync,
// the other queued). It waits only while the batch is smaller than the last
// one, and at most a tenth of the last commit's duration, so a lone writer
// never waits and a shrinking crowd costs little.
func (b *Bolt) commitLoop() {
	defer close(b.loopDone)
	batch := make([]*writeReq, 0, b.opts.MaxBatch)
	var lastSize int
	var lastCommit time.Duration
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for req := range b.writes {
		batch = append(batch[:0], req)
	drain:
		for len(batch) < b.opts.MaxBatch {
			select {
			case r, ok := <-b.writes:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		if len(batch) < lastSize && len(batch) < b.opts.MaxBatch {
			timer.Reset(min(lastCommit/10, 2*time.Millisecond))
		linger:
			for len(batch) < lastSize && len(batch) < b.opts.MaxBatch {
				select {
				case r, ok := <-b.writes:
					if !ok {
						break linger
					}
					batch = append(batch, r)
				case <-timer.C:
					break linger
				}
			}
			timer.Stop()
		}
		start := time.Now()
		b.commit(batch)
		lastSize, lastCommit = len(batch), time.Since(start)
	}
}

// errNoWrites rolls back a transaction in which every op failed its check,
// saving an fsync.
var errNoWrites = errors.New("no writes")

// brokenErr is the error for writes once a visible commit failed.
func (b *Bolt) brokenErr() error {
	if err := b.broken.Load(); err != nil {
		return fmt.Errorf("store: writes stopped after a failed fsync, restart to recover: %w", *err)
	}
	return nil
}

func (b *Bolt) commit(batch []*writeReq) {
	if err := b.brokenErr(); err != nil { // queued before the failure
		for _, req := range batch {
			req.done <- writeResult{err: err}
		}
		return
	}
	results := make([]writeResult, len(batch))
	events := make([]Event, 0, len(batch))
	var base, rev int64
	err := b.db.Update(func(tx *bolt.Tx) error {
		// The file, not b.rev, says which revision is next: after a commit
		// bbolt reported failed but made visible (see below) they differ,
		// and reusing a revision would overwrite a live log record.
		base = metaRev(tx, metaRevision)
		rev = base
		kvb, logb := tx.Bucket(bucketKV), tx.Bucket(bucketLog)
		// Log keys only ever append: pack pages full instead of splitting
		// them half empty.
		logb.FillPercent = 0.9
		for i, req := range batch {
			ev, err := apply(kvb, logb, req, rev+1)
			if err != nil {
				if isStoreErr(err) {
					results[i].err = fmt.Errorf("%s %q: %w", opName(req.kind), req.key, err)
					continue
				}
				return err
			}
			rev++
			events = append(events, ev)
			results[i].rev = rev
			if ev.Type == EventDelete {
				results[i].prev = *ev.PrevKV
			}
		}
		if rev == base {
			return errNoWrites
		}
		if b.faultInTx != nil {
			if err := b.faultInTx(); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaRevision, u64(uint64(rev)))
	})
	if err == nil && b.faultAfterTx != nil {
		err = b.faultAfterTx()
	}
	switch {
	case err == nil:
		b.rev.Store(rev)
		b.hub.publish(events, rev)
		if rev-b.compacted.Load() > b.opts.RetainRevisions+b.opts.RetainRevisions/4 {
			select {
			case b.compactNow <- struct{}{}:
			default:
			}
		}
	case errors.Is(err, errNoWrites):
	default:
		// Every op in the batch fails. Usually nothing was written; but
		// when bbolt wrote its meta page and only the fsync failed, the
		// batch is visible to every later transaction (and may or may not
		// survive a crash). Then memory follows the file, so the revision
		// counter, lists and watches keep agreeing with each other, and
		// later writes are refused: after a failed fsync the kernel may
		// have dropped pages a later, "successful" fsync would not bring
		// back, and bbolt has already counted the batch's old pages free
		// while readers may still use them. etcd stops on this too;
		// reopening rebuilds everything from the file.
		if fileRev, verr := b.fileRevision(); verr == nil && fileRev == rev && rev != base {
			b.opts.Logger.Error("commit failed after it became visible; refusing further writes until restart", "revision", rev, "err", err)
			b.broken.Store(&err)
			b.rev.Store(rev)
			b.hub.publish(events, rev)
		}
		for i := range results {
			results[i] = writeResult{err: fmt.Errorf("store: commit: %w", err)}
		}
	}
	for i, req := range batch {
		req.done <- results[i]
	}
}

// fileRevision reads the last committed revision from the file.
func (b *Bolt) fileRevision() (int64, error) {
	var rev int64
	err := b.db.View(func(tx *bolt.Tx) error {
		rev = metaRev(tx, metaRevision)
		return nil
	})
	return rev, err
}

func isStoreErr(err error) bool {
	return errors.Is(err, ErrExists) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict)
}

func opName(k opKind) string {
	return [...]string{"create", "update", "delete"}[k]
}

// apply performs one op at revision rev, writing its log record and index
// entry, and returns its event. Store errors (ErrExists, ...) come before
// any change.
func apply(kvb, logb *bolt.Bucket, req *writeReq, rev int64) (Event, error) {
	key := []byte(req.key)
	var prev *KeyValue
	if idx := kvb.Get(key); idx != nil {
		c, m, err := decodeIndex(idx)
		if err != nil {
			return Event{}, err
		}
		kv, err := kvAt(logb, req.key, c, m)
		if err != nil {
			return Event{}, err
		}
		prev = &kv
	}
	var ev Event
	switch req.kind {
	case opCreate:
		if prev != nil {
			return Event{}, ErrExists
		}
		ev = Event{Type: EventPut, KV: KeyValue{Key: req.key, Value: req.value, CreateRevision: rev, ModRevision: rev}}
	case opUpdate, opDelete:
		if prev == nil {
			return Event{}, ErrNotFound
		}
		if req.expect > 0 && req.expect != prev.ModRevision {
			return Event{}, ErrConflict
		}
		ev = Event{Type: EventPut, PrevKV: prev,
			KV: KeyValue{Key: req.key, Value: req.value, CreateRevision: prev.CreateRevision, ModRevision: rev}}
		if req.kind == opDelete {
			ev.Type, ev.KV.Value = EventDelete, prev.Value
		}
	default:
		return Event{}, fmt.Errorf("store: unknown op %d", req.kind)
	}
	var prevMod int64
	var value []byte
	if prev != nil {
		prevMod = prev.ModRevision
	}
	if ev.Type == EventPut {
		value = req.value
		if err := kvb.Put(key, encodeIndex(ev.KV.CreateRevision, rev)); err != nil {
			return Event{}, err
		}
	} else if err := kvb.Delete(key); err != nil {
		return Event{}, err
	}
	return ev, logb.Put(revKey(rev), encodeRecord(ev.Type, ev.KV.CreateRevision, prevMod, req.key, value))
}
