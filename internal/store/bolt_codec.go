package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bucket and meta key names; the layout is drawn in the package doc.
var (
	bucketMeta = []byte("meta")
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")

	metaSchema    = []byte("schema")
	metaRevision  = []byte("revision")
	metaCompacted = []byte("compacted")
)

// schemaVersion is the on-disk layout this code reads and writes.
const schemaVersion = 1

// migrations[v] upgrades a file from schema v to v+1 inside one write
// transaction. Empty while there is only version 1; add entries here, never
// rewrite old ones.
var migrations = map[uint64]func(tx *bolt.Tx) error{}

var errCorrupt = errors.New("store: corrupt record")

// initSchema creates the buckets of a new file, or checks and migrates an
// existing one.
func initSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketKV, bucketLog} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := meta.Put(metaSchema, u64(schemaVersion)); err != nil {
			return err
		}
		if err := meta.Put(metaRevision, u64(0)); err != nil {
			return err
		}
		return meta.Put(metaCompacted, u64(0))
	}
	v := getU64(meta.Get(metaSchema))
	if v > schemaVersion {
		return fmt.Errorf("store: file has schema version %d, this binary supports up to %d", v, schemaVersion)
	}
	for ; v < schemaVersion; v++ {
		m, ok := migrations[v]
		if !ok {
			return fmt.Errorf("store: no migration from schema version %d", v)
		}
		if err := m(tx); err != nil {
			return fmt.Errorf("store: migrating schema %d to %d: %w", v, v+1, err)
		}
		if err := meta.Put(metaSchema, u64(v+1)); err != nil {
			return err
		}
	}
	return nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// revKey is the log bucket key of a revision: big-endian, so byte order is
// revision order.
func revKey(rev int64) []byte { return u64(uint64(rev)) }

func metaRev(tx *bolt.Tx, name []byte) int64 {
	return int64(getU64(tx.Bucket(bucketMeta).Get(name)))
}

// kv bucket value: createRev(8) modRev(8). The value itself is stored once,
// in the log record of modRev.
func encodeIndex(createRev, modRev int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b[0:], uint64(createRev))
	binary.BigEndian.PutUint64(b[8:], uint64(modRev))
	return b
}

func decodeIndex(b []byte) (createRev, modRev int64, err error) {
	if len(b) != 16 {
		return 0, 0, errCorrupt
	}
	return int64(binary.BigEndian.Uint64(b[0:])), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// record is one decoded log record; key and value alias bbolt memory, valid
// only inside the transaction.
type record struct {
	typ       EventType
	createRev int64
	prevMod   int64 // revision of the key's previous write; 0 for a create
	key       []byte
	value     []byte // puts only
}

// Log record (the revision is the bucket key):
//
//	type(1) createRev(8) prevMod(8) keyLen(uvarint) key value
//
// A put carries its new value; a delete carries none: the deleted value is
// the one in log[prevMod], which compaction keeps while it is referenced.
const recordHeader = 17

func encodeRecord(typ EventType, createRev, prevMod int64, key string, value []byte) []byte {
	b := make([]byte, recordHeader, recordHeader+binary.MaxVarintLen64+len(key)+len(value))
	b[0] = byte(typ)
	binary.BigEndian.PutUint64(b[1:], uint64(createRev))
	binary.BigEndian.PutUint64(b[9:], uint64(prevMod))
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHeader+1 {
		return record{}, errCorrupt
	}
	r := record{
		typ:       EventType(b[0]),
		createRev: int64(binary.BigEndian.Uint64(b[1:])),
		prevMod:   int64(binary.BigEndian.Uint64(b[9:])),
	}
	n, w := binary.Uvarint(b[recordHeader:])
	rest := b[recordHeader:]
	if w <= 0 || uint64(len(rest)-w) < n || (r.typ != EventPut && r.typ != EventDelete) {
		return record{}, errCorrupt
	}
	r.key = rest[w : w+int(n)]
	r.value = rest[w+int(n):]
	if r.typ == EventDelete && r.prevMod == 0 {
		return record{}, errCorrupt
	}
	return r, nil
}

// logValue returns a copy of the value key was given at rev. The record's
// key is checked: a wrong one means the index and the log disagree, and
// must be an error, not another key's value.
func logValue(logb *bolt.Bucket, key string, rev int64) ([]byte, error) {
	v := logb.Get(revKey(rev))
	if v == nil {
		return nil, fmt.Errorf("%w: log entry %d missing", errCorrupt, rev)
	}
	r, err := decodeRecord(v)
	if err != nil {
		return nil, err
	}
	if r.typ != EventPut {
		return nil, fmt.Errorf("%w: log entry %d is not a put", errCorrupt, rev)
	}
	if string(r.key) != key {
		return nil, fmt.Errorf("%w: log entry %d is for %q, not %q", errCorrupt, rev, r.key, key)
	}
	return append([]byte{}, r.value...), nil
}

// kvAt reads the KV with the given index entry, taking the value from the log.
func kvAt(logb *bolt.Bucket, key string, createRev, modRev int64) (KeyValue, error) {
	v, err := logValue(logb, key, modRev)
	return KeyValue{Key: key, Value: v, CreateRevision: createRev, ModRevision: modRev}, err
}

// readKV reads the current KV of key; ok is false when it does not exist.
func readKV(tx *bolt.Tx, key string) (kv KeyValue, ok bool, err error) {
	idx := tx.Bucket(bucketKV).Get([]byte(key))
	if idx == nil {
		return KeyValue{}, false, nil
	}
	c, m, err := decodeIndex(idx)
	if err != nil {
		return KeyValue{}, false, err
	}
	kv, err = kvAt(tx.Bucket(bucketLog), key, c, m)
	return kv, err == nil, err
}

// eventAt builds the event of the log record r written at rev.
func eventAt(logb *bolt.Bucket, rev int64, r record) (Event, error) {
	ev := Event{Type: r.typ, KV: KeyValue{Key: string(r.key), CreateRevision: r.createRev, ModRevision: rev}}
	if r.prevMod > 0 {
		prev, err := kvAt(logb, ev.KV.Key, r.createRev, r.prevMod)
		if err != nil {
			return Event{}, err
		}
		ev.PrevKV = &prev
	}
	if r.typ == EventDelete {
		ev.KV.Value = ev.PrevKV.Value
	} else {
		ev.KV.Value = append([]byte{}, r.value...)
	}
	return ev, nil
}
