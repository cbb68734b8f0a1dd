package kubeletserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"

	"github.com/skiff-dev/skiff/internal/agent/logs"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// outputDrain is how long attach waits, once the container has exited, for
// the rest of its output to reach the client.
const outputDrain = 2 * time.Second

// exec serves /exec/{ns}/{pod}/{container}.
func (s *Server) exec(w http.ResponseWriter, r *http.Request, ns, pod, container string) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	id, ok := s.runningContainer(w, ns, pod, container)
	if !ok {
		return
	}
	cmd := r.URL.Query()["command"]
	ex := &executor{rt: s.cfg.Runtime, id: id, opts: opts}
	s.log.Debug("exec", "pod", ns+"/"+pod, "container", container, "command", cmd, "tty", opts.TTY, "protocol", protocolOf(r))
	if wsstream.IsWebSocketRequestWithStreamCloseProtocol(r) {
		s.serveV5(w, r, opts, func(ctx context.Context, st *v5Streams) error {
			return ex.ExecInContainer(ctx, pod, "", container, cmd, st.stdin, st.stdout, st.stderr, opts.TTY, st.resize, 0)
		}, true)
		return
	}
	remotecommand.ServeExec(w, r, ex, pod, "", container, cmd, opts,
		s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// attach serves /attach/{ns}/{pod}/{container}.
func (s *Server) attach(w http.ResponseWriter, r *http.Request, ns, pod, container string) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	id, ok := s.runningContainer(w, ns, pod, container)
	if !ok {
		return
	}
	at := &attacher{s: s, id: id, ns: ns, pod: pod, opts: opts}
	s.log.Debug("attach", "pod", ns+"/"+pod, "container", container, "tty", opts.TTY, "protocol", protocolOf(r))
	if wsstream.IsWebSocketRequestWithStreamCloseProtocol(r) {
		s.serveV5(w, r, opts, func(ctx context.Context, st *v5Streams) error {
			return at.AttachContainer(ctx, pod, "", container, st.stdin, st.stdout, st.stderr, opts.TTY, st.resize)
		}, false)
		return
	}
	remotecommand.ServeAttach(w, r, at, pod, "", container, opts,
		s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// protocolOf names the streaming protocols a request offers, for logs.
func protocolOf(r *http.Request) string {
	if wsstream.IsWebSocketRequest(r) {
		return "websocket " + r.Header.Get("Sec-WebSocket-Protocol")
	}
	return "spdy " + strings.Join(r.Header.Values("X-Stream-Protocol-Version"), ",")
}

// runningContainer looks the container up and answers the request when it
// is unknown or not running ("container not found", as the kubelet's
// findContainer, which only sees running containers).
func (s *Server) runningContainer(w http.ResponseWriter, ns, pod, container string) (string, bool) {
	id, running, err := s.cfg.Pods.ContainerID(ns, pod, container)
	if err != nil {
		writeError(w, err, http.StatusInternalServerError)
		return "", false
	}
	if !running || id == "" {
		writeText(w, http.StatusInternalServerError, fmt.Sprintf("container not found (%q)", container))
		return "", false
	}
	return id, true
}

// executor adapts runtime.Exec to remotecommand.Executor.
type executor struct {
	rt   Runtime
	id   string
	opts *remotecommand.Options
}

var _ remotecommand.Executor = (*executor)(nil)

func (e *executor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if len(cmd) == 0 {
		return errors.New("no command given")
	}
	cfg := runtime.ExecConfig{Args: cmd, Tty: tty}
	// Streams the client did not ask for stay unset, even where the
	// protocol hands us a placeholder (WebSocket's ignored channels).
	if e.opts.Stdin && in != nil {
		cfg.Stdin = in
	}
	if e.opts.Stdout && out != nil {
		cfg.Stdout = out
	}
	if !tty && e.opts.Stderr && errw != nil {
		cfg.Stderr = errw
	}
	if tty && resize != nil {
		cfg.Resize = termSizes(ctx, resize)
	}
	code, err := e.rt.Exec(ctx, e.id, cfg)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// termSizes converts the protocol's resize events for the runtime until
// resize is closed or ctx ends.
func termSizes(ctx context.Context, resize <-chan remotecommand.TerminalSize) <-chan runtime.TermSize {
	out := make(chan runtime.TermSize, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case sz, ok := <-resize:
				if !ok {
					return
				}
				select {
				case out <- runtime.TermSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// attacher adapts runtime.Attach (stdin, TTY) and the container's log
// output (no TTY) to remotecommand.Attacher.
type attacher struct {
	s       *Server
	id      string
	ns, pod string
	opts    *remotecommand.Options
}

var _ remotecommand.Attacher = (*attacher)(nil)

func (a *attacher) AttachContainer(ctx context.Context, _, _, container string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stdout, stderr io.Writer
	if a.opts.Stdout && out != nil {
		stdout = out
	}
	if !tty && a.opts.Stderr && errw != nil {
		stderr = errw
	}
	var outputs sync.WaitGroup
	if !tty && (stdout != nil || stderr != nil) {
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			if err := a.followOutput(ctx, container, stdout, stderr); err != nil && ctx.Err() == nil {
				a.s.log.Debug("attach output ended", "pod", a.ns+"/"+a.pod, "container", container, "err", err)
			}
		}()
	}
	var err error
	if (a.opts.Stdin && in != nil) || tty {
		cfg := runtime.AttachConfig{}
		if a.opts.Stdin && in != nil {
			cfg.Stdin = in
		}
		if tty {
			cfg.Stdout = stdout
			if resize != nil {
				cfg.Resize = termSizes(ctx, resize)
			}
		}
		err = a.s.cfg.Runtime.Attach(ctx, a.id, cfg)
		if errors.Is(err, runtime.ErrState) && !tty {
			// The container has no stdin: output only, as containerd does.
			_, err = a.s.cfg.Runtime.Wait(ctx, a.id)
		}
	} else {
		_, err = a.s.cfg.Runtime.Wait(ctx, a.id)
	}
	if ctx.Err() == nil {
		// The container exited: let the rest of its output through.
		done := make(chan struct{})
		go func() { outputs.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(outputDrain):
		}
	}
	cancel()
	outputs.Wait()
	return err
}

// followOutput streams a non-TTY container's output from now on.
func (a *attacher) followOutput(ctx context.Context, container string, stdout, stderr io.Writer) error {
	if oa, ok := a.s.cfg.Pods.(OutputAttacher); ok {
		return oa.AttachOutput(ctx, a.ns, a.pod, container, stdout, stderr)
	}
	path, done, err := a.s.cfg.Pods.ContainerLog(a.ns, a.pod, container, false)
	if err != nil {
		return err
	}
	zero := int64(0)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, st := range []struct {
		w io.Writer
		s logs.Stream
	}{{stdout, logs.Stdout}, {stderr, logs.Stderr}} {
		if st.w == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = logs.ReadLogs(ctx, path, logs.ReadOptions{Follow: true, TailLines: &zero, Done: done,
				Stream: st.s, Logger: a.s.log}, st.w)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// v5Streams are the client's streams of a v5.channel.k8s.io session.
type v5Streams struct {
	stdin          io.Reader
	stdout, stderr io.WriteCloser
	resize         <-chan remotecommand.TerminalSize
}

const (
	chStdin = iota
	chStdout
	chStderr
	chError
	chResize
)

// serveV5 runs fn over a WebSocket v5.channel.k8s.io session (v4's
// channels and JSON status, plus the CLOSE signal that ends a stream, which
// wsstream handles), then writes the result to the error channel as the v4
// protocol does: Success, NonZeroExitCode with an ExitCode cause, or an
// internal error.
func (s *Server) serveV5(w http.ResponseWriter, r *http.Request, opts *remotecommand.Options,
	fn func(context.Context, *v5Streams) error, isExec bool) {
	ch := func(use bool, t wsstream.ChannelType) wsstream.ChannelType {
		if use {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		chStdin:  ch(opts.Stdin, wsstream.ReadChannel),
		chStdout: ch(opts.Stdout, wsstream.WriteChannel),
		chStderr: ch(opts.Stderr, wsstream.WriteChannel),
		chError:  wsstream.WriteChannel,
		chResize: ch(opts.TTY, wsstream.ReadChannel),
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		remotecommand.StreamProtocolV5Name: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(s.cfg.StreamIdleTimeout)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "path", r.URL.Path, "err", err)
		return
	}
	defer conn.Close()
	// An empty message on the first writable channel tells the client the
	// session is established (as the kubelet's WebSocket handler does).
	switch {
	case opts.Stdout:
		_, _ = streams[chStdout].Write(nil)
	case opts.Stderr:
		_, _ = streams[chStderr].Write(nil)
	default:
		_, _ = streams[chError].Write(nil)
	}
	st := &v5Streams{}
	if opts.Stdin {
		st.stdin = streams[chStdin]
	}
	if opts.Stdout {
		st.stdout = streams[chStdout]
	}
	if opts.Stderr && !opts.TTY {
		st.stderr = streams[chStderr]
	}
	ctx := r.Context()
	if opts.TTY {
		sizes := make(chan remotecommand.TerminalSize)
		st.resize = sizes
		go func() {
			defer close(sizes)
			dec := json.NewDecoder(streams[chResize])
			for {
				var sz remotecommand.TerminalSize
				if err := dec.Decode(&sz); err != nil {
					return
				}
				select {
				case sizes <- sz:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	err = fn(ctx, st)
	writeStatus(streams[chError], err, isExec)
}

// streamStatus is metav1.Status as the v4/v5 error channel carries it.
type streamStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Details *struct {
		Causes []streamCause `json:"causes,omitempty"`
	} `json:"details,omitempty"`
	Code int32 `json:"code,omitempty"`
}

type streamCause struct {
	Type    string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

func writeStatus(w io.Writer, err error, isExec bool) {
	st := streamStatus{Status: "Success"}
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
	case isExec && errors.As(err, &exitErr) && exitErr.Exited():
		st = streamStatus{Status: "Failure", Reason: remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", exitErr)}
		st.Details = &struct {
			Causes []streamCause `json:"causes,omitempty"`
		}{Causes: []streamCause{{Type: remotecommand.ExitCodeCauseType, Message: fmt.Sprint(exitErr.ExitStatus())}}}
	default:
		what := "attaching to container"
		if isExec {
			what = "executing command in container"
		}
		st = streamStatus{Status: "Failure", Reason: "InternalError", Code: http.StatusInternalServerError,
			Message: fmt.Sprintf("Internal error occurred: error %s: %v", what, err)}
	}
	b, _ := json.Marshal(st)
	_, _ = w.Write(b)
}
