package store_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The etcd benchmarks run a real etcd (Debian package etcd-server,
// /usr/bin/etcd) on loopback beside the bbolt ones, for a ratio on the same
// disk. They talk to etcd's JSON gRPC gateway with net/http rather than
// through go.etcd.io/etcd/client/v3, to keep etcd's dependency tree out of
// go.mod; the gateway adds a JSON/HTTP hop that the gRPC client would not,
// which matters little next to an fsync. Skipped when etcd is not installed.

const etcdBinary = "/usr/bin/etcd"

type etcdServer struct {
	url    string
	client *http.Client
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd starts a single-member etcd in b.TempDir(), stopped at cleanup.
func startEtcd(b *testing.B, extraArgs ...string) *etcdServer {
	b.Helper()
	if _, err := os.Stat(etcdBinary); err != nil {
		b.Skip("etcd not installed (apt-get install etcd-server)")
	}
	dir := b.TempDir()
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
	args := append([]string{
		"--name", "bench", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench=" + peer,
		"--logger", "zap", "--log-level", "error",
	}, extraArgs...)
	cmd := exec.Command(etcdBinary, args...)
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	e := &etcdServer{url: client, client: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 128},
		Timeout:   30 * time.Second,
	}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := e.client.Get(client + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `"true"`) {
				return e
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			b.Fatalf("etcd did not become healthy: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *etcdServer) call(path string, req any, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	r, err := e.client.Post(e.url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer r.Body.Close()
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, r.Status, data)
	}
	if resp != nil {
		return json.Unmarshal(data, resp)
	}
	return nil
}

func (e *etcdServer) put(key string, value []byte) error {
	return e.call("/v3/kv/put", map[string]string{
		"key":   base64.StdEncoding.EncodeToString([]byte(key)),
		"value": base64.StdEncoding.EncodeToString(value),
	}, nil)
}

func (e *etcdServer) dbSize() (int64, error) {
	var st struct {
		DBSize string `json:"dbSize"`
	}
	if err := e.call("/v3/maintenance/status", map[string]string{}, &st); err != nil {
		return 0, err
	}
	return strconv.ParseInt(st.DBSize, 10, 64)
}

// BenchmarkEtcdDurableWrites is BenchmarkDurableWrites against etcd.
func BenchmarkEtcdDurableWrites(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			e := startEtcd(b)
			value := payload(valueSize)
			runWriters(b, writers, func(i int) error {
				return e.put(fmt.Sprintf("/bench/%d", i), value)
			})
		})
	}
}

// BenchmarkEtcdChurnFileSize is BenchmarkChurnFileSize against etcd. etcd's
// own revision auto-compaction only runs every 5 minutes, so, like the
// Kubernetes API server does, the benchmark compacts etcd itself after each
// 10k phase, keeping the last 10000 revisions (our default). etcd reuses
// free pages like bbolt and never shrinks its file without a defrag.
func BenchmarkEtcdChurnFileSize(b *testing.B) {
	for range b.N {
		const objects, updates, phases = 100, 100_000, 10
		e := startEtcd(b)
		value := payload(valueSize)
		for range phases {
			errs := make(chan error, objects)
			for i := range objects {
				go func() {
					for range updates / phases / objects {
						if err := e.put(fmt.Sprintf("/churn/%d", i), value); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range objects {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			if err := e.compactKeeping(10000); err != nil {
				b.Fatal(err)
			}
		}
		size, err := e.dbSize()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(size), "bytes@100k")
	}
}

func (e *etcdServer) compactKeeping(keep int64) error {
	var rr struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := e.call("/v3/kv/range", map[string]string{"key": base64.StdEncoding.EncodeToString([]byte("/"))}, &rr); err != nil {
		return err
	}
	rev, err := strconv.ParseInt(rr.Header.Revision, 10, 64)
	if err != nil || rev-keep <= 0 {
		return err
	}
	return e.call("/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev-keep, 10), "physical": true}, nil)
}
