package kubeletserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

type fixedSize struct{ sent bool }

func (f *fixedSize) Next() *remotecommand.TerminalSize {
	if f.sent {
		time.Sleep(time.Hour) // no more resizes; the stream ends first
		return nil
	}
	f.sent = true
	return &remotecommand.TerminalSize{Width: 100, Height: 30}
}

// The runtime starts an exec's terminal at 80x24 and applies the client's
// first size once the process runs, so the command here waits a moment
// before looking (see the report: an initial size in runtime.ExecConfig
// would close that window).

// TestExecProtocols runs exec through the API server with client-go's
// executors (SPDY as kubectl < 1.30, WebSocket v5 as kubectl ≥ 1.30): a TTY
// gets the client's terminal size, exit codes come back, stdin's end is
// seen by the command.
func TestExecProtocols(t *testing.T) {
	requireRoot(t)
	c := startCluster(t)
	for _, proto := range []string{"spdy", "websocket"} {
		t.Run(proto, func(t *testing.T) {
			run := func(opts *corev1.PodExecOptions, stdin string, size remotecommand.TerminalSizeQueue) (string, string, error) {
				t.Helper()
				req := c.client.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("web").
					SubResource("exec").VersionedParams(opts, scheme.ParameterCodec)
				method := "POST"
				var ex remotecommand.Executor
				var err error
				if proto == "spdy" {
					ex, err = remotecommand.NewSPDYExecutor(c.cfg, method, req.URL())
				} else {
					ex, err = remotecommand.NewWebSocketExecutor(c.cfg, "GET", req.URL().String())
				}
				if err != nil {
					t.Fatal(err)
				}
				var out, errb bytes.Buffer
				so := remotecommand.StreamOptions{Stdout: &out, Tty: opts.TTY, TerminalSizeQueue: size}
				if opts.Stderr {
					so.Stderr = &errb
				}
				if opts.Stdin {
					so.Stdin = strings.NewReader(stdin)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err = ex.StreamWithContext(ctx, so)
				return out.String(), errb.String(), err
			}
			out, _, err := run(&corev1.PodExecOptions{Container: "web", Command: []string{"sh", "-c", "sleep 0.5; stty size; test -t 0 && echo tty"},
				Stdin: true, Stdout: true, TTY: true}, "", &fixedSize{})
			if err != nil || strings.ReplaceAll(out, "\r", "") != "30 100\ntty\n" {
				t.Errorf("tty: %q %v", out, err)
			}
			_, _, err = run(&corev1.PodExecOptions{Container: "web", Command: []string{"sh", "-c", "exit 42"}, Stdout: true, Stderr: true}, "", nil)
			var ce utilexec.CodeExitError
			if !errors.As(err, &ce) || ce.Code != 42 {
				t.Errorf("exit 42: %v", err)
			}
			// A client that goes away ends its command.
			marker := fmt.Sprintf("sleep %d", 1000+len(proto))
			ctx, cancel := context.WithCancel(context.Background())
			req := c.client.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("web").SubResource("exec").
				VersionedParams(&corev1.PodExecOptions{Container: "web", Command: []string{"sh", "-c", "echo started; exec " + marker}, Stdout: true}, scheme.ParameterCodec)
			var ex remotecommand.Executor
			if proto == "spdy" {
				ex, err = remotecommand.NewSPDYExecutor(c.cfg, "POST", req.URL())
			} else {
				ex, err = remotecommand.NewWebSocketExecutor(c.cfg, "GET", req.URL().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			started := &syncBuffer{}
			go func() { _ = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: started}) }()
			waitFor(t, "the command to start", func() bool { return strings.Contains(started.String(), "started") })
			cancel()
			waitFor(t, "the command to end", func() bool {
				out, _, _ := run(&corev1.PodExecOptions{Container: "web", Command: []string{"ps", "-o", "args"}, Stdout: true}, "", nil)
				return out != "" && !strings.Contains(out, marker)
			})

			out, errs, err := run(&corev1.PodExecOptions{Container: "web", Command: []string{"sh", "-c", "wc -l; echo e >&2"},
				Stdin: true, Stdout: true, Stderr: true}, "a\nb\nc\n", nil)
			if err != nil || strings.TrimSpace(out) != "3" || errs != "e\n" {
				t.Errorf("stdin: %q %q %v", out, errs, err)
			}
		})
	}
}

// TestAttachTTY attaches to a container running a shell on a terminal:
// what is typed runs, its output comes back.
func TestAttachTTY(t *testing.T) {
	requireRoot(t)
	c := startCluster(t)
	for _, proto := range []string{"spdy", "websocket"} {
		t.Run(proto, func(t *testing.T) {
			req := c.client.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("web").
				SubResource("attach").VersionedParams(&corev1.PodAttachOptions{Container: "shell", Stdin: true, Stdout: true, TTY: true}, scheme.ParameterCodec)
			var ex remotecommand.Executor
			var err error
			if proto == "spdy" {
				ex, err = remotecommand.NewSPDYExecutor(c.cfg, "POST", req.URL())
			} else {
				ex, err = remotecommand.NewWebSocketExecutor(c.cfg, "GET", req.URL().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			pr, pw := io.Pipe()
			out := &syncBuffer{}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: pr, Stdout: out, Tty: true})
			}()
			marker := "attached-" + proto
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(out.String(), marker+"-ok") {
				if time.Now().After(deadline) {
					t.Fatalf("no answer through attach; output %q", out.String())
				}
				_, _ = fmt.Fprintf(pw, "echo %s-$((1))k | sed s/1k/ok/\n", marker)
				time.Sleep(300 * time.Millisecond)
			}
			cancel()
			pw.Close()
			<-done
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
