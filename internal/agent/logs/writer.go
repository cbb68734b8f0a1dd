package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of WriterOptions, those of the kubelet (containerLogMaxSize,
// containerLogMaxFiles) and containerd (max_container_log_line_size).
const (
	DefaultMaxSize          = 10 << 20
	DefaultMaxFiles         = 5
	DefaultMaxLineSize      = 16 << 10
	DefaultBufferSize       = 1 << 20
	DefaultMaxBlock         = 2 * time.Second
	DefaultSubscriberChunks = 256
)

// ErrSlowSubscriber ends an Attach whose writer did not keep up with the
// container's output (its buffer of chunks filled up).
var ErrSlowSubscriber = errors.New("logs: attach subscriber too slow, disconnected")

// WriterOptions tune a Writer; zero values select the defaults.
type WriterOptions struct {
	// MaxSize is the size at which the current file is rotated (default
	// 10 MiB). Negative disables rotation.
	MaxSize int64
	// MaxFiles is how many files are kept, the current one included (default
	// 5, minimum 2): the newest rotated file stays plain, older ones are
	// gzip-compressed, and files beyond the count are deleted.
	MaxFiles int
	// MaxLineSize is the longest content of one record: longer lines are split
	// into P records of this size (default 16 KiB, as containerd).
	MaxLineSize int
	// BufferSize bounds the bytes of encoded records waiting for the disk
	// (default 1 MiB). A stream whose record does not fit waits for room.
	BufferSize int
	// MaxBlock is how long a stream waits for room before its record is
	// dropped (counted in Dropped and logged), so that a stuck disk never
	// blocks the container forever (default 2 s; negative: drop at once).
	// After such a drop, records that do not fit are dropped without
	// waiting until the disk makes progress.
	MaxBlock time.Duration
	// SubscriberChunks is how many chunks of output an Attach subscriber may
	// lag behind before it is disconnected with ErrSlowSubscriber (default 256).
	SubscriberChunks int
	// Logger receives warnings (dropped records, write errors); it gets a
	// component=logs attribute. Default slog.Default().
	Logger *slog.Logger

	// test hooks
	now         func() time.Time
	beforeWrite func(n int)
}

func (o *WriterOptions) defaults() {
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxFiles == 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.MaxFiles < 2 {
		o.MaxFiles = 2
	}
	if o.MaxLineSize <= 0 {
		o.MaxLineSize = DefaultMaxLineSize
	}
	if o.MaxLineSize < 16 {
		o.MaxLineSize = 16
	}
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.MaxBlock == 0 {
		o.MaxBlock = DefaultMaxBlock
	}
	if o.SubscriberChunks <= 0 {
		o.SubscriberChunks = DefaultSubscriberChunks
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.now == nil {
		o.now = time.Now
	}
}

// Writer writes a container's stdout and stderr to a CRI log file, rotating
// it by size, and fans the raw output out to Attach subscribers.
//
// Each stream is read by its own goroutine, which splits lines, timestamps
// them and queues the encoded records; one goroutine writes the queue to the
// file in batches and rotates it. The queue is bounded (BufferSize); a stream
// finding it full waits up to MaxBlock, then drops its record, so a slow disk
// slows the container down at worst for MaxBlock per record.
type Writer struct {
	path string
	opts WriterOptions
	log  *slog.Logger

	mu       sync.Mutex
	queue    [][]byte
	queued   int
	closed   bool
	spaceGen chan struct{} // closed and replaced whenever queued shrinks
	dropping bool          // a record timed out; reset when the disk progresses
	dataCh   chan struct{} // cap 1: records were queued or closed was set

	dropped atomic.Uint64
	written atomic.Uint64

	subMu sync.Mutex
	subs  map[*subscriber]struct{}
	ended bool

	copyOnce  sync.Once
	closeOnce sync.Once
	readers   []io.Reader
	copyWG    sync.WaitGroup

	// owned by the flusher goroutine
	file *os.File
	size int64
	pend []byte

	maintCh   chan struct{}
	maintDone chan struct{}
	flushDone chan struct{}
	done      chan struct{}
	err       error
}

// NewWriter opens (appending) or creates the log file at path and its
// directory. Records start flowing once Copy is called.
func NewWriter(path string, opts WriterOptions) (*Writer, error) {
	opts.defaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	w := &Writer{
		path:      path,
		opts:      opts,
		log:       opts.Logger.With("component", "logs", "path", path),
		spaceGen:  make(chan struct{}),
		dataCh:    make(chan struct{}, 1),
		subs:      map[*subscriber]struct{}{},
		maintCh:   make(chan struct{}, 1),
		maintDone: make(chan struct{}),
		flushDone: make(chan struct{}),
		done:      make(chan struct{}),
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	go w.maintain()
	w.maintCh <- struct{}{} // clean up what an earlier writer left
	go w.flush()
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logs: %w", err)
	}
	w.file, w.size = f, fi.Size()
	return nil
}

// Path is the file the writer writes to.
func (w *Writer) Path() string { return w.path }

// Dropped is the number of records dropped because the buffer stayed full
// for MaxBlock.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Done is closed once the writer has finished: its streams ended (or Close
// was called), every queued record is on disk and the file is closed. Pass
// it as ReadOptions.Done to followers of this file.
func (w *Writer) Done() <-chan struct{} { return w.done }

// Copy starts copying the container's streams (either may be nil; a TTY
// container has only stdout). It may be called once; when every given stream
// has reached EOF (the container and all its processes exited), the writer
// flushes and closes itself. Readers that are io.Closers are closed by Close.
func (w *Writer) Copy(stdout, stderr io.Reader) {
	w.copyOnce.Do(func() {
		for _, s := range []struct {
			name Stream
			r    io.Reader
		}{{Stdout, stdout}, {Stderr, stderr}} {
			if s.r == nil {
				continue
			}
			w.readers = append(w.readers, s.r)
			w.copyWG.Add(1)
			go w.copyStream(s.name, s.r)
		}
		go func() {
			w.copyWG.Wait()
			w.finish()
		}()
	})
}

// Close stops reading the streams (closing those that are io.Closers),
// writes what is queued, closes the file and waits for the compression of
// rotated files. It is safe to call more than once and after the streams
// ended on their own.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		w.copyOnce.Do(func() { go w.finish() }) // Copy never called
		for _, r := range w.readers {
			if c, ok := r.(io.Closer); ok {
				_ = c.Close()
			}
		}
	})
	<-w.done
	return w.err
}

