package store_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/store"
)

// Benchmarks use real files in b.TempDir() with fsync on (except where a
// comment says otherwise). Run with:
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/store/

// valueSize is about a small pod's JSON.
const valueSize = 1024

func payload(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

func openBench(b *testing.B, opts store.BoltOptions) (*store.Bolt, string) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "state.db")
	st, err := store.OpenBolt(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st, path
}

// runWriters spreads b.N writes over n goroutines and reports writes/s.
// write(i) writes as goroutine i.
func runWriters(b *testing.B, n int, write func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := write(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkDurableWrites: acknowledged (fsynced) updates per second with 1, 8
// and 64 concurrent writers, each updating its own key.
func BenchmarkDurableWrites(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			st, _ := openBench(b, store.BoltOptions{})
			ctx := context.Background()
			value := payload(valueSize)
			for i := range writers {
				if _, err := st.Create(ctx, fmt.Sprintf("/bench/%d", i), value); err != nil {
					b.Fatal(err)
				}
			}
			runWriters(b, writers, func(i int) error {
				_, err := st.Update(ctx, fmt.Sprintf("/bench/%d", i), value, 0)
				return err
			})
		})
	}
}

// BenchmarkChurnFileSize: 100,000 updates to the same 100 objects (one
// writer per object, 1 KiB values), reporting the file size after 10k, 50k
// and 100k updates. With compaction the size levels off; "compaction=off"
// shows what it would be without.
func BenchmarkChurnFileSize(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts store.BoltOptions
	}{
		{"compaction=default", store.BoltOptions{}},
		{"compaction=off", store.BoltOptions{CompactInterval: -1}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				churn(b, tc.opts)
			}
		})
	}
}

func churn(b *testing.B, opts store.BoltOptions) {
	const objects, updates, phases = 100, 100_000, 10
	st, path := openBench(b, opts)
	ctx := context.Background()
	value := payload(valueSize)
	for i := range objects {
		if _, err := st.Create(ctx, fmt.Sprintf("/churn/%d", i), value); err != nil {
			b.Fatal(err)
		}
	}
	var sizes []int64
	for range phases {
		var wg sync.WaitGroup
		for i := range objects {
			wg.Go(func() {
				for range updates / phases / objects {
					if _, err := st.Update(ctx, fmt.Sprintf("/churn/%d", i), value, 0); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		waitCompaction(b, st, opts)
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	}
	b.ReportMetric(float64(sizes[0]), "bytes@10k")
	b.ReportMetric(float64(sizes[4]), "bytes@50k")
	b.ReportMetric(float64(sizes[9]), "bytes@100k")
	b.ReportMetric(float64(slices.Max(sizes)), "max-bytes")
}

// waitCompaction waits for the churn-triggered background compaction
// (RetainRevisions, default 10000, plus 25% slack) to catch up.
func waitCompaction(b *testing.B, st *store.Bolt, opts store.BoltOptions) {
	if opts.CompactInterval < 0 {
		return
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cur, _ := st.CurrentRevision(ctx)
		c, _ := st.CompactedRevision(ctx)
		if cur-c <= 12500 || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkWatchLatency: 1,000 watchers on one prefix; one writer updates a
// key b.N times, one write every 10ms (100 writes/s, so 100,000 deliveries/s:
// a fixed rate, so that latency is not queueing behind an unbounded writer).
// Latency is from the start of the Update call (so it includes the commit's
// fsync, reported alone as write-p50-ns) to each watcher receiving the
// event. fsync=off shows the fan-out cost without the disk.
func BenchmarkWatchLatency(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("watchers=1000/fsync=%s", map[bool]string{false: "on", true: "off"}[noSync]), func(b *testing.B) {
			watchLatency(b, 1000, store.BoltOptions{NoSync: noSync})
		})
	}
}

func watchLatency(b *testing.B, watchers int, opts store.BoltOptions) {
	st, _ := openBench(b, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	value := payload(valueSize)
	if _, err := st.Create(ctx, "/watch/obj", value); err != nil {
		b.Fatal(err)
	}
	lat := make([][]int64, watchers)
	var wg sync.WaitGroup
	for w := range watchers {
		ch, err := st.Watch(ctx, "/watch/", 0, store.WatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		lat[w] = make([]int64, 0, b.N)
		wg.Go(func() {
			for ev := range ch {
				now := time.Now().UnixNano()
				lat[w] = append(lat[w], now-int64(binary.BigEndian.Uint64(ev.KV.Value)))
				if len(lat[w]) == b.N {
					return
				}
			}
			b.Errorf("watcher %d closed after %d events", w, len(lat[w]))
		})
	}
	writeLat := make([]int64, 0, b.N)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for range b.N {
		<-tick.C
		start := time.Now()
		binary.BigEndian.PutUint64(value, uint64(start.UnixNano()))
		if _, err := st.Update(ctx, "/watch/obj", value, 0); err != nil {
			b.Fatal(err)
		}
		writeLat = append(writeLat, time.Since(start).Nanoseconds())
	}
	wg.Wait()
	b.StopTimer()
	var all []int64
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	slices.Sort(writeLat)
	pct := func(s []int64, p float64) float64 { return float64(s[int(float64(len(s)-1)*p)]) }
	b.ReportMetric(pct(all, 0.50), "p50-ns")
	b.ReportMetric(pct(all, 0.99), "p99-ns")
	b.ReportMetric(pct(writeLat, 0.50), "write-p50-ns")
}
