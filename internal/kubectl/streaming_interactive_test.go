//go:build !skiff_no_apiserver

package kubectl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLogsFollow streams a log while lines arrive, with Run and with
// upstream kubectl.
func TestLogsFollow(t *testing.T) {
	f := newStreamFake(t)
	streamFixture(t, f)
	kc := f.kubeconfig(t)
	want := "hello\nworld\nthree\nfour\nfive\n"

	f.mu.Lock()
	f.follow = make(chan string)
	follow := f.follow
	f.mu.Unlock()
	var out, errOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), []string{"--kubeconfig", kc, "logs", "-f", "one"}, nil, &out, &errOut)
	}()
	waitFor(t, func() bool { return strings.Contains(out.String(), "three") })
	follow <- "four"
	follow <- "five"
	close(follow)
	if err := <-done; err != nil {
		t.Fatalf("logs -f: %v (%s)", err, errOut.String())
	}
	if got := out.String(); got != want {
		t.Errorf("logs -f: got %q, want %q", got, want)
	}
	if q := f.lastCall().query; q.Get("follow") != "true" {
		t.Errorf("query %v", q)
	}

	bin := kubectlPath(t)
	if bin == "" {
		t.Skip("kubectl not on PATH")
	}
	f.mu.Lock()
	f.follow = make(chan string)
	follow = f.follow
	f.mu.Unlock()
	cmd, stdout := startUpstream(t, bin, kc, "logs", "-f", "one")
	var upOut bytes.Buffer
	r := bufio.NewReader(stdout)
	for !strings.Contains(upOut.String(), "three") {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		upOut.WriteString(l)
	}
	follow <- "four"
	follow <- "five"
	close(follow)
	rest, _ := io.ReadAll(r)
	upOut.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubectl logs -f: %v", err)
	}
	if upOut.String() != want {
		t.Errorf("kubectl logs -f: got %q, want %q", upOut.String(), want)
	}
}

func startUpstream(t *testing.T, bin, kc string, args ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kc, "--cache-dir", filepath.Join(home, "cache")}, args...)...)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "KUBECTL_KUBERC=false"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, stdout
}