func (w *Writer) copyStream(name Stream, r io.Reader) {
	defer w.copyWG.Done()
	br := bufio.NewReaderSize(r, w.opts.MaxLineSize)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			w.broadcast(name, line)
			now := w.opts.now()
			var rec []byte
			if err == nil {
				content := line[:len(line)-1]
				if n := len(content); n > 0 && content[n-1] == '\r' {
					content = content[:n-1] // as bufio.ReadLine in containerd
				}
				rec = AppendLine(make([]byte, 0, len(content)+48), now, name, false, content)
			} else {
				rec = AppendLine(make([]byte, 0, len(line)+48), now, name, true, line)
			}
			w.enqueue(rec)
		}
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
			w.log.Warn("reading container stream", "stream", string(name), "err", err)
		}
		return
	}
}

func (w *Writer) enqueue(rec []byte) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	w.mu.Lock()
	for w.queued > 0 && w.queued+len(rec) > w.opts.BufferSize {
		if w.opts.MaxBlock < 0 || w.dropping {
			w.mu.Unlock()
			w.drop()
			return
		}
		if timer == nil {
			timer = time.NewTimer(w.opts.MaxBlock)
		}
		gen := w.spaceGen
		w.mu.Unlock()
		select {
		case <-gen:
		case <-timer.C:
			// Until the disk makes progress, drop without waiting again.
			w.mu.Lock()
			w.dropping = true
			w.mu.Unlock()
			w.drop()
			return
		}
		w.mu.Lock()
	}
	w.queue = append(w.queue, rec)
	w.queued += len(rec)
	w.mu.Unlock()
	select {
	case w.dataCh <- struct{}{}:
	default:
	}
}

func (w *Writer) drop() {
	if w.dropped.Add(1) == 1 || w.dropped.Load()%1000 == 0 {
		w.log.Warn("log buffer full, dropping container output", "dropped", w.dropped.Load())
	}
}

// finish runs once the streams ended: it lets the flusher drain and exit.
func (w *Writer) finish() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.dataCh <- struct{}{}:
	default:
	}
	<-w.flushDone
	close(w.maintCh)
	<-w.maintDone
	w.subMu.Lock()
	w.ended = true
	for s := range w.subs {
		close(s.ch)
		delete(w.subs, s)
	}
	w.subMu.Unlock()
	// Followers still draining may need the rotation names for a while.
	time.AfterFunc(time.Minute, func() { forgetRotations(w.path) })
	close(w.done)
}

