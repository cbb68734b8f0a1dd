package logs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DefaultPollInterval is how often a follower checks the file for new lines
// and rotation (the kubelet uses fsnotify plus a 1 s forced check).
const DefaultPollInterval = 100 * time.Millisecond

// ErrInvalidOptions is returned by FromPodLogOptions for option combinations
// the API server's validation rejects.
var ErrInvalidOptions = errors.New("logs: invalid log options")

// ReadOptions are the options of `kubectl logs` (corev1.PodLogOptions) in the
// form ReadLogs uses; build them with FromPodLogOptions. The zero value reads
// everything once.
type ReadOptions struct {
	// Follow keeps reading as lines are appended and the file is rotated,
	// until ctx ends or Done is closed and what was written is read.
	Follow bool
	// Done is closed when no more lines will be written (Writer.Done); nil
	// follows until ctx ends. A container that is not running: pass a closed
	// channel (or leave Follow unset).
	Done <-chan struct{}
	// TailLines, if set, starts at that many records before the end (records
	// counted as the kubelet does: lines of the file, so pieces of a
	// partial line count separately, both streams counted). Without Follow,
	// reading stops after that many records.
	TailLines *int64
	// Since skips records older than this time (zero: none).
	Since time.Time
	// Timestamps prefixes each line with its time in TimeFormat and a space.
	Timestamps bool
	// LimitBytes stops after this many bytes of output (prefixes included).
	LimitBytes *int64
	// Stream selects one stream ("" or "All": both). Skipped records count
	// toward TailLines but not toward LimitBytes, as in the kubelet.
	Stream Stream
	// CurrentOnly reads only the current file, as the kubelet does; by
	// default the rotated files of the same run are read first, oldest first
	// (compressed ones included).
	CurrentOnly bool
	// PollInterval is the follow polling period (default DefaultPollInterval).
	PollInterval time.Duration
	// Logger receives warnings about malformed lines (default slog.Default()).
	Logger *slog.Logger
}

// FromPodLogOptions converts the options of a pods/log request, as the
// kubelet's NewLogOptions does: SinceSeconds counts back from now and the
// later of it and SinceTime wins. Previous and Container select the file and
// are the caller's business. It rejects what API validation rejects: a
// specific stream together with TailLines, negative TailLines, LimitBytes or
// SinceSeconds < 1, and an unknown stream.
func FromPodLogOptions(o *corev1.PodLogOptions, now time.Time) (ReadOptions, error) {
	var r ReadOptions
	if o == nil {
		return r, nil
	}
	r.Follow = o.Follow
	r.Timestamps = o.Timestamps
	if o.TailLines != nil {
		if *o.TailLines < 0 {
			return r, fmt.Errorf("%w: tailLines must be >= 0", ErrInvalidOptions)
		}
		v := *o.TailLines
		r.TailLines = &v
	}
	if o.LimitBytes != nil {
		if *o.LimitBytes < 1 {
			return r, fmt.Errorf("%w: limitBytes must be > 0", ErrInvalidOptions)
		}
		v := *o.LimitBytes
		r.LimitBytes = &v
	}
	if o.SinceSeconds != nil {
		if *o.SinceSeconds < 1 {
			return r, fmt.Errorf("%w: sinceSeconds must be > 0", ErrInvalidOptions)
		}
		r.Since = now.Add(-time.Duration(*o.SinceSeconds) * time.Second)
	}
	if o.SinceTime != nil && o.SinceTime.After(r.Since) {
		r.Since = o.SinceTime.Time
	}
	if o.Stream != nil {
		switch *o.Stream {
		case corev1.LogStreamAll:
		case corev1.LogStreamStdout:
			r.Stream = Stdout
		case corev1.LogStreamStderr:
			r.Stream = Stderr
		default:
			return r, fmt.Errorf("%w: stream %q", ErrInvalidOptions, *o.Stream)
		}
		if r.Stream != "" && o.TailLines != nil {
			return r, fmt.Errorf("%w: tailLines and a specific stream are mutually exclusive", ErrInvalidOptions)
		}
	}
	return r, nil
}

// errMaxBytes ends reading once LimitBytes were written.
var errMaxBytes = errors.New("limit bytes reached")

// output applies since, stream selection, timestamps and the byte limit, as
// the kubelet's logWriter.
type output struct {
	w       io.Writer
	opts    *ReadOptions
	remain  int64
	newLine map[Stream]bool // next record of the stream starts a line
	buf     []byte
}

