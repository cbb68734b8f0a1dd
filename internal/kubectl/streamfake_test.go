//go:build !skiff_no_apiserver

package kubectl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cgportforward "k8s.io/client-go/tools/portforward"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// streamFake is a real skiff API server behind a front that serves the
// pod subresources the agent's kubelet server will: exec, attach and
// portforward with cri-streaming's handlers over a fake runtime, and log
// from canned lines. Everything else is proxied to the API server.
type streamFake struct {
	t     *testing.T
	api   *controllertest.API
	front *httptest.Server

	// v5 serves exec/attach WebSocket v5.channel.k8s.io itself (as the
	// API server's stream translator does); otherwise WebSocket requests
	// for v5 fail to upgrade and clients fall back to SPDY.
	v5 bool
	// tunnel serves port-forward tunnelled over WebSocket (SPDY/3.1+
	// portforward.k8s.io) as the API server does for kubectl ≥ 1.31;
	// otherwise such requests fail to upgrade and clients use SPDY.
	tunnel bool

	mu       sync.Mutex
	calls    []streamCall
	logs     map[string][]string // "pod/container" → lines
	prevLogs map[string][]string
	follow   chan string // lines appended to a followed log; closed to end it
	echoPort int         // a local TCP echo server that port-forward reaches
}

type streamCall struct {
	verb, pod, container string
	cmd                  []string
	tty, stdin           bool
	transport            string // "websocket" or "spdy"
	query                url.Values
}

func newStreamFake(t *testing.T) *streamFake {
	f := &streamFake{t: t, api: controllertest.Start(t), logs: map[string][]string{}, prevLogs: map[string][]string{}}
	u, err := url.Parse(f.api.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1
	f.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		if len(parts) == 7 && parts[0] == "api" && parts[1] == "v1" && parts[2] == "namespaces" && parts[4] == "pods" {
			f.serveSub(w, req, parts[3], parts[5], parts[6])
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(func() {
		f.front.CloseClientConnections()
		f.front.Close()
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f.echoPort = ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return f
}

func (f *streamFake) kubeconfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n", f.front.URL)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *streamFake) lastCall() streamCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return streamCall{}
	}
	return f.calls[len(f.calls)-1]
}

func (f *streamFake) record(c streamCall) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *streamFake) serveSub(w http.ResponseWriter, req *http.Request, ns, name, sub string) {
	pod, err := f.api.Client.CoreV1().Pods(ns).Get(req.Context(), name, metav1.GetOptions{})
	if err != nil {
		var st *apierrors.StatusError
		if errors.As(err, &st) {
			writeStatus(w, st)
			return
		}
		http.Error(w, err.Error(), 500)
		return
	}
	q := req.URL.Query()
	container := q.Get("container")
	transport := "spdy"
	if wsstream.IsWebSocketRequest(req) {
		transport = "websocket"
	}
	if container != "" && (sub == "exec" || sub == "attach" || sub == "log") {
		known := false
		for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
			known = known || c.Name == container
		}
		if !known {
			// The API server's check, before any upgrade.
			f.record(streamCall{verb: sub, pod: name, container: container, transport: transport, query: q})
			writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, name)))
			return
		}
	}
	switch sub {
	case "exec", "attach":
		// The API server turns PodExecOptions into the kubelet's
		// input/output/error/tty parameters.
		opts := &remotecommand.Options{Stdin: q.Get("stdin") == "true", Stdout: q.Get("stdout") == "true",
			Stderr: q.Get("stderr") == "true", TTY: q.Get("tty") == "true"}
		f.record(streamCall{verb: sub, pod: name, container: container, cmd: q["command"], tty: opts.TTY, stdin: opts.Stdin, transport: transport, query: q})
		rt := &fakeRuntime{}
		if transport == "websocket" && f.v5 {
			f.serveV5(w, req, rt, sub, name, container, q["command"], opts)
			return
		}
		if sub == "exec" {
			remotecommand.ServeExec(w, req, rt, name, string(pod.UID), container, q["command"], opts, time.Minute, 10*time.Second, remotecommand.SupportedStreamingProtocols)
		} else {
			remotecommand.ServeAttach(w, req, rt, name, string(pod.UID), container, opts, time.Minute, 10*time.Second, remotecommand.SupportedStreamingProtocols)
		}
	case "portforward":
		opts := &portforward.V4Options{}
		f.record(streamCall{verb: sub, pod: name, transport: transport, query: q})
		if f.tunnel && wsstream.IsWebSocketRequestWithTunnelingProtocol(req) {
			f.serveTunnel(w, req, name)
			return
		}
		portforward.ServePortForward(w, req, &fakeForwarder{port: f.echoPort}, name, string(pod.UID), opts, time.Minute, 10*time.Second, portforward.SupportedProtocols)
	case "log":
		f.record(streamCall{verb: sub, pod: name, container: container, query: q})
		f.serveLog(w, req, name, container, q)
	default:
		writeStatus(w, apierrors.NewNotFound(corev1.Resource("pods/"+sub), name))
	}
}

