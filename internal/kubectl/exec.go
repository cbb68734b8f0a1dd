package kubectl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilhttpstream "k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"
)

type execOptions struct {
	container  string
	stdin      bool
	tty        bool
	quiet      bool
	podTimeout time.Duration
	filenames  []string
}

type attachOptions struct {
	container  string
	stdin      bool
	tty        bool
	quiet      bool
	podTimeout time.Duration
}

func init() {
	register(command{
		name:  "exec",
		short: "Execute a command in a container",
		flags: func(fs *pflag.FlagSet) any {
			o := &execOptions{}
			fs.DurationVar(&o.podTimeout, "pod-running-timeout", time.Minute, "The length of time (like 5s, 2m, or 3h, higher than zero) to wait until at least one pod is running")
			fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "to use to exec into the resource")
			fs.StringVarP(&o.container, "container", "c", "", "Container name. If omitted, use the kubectl.kubernetes.io/default-container annotation for selecting the container to be attached or the first container in the pod will be chosen")
			fs.BoolVarP(&o.stdin, "stdin", "i", false, "Pass stdin to the container")
			fs.BoolVarP(&o.tty, "tty", "t", false, "Stdin is a TTY")
			fs.BoolVarP(&o.quiet, "quiet", "q", false, "Only print output from the remote session")
			return o
		},
		run: func(e *env, opts any, args []string) error { return runExec(e, opts.(*execOptions), args) },
	})
	register(command{
		name:  "attach",
		short: "Attach to a running container",
		flags: func(fs *pflag.FlagSet) any {
			o := &attachOptions{}
			fs.DurationVar(&o.podTimeout, "pod-running-timeout", time.Minute, "The length of time (like 5s, 2m, or 3h, higher than zero) to wait until at least one pod is running")
			fs.StringVarP(&o.container, "container", "c", "", "Container name. If omitted, use the kubectl.kubernetes.io/default-container annotation for selecting the container to be attached or the first container in the pod will be chosen")
			fs.BoolVarP(&o.stdin, "stdin", "i", false, "Pass stdin to the container")
			fs.BoolVarP(&o.tty, "tty", "t", false, "Stdin is a TTY")
			fs.BoolVarP(&o.quiet, "quiet", "q", false, "Only print output from the remote session")
			return o
		},
		run: func(e *env, opts any, args []string) error { return runAttach(e, opts.(*attachOptions), args) },
	})
}

func runExec(e *env, o *execOptions, args []string) error {
	dash := e.fs.ArgsLenAtDash()
	var resource string
	var command []string
	if len(args) > 0 && dash != 0 {
		resource = args[0]
	}
	switch {
	case dash > -1:
		command = args[dash:]
	case len(args) > 1, len(args) > 0 && len(o.filenames) > 0:
		return usageError("exec", "exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead")
	}
	if o.podTimeout <= 0 {
		return usageError("exec", "--pod-running-timeout must be higher than zero")
	}
	if resource == "" && len(o.filenames) == 0 {
		return errors.New("pod, type/name or --filename must be specified")
	}
	if len(command) == 0 {
		return errors.New("you must specify at least one command for the container")
	}

	var a *podArg
	if len(o.filenames) > 0 {
		infos, err := e.readManifests(o.filenames, false)
		if err != nil {
			return err
		}
		if len(infos) != 1 {
			return fmt.Errorf("expected a single resource, got %d", len(infos))
		}
		in := infos[0]
		ns := in.namespace
		if ns == "" && namespaced(in.mapping) {
			if ns, err = e.ns(); err != nil {
				return err
			}
		}
		u, err := e.getObject(in.mapping, ns, in.name)
		if err != nil {
			return err
		}
		a = &podArg{mapping: in.mapping, obj: u}
	} else {
		var err error
		if a, err = e.resolvePodArg("", resource); err != nil {
			return err
		}
	}
	pod, err := e.attachablePod(a, o.podTimeout)
	if err != nil {
		return err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return fmt.Errorf("cannot exec into a container in a completed pod; current phase is %s", pod.Status.Phase)
	}
	container := o.container
	if container == "" {
		c, err := e.findOrDefaultContainer(pod, "", o.quiet)
		if err != nil {
			return err
		}
		container = c.Name
	}

	s := e.setupTTY(o.stdin, o.tty, o.quiet)
	defer s.restore()
	var sizes remotecommand.TerminalSizeQueue
	if s.raw {
		sizes = s.monitorSize(false)
		s.errOut = nil
	}
	cs, err := e.clientset()
	if err != nil {
		return err
	}
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Name(pod.Name).Namespace(pod.Namespace).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdin: o.stdin,
			Stdout: s.out != nil, Stderr: s.errOut != nil, TTY: s.raw}, scheme.ParameterCodec)
	if err := s.makeRaw(); err != nil {
		return err
	}
	return e.stream(req.URL(), s, sizes)
}

