package apiserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"

	"github.com/skiff-dev/skiff/internal/registry"
	"github.com/skiff-dev/skiff/internal/store"
)

// bookmarkInterval is how often an idle watch with allowWatchBookmarks
// gets a BOOKMARK (kube-apiserver: about a minute; shorter is harmless).
var bookmarkInterval = 30 * time.Second

// watchHub shares the decoding of store events between watchers: with many
// watchers on one resource, each change is decoded and encoded once.
type watchHub struct {
	mu    sync.Mutex
	ring  []hubKey
	next  int
	cache map[hubKey]*decodedKV
}

type hubKey struct {
	key string
	rev int64
}

// decodedKV is one stored value, decoded. obj is shared and read-only.
type decodedKV struct {
	obj  runtime.Object
	err  error
	once sync.Once

	// The encodings are made on first use: a cluster's own controllers
	// watch in protobuf, kubectl and most tools in JSON.
	jsonOnce  sync.Once
	data      []byte // JSON of obj with apiVersion/kind and resourceVersion
	jsonErr   error
	protoOnce sync.Once
	proto     []byte // protobuf envelope of obj, made on first use
}

func newWatchHub(*Server) *watchHub {
	const size = 4096
	return &watchHub{ring: make([]hubKey, size), cache: make(map[hubKey]*decodedKV, size)}
}

// decode returns the shared decoded form of (key, value) at rev.
func (h *watchHub) decode(res *registry.Resource, key string, value []byte, rev int64) *decodedKV {
	k := hubKey{key, rev}
	h.mu.Lock()
	d, ok := h.cache[k]
	if !ok {
		d = &decodedKV{}
		if old := h.ring[h.next]; old.key != "" {
			delete(h.cache, old)
		}
		h.ring[h.next] = k
		h.next = (h.next + 1) % len(h.ring)
		h.cache[k] = d
	}
	h.mu.Unlock()
	d.once.Do(func() { d.obj, d.err = decodeStored(res, value, rev) })
	return d
}

// json returns obj's cached JSON.
func (d *decodedKV) json() ([]byte, error) {
	d.jsonOnce.Do(func() { d.data, d.jsonErr = json.Marshal(d.obj) })
	return d.data, d.jsonErr
}

// watchStream writes watch events to one client.
type watchStream struct {
	s       *Server
	w       http.ResponseWriter
	fl      http.Flusher
	r       *http.Request
	res     *registry.Resource
	m       media
	first   bool
	lastRev int64
}

func (ws *watchStream) sendRaw(typ string, raw []byte) error {
	if ws.m.proto {
		return ws.sendProto(typ, raw)
	}
	buf := make([]byte, 0, len(raw)+32)
	buf = append(buf, `{"type":"`...)
	buf = append(buf, typ...)
	buf = append(buf, `","object":`...)
	buf = append(buf, raw...)
	buf = append(buf, "}\n"...)
	if _, err := ws.w.Write(buf); err != nil {
		return err
	}
	ws.fl.Flush()
	return nil
}

var rawProtobuf = protobuf.NewRawSerializer(registry.Scheme, registry.Scheme)

// sendProto writes one length-delimited protobuf WatchEvent (the framing
// client-go's protobuf watch decoder reads).
func (ws *watchStream) sendProto(typ string, raw []byte) error {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 0}) // length, filled in below
	// The event itself is raw protobuf (no envelope); the object inside it
	// carries the envelope, as kube-apiserver's stream serializer does.
	if err := rawProtobuf.Encode(&metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: raw}}, &buf); err != nil {
		return err
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	if _, err := ws.w.Write(b); err != nil {
		return err
	}
	ws.fl.Flush()
	return nil
}

// send writes one event; d (when not nil) carries obj's cached encodings.
func (ws *watchStream) send(typ string, obj runtime.Object, d *decodedKV) error {
	var raw []byte
	var err error
	if ws.m.proto {
		if d != nil {
			d.protoOnce.Do(func() { d.proto, _ = ws.s.protoBytes(obj) })
			raw = d.proto
		} else {
			raw, _ = ws.s.protoBytes(obj)
		}
		if raw == nil {
			return fmt.Errorf("cannot encode %T as protobuf", obj)
		}
		return ws.sendRaw(typ, raw)
	}
	switch {
	case ws.m.kind == outObject && d != nil:
		raw, err = d.json()
	case ws.m.kind == outTable && typ != "BOOKMARK" && typ != "ERROR":
		raw, err = json.Marshal(ws.s.table(ws.r, ws.res, []runtime.Object{obj}, ws.m, metav1.ListMeta{}, !ws.first))
		ws.first = false
	case ws.m.kind == outPartial && typ != "ERROR":
		raw, err = json.Marshal(partialMeta(obj, ws.m.version))
	default:
		raw, err = json.Marshal(obj)
	}
	if err != nil {
		return err
	}
	return ws.sendRaw(typ, raw)
}