var forwardingLine = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)`)

// checkForward connects to the local port and expects the fake's
// greeting for pod and remote port, then an echo.
func checkForward(t *testing.T, local, pod string, remote int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+local, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("pod %s port %d\n", pod, remote); greeting != want {
		t.Errorf("greeting %q, want %q", greeting, want)
	}
	fmt.Fprintf(c, "ping\n")
	if echo, err := r.ReadString('\n'); err != nil || echo != "ping\n" {
		t.Errorf("echo %q, %v", echo, err)
	}
}

// TestPortForward forwards to a pod, a service's named targetPort and a
// deployment's pod, with Run and with upstream kubectl.
func TestPortForward(t *testing.T) {
	f := newStreamFake(t)
	streamFixture(t, f)
	kc := f.kubeconfig(t)
	bin := kubectlPath(t)
	cases := []struct {
		target, port, pod string
		remote            int
	}{
		{"one", ":8080", "one", 8080},
		{"pod/one", ":http", "one", 8080},
		{"svc/websvc", ":80", "web-1", 8080},
		{"svc/websvc", ":alt", "web-1", 9090},
		{"deploy/web", ":7000", "web-1", 7000},
	}
	for i, tc := range cases {
		// Every other case through the WebSocket tunnel, the rest
		// falling back to SPDY.
		f.tunnel = i%2 == 0
		wantTransport := map[bool]string{true: "websocket", false: "spdy"}[f.tunnel]
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut lockedBuffer
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, []string{"--kubeconfig", kc, "port-forward", tc.target, tc.port, "--address", "127.0.0.1"}, nil, &out, &errOut)
		}()
		waitFor(t, func() bool { return forwardingLine.MatchString(out.String()) || errOut.String() != "" })
		m := forwardingLine.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("port-forward %s %s: %q %q", tc.target, tc.port, out.String(), errOut.String())
		}
		if m[2] != fmt.Sprint(tc.remote) {
			t.Errorf("port-forward %s %s: %q", tc.target, tc.port, out.String())
		}
		checkForward(t, m[1], tc.pod, tc.remote)
		checkForward(t, m[1], tc.pod, tc.remote)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("port-forward %s: %v (%s)", tc.target, err, errOut.String())
		}
		got := forwardingLine.ReplaceAllString(out.String(), "Forwarding from 127.0.0.1:LOCAL -> $2")
		want := fmt.Sprintf("Forwarding from 127.0.0.1:LOCAL -> %d\nHandling connection for %s\nHandling connection for %s\n", tc.remote, m[1], m[1])
		if got != want {
			t.Errorf("port-forward %s output %q, want %q", tc.target, got, want)
		}
		if c := f.lastCall(); c.verb != "portforward" || c.pod != tc.pod || c.transport != wantTransport {
			t.Errorf("server saw %+v, want a %s port-forward", c, wantTransport)
		}

		if bin == "" {
			continue
		}
		cmd, stdout := startUpstream(t, bin, kc, "port-forward", tc.target, tc.port, "--address", "127.0.0.1")
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		um := forwardingLine.FindStringSubmatch(line)
		if um == nil || um[2] != m[2] {
			t.Fatalf("kubectl port-forward %s %s: %q, ours %q", tc.target, tc.port, line, out.String())
		}
		checkForward(t, um[1], tc.pod, tc.remote)
		if c := f.lastCall(); c.transport != wantTransport {
			t.Errorf("kubectl: server saw %+v, want a %s port-forward", c, wantTransport)
		}
		cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Errorf("kubectl port-forward: %v", err)
		}
	}
	if bin == "" {
		t.Skip("kubectl not on PATH")
	}
}

// openPTY returns a new pseudo-terminal's master and slave.
func openPTY(t *testing.T, cols, rows uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		m.Close()
	})
	setWinsize(t, s, cols, rows)
	return m, s
}

func setWinsize(t *testing.T, f *os.File, cols, rows uint16) {
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows}); err != nil {
		t.Fatal(err)
	}
}

// ptyReader collects what the far side writes to the terminal.
func ptyReader(m *os.File) *lockedBuffer {
	var b lockedBuffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			if n > 0 {
				b.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	return &b
}

// TestExecTTY runs exec -it on a pseudo-terminal: raw mode, the initial
// size and a resize reach the container, and the terminal is restored;
// upstream kubectl shows the same screen.
func TestExecTTY(t *testing.T) {
	f := newStreamFake(t)
	streamFixture(t, f)
	kc := f.kubeconfig(t)
	bin := kubectlPath(t)
	for _, v5 := range []bool{true, false} {
		for _, upstream := range []bool{false, true} {
			if upstream && bin == "" {
				continue
			}
			f.v5 = v5
			m, s := openPTY(t, 100, 40)
			before, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}
			screen := ptyReader(m)
			var errOut lockedBuffer
			done := make(chan error, 1)
			winch := func() { syscall.Kill(os.Getpid(), syscall.SIGWINCH) }
			if upstream {
				home := t.TempDir()
				cmd := exec.Command(bin, "--kubeconfig", kc, "--cache-dir", filepath.Join(home, "cache"), "exec", "-it", "one", "--", "tty", "2")
				cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "KUBECTL_KUBERC=false"}
				if !v5 {
					cmd.Env = append(cmd.Env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
				}
				cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, &errOut
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				go func() { done <- cmd.Wait() }()
				winch = func() { cmd.Process.Signal(syscall.SIGWINCH) }
			} else {
				go func() {
					done <- Run(context.Background(), []string{"--kubeconfig", kc, "exec", "-it", "one", "--", "tty", "2"}, s, s, &errOut)
				}()
			}
			waitFor(t, func() bool { return strings.Contains(screen.String(), "size=100x40") })
			if st, _ := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS); st.Lflag&unix.ICANON != 0 {
				t.Errorf("terminal not in raw mode during the session")
			}
			setWinsize(t, s, 120, 50)
			winch()
			if err := <-done; err != nil {
				t.Fatalf("exec -it (upstream=%v): %v (%s)", upstream, err, errOut.String())
			}
			waitFor(t, func() bool { return strings.Contains(screen.String(), "size=120x50") })
			// Raw mode: no \r added to \n.
			if got, want := screen.String(), "container=main tty=true\nsize=100x40\nsize=120x50\n"; got != want {
				t.Errorf("v5=%v upstream=%v: screen %q, want %q", v5, upstream, got, want)
			}
			c := f.lastCall()
			if !c.tty || !c.stdin || c.transport != map[bool]string{true: "websocket", false: "spdy"}[v5] {
				t.Errorf("upstream=%v: server saw %+v", upstream, c)
			}
			after, _ := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
			if *after != *before {
				t.Errorf("upstream=%v: terminal not restored: %+v, was %+v", upstream, after, before)
			}
			if e := normalizeStderr(errOut.String()); e != "" {
				t.Errorf("upstream=%v: stderr %q", upstream, e)
			}
		}
	}
}

// TestAttachTTY attaches to a container started with a TTY, types two
// lines and gets the reattach hint, with Run and with upstream kubectl.
func TestAttachTTY(t *testing.T) {
	f := newStreamFake(t)
	streamFixture(t, f)
	kc := f.kubeconfig(t)
	run := func(upstream bool) (string, string) {
		m, s := openPTY(t, 80, 24)
		screen := ptyReader(m)
		var errOut lockedBuffer
		done := make(chan error, 1)
		if upstream {
			home := t.TempDir()
			cmd := exec.Command(kubectlPath(t), "--kubeconfig", kc, "--cache-dir", filepath.Join(home, "cache"), "attach", "-it", "ttypod")
			cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "KUBECTL_KUBERC=false"}
			cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, &errOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
		} else {
			go func() {
				done <- Run(context.Background(), []string{"--kubeconfig", kc, "attach", "-it", "ttypod"}, s, s, &errOut)
			}()
		}
		waitFor(t, func() bool { return strings.Contains(screen.String(), "attached") })
		io.WriteString(m, "hello\nbye\n")
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("attach (upstream=%v): %v (%s)", upstream, err, errOut.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("attach (upstream=%v) did not end: %q", upstream, screen.String())
		}
		waitFor(t, func() bool { return strings.Contains(screen.String(), "Session ended") })
		return screen.String(), normalizeStderr(errOut.String())
	}
	ours, ourErr := run(false)
	want := "attached to c tty=true\ngot hello\ngot bye\nSession ended, resume using 'kubectl attach ttypod -c c -i -t' command when the pod is running\r\n"
	if ours != want || ourErr != "If you don't see a command prompt, try pressing enter.\n" {
		t.Errorf("attach -it: screen %q stderr %q, want %q", ours, ourErr, want)
	}
	if kubectlPath(t) == "" {
		t.Skip("kubectl not on PATH")
	}
	up, upErr := run(true)
	if up != ours || upErr != ourErr {
		t.Errorf("attach -it differs:\n kubectl %q %q\n ours    %q %q", up, upErr, ours, ourErr)
	}
}

// TestExecInterrupted cancels Run's context during a session: it ends
// without a message and with the exit status of SIGINT.
func TestExecInterrupted(t *testing.T) {
	f := newStreamFake(t)
	streamFixture(t, f)
	kc := f.kubeconfig(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"--kubeconfig", kc, "exec", "-i", "one", "--", "cat"}, pr, &out, &errOut)
	}()
	io.WriteString(pw, "x\n")
	waitFor(t, func() bool { return out.String() == "x\n" })
	cancel()
	err := <-done
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 130 || errOut.String() != "" {
		t.Errorf("got %v, stderr %q; want exit 130 and no message", err, errOut.String())
	}
}
