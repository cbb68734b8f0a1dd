package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// compactChunk bounds the log entries deleted per write transaction, so a
// large compaction does not hold the writer lock for long.
const compactChunk = 10000

// Compact drops history at and below revision. Compacting to a revision at
// or below the current compacted revision is a no-op.
func (b *Bolt) Compact(ctx context.Context, revision int64) error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.compact(revision)
}

// compact deletes the log records at or below revision except, per key, the
// newest one if it is a put: that one holds the key's current value, or the
// previous value of a retained later record (as etcd keeps the latest
// revision of each key).
//
// The compacted revision moves in the same transaction as the first
// deletions, so a reader that finds history missing also sees why. Later
// chunks delete the rest; writes in between only add records above revision.
func (b *Bolt) compact(revision int64) error {
	b.compactMu.Lock()
	defer b.compactMu.Unlock()
	var doomed []int64
	err := b.update(func(tx *bolt.Tx) error {
		if cur := metaRev(tx, metaRevision); revision > cur {
			return fmt.Errorf("compact %d (current %d): %w", revision, cur, ErrFutureRevision)
		}
		if revision <= metaRev(tx, metaCompacted) {
			return nil
		}
		if err := tx.Bucket(bucketMeta).Put(metaCompacted, u64(uint64(revision))); err != nil {
			return err
		}
		newest := map[string]int64{} // key -> newest put at or below revision
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.First(); k != nil && int64(getU64(k)) <= revision; k, v = c.Next() {
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			rev := int64(getU64(k))
			if old, ok := newest[string(r.key)]; ok {
				doomed = append(doomed, old)
				delete(newest, string(r.key))
			}
			if r.typ == EventPut {
				newest[string(r.key)] = rev
			} else {
				doomed = append(doomed, rev)
			}
		}
		var err error
		doomed, err = deleteRevs(tx, doomed)
		return err
	})
	if err != nil {
		return err
	}
	if revision > b.compacted.Load() {
		b.compacted.Store(revision)
	}
	for len(doomed) > 0 {
		if b.faultCompactChunk != nil {
			if err := b.faultCompactChunk(); err != nil {
				return err
			}
		}
		if err := b.update(func(tx *bolt.Tx) error {
			var err error
			doomed, err = deleteRevs(tx, doomed)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// deleteRevs deletes up to compactChunk log records and returns the rest.
func deleteRevs(tx *bolt.Tx, revs []int64) ([]int64, error) {
	logb := tx.Bucket(bucketLog)
	n := min(len(revs), compactChunk)
	for _, rev := range revs[:n] {
		if err := logb.Delete(revKey(rev)); err != nil {
			return nil, err
		}
	}
	return revs[n:], nil
}

// update runs fn in a write transaction outside the commit loop (only
// compaction does), mapping a closed database to ErrClosed.
func (b *Bolt) update(fn func(tx *bolt.Tx) error) error {
	err := b.db.Update(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// compactLoop runs background compaction: on every tick, and whenever the
// commit loop sees more than RetainRevisions (+25%) of history.
func (b *Bolt) compactLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.CompactInterval)
	defer t.Stop()
	// samples remembers the revision at each tick, to find the newest
	// revision older than RetainDuration.
	type sample struct {
		at  time.Time
		rev int64
	}
	var samples []sample
	for {
		select {
		case <-b.done:
			return
		case now := <-t.C:
			samples = append(samples, sample{now, b.rev.Load()})
		case <-b.compactNow:
		}
		cur := b.rev.Load()
		target := cur - b.opts.RetainRevisions
		cutoff := time.Now().Add(-b.opts.RetainDuration)
		i := 0
		for i < len(samples) && !samples[i].at.After(cutoff) {
			target = max(target, samples[i].rev)
			i++
		}
		samples = samples[max(i-1, 0):] // keep the newest expired sample as a floor
		if target <= b.compacted.Load() {
			continue
		}
		if err := b.compact(target); err != nil {
			b.opts.Logger.Error("background compaction failed", "revision", target, "err", err)
		}
	}
}
