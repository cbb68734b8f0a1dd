package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// BoltOptions tunes the bbolt backend. The zero value gives the defaults
// documented on each field.
type BoltOptions struct {
	// CompactInterval is how often background compaction runs. Default 1m;
	// negative disables background compaction (Compact still works).
	CompactInterval time.Duration
	// RetainDuration and RetainRevisions bound the history kept for watches
	// and old-revision lists: background compaction drops revisions that are
	// older than RetainDuration or more than RetainRevisions behind the
	// current one, whichever keeps less. Defaults 5m (the Kubernetes API
	// server's compaction interval) and 10000. The revision bound is also
	// checked after every commit, so churn cannot outrun the timer.
	RetainDuration  time.Duration
	RetainRevisions int64
	// MaxBatch caps how many writes share one transaction. Default 1000.
	MaxBatch int
	// WatchQueue caps the events queued for one watcher that is not keeping
	// up; past it the watcher's channel is closed. Default 10000.
	WatchQueue int
	// NoSync skips fsync: for tests only, never for real data.
	NoSync bool
	// Logger receives background compaction failures. Default slog.Default().
	Logger *slog.Logger
}

func (o *BoltOptions) setDefaults() {
	if o.CompactInterval == 0 {
		o.CompactInterval = time.Minute
	}
	if o.RetainDuration <= 0 {
		o.RetainDuration = 5 * time.Minute
	}
	if o.RetainRevisions <= 0 {
		o.RetainRevisions = 10000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	if o.WatchQueue <= 0 {
		o.WatchQueue = 10000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Logger = o.Logger.With("component", "store")
}

// Bolt is the Backend on one bbolt file. Writes go through a single commit
// loop (see bolt_write.go), reads are bbolt read transactions, and watchers
// are fed by an in-memory hub after each commit (see bolt_watch.go).
type Bolt struct {
	db   *bolt.DB
	opts BoltOptions

	// closeMu guards closed and sends on writes: Close takes it exclusively
	// before closing writes, so no send can race with the close.
	closeMu  sync.RWMutex
	closed   atomic.Bool
	writes   chan *writeReq
	loopDone chan struct{} // commit loop has exited
	done     chan struct{} // closed by Close: stops compactor and watchers
	wg       sync.WaitGroup

	// broken is set when a commit failed after bbolt made it visible (its
	// meta page's fsync failed): writes are refused from then on (see
	// commit). Reads go on.
	broken atomic.Pointer[error]

	rev       atomic.Int64 // last committed revision
	compacted atomic.Int64
	hub       hub

	compactMu  sync.Mutex    // serializes compactions
	compactNow chan struct{} // commit loop asks the compactor to run

	// Tests only (export_test.go): fail a commit inside its transaction
	// (rolled back), or after it (committed, as when only the fsync of
	// bbolt's meta page fails). Set while no write is in flight.
	faultInTx, faultAfterTx func() error
	// Tests only: fails a compaction before each chunk after the first.
	faultCompactChunk func() error
}

var _ Backend = (*Bolt)(nil)

// OpenBolt opens (creating if needed) the store file at path and starts the
// commit loop and background compaction.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	opts.setDefaults()
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: time.Second, // another process holds the file: fail, don't hang
		// The freelist is rebuilt on open instead of written on every
		// commit, and kept as a map: both make commits cheaper (as etcd does).
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		NoSync:         opts.NoSync,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	var rev, compacted int64
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initSchema(tx); err != nil {
			return err
		}
		rev, compacted = metaRev(tx, metaRevision), metaRev(tx, metaCompacted)
		return nil
	})
	if err == nil && created && !opts.NoSync {
		// bbolt fsyncs the file, never its directory: without this a
		// power cut soon after the first start could lose the new file's
		// name, and every write acknowledged in it.
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	b := &Bolt{
		db:         db,
		opts:       opts,
		writes:     make(chan *writeReq, 1024),
		loopDone:   make(chan struct{}),
		done:       make(chan struct{}),
		compactNow: make(chan struct{}, 1),
	}
	b.rev.Store(rev)
	b.compacted.Store(compacted)
	b.hub.init(rev, opts.WatchQueue)
	go b.commitLoop()
	if opts.CompactInterval > 0 {
		b.wg.Add(1)
		go b.compactLoop()
	}
	return b, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close waits for queued writes, stops background work, closes every watch
// channel and the file. Later calls return ErrClosed.
func (b *Bolt) Close() error {
	b.closeMu.Lock()
	if b.closed.Load() {
		b.closeMu.Unlock()
		return ErrClosed
	}
	b.closed.Store(true)
	close(b.writes)
	b.closeMu.Unlock()

	<-b.loopDone
	close(b.done)
	b.hub.close()
	b.wg.Wait()
	return b.db.Close()
}

// view runs fn in a read transaction, mapping a closed database to ErrClosed.
func (b *Bolt) view(fn func(tx *bolt.Tx) error) error {
	if b.closed.Load() {
		return ErrClosed
	}
	err := b.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (b *Bolt) Get(ctx context.Context, key string) (KeyValue, error) {
	var kv KeyValue
	err := b.view(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		kv, ok, err = readKV(tx, key)
		if err == nil && !ok {
			err = fmt.Errorf("get %q: %w", key, ErrNotFound)
		}
		return err
	})
	return kv, err
}

func (b *Bolt) Count(ctx context.Context, prefix string) (int64, error) {
	var n int64
	err := b.view(func(tx *bolt.Tx) error {
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

func (b *Bolt) CurrentRevision(ctx context.Context) (int64, error) {
	if b.closed.Load() {
		return 0, ErrClosed
	}
	return b.rev.Load(), nil
}

func (b *Bolt) CompactedRevision(ctx context.Context) (int64, error) {
	if b.closed.Load() {
		return 0, ErrClosed
	}
	return b.compacted.Load(), nil
}

// checkRevision validates a requested revision against the snapshot in tx.
func checkRevision(tx *bolt.Tx, rev int64) error {
	if cur := metaRev(tx, metaRevision); rev > cur {
		return fmt.Errorf("revision %d (current %d): %w", rev, cur, ErrFutureRevision)
	}
	if c := metaRev(tx, metaCompacted); rev < c {
		return fmt.Errorf("revision %d (compacted %d): %w", rev, c, ErrCompacted)
	}
	return nil
}

// index is a key's (createRev, modRev); its value is in log[modRev].
type index struct{ createRev, modRev int64 }

// List reads the kv index; for an older revision R it first undoes the log
// entries in (R, current], newest first, into an overlay of keys whose index
// at R differs from now (nil: absent at R), then merges overlay and index in
// key order. Values are read from the log only for the keys returned.
func (b *Bolt) List(ctx context.Context, prefix string, opts ListOptions) (ListResult, error) {
	var res ListResult
	err := b.view(func(tx *bolt.Tx) error {
		cur := metaRev(tx, metaRevision)
		rev := opts.Revision
		if rev <= 0 {
			rev = cur
		}
		if err := checkRevision(tx, rev); err != nil {
			return err
		}
		res.Revision = rev
		start := prefix
		if opts.StartKey > start {
			start = opts.StartKey
		}
		logb := tx.Bucket(bucketLog)
		overlay, err := undoLog(logb, prefix, start, rev)
		if err != nil {
			return err
		}
		okeys := make([]string, 0, len(overlay))
		for k := range overlay {
			okeys = append(okeys, k)
		}
		sort.Strings(okeys)

		emit := func(key string, idx index) error {
			if opts.Limit > 0 && int64(len(res.KVs)) >= opts.Limit {
				res.More = true
				res.RemainingCount++
				return nil
			}
			kv, err := kvAt(logb, key, idx.createRev, idx.modRev)
			res.KVs = append(res.KVs, kv)
			return err
		}
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		k, v := c.Seek([]byte(start))
		i := 0
		for {
			valid := k != nil && bytes.HasPrefix(k, p)
			if !valid && i >= len(okeys) {
				return nil
			}
			var err error
			switch {
			case valid && (i >= len(okeys) || string(k) < okeys[i]):
				var idx index
				idx.createRev, idx.modRev, err = decodeIndex(v)
				if err == nil {
					err = emit(string(k), idx)
				}
				k, v = c.Next()
			default:
				if valid && string(k) == okeys[i] {
					k, v = c.Next()
				}
				if idx := overlay[okeys[i]]; idx != nil {
					err = emit(okeys[i], *idx)
				}
				i++
			}
			if err != nil {
				return err
			}
		}
	})
	if err != nil {
		return ListResult{}, err
	}
	return res, nil
}

// undoLog returns, for keys >= start under prefix changed after rev, their
// index at rev (nil when absent at rev).
func undoLog(logb *bolt.Bucket, prefix, start string, rev int64) (map[string]*index, error) {
	overlay := map[string]*index{}
	c := logb.Cursor()
	stop := revKey(rev)
	for k, v := c.Last(); k != nil && bytes.Compare(k, stop) > 0; k, v = c.Prev() {
		r, err := decodeRecord(v)
		if err != nil {
			return nil, err
		}
		key := string(r.key)
		if !strings.HasPrefix(key, prefix) || key < start {
			continue
		}
		// Older records overwrite newer ones: the oldest after rev tells
		// the state at rev.
		if r.prevMod == 0 {
			overlay[key] = nil
		} else {
			overlay[key] = &index{r.createRev, r.prevMod}
		}
	}
	return overlay, nil
}
