package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkWrite measures write throughput: one op is one 100-byte line from
// the container's stdout to the CRI file (rotation at the default 10 MiB).
func BenchmarkWrite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "0.log")
	w, err := NewWriter(path, WriterOptions{Logger: quiet, MaxFiles: 2})
	if err != nil {
		b.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 99) + "\n")
	pr, pw := io.Pipe()
	w.Copy(pr, nil)
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	start := time.Now()
	// Write in 64 KiB chunks, as a pipe would deliver them.
	chunk := bytes.Repeat(line, 64<<10/len(line))
	per := len(chunk) / len(line)
	for i := 0; i < b.N; i += per {
		n := min(per, b.N-i)
		if _, err := pw.Write(chunk[:n*len(line)]); err != nil {
			b.Fatal(err)
		}
	}
	pw.Close()
	<-w.Done()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
	if w.Dropped() != 0 {
		b.Fatalf("dropped %d", w.Dropped())
	}
}

func makeLinesFile(b *testing.B, n int) string {
	path := filepath.Join(b.TempDir(), "0.log")
	var buf []byte
	ts := time.Now()
	for i := range n {
		buf = AppendLine(buf, ts, Stdout, false, fmt.Appendf(nil, "line %d %s", i, strings.Repeat("x", 60)))
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkTail100k is `kubectl logs --tail=10` (and --tail=1000) of a
// 100k-line file.
func BenchmarkTail100k(b *testing.B) {
	path := makeLinesFile(b, 100_000)
	for _, n := range []int64{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if err := ReadLogs(context.Background(), path, ReadOptions{TailLines: &n}, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadAll100k reads a whole 100k-line file (with timestamps).
func BenchmarkReadAll100k(b *testing.B) {
	path := makeLinesFile(b, 100_000)
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	for b.Loop() {
		if err := ReadLogs(context.Background(), path, ReadOptions{Timestamps: true}, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