// serveLog answers like the kubelet: canned lines with tailLines,
// timestamps, limitBytes and follow applied.
func (f *streamFake) serveLog(w http.ResponseWriter, req *http.Request, pod, container string, q url.Values) {
	f.mu.Lock()
	src := f.logs
	if q.Get("previous") == "true" {
		src = f.prevLogs
	}
	lines, ok := src[pod+"/"+container]
	follow := f.follow
	f.mu.Unlock()
	if !ok {
		if q.Get("previous") == "true" {
			writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod)))
			return
		}
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", container, pod)))
		return
	}
	if n, err := strconv.Atoi(q.Get("tailLines")); err == nil && n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	limit := -1
	if n, err := strconv.Atoi(q.Get("limitBytes")); err == nil {
		limit = n
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(200)
	written := 0
	emit := func(i int, l string) bool {
		s := l + "\n"
		if q.Get("timestamps") == "true" {
			s = fakeNow.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano) + " " + s
		}
		if limit >= 0 && written+len(s) > limit {
			s = s[:limit-written]
		}
		w.Write([]byte(s))
		written += len(s)
		w.(http.Flusher).Flush()
		return limit < 0 || written < limit
	}
	for i, l := range lines {
		if !emit(i, l) {
			return
		}
	}
	if q.Get("follow") != "true" || follow == nil {
		return
	}
	i := len(lines)
	for {
		select {
		case l, ok := <-follow:
			if !ok {
				return
			}
			if !emit(i, l) {
				return
			}
			i++
		case <-req.Context().Done():
			return
		}
	}
}

// serveV5 serves exec or attach over WebSocket v5.channel.k8s.io the way
// the API server's stream translator answers kubectl ≥ 1.30.
func (f *streamFake) serveV5(w http.ResponseWriter, req *http.Request, rt *fakeRuntime, verb, pod, container string, cmd []string, opts *remotecommand.Options) {
	ch := func(real bool, t wsstream.ChannelType) wsstream.ChannelType {
		if real {
			return t
		}
		return wsstream.IgnoreChannel
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		remotecommand.StreamProtocolV5Name: {Binary: true, Channels: []wsstream.ChannelType{
			ch(opts.Stdin, wsstream.ReadChannel),
			ch(opts.Stdout, wsstream.WriteChannel),
			ch(opts.Stderr, wsstream.WriteChannel),
			wsstream.WriteChannel,
			ch(opts.TTY, wsstream.ReadChannel),
		}},
	})
	_, streams, err := conn.Open(w, req)
	if err != nil {
		f.t.Logf("v5 upgrade: %v", err)
		return
	}
	defer conn.Close()
	// client-go's v5 client sets up its streams only after the upgrade
	// returns and drops frames (and, on close, fails with "closed all
	// streams") before that; a real server is never this fast, so give
	// it a moment.
	time.Sleep(100 * time.Millisecond)
	resize := make(chan remotecommand.TerminalSize, 4)
	if opts.TTY {
		go func() {
			defer close(resize)
			dec := json.NewDecoder(streams[4])
			for {
				var sz remotecommand.TerminalSize
				if err := dec.Decode(&sz); err != nil {
					return
				}
				resize <- sz
			}
		}()
	}
	var in io.Reader
	if opts.Stdin {
		in = streams[0]
	}
	var out, errOut io.WriteCloser
	if opts.Stdout {
		out = streams[1]
	}
	if opts.Stderr {
		errOut = streams[2]
	}
	if verb == "exec" {
		err = rt.ExecInContainer(req.Context(), pod, "", container, cmd, in, out, errOut, opts.TTY, resize, 0)
	} else {
		err = rt.AttachContainer(req.Context(), pod, "", container, in, out, errOut, opts.TTY, resize)
	}
	st := metav1.Status{Status: metav1.StatusSuccess}
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		st = metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode",
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: strconv.Itoa(exitErr.ExitStatus())}}}}
	default:
		st = metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError, Code: 500,
			Message: fmt.Sprintf("Internal error occurred: %v", err)}
	}
	b, _ := json.Marshal(st)
	streams[3].Write(b)
}