func (w *Writer) flush() {
	defer close(w.flushDone)
	var failing bool
	for {
		w.mu.Lock()
		batch, closed := w.queue, w.closed
		w.queue = nil
		w.mu.Unlock()
		if len(batch) == 0 {
			if closed {
				break
			}
			<-w.dataCh
			continue
		}
		n := 0
		for _, rec := range batch {
			n += len(rec)
			if w.opts.MaxSize > 0 && w.size+int64(len(w.pend)) > 0 &&
				w.size+int64(len(w.pend)+len(rec)) > w.opts.MaxSize {
				failing = w.writePending(failing)
				w.rotate()
			}
			w.pend = append(w.pend, rec...)
		}
		failing = w.writePending(failing)
		w.mu.Lock()
		w.queued -= n
		w.dropping = false
		close(w.spaceGen)
		w.spaceGen = make(chan struct{})
		w.mu.Unlock()
	}
	if w.file != nil {
		if err := w.file.Close(); err != nil {
			w.err = fmt.Errorf("logs: %w", err)
		}
		w.file = nil
	}
}

// writePending writes w.pend; errors are logged once per run of failures and
// the data dropped (the container must not wait on a broken disk).
func (w *Writer) writePending(failing bool) bool {
	if len(w.pend) == 0 {
		return failing
	}
	defer func() { w.pend = w.pend[:0] }()
	if w.opts.beforeWrite != nil {
		w.opts.beforeWrite(len(w.pend))
	}
	if w.file == nil {
		if err := w.open(); err != nil {
			if !failing {
				w.log.Error("reopening log file", "err", err)
			}
			return true
		}
	}
	n, err := w.file.Write(w.pend)
	w.size += int64(n)
	w.written.Add(uint64(n))
	if err != nil {
		if !failing {
			w.log.Error("writing log file", "err", err)
		}
		return true
	}
	return false
}

// rotate renames the current file to PATH.<timestamp> and opens a new one,
// then asks the maintenance goroutine to compress and prune.
func (w *Writer) rotate() {
	var fi os.FileInfo
	if w.file != nil {
		fi, _ = w.file.Stat()
		_ = w.file.Close()
		w.file = nil
	}
	t := w.opts.now().UTC()
	var dst string
	for {
		dst = w.path + "." + t.Format(rotatedTimeFormat)
		if _, err := os.Lstat(dst); os.IsNotExist(err) {
			if _, err := os.Lstat(dst + ".gz"); os.IsNotExist(err) {
				break
			}
		}
		t = t.Add(time.Nanosecond)
	}
	if err := os.Rename(w.path, dst); err != nil {
		w.log.Error("rotating log file", "err", err)
	} else if fi != nil {
		recordRotation(w.path, fi, t.Format(rotatedTimeFormat), max(64, w.opts.MaxFiles))
	}
	if err := w.open(); err != nil {
		w.log.Error("reopening log file after rotation", "err", err)
	}
	select {
	case w.maintCh <- struct{}{}:
	default:
	}
}

type subscriber struct {
	ch chan chunk
}

type chunk struct {
	stream Stream
	data   []byte
}

func (w *Writer) broadcast(s Stream, data []byte) {
	w.subMu.Lock()
	defer w.subMu.Unlock()
	if len(w.subs) == 0 {
		return
	}
	c := chunk{stream: s, data: append([]byte(nil), data...)}
	for sub := range w.subs {
		select {
		case sub.ch <- c:
		default:
			close(sub.ch)
			delete(w.subs, sub)
			w.log.Warn("attach subscriber too slow, disconnecting")
		}
	}
}

// Attach streams the container's raw output, from now on, to stdout and
// stderr (either may be nil to discard that stream) until ctx ends or the
// writer is done; it returns nil then. A subscriber that lags more than
// SubscriberChunks chunks behind is disconnected with ErrSlowSubscriber, so it
// never slows the container down. This is `kubectl attach` for containers
// without a TTY (the runtime streams TTY output itself).
func (w *Writer) Attach(ctx context.Context, stdout, stderr io.Writer) error {
	sub := &subscriber{ch: make(chan chunk, w.opts.SubscriberChunks)}
	w.subMu.Lock()
	if w.ended {
		w.subMu.Unlock()
		return nil
	}
	w.subs[sub] = struct{}{}
	w.subMu.Unlock()
	defer func() {
		w.subMu.Lock()
		if _, ok := w.subs[sub]; ok {
			delete(w.subs, sub)
			close(sub.ch)
		}
		w.subMu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-sub.ch:
			if !ok {
				select {
				case <-w.done:
					return nil
				default:
				}
				w.subMu.Lock()
				ended := w.ended
				w.subMu.Unlock()
				if ended {
					return nil
				}
				return ErrSlowSubscriber
			}
			dst := stdout
			if c.stream == Stderr {
				dst = stderr
			}
			if dst == nil {
				continue
			}
			if _, err := dst.Write(c.data); err != nil {
				return err
			}
		}
	}
}