// write outputs one record; nl tells whether its file line ended with a
// newline (an F record without one, the incomplete last line of a file, is
// written without a newline, as the kubelet does).
func (o *output) write(m *Message, nl bool) error {
	if m.Time.Before(o.opts.Since) {
		return nil
	}
	if o.opts.Stream != "" && o.opts.Stream != "All" && m.Stream != o.opts.Stream {
		return nil
	}
	startsLine := o.newLine[m.Stream]
	o.buf = o.buf[:0]
	if o.opts.Timestamps && startsLine {
		o.buf = m.Time.UTC().AppendFormat(o.buf, TimeFormat)
		o.buf = append(o.buf, ' ')
	}
	o.buf = append(o.buf, m.Content...)
	full := !m.Partial && nl
	if full {
		o.buf = append(o.buf, '\n')
	}
	o.newLine[m.Stream] = full || len(m.Content) == 0
	line := o.buf
	if int64(len(line)) > o.remain {
		line = line[:o.remain]
	}
	n, err := o.w.Write(line)
	o.remain -= int64(n)
	if err != nil {
		return err
	}
	if n < len(line) {
		return io.ErrShortWrite
	}
	if o.remain <= 0 {
		return errMaxBytes
	}
	return nil
}

// ReadLogs writes the logs of one container run, whose current file is path,
// to w as `kubectl logs` shows them (see ReadOptions). It returns nil when
// done (end of file, tail or byte limit reached, or Done closed and
// everything read) and ctx.Err() if ctx ends first.
func ReadLogs(ctx context.Context, path string, opts ReadOptions, w io.Writer) error {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &reader{
		ctx:  ctx,
		path: path,
		opts: &opts,
		log:  opts.Logger.With("component", "logs", "path", path),
		out:  &output{w: w, opts: &opts, remain: math.MaxInt64, newLine: map[Stream]bool{Stdout: true, Stderr: true}},
	}
	if opts.LimitBytes != nil {
		r.out.remain = *opts.LimitBytes
	}
	r.limited = opts.TailLines != nil && !opts.Follow
	if opts.TailLines != nil {
		r.left = *opts.TailLines
	}
	err := r.run()
	if errors.Is(err, errMaxBytes) || errors.Is(err, errTailDone) {
		return nil
	}
	return err
}

var errTailDone = errors.New("tail lines reached")

type reader struct {
	ctx     context.Context
	path    string
	opts    *ReadOptions
	log     *slog.Logger
	out     *output
	limited bool
	left    int64
}

func (r *reader) run() error {
	// Open the current file first (it must exist, as for the kubelet), then
	// list the rotated ones: the list and the open file are consistent. If
	// the file was rotated in between, it is among the list: keep only the
	// files before it.
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	defer func() { f.Close() }()
	segs := []segment{{path: r.path, key: "~"}}
	if !r.opts.CurrentOnly {
		if segs, err = segments(r.path); err != nil {
			return err
		}
		if fi, err := f.Stat(); err == nil {
			for i, s := range segs[:len(segs)-1] {
				if si, err := os.Stat(s.path); err == nil && !s.gz && os.SameFile(si, fi) {
					segs = append(segs[:i], segment{path: r.path, key: "~"})
					break
				}
			}
		}
	}
	start, skip, off := 0, int64(0), int64(0)
	if r.opts.TailLines != nil {
		if start, skip, off, err = tailStart(segs, f, *r.opts.TailLines); err != nil {
			return err
		}
	}
	for i := start; i < len(segs)-1; i++ {
		if err := r.readRotated(segs[i], skip, off); err != nil {
			return err
		}
		skip, off = 0, 0
	}
	return r.readCurrent(&f, off)
}

// readRotated reads a whole rotated segment from the given start.
func (r *reader) readRotated(s segment, skip, off int64) error {
	rc, err := openSegment(s)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // pruned meanwhile
		}
		return fmt.Errorf("logs: %w", err)
	}
	defer rc.Close()
	if off > 0 {
		if sk, ok := rc.(io.Seeker); ok {
			_, err = sk.Seek(off, io.SeekStart)
		} else { // compressed since tailStart looked at it
			_, err = io.CopyN(io.Discard, rc, off)
		}
		if err != nil {
			return fmt.Errorf("logs: %w", err)
		}
	}
	return r.readAll(bufio.NewReaderSize(rc, 64<<10), skip)
}