func (ws *watchStream) bookmark(rev int64, initialEnd bool) error {
	obj := newObject(ws.res)
	m, _ := meta.Accessor(obj)
	m.SetResourceVersion(strconv.FormatInt(rev, 10))
	if initialEnd {
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	return ws.send("BOOKMARK", obj, nil)
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request, ri *reqInfo) {
	m, err := negotiate(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if m.yaml {
		m.yaml = false // watch streams are JSON-framed
	}
	opts, f, err := s.listOptions(r, ri, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		s.writeError(w, r, apierrors.NewInternalError(errors.New("streaming unsupported")))
		return
	}
	timeout := time.Duration(float64(30*time.Minute) * (1 + rand.Float64()))
	if opts.TimeoutSeconds != nil && *opts.TimeoutSeconds != 0 {
		// As kube-apiserver: a negative timeout ends the watch at once.
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	asked, err := parseRV(opts.ResourceVersion)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// RV unset or "0": start with the current state as ADDED events, unless
	// sendInitialEvents=false says otherwise.
	sendInitial := asked == 0
	if opts.SendInitialEvents != nil {
		sendInitial = *opts.SendInitialEvents
	}
	explicitInitial := opts.SendInitialEvents != nil && *opts.SendInitialEvents
	var initial []runtime.Object
	from := asked
	if sendInitial {
		// With an RV too (sendInitialEvents): the current state is at
		// least that new.
		objs, rev, err := s.listAll(ctx, ri.res, ri.namespace, 0)
		if err != nil {
			s.writeError(w, r, storeErr(err, ri.gr(), ""))
			return
		}
		for _, o := range objs {
			if f.matches(ri.res, o) {
				initial = append(initial, o)
			}
		}
		from = rev
	} else if asked == 0 {
		if from, err = s.store.CurrentRevision(ctx); err != nil {
			s.writeError(w, r, storeErr(err, ri.gr(), ""))
			return
		}
	}
	var wopts store.WatchOptions
	if opts.AllowWatchBookmarks {
		wopts.ProgressInterval = bookmarkInterval
	}
	ch, werr := s.store.Watch(ctx, collectionPrefix(ri.res, ri.namespace), from, wopts)

	if m.proto {
		w.Header().Set("Content-Type", protobufType+";stream=watch")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	ws := &watchStream{s: s, w: w, fl: fl, r: r, res: ri.res, m: m, first: true, lastRev: from}

	if werr != nil {
		var st metav1.Status
		switch {
		case errors.Is(werr, store.ErrCompacted):
			compacted, _ := s.store.CompactedRevision(ctx)
			st = apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, compacted)).ErrStatus
		case errors.Is(werr, store.ErrFutureRevision):
			cur, _ := s.store.CurrentRevision(ctx)
			st = errTooLargeRV(from, cur).(*apierrors.StatusError).ErrStatus
		default:
			st = storeErr(werr, ri.gr(), "").(apierrors.APIStatus).Status()
		}
		st.Kind, st.APIVersion = "Status", "v1"
		_ = ws.send("ERROR", &st, nil)
		return
	}
	for _, o := range initial {
		if err := ws.send("ADDED", o, nil); err != nil {
			return
		}
	}
	if explicitInitial && opts.AllowWatchBookmarks {
		if err := ws.bookmark(from, true); err != nil {
			return
		}
	}
	filtered := !f.empty()
	for {
		select {
		case <-s.stopped:
			return
		case <-ctx.Done():
			if opts.AllowWatchBookmarks && r.Context().Err() == nil {
				_ = ws.bookmark(ws.lastRev, false)
			}
			return
		case ev, ok := <-ch:
			if !ok {
				// The store dropped us (too slow) or is closing: end the
				// watch; the client re-watches from the last RV it saw.
				return
			}
			if err := ws.handle(ev, f, filtered); err != nil {
				return
			}
		}
	}
}

func (ws *watchStream) handle(ev store.Event, f *filter, filtered bool) error {
	hub := ws.s.watches
	switch ev.Type {
	case store.EventProgress:
		ws.lastRev = ev.KV.ModRevision
		return ws.bookmark(ev.KV.ModRevision, false)
	case store.EventPut:
		ws.lastRev = ev.KV.ModRevision
		cur := hub.decode(ws.res, ev.KV.Key, ev.KV.Value, ev.KV.ModRevision)
		if cur.err != nil {
			ws.s.log.Error("watch decode", "key", ev.KV.Key, "err", cur.err)
			return nil
		}
		typ := "MODIFIED"
		if ev.PrevKV == nil {
			typ = "ADDED"
		}
		if !filtered {
			return ws.send(typ, cur.obj, cur)
		}
		newOK := f.matches(ws.res, cur.obj)
		oldOK := false
		var prev *decodedKV
		if ev.PrevKV != nil {
			prev = hub.decode(ws.res, ev.PrevKV.Key, ev.PrevKV.Value, ev.PrevKV.ModRevision)
			oldOK = prev.err == nil && f.matches(ws.res, prev.obj)
		}
		switch {
		case newOK && oldOK:
			return ws.send("MODIFIED", cur.obj, cur)
		case newOK:
			return ws.send("ADDED", cur.obj, cur)
		case oldOK:
			// It stopped matching: the client sees it deleted, as the old
			// object at the new revision.
			gone := prev.obj.DeepCopyObject()
			setRV(gone, ev.KV.ModRevision)
			return ws.send("DELETED", gone, nil)
		}
		return nil
	case store.EventDelete:
		ws.lastRev = ev.KV.ModRevision
		d := hub.decode(ws.res, ev.KV.Key, ev.KV.Value, ev.KV.ModRevision)
		if d.err != nil {
			ws.s.log.Error("watch decode", "key", ev.KV.Key, "err", d.err)
			return nil
		}
		if filtered && !f.matches(ws.res, d.obj) {
			return nil
		}
		return ws.send("DELETED", d.obj, d)
	}
	return nil
}
