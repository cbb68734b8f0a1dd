package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkServerFootprint measures what users compare skiff with k3s on:
// the binary's size, the time from exec to a served API with a written
// kubeconfig, and the server's resident memory idle and after 200 objects.
//
//	go test -run '^$' -bench ServerFootprint -benchtime 3x ./internal/e2e/
func BenchmarkServerFootprint(b *testing.B) {
	if fi, err := os.Stat(skiffBin); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "binary-MiB")
	}
	var ready time.Duration
	var idleKB, loadedKB float64
	var manifest strings.Builder
	for j := 0; j < 200; j++ {
		fmt.Fprintf(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\ndata:\n  k: v%d\n---\n", j, j)
	}
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		c := &cluster{t: b, dataDir: dir + "/data", kubeconfig: dir + "/kc.yaml", port: freePort(b)}
		start := time.Now()
		c.start()
		ready += time.Since(start)
		time.Sleep(time.Second) // let start-up garbage be collected
		idleKB += rssKB(b, c.cmd.Process.Pid)
		if out, errOut, err := c.kubectl("kubectl", manifest.String(), "apply", "-f", "-"); err != nil {
			b.Fatalf("apply: %v\n%s%s", err, out, errOut)
		}
		loadedKB += rssKB(b, c.cmd.Process.Pid)
		if err := c.stop(); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(ready.Milliseconds())/n, "ms-to-ready")
	b.ReportMetric(idleKB/n/1024, "idle-RSS-MiB")
	b.ReportMetric(loadedKB/n/1024, "RSS-200-objects-MiB")
}

func rssKB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