// readAll processes every line of br (the last one even without newline).
func (r *reader) readAll(br *bufio.Reader, skip int64) error {
	for {
		l, err := br.ReadBytes('\n')
		if len(l) > 0 {
			if skip > 0 {
				skip--
			} else if perr := r.process(l); perr != nil {
				return perr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("logs: %w", err)
		}
	}
}

// process handles one file line.
func (r *reader) process(l []byte) error {
	if r.limited && r.left <= 0 {
		return errTailDone
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	m, err := ParseLine(l)
	if err != nil {
		r.log.Warn("malformed log line", "err", err)
		return nil
	}
	if err := r.out.write(&m, l[len(l)-1] == '\n'); err != nil {
		return err
	}
	if r.limited {
		r.left--
		if r.left <= 0 {
			return errTailDone
		}
	}
	return nil
}

// readCurrent reads the live file from off and, when following, keeps going
// through rotations until Done.
func (r *reader) readCurrent(fp **os.File, off int64) error {
	f := *fp
	defer func() { *fp = f }() // the caller closes the file followed last
	if r.limited && r.left <= 0 {
		return nil
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil { // tailStart moved it
		return fmt.Errorf("logs: %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	if !r.opts.Follow {
		return r.readAll(br, 0)
	}
	var carry []byte // a line not yet complete
	var final bool
	var tick *time.Ticker
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		l, err := br.ReadBytes('\n')
		if err == nil {
			if len(carry) > 0 {
				l = append(carry, l...)
				carry = nil
			}
			if err := r.process(l); err != nil {
				return err
			}
			continue
		}
		if err != io.EOF {
			return fmt.Errorf("logs: %w", err)
		}
		carry = append(carry, l...)
		// At the end of f: was it rotated away?
		rotated, key, err := r.rotatedFrom(f)
		if err != nil {
			return err
		}
		if rotated {
			// f is complete: its rotation happened after its last write.
			if l, err := io.ReadAll(br); err == nil {
				carry = append(carry, l...)
			}
			for _, line := range splitLines(carry) {
				if err := r.process(line); err != nil {
					return err
				}
			}
			carry = nil
			nf, err := r.advance(key, &tick, &final)
			if err != nil || nf == nil {
				return err
			}
			f.Close()
			f = nf
			br.Reset(f)
			continue
		}
		if final {
			if len(carry) > 0 {
				return r.process(carry) // incomplete last line, as the kubelet
			}
			return nil
		}
		if err := r.wait(&tick, &final); err != nil {
			return err
		}
	}
}

// wait sleeps one poll interval, or until Done (then final is set so the
// caller reads once more and stops) or ctx ends.
func (r *reader) wait(tick **time.Ticker, final *bool) error {
	select {
	case <-r.opts.Done:
		*final = true
		return nil
	default:
	}
	if *tick == nil {
		*tick = time.NewTicker(r.opts.PollInterval)
	}
	select {
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-r.opts.Done:
		*final = true
	case <-(*tick).C:
	}
	return nil
}

// rotatedFrom reports whether path no longer names f and, if so, the
// rotation key (name suffix) f got: found among the plain rotated files by
// identity, or in the in-process record of rotations if it was compressed
// already; "" if unknown.
func (r *reader) rotatedFrom(f *os.File) (bool, string, error) {
	cur, err := os.Stat(r.path)
	if err != nil && !os.IsNotExist(err) {
		return false, "", fmt.Errorf("logs: %w", err)
	}
	fi, err2 := f.Stat()
	if err2 != nil {
		return false, "", fmt.Errorf("logs: %w", err2)
	}
	if err == nil && os.SameFile(cur, fi) {
		return false, "", nil
	}
	segs, err := segments(r.path)
	if err != nil {
		return false, "", err
	}
	for _, s := range segs[:len(segs)-1] {
		if s.gz {
			continue
		}
		if si, err := os.Stat(s.path); err == nil && os.SameFile(si, fi) {
			return true, s.key, nil
		}
	}
	if key, ok := rotatedKey(r.path, fi); ok {
		return true, key, nil
	}
	return true, "", nil
}

// advance finds the file to follow after the rotated file with key
// lastKey: it reads every rotated file newer than lastKey, then opens the
// current file, making sure no rotation slipped in between. It returns nil
// when following must end (the current file is gone after Done).
func (r *reader) advance(lastKey string, tick **time.Ticker, final *bool) (*os.File, error) {
	firstAfter := func() (segment, bool, error) {
		segs, err := segments(r.path)
		if err != nil {
			return segment{}, false, err
		}
		rot := segs[:len(segs)-1]
		if lastKey == "" && len(rot) > 0 {
			r.log.Warn("follower lost track of a rotated log file; lines may be skipped")
			lastKey = rot[len(rot)-1].key
		}
		for _, s := range rot {
			if s.key > lastKey {
				return s, true, nil
			}
		}
		return segment{}, false, nil
	}
	for {
		s, ok, err := firstAfter()
		if err != nil {
			return nil, err
		}
		if ok {
			if err := r.readRotated(s, 0, 0); err != nil {
				return nil, err
			}
			lastKey = s.key
			continue
		}
		nf, err := os.Open(r.path)
		if err != nil {
			if !os.IsNotExist(err) {
				return nil, fmt.Errorf("logs: %w", err)
			}
			if *final {
				return nil, nil
			}
			// Between rename and create.
			if err := r.wait(tick, final); err != nil {
				return nil, err
			}
			continue
		}
		s, ok, err = firstAfter()
		if err != nil {
			nf.Close()
			return nil, err
		}
		if !ok {
			return nf, nil
		}
		// Rotated again meanwhile: if nf is that file, follow it (its own
		// rotation is seen at its end); otherwise read the rotated files first.
		nfi, err1 := nf.Stat()
		si, err2 := os.Stat(s.path)
		if err1 == nil && err2 == nil && !s.gz && os.SameFile(nfi, si) {
			return nf, nil
		}
		nf.Close()
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i+1])
		b = b[i+1:]
	}
	return out
}

const tailBlockSize = 4096

// tailStart finds where reading must start to get the last n records of the
// segments: the segment index, records to skip in it (compressed segments)
// and the byte offset in it (plain ones). Records are counted as the kubelet's
// tail.FindTailLineStartIndex does, by newlines from the end of each file.
func tailStart(segs []segment, cur *os.File, n int64) (idx int, skip, off int64, err error) {
	idx = len(segs) - 1
	for i := len(segs) - 1; i >= 0; i-- {
		s := segs[i]
		var cnt int64
		if s.gz || s.key != "~" && !fileExists(s.path) {
			rc, err := openSegment(s)
			if err != nil {
				if os.IsNotExist(err) {
					continue
				}
				return 0, 0, 0, fmt.Errorf("logs: %w", err)
			}
			cnt, err = countNewlines(rc)
			rc.Close()
			if err != nil {
				return 0, 0, 0, fmt.Errorf("logs: %s: %w", s.path, err)
			}
			if cnt > n {
				return i, cnt - n, 0, nil
			}
		} else {
			f := cur
			if s.key != "~" {
				if f, err = os.Open(s.path); err != nil {
					if os.IsNotExist(err) {
						continue
					}
					return 0, 0, 0, fmt.Errorf("logs: %w", err)
				}
			}
			var o int64
			o, cnt, err = fileTailStart(f, n)
			if f != cur {
				f.Close()
			}
			if err != nil {
				return 0, 0, 0, fmt.Errorf("logs: %s: %w", s.path, err)
			}
			if cnt > n {
				return i, 0, o, nil
			}
		}
		n -= cnt
		idx = i
		if n == 0 {
			break
		}
	}
	return idx, 0, 0, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func countNewlines(r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var cnt int64
	for {
		k, err := r.Read(buf)
		cnt += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return cnt, nil
		}
		if err != nil {
			return cnt, err
		}
	}
}

// fileTailStart scans f backwards for newlines. If it holds more than n, it
// returns the offset just after the (n+1)th newline from the end and a count
// > n; otherwise offset 0 and the number of newlines.
func fileTailStart(f io.ReadSeeker, n int64) (int64, int64, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, err
	}
	buf := make([]byte, tailBlockSize)
	var cnt int64
	for right := size; right > 0; {
		left := max(right-tailBlockSize, 0)
		b := buf[:right-left]
		if _, err := f.Seek(left, io.SeekStart); err != nil {
			return 0, 0, err
		}
		if _, err := io.ReadFull(f, b); err != nil {
			return 0, 0, err
		}
		for j := len(b) - 1; j >= 0; j-- {
			if b[j] != '\n' {
				continue
			}
			cnt++
			if cnt > n {
				return left + int64(j) + 1, cnt, nil
			}
		}
		right = left
	}
	return 0, cnt, nil
}
