// Package servertest runs a real skiff server (server.Server: TLS, the
// bbolt store, authentication, the join endpoints) in the test process, on
// a free loopback port with its own data directory, for tests of the
// pieces that talk to one (joining, the token CLI). Scheduler and
// controllers are off unless the config asks for them.
package servertest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/server"
)

// Running is a started server.
type Running struct {
	*server.Server
	URL             string // https://127.0.0.1:PORT
	DataDir         string // the server's DATA
	AdminKubeconfig string

	t      testing.TB
	cancel context.CancelFunc
	done   chan error
}

// Start runs a server until the test ends. cfg may be zero; DataDir,
// BindAddress, HTTPSPort and WriteKubeconfig are filled in when empty.
func Start(t testing.TB, cfg server.Config) *Running {
	t.Helper()
	dir := t.TempDir()
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(dir, "data")
	}
	if cfg.BindAddress == "" {
		cfg.BindAddress = "127.0.0.1"
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = freePort(t)
	}
	if cfg.WriteKubeconfig == "" {
		cfg.WriteKubeconfig = filepath.Join(dir, "admin.yaml")
	}
	if cfg.NodeName == "" {
		cfg.NodeName = "server-node"
	}
	if !cfg.DisableScheduler && !cfg.DisableControllerManager {
		cfg.DisableScheduler, cfg.DisableControllerManager = true, true
	}
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Server: srv, URL: fmt.Sprintf("https://127.0.0.1:%d", cfg.HTTPSPort), DataDir: cfg.DataDir,
		AdminKubeconfig: cfg.WriteKubeconfig, t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Run(ctx) }()
	t.Cleanup(r.Stop)
	select {
	case <-srv.Ready():
	case err := <-r.done:
		r.done <- err
		t.Fatalf("skiff server exited early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("skiff server not ready in 60s")
	}
	return r
}

// Stop stops the server and waits for it (idempotent).
func (r *Running) Stop() {
	r.cancel()
	if err, ok := <-r.done; ok {
		close(r.done)
		if err != nil {
			r.t.Errorf("skiff server stopped with: %v", err)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