func runAttach(e *env, o *attachOptions, args []string) error {
	if o.podTimeout <= 0 {
		return usageError("attach", "--pod-running-timeout must be higher than zero")
	}
	if len(args) == 0 {
		return errors.New("at least 1 argument is required for attach")
	}
	if len(args) > 2 {
		return fmt.Errorf("expected POD, TYPE/NAME, or TYPE NAME, (at most 2 arguments) saw %d: %v", len(args), args)
	}
	var a *podArg
	var err error
	if len(args) == 2 {
		a, err = e.resolvePodArg(args[0], args[1])
	} else {
		a, err = e.resolvePodArg("", args[0])
	}
	if err != nil {
		return err
	}
	pod, err := e.attachablePod(a, o.podTimeout)
	if err != nil {
		return err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return fmt.Errorf("cannot attach a container in a completed pod; current phase is %s", pod.Status.Phase)
	}
	c, err := e.findOrDefaultContainer(pod, o.container, o.quiet)
	if err != nil {
		return fmt.Errorf("cannot attach to the container: %v", err)
	}
	tty := o.tty
	if tty && !c.TTY {
		tty = false
		if !o.quiet {
			fmt.Fprintf(e.errOut, "error: Unable to use a TTY - container %s did not allocate one\n", c.Name)
		}
	} else if !tty && c.TTY {
		// A container started with a TTY must be attached with one.
		tty = true
	}
	s := e.setupTTY(o.stdin, tty, o.quiet)
	defer s.restore()
	var sizes remotecommand.TerminalSizeQueue
	stderr := true
	if s.raw {
		sizes = s.monitorSize(true)
		stderr = false
	}
	if !o.quiet {
		fmt.Fprintln(e.errOut, "If you don't see a command prompt, try pressing enter.")
	}
	cs, err := e.clientset()
	if err != nil {
		return err
	}
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Name(pod.Name).Namespace(pod.Namespace).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: c.Name, Stdin: o.stdin, Stdout: s.out != nil,
			Stderr: stderr, TTY: s.raw}, scheme.ParameterCodec)
	if !stderr {
		s.errOut = nil
	}
	if err := s.makeRaw(); err != nil {
		return err
	}
	if err := e.stream(req.URL(), s, sizes); err != nil {
		return err
	}
	s.restore()
	if !o.quiet && o.stdin && s.raw && pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		if _, path := findContainer(pod, c.Name); strings.HasPrefix(path, "spec.ephemeralContainers") {
			fmt.Fprintf(e.out, "Session ended, the ephemeral container will not be restarted but may be reattached using 'kubectl attach %s -c %s -i -t' if it is still running\n", pod.Name, c.Name)
		} else {
			fmt.Fprintf(e.out, "Session ended, resume using 'kubectl attach %s -c %s -i -t' command when the pod is running\n", pod.Name, c.Name)
		}
	}
	return nil
}

// streams is the local side of an exec or attach session (kubectl's
// StreamOptions and term.TTY).
type streams struct {
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	raw    bool // stdin is a terminal put in raw mode for a remote TTY

	inFd, outFd int
	outIsTerm   bool
	state       *term.State
	stop        chan struct{}
}

type fdFile interface{ Fd() uintptr }

// setupTTY decides whether the session gets a TTY: only with stdin, and
// only when stdin is a terminal.
func (e *env) setupTTY(stdin, tty, quiet bool) *streams {
	s := &streams{out: e.out, errOut: e.errOut, inFd: -1, outFd: -1}
	if !stdin {
		return s
	}
	s.in = e.in
	if !tty {
		return s
	}
	f, ok := e.in.(fdFile)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		if !quiet && e.errOut != nil {
			fmt.Fprintln(e.errOut, "Unable to use a TTY - input is not a terminal or the right kind of file")
		}
		return s
	}
	s.raw = true
	s.inFd = int(f.Fd())
	if of, ok := e.out.(fdFile); ok && term.IsTerminal(int(of.Fd())) {
		s.outFd, s.outIsTerm = int(of.Fd()), true
	}
	return s
}

