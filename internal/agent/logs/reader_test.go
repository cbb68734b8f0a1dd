package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var quiet = slog.New(slog.DiscardHandler)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// rec builds a file line at t0+sec seconds.
func rec(sec int, s Stream, tag, content string) string {
	return fmt.Sprintf("%s %s %s %s\n", t0.Add(time.Duration(sec)*time.Second).Format(TimeFormat), s, tag, content)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string, o ReadOptions) string {
	t.Helper()
	var b bytes.Buffer
	o.Logger = quiet
	if err := ReadLogs(context.Background(), path, o, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func i64(v int64) *int64 { return &v }

func TestReadOptionsTable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	writeFile(t, path, rec(1, Stdout, "F", "one")+
		rec(2, Stderr, "F", "two")+
		rec(3, Stdout, "F", "")+ // empty line
		rec(4, Stdout, "P", "par")+
		rec(5, Stdout, "P", "ti")+
		rec(6, Stdout, "F", "al")+
		"garbage line\n"+
		rec(7, Stderr, "F", "seven")+
		rec(8, Stdout, "F", "eight"))
	ts := func(sec int) string { return t0.Add(time.Duration(sec) * time.Second).Format(TimeFormat) }
	for _, tc := range []struct {
		name string
		o    ReadOptions
		want string
	}{
		{"all", ReadOptions{}, "one\ntwo\n\npartial\nseven\neight\n"},
		// tail counts file lines (pieces of a partial line and the malformed line too), as the kubelet.
		{"tail2", ReadOptions{TailLines: i64(2)}, "seven\neight\n"},
		{"tail3", ReadOptions{TailLines: i64(3)}, "seven\neight\n"},
		{"tail4", ReadOptions{TailLines: i64(4)}, "al\nseven\neight\n"},
		{"tail0", ReadOptions{TailLines: i64(0)}, ""},
		{"tailHuge", ReadOptions{TailLines: i64(1000)}, "one\ntwo\n\npartial\nseven\neight\n"},
		{"stdout", ReadOptions{Stream: Stdout}, "one\n\npartial\neight\n"},
		{"stderr", ReadOptions{Stream: Stderr}, "two\nseven\n"},
		{"since", ReadOptions{Since: t0.Add(5 * time.Second)}, "tial\nseven\neight\n"},
		{"timestamps", ReadOptions{Timestamps: true, TailLines: i64(7)},
			ts(3) + " \n" + ts(4) + " partial\n" + ts(7) + " seven\n" + ts(8) + " eight\n"},
		{"limit", ReadOptions{LimitBytes: i64(10)}, "one\ntwo\n\np"},
		{"limitTimestamps", ReadOptions{LimitBytes: i64(35), Timestamps: true}, ts(1) + " one\n"},
		{"limitStream", ReadOptions{LimitBytes: i64(5), Stream: Stderr}, "two\ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := read(t, path, tc.o); got != tc.want {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestReadIncompleteLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeFile(t, path, rec(1, Stdout, "F", "a")+rec(2, Stdout, "F", "b")+strings.TrimSuffix(rec(3, Stdout, "F", "c"), "\n"))
	if got := read(t, path, ReadOptions{}); got != "a\nb\nc" {
		t.Fatalf("got %q", got)
	}
	// The kubelet counts newlines for tail: the unterminated line is not one,
	// so tail=2 starts at "a" and stops after two records.
	if got := read(t, path, ReadOptions{TailLines: i64(2)}); got != "a\nb\n" {
		t.Fatalf("tail got %q", got)
	}
	// Empty file.
	empty := filepath.Join(t.TempDir(), "1.log")
	writeFile(t, empty, "")
	if got := read(t, empty, ReadOptions{TailLines: i64(5)}); got != "" {
		t.Fatalf("empty got %q", got)
	}
	if err := ReadLogs(context.Background(), filepath.Join(t.TempDir(), "missing.log"), ReadOptions{}, &bytes.Buffer{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestReadTailAcrossBlocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	var b strings.Builder
	var want []string
	for i := range 5000 {
		l := fmt.Sprintf("line %d %s", i, strings.Repeat("x", i%50))
		b.WriteString(rec(i, Stdout, "F", l))
		want = append(want, l)
	}
	writeFile(t, path, b.String())
	for _, n := range []int{1, 7, 100, 4999, 5000, 6000} {
		got := read(t, path, ReadOptions{TailLines: i64(int64(n))})
		w := want[max(0, len(want)-n):]
		if got != strings.Join(w, "\n")+"\n" {
			t.Fatalf("tail %d: got %d bytes, want %d lines", n, len(got), len(w))
		}
	}
}

func TestFromPodLogOptions(t *testing.T) {
	now := t0
	st := func(s string) *string { return &s }
	o, err := FromPodLogOptions(&corev1.PodLogOptions{Follow: true, Timestamps: true, TailLines: i64(3), LimitBytes: i64(9), SinceSeconds: i64(60)}, now)
	if err != nil || !o.Follow || !o.Timestamps || *o.TailLines != 3 || *o.LimitBytes != 9 || !o.Since.Equal(now.Add(-time.Minute)) {
		t.Fatalf("got %+v %v", o, err)
	}
	// The later of SinceSeconds and SinceTime wins.
	later := metav1.NewTime(now.Add(-10 * time.Second))
	o, _ = FromPodLogOptions(&corev1.PodLogOptions{SinceSeconds: i64(60), SinceTime: &later}, now)
	if !o.Since.Equal(later.Time) {
		t.Fatalf("since %v", o.Since)
	}
	earlier := metav1.NewTime(now.Add(-time.Hour))
	o, _ = FromPodLogOptions(&corev1.PodLogOptions{SinceSeconds: i64(60), SinceTime: &earlier}, now)
	if !o.Since.Equal(now.Add(-time.Minute)) {
		t.Fatalf("since %v", o.Since)
	}
	o, err = FromPodLogOptions(&corev1.PodLogOptions{Stream: st(corev1.LogStreamStderr)}, now)
	if err != nil || o.Stream != Stderr {
		t.Fatalf("%+v %v", o, err)
	}
	for _, bad := range []*corev1.PodLogOptions{
		{Stream: st(corev1.LogStreamStdout), TailLines: i64(1)},
		{Stream: st("bogus")},
		{TailLines: i64(-1)},
		{LimitBytes: i64(0)},
		{SinceSeconds: i64(0)},
	} {
		if _, err := FromPodLogOptions(bad, now); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: err %v", bad, err)
		}
	}
}

func TestFollowStopsOnDoneAndContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	writeFile(t, path, rec(1, Stdout, "F", "a"))
	// ctx ends the follow.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var b bytes.Buffer
	err := ReadLogs(ctx, path, ReadOptions{Follow: true, PollInterval: 5 * time.Millisecond}, &b)
	if !errors.Is(err, context.DeadlineExceeded) || b.String() != "a\n" {
		t.Fatalf("err %v out %q", err, b.String())
	}
	// A closed Done: read what is there and stop.
	done := make(chan struct{})
	close(done)
	b.Reset()
	if err := ReadLogs(context.Background(), path, ReadOptions{Follow: true, Done: done, TailLines: i64(0)}, &b); err != nil || b.Len() != 0 {
		t.Fatalf("err %v out %q", err, b.String())
	}
}