// serveTunnel serves port-forward as SPDY inside a WebSocket: the data
// stream of each forwarded connection goes to the echo server, and its
// error stream is closed when the data stream is done.
func (f *streamFake) serveTunnel(w http.ResponseWriter, req *http.Request, pod string) {
	up := gwebsocket.Upgrader{Subprotocols: []string{portforward.WebsocketsSPDYTunnelingPortForwardV1}}
	ws, err := up.Upgrade(w, req, nil)
	if err != nil {
		f.t.Logf("tunnel upgrade: %v", err)
		return
	}
	tc := cgportforward.NewTunnelingConnection("fake", ws)
	var mu sync.Mutex
	errStreams := map[string]httpstream.Stream{}
	fw := &fakeForwarder{port: f.echoPort}
	conn, err := spdy.NewServerConnection(tc, func(s httpstream.Stream, _ <-chan struct{}) error {
		h := s.Headers()
		id := h.Get(portforward.PortForwardRequestIDHeader)
		switch h.Get(portforward.StreamType) {
		case portforward.StreamTypeError:
			mu.Lock()
			errStreams[id] = s
			mu.Unlock()
		case portforward.StreamTypeData:
			port, _ := strconv.Atoi(h.Get(portforward.PortHeader))
			go func() {
				fw.PortForward(req.Context(), pod, "", int32(port), s)
				mu.Lock()
				if es := errStreams[id]; es != nil {
					es.Close()
				}
				mu.Unlock()
			}()
		}
		return nil
	})
	if err != nil {
		f.t.Logf("tunnel spdy: %v", err)
		tc.Close()
		return
	}
	select {
	case <-conn.CloseChan():
	case <-req.Context().Done():
	}
	conn.Close()
}

// fakeRuntime runs a few pretend commands:
//
//	echo ARGS…   prints ARGS
//	cat          copies stdin to stdout
//	err MSG      prints MSG on stderr
//	exit N       exits with N
//	tty          prints whether a TTY was asked for and the first size
//	fail         fails without an exit code
type fakeRuntime struct{}

func (fakeRuntime) ExecInContainer(ctx context.Context, name, uid, container string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	if out != nil {
		defer out.Close()
	}
	if errOut != nil {
		defer errOut.Close()
	}
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	switch cmd[0] {
	case "echo":
		fmt.Fprintf(out, "%s\n", strings.Join(cmd[1:], " "))
	case "cat":
		if in != nil {
			io.Copy(out, in)
		}
	case "err":
		fmt.Fprintf(errOut, "%s\n", strings.Join(cmd[1:], " "))
	case "exit":
		n, _ := strconv.Atoi(cmd[1])
		fmt.Fprintf(out, "exiting %d\n", n)
		return utilexec.CodeExitError{Err: fmt.Errorf("exit status %d", n), Code: n}
	case "tty":
		// tty [N]: prints the first N (default 1) terminal sizes.
		fmt.Fprintf(out, "container=%s tty=%v\n", container, tty)
		n := 1
		if len(cmd) > 1 {
			n, _ = strconv.Atoi(cmd[1])
		}
		for i := 0; tty && i < n; i++ {
			select {
			case sz := <-resize:
				fmt.Fprintf(out, "size=%dx%d\n", sz.Width, sz.Height)
			case <-time.After(5 * time.Second):
				fmt.Fprintln(out, "no size")
			}
		}
	case "fail":
		return errors.New("runtime exploded")
	default:
		return fmt.Errorf("executable file %q not found in $PATH", cmd[0])
	}
	return nil
}

func (fakeRuntime) AttachContainer(ctx context.Context, name, uid, container string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if out != nil {
		defer out.Close()
	}
	if errOut != nil {
		defer errOut.Close()
	}
	fmt.Fprintf(out, "attached to %s tty=%v\n", container, tty)
	if in != nil {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			fmt.Fprintf(out, "got %s\n", strings.TrimSuffix(sc.Text(), "\r"))
			if sc.Text() == "bye" {
				break
			}
		}
	}
	return nil
}

// fakeForwarder connects every forwarded port to the echo server, after
// a greeting naming the pod and port.
type fakeForwarder struct{ port int }

func (f *fakeForwarder) PortForward(ctx context.Context, name, uid string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(stream, "pod %s port %d\n", name, port)
	done := make(chan struct{})
	go func() {
		io.Copy(stream, c)
		close(done)
	}()
	io.Copy(c, stream)
	c.(*net.TCPConn).CloseWrite()
	<-done
	return nil
}
