package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newWriter(t *testing.T, path string, o WriterOptions) *Writer {
	t.Helper()
	o.Logger = quiet
	w, err := NewWriter(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func fileLines(t *testing.T, path string) []Message {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Message
	for _, l := range splitLines(data) {
		m, err := ParseLine(l)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestWriterFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c", "0.log")
	w := newWriter(t, path, WriterOptions{})
	before := time.Now()
	w.Copy(strings.NewReader("hello\n\nwin\r\nno newline"), strings.NewReader("err\n"))
	<-w.Done()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ms := fileLines(t, path)
	var out, errs []string
	for _, m := range ms {
		if m.Time.Before(before) || m.Time.After(time.Now()) || m.Time.Location() != time.UTC {
			t.Fatalf("bad time %v", m.Time)
		}
		s := fmt.Sprintf("%v:%s", m.Partial, m.Content)
		if m.Stream == Stdout {
			out = append(out, s)
		} else {
			errs = append(errs, s)
		}
	}
	// As containerd: "\r\n" ends a line like "\n", a last line without newline is P.
	if want := []string{"false:hello", "false:", "false:win", "true:no newline"}; fmt.Sprint(out) != fmt.Sprint(want) {
		t.Fatalf("stdout %q want %q", out, want)
	}
	if fmt.Sprint(errs) != "[false:err]" {
		t.Fatalf("stderr %q", errs)
	}
	raw, _ := os.ReadFile(path)
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [FP] `).Match(raw) {
		t.Fatalf("format: %q", raw)
	}
	if got := read(t, path, ReadOptions{Stream: Stdout}); got != "hello\n\nwin\nno newline" {
		t.Fatalf("read back %q", got)
	}
}

func TestWriterHugeLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := newWriter(t, path, WriterOptions{MaxLineSize: 1000})
	huge := strings.Repeat("0123456789", 10_050) // 100.5 KB
	w.Copy(strings.NewReader("small\n"+huge+"\nafter\n"), nil)
	<-w.Done()
	ms := fileLines(t, path)
	var parts int
	for _, m := range ms {
		if len(m.Content) > 1000 {
			t.Fatalf("record of %d bytes", len(m.Content))
		}
		if m.Partial {
			parts++
		}
	}
	if parts != 100 || len(ms) != 103 {
		t.Fatalf("%d records, %d partial", len(ms), parts)
	}
	if got := read(t, path, ReadOptions{}); got != "small\n"+huge+"\nafter\n" {
		t.Fatalf("read back %d bytes", len(got))
	}
	// With timestamps the joined line has one prefix.
	got := read(t, path, ReadOptions{Timestamps: true})
	if n := strings.Count(got, "Z "); n != 3 {
		t.Fatalf("%d prefixes", n)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestWriterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	w := newWriter(t, path, WriterOptions{MaxSize: 2000, MaxFiles: 4})
	var in strings.Builder
	const n = 400
	for i := range n {
		fmt.Fprintf(&in, "line %04d\n", i) // records of 51 bytes, 39 per file
	}
	w.Copy(strings.NewReader(in.String()), nil)
	<-w.Done()
	names := listDir(t, dir)
	re := regexp.MustCompile(`^0\.log\.\d{8}-\d{6}\.\d{9}(\.gz)?$`)
	var gz, plain int
	for _, n := range names[1:] {
		if !re.MatchString(n) {
			t.Fatalf("unexpected file %q in %q", n, names)
		}
		if strings.HasSuffix(n, ".gz") {
			gz++
		} else {
			plain++
		}
	}
	// current + newest rotated plain + older compressed, 4 in all.
	if names[0] != "0.log" || len(names) != 4 || plain != 1 || gz != 2 {
		t.Fatalf("files %q", names)
	}
	for _, n := range names {
		if fi, _ := os.Stat(filepath.Join(dir, n)); fi.Size() > 2000 {
			t.Fatalf("%s is %d bytes", n, fi.Size())
		}
	}
	// Reading spans the rotated files in order and ends with the last line.
	got := strings.Split(strings.TrimSuffix(read(t, path, ReadOptions{}), "\n"), "\n")
	if len(got) < 3*39 || got[len(got)-1] != "line 0399" {
		t.Fatalf("read %d lines, last %q", len(got), got[len(got)-1])
	}
	first := 0
	fmt.Sscanf(got[0], "line %d", &first)
	for i, l := range got {
		if l != fmt.Sprintf("line %04d", first+i) {
			t.Fatalf("line %d = %q", i, l)
		}
	}
	// Tail across files, and the kubelet's view of the current file only.
	for _, k := range []int{5, 39, 40, 100, 150} {
		g := read(t, path, ReadOptions{TailLines: i64(int64(k))})
		want := strings.Join(got[max(0, len(got)-k):], "\n") + "\n"
		if g != want {
			t.Fatalf("tail %d: got %q", k, g)
		}
	}
	cur := read(t, path, ReadOptions{CurrentOnly: true})
	if !strings.HasSuffix(cur, "line 0399\n") || strings.Count(cur, "\n") > 40 {
		t.Fatalf("current only: %q", cur)
	}
	// Since skips whole older files' lines.
	if g := read(t, path, ReadOptions{Since: time.Now().Add(time.Hour)}); g != "" {
		t.Fatalf("since future: %q", g)
	}
}

func TestWriterReopenAppendsAndPrunes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	// Leftovers: stale temporary file, a plain file whose .gz exists.
	writeFile(t, path+".20260101-000000.000000000.gz.tmp", "x")
	w := newWriter(t, path, WriterOptions{MaxSize: 100})
	w.Copy(strings.NewReader("first\n"), nil)
	<-w.Done()
	w2 := newWriter(t, path, WriterOptions{MaxSize: 100})
	w2.Copy(strings.NewReader("second\n"), nil)
	<-w2.Done()
	if got := read(t, path, ReadOptions{}); got != "first\nsecond\n" {
		t.Fatalf("got %q", got)
	}
	for _, n := range listDir(t, dir) {
		if strings.HasSuffix(n, ".tmp") {
			t.Fatalf("tmp left: %q", n)
		}
	}
}

// pipeLines writes lines to a pipe with small pauses, for follow tests.
func pipeLines(t *testing.T, n int, every int, pause time.Duration) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		for i := range n {
			fmt.Fprintf(pw, "line %05d %s\n", i, strings.Repeat("y", i%17))
			if every > 0 && i%every == 0 {
				time.Sleep(pause)
			}
		}
		pw.Close()
	}()
	return pr
}

func TestFollowWithRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	// Many small files so that the follower sees rotations, compression and
	// several rotations between two polls; MaxFiles is large enough that
	// nothing it has not read is deleted.
	w := newWriter(t, path, WriterOptions{MaxSize: 1500, MaxFiles: 1000})
	const n = 3000
	var outs [3]bytes.Buffer
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range outs {
		poll := []time.Duration{time.Millisecond, 20 * time.Millisecond, 200 * time.Millisecond}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- ReadLogs(context.Background(), path, ReadOptions{Follow: true, Done: w.Done(), PollInterval: poll, Logger: quiet}, &outs[i])
		}()
	}
	time.Sleep(20 * time.Millisecond)
	w.Copy(pipeLines(t, n, 100, 5*time.Millisecond), nil)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var want strings.Builder
	for i := range n {
		fmt.Fprintf(&want, "line %05d %s\n", i, strings.Repeat("y", i%17))
	}
	for i := range outs {
		if outs[i].String() != want.String() {
			got := strings.Split(outs[i].String(), "\n")
			t.Fatalf("follower %d: %d lines, want %d; first %q last %q", i, len(got)-1, n, got[0], got[max(0, len(got)-2)])
		}
	}
	if len(listDir(t, dir)) < 10 {
		t.Fatalf("expected many rotations: %q", listDir(t, dir))
	}
}

func TestFollowTailZeroSeesOnlyNewLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeFile(t, path, rec(1, Stdout, "F", "old"))
	w := newWriter(t, path, WriterOptions{})
	pr, pw := io.Pipe()
	w.Copy(pr, nil)
	var out bytes.Buffer
	done := make(chan error)
	go func() {
		done <- ReadLogs(context.Background(), path, ReadOptions{Follow: true, Done: w.Done(), TailLines: i64(0), PollInterval: time.Millisecond, Logger: quiet}, &out)
	}()
	time.Sleep(50 * time.Millisecond)
	io.WriteString(pw, "new 1\nnew ")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(pw, "2\n")
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out.String() != "new 1\nnew 2\n" {
		t.Fatalf("got %q", out.String())
	}
}

func TestSlowDiskDoesNotBlockProducer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	release := make(chan struct{})
	var once sync.Once
	var writes atomic.Int64
	o := WriterOptions{BufferSize: 64 << 10, MaxBlock: 50 * time.Millisecond}
	o.beforeWrite = func(int) {
		writes.Add(1)
		<-release // the disk is stuck until released
	}
	w := newWriter(t, path, o)
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	pr, pw := io.Pipe()
	w.Copy(pr, nil)
	line := strings.Repeat("z", 99) + "\n"
	// Within the buffer: the producer never waits for the disk.
	start := time.Now()
	for range 300 { // ~44 KB of records
		if _, err := io.WriteString(pw, line); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("producer blocked %v within the buffer", d)
	}
	if w.Dropped() != 0 {
		t.Fatalf("dropped %d within the buffer", w.Dropped())
	}
	// Beyond it: records are dropped after MaxBlock each, the producer goes on.
	doneWriting := make(chan struct{})
	go func() {
		for range 400 {
			io.WriteString(pw, line)
		}
		close(doneWriting)
	}()
	select {
	case <-doneWriting:
	case <-time.After(60 * time.Second):
		t.Fatal("producer blocked by a stuck disk")
	}
	if w.Dropped() == 0 {
		t.Fatal("nothing dropped")
	}
	once.Do(func() { close(release) })
	pw.Close()
	<-w.Done()
	got := strings.Count(read(t, path, ReadOptions{}), "\n")
	if got+int(w.Dropped()) != 700 || got < 300 {
		t.Fatalf("%d lines on disk, %d dropped", got, w.Dropped())
	}
}

func TestAttach(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := newWriter(t, path, WriterOptions{SubscriberChunks: 4})
	opr, opw := io.Pipe()
	epr, epw := io.Pipe()
	w.Copy(opr, epr)

	var so, se syncBuf
	attached := make(chan error, 1)
	go func() { attached <- w.Attach(context.Background(), &so, &se) }()
	waitSubs(t, w, 1)
	io.WriteString(opw, "out\r\n")
	io.WriteString(epw, "err\n")
	io.WriteString(opw, "partial")

	// A subscriber that never reads is dropped, the others are unaffected.
	blocked := make(chan struct{})
	slow := make(chan error, 1)
	go func() { slow <- w.Attach(context.Background(), blockingWriter(blocked), nil) }()
	waitSubs(t, w, 2)
	for i := range 20 {
		io.WriteString(opw, "x\n")
		// Let the well-behaved subscriber keep up.
		for j := 0; j < 5000 && strings.Count(so.String(), "x\n") <= i; j++ {
			time.Sleep(time.Millisecond)
		}
	}
	close(blocked)
	if err := <-slow; err != ErrSlowSubscriber {
		t.Fatalf("slow subscriber: %v", err)
	}
	// A cancelled subscriber returns nil.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Attach(ctx, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	opw.Close()
	epw.Close()
	if err := <-attached; err != nil {
		t.Fatal(err)
	}
	if so.String() != "out\r\npartial"+strings.Repeat("x\n", 20) || se.String() != "err\n" {
		t.Fatalf("attach got %q / %q", so.String(), se.String())
	}
	// After the end, Attach returns at once.
	if err := w.Attach(context.Background(), io.Discard, nil); err != nil {
		t.Fatal(err)
	}
}

func waitSubs(t *testing.T, w *Writer, n int) {
	t.Helper()
	for range 1000 {
		w.subMu.Lock()
		k := len(w.subs)
		w.subMu.Unlock()
		if k == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no %d subscribers", n)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type blockingWriter chan struct{}

func (b blockingWriter) Write(p []byte) (int, error) { <-b; return len(p), nil }

func TestCloseStopsStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	w := newWriter(t, path, WriterOptions{})
	pr, pw := io.Pipe()
	defer pw.Close()
	w.Copy(pr, nil) // *io.PipeReader is an io.Closer
	io.WriteString(pw, "before close\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path, ReadOptions{}); got != "before close\n" {
		t.Fatalf("got %q", got)
	}
	// Close without Copy.
	w2 := newWriter(t, filepath.Join(t.TempDir(), "1.log"), WriterOptions{})
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFIFO(t *testing.T) {
	dir := t.TempDir()
	fpath := filepath.Join(dir, "stdout")
	f, err := OpenFIFO(fpath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	path := filepath.Join(dir, "0.log")
	w := newWriter(t, path, WriterOptions{})
	w.Copy(f, nil)
	// No EOF before the "container" opened its end (as runtime.Create: O_RDWR).
	time.Sleep(20 * time.Millisecond)
	select {
	case <-w.Done():
		t.Fatal("writer ended before the container started")
	default:
	}
	c, err := os.OpenFile(fpath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ReleaseWriter(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "from the container\n")
	c.Close() // the container exits
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("writer did not end at EOF")
	}
	if got := read(t, path, ReadOptions{}); got != "from the container\n" {
		t.Fatalf("got %q", got)
	}
}

func TestFollowFallsBehindPruning(t *testing.T) {
	// A follower slower than rotation+pruning loses lines (as with the
	// kubelet) but keeps going in order and ends with the last line.
	path := filepath.Join(t.TempDir(), "0.log")
	w := newWriter(t, path, WriterOptions{MaxSize: 1000, MaxFiles: 2})
	var out bytes.Buffer
	done := make(chan error)
	go func() {
		done <- ReadLogs(context.Background(), path, ReadOptions{Follow: true, Done: w.Done(), PollInterval: 100 * time.Millisecond, Logger: quiet}, &out)
	}()
	time.Sleep(20 * time.Millisecond)
	w.Copy(pipeLines(t, 2000, 100, time.Millisecond), nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	prev := -1
	for _, l := range lines {
		var n int
		if _, err := fmt.Sscanf(l, "line %d", &n); err != nil || n <= prev {
			t.Fatalf("out of order: %q after %d", l, prev)
		}
		prev = n
	}
	if prev != 1999 {
		t.Fatalf("last line %d", prev)
	}
}
