package store

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Watches. The commit loop hands every committed batch to the hub, which
// appends matching events to each subscriber's queue and then records the
// batch's revision as published. A watch from revision R subscribes first
// (learning the published revision H at that instant: everything after H
// will reach its queue), then replays the log in (R, H] from the file, then
// drains its queue. Replay and queue meet exactly at H, so nothing is missed
// or sent twice.
//
// Locks: hub.mu orders publish against subscribe (so H is exact); each
// queue has its own mutex, so a thousand watchers draining their queues do
// not contend with each other or with the commit loop for long.

// hub fans committed events out to watchers.
type hub struct {
	mu       sync.Mutex
	rev      atomic.Int64 // last published revision; written under mu
	maxQueue int
	subs     map[*sub]struct{}
	closed   bool
}

type sub struct {
	prefix string
	notify chan struct{} // cap 1: queue changed

	mu       sync.Mutex
	queue    []Event
	overflow bool // queue hit maxQueue: events were dropped
	closed   bool // the store is closing
}

func (h *hub) init(rev int64, maxQueue int) {
	h.rev.Store(rev)
	h.maxQueue, h.subs = maxQueue, map[*sub]struct{}{}
}

// subscribe registers a watcher and counts it in wg; doing so under the hub
// lock orders every wg.Add before Close's wg.Wait (Close closes the hub
// first).
func (h *hub) subscribe(prefix string, wg *sync.WaitGroup) (*sub, int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, 0, ErrClosed
	}
	wg.Add(1)
	s := &sub{prefix: prefix, notify: make(chan struct{}, 1)}
	h.subs[s] = struct{}{}
	return s, h.rev.Load(), nil
}

func (h *hub) unsubscribe(s *sub) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

func (h *hub) publish(events []Event, rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.push(events, h.maxQueue)
	}
	h.rev.Store(rev)
}

func (s *sub) push(events []Event, maxQueue int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.overflow {
		return
	}
	n := len(s.queue)
	for i := range events {
		if !strings.HasPrefix(events[i].KV.Key, s.prefix) {
			continue
		}
		if len(s.queue) >= maxQueue {
			s.overflow = true
			break
		}
		s.queue = append(s.queue, events[i])
	}
	if len(s.queue) > n || s.overflow {
		s.signal()
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.mu.Lock()
		s.closed = true
		s.signal()
		s.mu.Unlock()
	}
}

func (s *sub) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take empties s's queue. end is true when the watch must stop after
// delivering q.
func (s *sub) take() (q []Event, end bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, s.queue = s.queue, nil
	return q, s.overflow || s.closed
}

// progress returns the revision up to which every event for s has been
// handed to it, if its queue is empty. The published revision is read
// first: every event up to it was queued before it was stored.
func (h *hub) progress(s *sub) (int64, bool) {
	rev := h.rev.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	return rev, len(s.queue) == 0 && !s.overflow && !s.closed
}

func (b *Bolt) Watch(ctx context.Context, prefix string, fromRevision int64, opts WatchOptions) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, published, err := b.hub.subscribe(prefix, &b.wg)
	if err != nil {
		return nil, err
	}
	if fromRevision > 0 {
		// Checked after subscribing, so that a compaction racing with us
		// either shows here or makes replay stop.
		err = b.view(func(tx *bolt.Tx) error { return checkRevision(tx, fromRevision) })
	} else {
		fromRevision = published
	}
	if err != nil {
		b.hub.unsubscribe(s)
		b.wg.Done()
		return nil, err
	}
	out := make(chan Event, 128)
	go b.runWatch(ctx, s, out, fromRevision, published, opts)
	return out, nil
}

// runWatch replays (from, published] from the log, then forwards the queue.
// from may exceed published (a revision committed but not yet published):
// then replay is empty and queued events up to from are skipped.
func (b *Bolt) runWatch(ctx context.Context, s *sub, out chan<- Event, from, published int64, opts WatchOptions) {
	defer b.wg.Done()
	defer close(out)
	defer b.hub.unsubscribe(s)

	var tick <-chan time.Time
	if opts.ProgressInterval > 0 {
		t := time.NewTicker(opts.ProgressInterval)
		defer t.Stop()
		tick = t.C
	}
	lastSend := time.Now()
	send := func(ev Event) bool {
		select {
		case out <- ev: // fast path: a 1-case select is a plain non-blocking send
			return true
		default:
		}
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
		case <-b.done:
		}
		return false
	}

	last := from // every matching event <= last has been sent
	for last < published {
		evs, next, err := b.readLog(s.prefix, last, published)
		if err != nil {
			return // compacted under us or closed: the caller re-watches
		}
		for _, ev := range evs {
			if !send(ev) {
				return
			}
		}
		last = next
	}

	for {
		select {
		case <-s.notify:
			q, end := s.take()
			for _, ev := range q {
				if ev.KV.ModRevision <= last {
					continue
				}
				if !send(ev) {
					return
				}
				last = ev.KV.ModRevision
			}
			if len(q) > 0 {
				lastSend = time.Now()
			}
			if end {
				return
			}
		case <-tick:
			if time.Since(lastSend) < opts.ProgressInterval*9/10 {
				continue
			}
			rev, idle := b.hub.progress(s)
			if !idle {
				continue
			}
			rev = max(rev, last)
			if !send(Event{Type: EventProgress, KV: KeyValue{ModRevision: rev}}) {
				return
			}
		case <-ctx.Done():
			return
		case <-b.done:
			return
		}
	}
}

// replayBatch bounds the work (and the read transaction) of one replay step.
const replayBatch = 1000

// readLog returns matching log events in (after, upTo], at most replayBatch
// of them, and the revision it read up to.
func (b *Bolt) readLog(prefix string, after, upTo int64) ([]Event, int64, error) {
	var evs []Event
	next := after
	err := b.view(func(tx *bolt.Tx) error {
		if c := metaRev(tx, metaCompacted); after < c {
			return fmt.Errorf("revision %d (compacted %d): %w", after, c, ErrCompacted)
		}
		p := []byte(prefix)
		logb := tx.Bucket(bucketLog)
		c := logb.Cursor()
		scanned := 0
		for k, v := c.Seek(revKey(after + 1)); k != nil; k, v = c.Next() {
			rev := int64(getU64(k))
			if rev > upTo || len(evs) >= replayBatch || scanned >= 10*replayBatch {
				return nil
			}
			scanned++
			next = rev
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			if !bytes.HasPrefix(r.key, p) {
				continue
			}
			ev, err := eventAt(logb, rev, r)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		next = upTo // no log entries left: everything up to upTo is read
		return nil
	})
	return evs, next, err
}