func (s *streams) makeRaw() error {
	if !s.raw || s.state != nil {
		return nil
	}
	st, err := term.MakeRaw(s.inFd)
	if err != nil {
		return err
	}
	s.state = st
	return nil
}

// restore leaves raw mode and stops the size monitor; it may be called
// more than once.
func (s *streams) restore() {
	if s.state != nil {
		term.Restore(s.inFd, s.state)
		s.state = nil
	}
	if s.stop != nil {
		close(s.stop)
		s.stop = nil
	}
}

func (s *streams) size() *remotecommand.TerminalSize {
	fd := s.inFd
	if s.outIsTerm {
		fd = s.outFd
	}
	w, h, err := term.GetSize(fd)
	if err != nil || w < 0 || h < 0 || w > 0xffff || h > 0xffff {
		return nil
	}
	return &remotecommand.TerminalSize{Width: uint16(w), Height: uint16(h)}
}

// sizeQueue feeds the remote terminal the local size: first the current
// one, then one per SIGWINCH.
type sizeQueue struct {
	ch chan remotecommand.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q.ch
	if !ok {
		return nil
	}
	return &sz
}

// monitorSize starts the size queue. With plusOne (attach) the first size
// sent is one larger than the real one, so that a re-attached program
// redraws its screen.
func (s *streams) monitorSize(plusOne bool) remotecommand.TerminalSizeQueue {
	initial := s.size()
	if initial == nil {
		return nil
	}
	q := &sizeQueue{ch: make(chan remotecommand.TerminalSize, 1)}
	s.stop = make(chan struct{})
	stop := s.stop
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		defer signal.Stop(winch)
		defer close(q.ch)
		send := func(sz remotecommand.TerminalSize) bool {
			select {
			case q.ch <- sz:
				return true
			case <-stop:
				return false
			}
		}
		if plusOne {
			if !send(remotecommand.TerminalSize{Width: initial.Width + 1, Height: initial.Height + 1}) {
				return
			}
		}
		if !send(*initial) {
			return
		}
		last := *initial
		for {
			select {
			case <-winch:
				if sz := s.size(); sz != nil && *sz != last {
					last = *sz
					if !send(*sz) {
						return
					}
				}
			case <-stop:
				return
			}
		}
	}()
	return q
}

// newExecutor is kubectl's: WebSocket (v5.channel.k8s.io) first, SPDY
// when the upgrade fails, unless KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false.
func newExecutor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	exec, err := remotecommand.NewSPDYExecutorForTransports(transport, statusUpgrader{upgrader}, "POST", u)
	if err != nil {
		return nil, err
	}
	if websocketsDisabled("KUBECTL_REMOTE_COMMAND_WEBSOCKETS") {
		return exec, nil
	}
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, exec, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// statusUpgrader turns a refused SPDY upgrade carrying a Status into the
// API error, as client-go 1.32 (kubectl's) did and 1.37 no longer does:
// "Error from server (BadRequest): container x is not valid for pod y"
// rather than "error: unable to upgrade connection: …".
type statusUpgrader struct{ spdy.Upgrader }

func (u statusUpgrader) NewConnection(resp *http.Response) (utilhttpstream.Connection, error) {
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			var st metav1.Status
			if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
				return nil, &apierrors.StatusError{ErrStatus: st}
			}
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	return u.Upgrader.NewConnection(resp)
}

// websocketsDisabled reads one of kubectl's feature gate variables.
func websocketsDisabled(env string) bool {
	v, ok := os.LookupEnv(env)
	return ok && strings.EqualFold(strings.TrimSpace(v), "false")
}

func (e *env) stream(u *url.URL, s *streams, sizes remotecommand.TerminalSizeQueue) error {
	if err := e.loadConfig(); err != nil {
		return err
	}
	exec, err := newExecutor(e.restConfig, u)
	if err != nil {
		return err
	}
	opts := remotecommand.StreamOptions{Stdout: s.out, Stderr: s.errOut, Tty: s.raw, TerminalSizeQueue: sizes}
	if s.in != nil {
		opts.Stdin = s.in
	}
	err = exec.StreamWithContext(e.ctx, opts)
	if err != nil && e.ctx.Err() != nil {
		// Interrupted (the skiff CLI cancels on SIGINT/SIGTERM): end
		// quietly like kubectl killed by the signal.
		return errInterrupted
	}
	return err
}
