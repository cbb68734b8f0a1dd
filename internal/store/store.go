// Package store is skiff's versioned key/value store: the one place cluster
// state lives. Only the apiserver's registry uses it.
//
// The model is etcd's, reduced to what the API server needs:
//
//   - one global revision, increased by every successful write (create,
//     update, delete); a key remembers the revision that created it and the
//     revision of its last write (ModRevision), which the API server exposes
//     as metadata.resourceVersion;
//   - writes may carry a ModRevision precondition; a stale one is ErrConflict;
//   - lists read one consistent revision, optionally an older one that is
//     still in the retained history, in key order with limit/continue;
//   - watches deliver every change after a given revision, in revision order,
//     none missed or duplicated; a revision older than the retained history
//     is ErrCompacted.
//
// Backend is implemented by the bbolt backend in this package; the
// conformance suite in storetest runs against every backend.
//
// # bbolt layout (schema version 1)
//
//	meta/                          bucket
//	    schema    -> uint64 BE     on-disk layout version (migrations in bolt_codec.go)
//	    revision  -> uint64 BE     last committed revision
//	    compacted -> uint64 BE     history at and below is gone
//	kv/                            bucket: index of the live keys
//	    <key>     -> createRev(8) modRev(8)
//	log/                           bucket: one record per revision (values live here)
//	    <rev 8 BE> -> type(1) createRev(8) prevMod(8) keyLen(uvarint) key value
//
// As in etcd, each value is stored once: in the log record of the revision
// that wrote it. A put carries its value, a delete none (the deleted value
// is log[prevMod]); prevMod links each record to the key's previous write,
// which gives watch events their PrevKV. Get reads kv then log[modRev].
// Compaction to C deletes the records at or below C except each key's newest
// put there (still the key's value, or the PrevKV of a later record), so
// bbolt reuses the freed pages and the file stays bounded under churn.
//
// A list at an older revision R reads kv and undoes the log records in
// (R, current] through their prevMod links; a watch from R replays records
// > R and then follows the commits live. All writes go through one commit
// loop that batches concurrent writers into one transaction and one fsync.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Callers test them with errors.Is; HTTP status codes are
// chosen only at the API edge.
var (
	ErrNotFound = errors.New("key not found")
	ErrExists   = errors.New("key already exists")
	// ErrConflict: a ModRevision precondition did not match.
	ErrConflict = errors.New("revision precondition failed")
	// ErrCompacted: the requested revision is older than the retained history.
	ErrCompacted = errors.New("required revision has been compacted")
	// ErrFutureRevision: the requested revision has not been written yet.
	ErrFutureRevision = errors.New("required revision is a future revision")
	ErrClosed         = errors.New("store is closed")
)

// KeyValue is one key at one revision.
type KeyValue struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
}

// EventType says what happened to a key.
type EventType int

const (
	EventPut    EventType = iota // created or updated (PrevKV == nil means created)
	EventDelete                  // KV.Value holds the last value; KV.ModRevision is the delete's revision
	// EventProgress carries no key: KV.ModRevision is a revision up to which
	// every matching event has already been delivered on this watch (used for
	// watch bookmarks).
	EventProgress
)

// Event is one change delivered by a watch.
type Event struct {
	Type   EventType
	KV     KeyValue
	PrevKV *KeyValue // value before this change; nil for creates and progress events
}

// ListOptions selects a page of a prefix list.
type ListOptions struct {
	// Revision to read at; 0 means the current revision. An older revision
	// works while it is retained (else ErrCompacted).
	Revision int64
	// Limit is the maximum number of keys; 0 means no limit.
	Limit int64
	// StartKey: list keys >= StartKey (still under the prefix). Used for
	// continue tokens together with Revision.
	StartKey string
}

// ListResult is one page.
type ListResult struct {
	KVs []KeyValue
	// Revision the page was read at (== ListOptions.Revision when that was set).
	Revision int64
	// More is true when keys remain after the last one returned.
	More bool
	// RemainingCount is the number of keys after this page, when More.
	RemainingCount int64
}

// WatchOptions tunes a watch.
type WatchOptions struct {
	// ProgressInterval, when > 0, makes the watch send an EventProgress at
	// about this interval while it is otherwise idle.
	ProgressInterval time.Duration
}

// Backend is a versioned key/value store.
//
// Keys are plain strings ("/registry/pods/default/web-0"); a prefix list or
// watch matches keys that start with the prefix.
type Backend interface {
	// Create writes key only if it does not exist (else ErrExists) and
	// returns the new revision.
	Create(ctx context.Context, key string, value []byte) (int64, error)
	// Update overwrites an existing key (else ErrNotFound). When
	// expectedModRevision > 0 the key's ModRevision must equal it (else
	// ErrConflict). Returns the new revision.
	Update(ctx context.Context, key string, value []byte, expectedModRevision int64) (int64, error)
	// Delete removes an existing key (else ErrNotFound), with the same
	// precondition rule as Update. Returns the deleted value and the revision
	// of the delete.
	Delete(ctx context.Context, key string, expectedModRevision int64) (KeyValue, int64, error)
	// Get reads the current value of a key.
	Get(ctx context.Context, key string) (KeyValue, error)
	// List reads keys under prefix at one consistent revision.
	List(ctx context.Context, prefix string, opts ListOptions) (ListResult, error)
	// Count returns the number of keys under prefix now.
	Count(ctx context.Context, prefix string) (int64, error)
	// Watch delivers every event on keys under prefix with revision >
	// fromRevision, in revision order. fromRevision 0 means "from now".
	// The channel is closed when ctx ends, when the store closes, or when
	// the receiver falls too far behind (the caller then re-watches from the
	// last revision it saw). Errors for an unusable fromRevision
	// (ErrCompacted, ErrFutureRevision) are returned at once.
	Watch(ctx context.Context, prefix string, fromRevision int64, opts WatchOptions) (<-chan Event, error)
	// CurrentRevision is the revision of the last committed write.
	CurrentRevision(ctx context.Context) (int64, error)
	// CompactedRevision C: history at and below C is gone. Watch from
	// fromRevision >= C and List at Revision >= C still work; anything older
	// is ErrCompacted. 0 before the first compaction.
	CompactedRevision(ctx context.Context) (int64, error)
	// Compact drops history at and below revision.
	Compact(ctx context.Context, revision int64) error
	// Close stops background work and closes the backend.
	Close() error
}
