package prober

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Result is the outcome of a probe as the pod worker sees it.
type Result int

const (
	// Unknown: the probe has not decided yet (a startup probe before its
	// first result).
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	default:
		return "Unknown"
	}
}

// ExecFunc runs args in the running container containerID, writing its output
// to stdout and stderr, and returns the exit code. When ctx ends first it must
// kill the process and return an error wrapping ctx.Err(). The agent adapts
// runtime.Runtime.Exec:
//
//	prober.ExecFunc(func(ctx context.Context, id string, args []string, out, errw io.Writer) (int, error) {
//		return rt.Exec(ctx, id, runtime.ExecConfig{Args: args, Stdout: out, Stderr: errw})
//	})
type ExecFunc func(ctx context.Context, containerID string, args []string, stdout, stderr io.Writer) (int, error)

// DialFunc opens a connection for httpGet and tcpSocket probes. The agent
// passes one per pod that dials from inside the pod's network namespace (or a
// plain net.Dialer once pod IPs are routable from the host).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// UserAgent is sent by httpGet probes unless the probe sets its own.
const UserAgent = "kube-probe/1.32"

const (
	// maxExecOutput caps what an exec probe's output keeps (upstream: 10 KiB).
	maxExecOutput = 10 << 10
	// maxHTTPBody caps how much of an HTTP probe's response body is read.
	maxHTTPBody = 10 << 10
	// maxRedirects as net/http's default checker.
	maxRedirects = 10
)

// outcome of one probe run; warning is an HTTP redirect to another host that
// was not followed (a success with a warning event upstream).
type outcome struct {
	result  Result
	warning bool
	output  string
}

// Probe runs p once against a container and returns its result and output.
// A non-nil error means the probe could not be run (the result is thrown
// away by workers, as upstream); a failing probe is Failure with a nil error.
func Probe(ctx context.Context, p *v1.Probe, t *Target, exec ExecFunc) (Result, string, error) {
	o, err := runProbe(ctx, p, t, exec)
	if err != nil {
		return Failure, "", err
	}
	return o.result, o.output, nil
}

func runProbe(ctx context.Context, p *v1.Probe, t *Target, exec ExecFunc) (outcome, error) {
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	switch {
	case p.Exec != nil:
		if exec == nil {
			return outcome{}, errors.New("exec probe: no ExecFunc configured")
		}
		return execProbe(ctx, exec, t.ContainerID, p.Exec.Command, timeout)
	case p.HTTPGet != nil:
		req, err := newHTTPRequest(ctx, p.HTTPGet, t.Container, t.PodIP)
		if err != nil {
			return outcome{}, err
		}
		return httpProbe(req, t.dial(), timeout), nil
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, t.Container)
		if err != nil {
			return outcome{}, err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.PodIP
		}
		return tcpProbe(ctx, t.dial(), net.JoinHostPort(host, strconv.Itoa(port)), timeout), nil
	case p.GRPC != nil:
		// Not implemented yet: skiff has no gRPC health client dependency.
		// Upstream reports an unsupported handler as an error (result thrown
		// away), so a gRPC probe never changes the container's state.
		return outcome{}, errors.New("grpc probes are not supported")
	}
	return outcome{}, errors.New("probe has no handler")
}

// limitedBuffer keeps the first n bytes written and discards the rest,
// reporting every write as complete (upstream's LimitWriter drops the excess
// the same way so the process never blocks on its output).
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.n - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// execProbe: exit code 0 is success, any other is failure; a timeout is a
// failure with upstream's message (ExecProbeTimeout, GA since 1.20).
func execProbe(ctx context.Context, exec ExecFunc, containerID string, cmd []string, timeout time.Duration) (outcome, error) {
	if len(cmd) == 0 {
		return outcome{}, errors.New("exec probe: empty command")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &limitedBuffer{n: maxExecOutput}
	code, err := exec(ctx, containerID, cmd, out, out)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded {
			return outcome{result: Failure, output: fmt.Sprintf("command %q timed out", strings.Join(cmd, " "))}, nil
		}
		return outcome{}, fmt.Errorf("exec probe: %w", err)
	}
	if code != 0 {
		return outcome{result: Failure, output: out.String()}, nil
	}
	return outcome{result: Success, output: out.String()}, nil
}

// resolvePort resolves a probe port: a number, or the name of one of the
// container's ports (and, as upstream's last resort, a number in a string).
func resolvePort(p intstr.IntOrString, c *v1.Container) (int, error) {
	port := -1
	switch p.Type {
	case intstr.Int:
		port = p.IntValue()
	case intstr.String:
		found := false
		if c != nil {
			for _, cp := range c.Ports {
				if cp.Name == p.StrVal {
					port, found = int(cp.ContainerPort), true
					break
				}
			}
		}
		if !found {
			n, err := strconv.Atoi(p.StrVal)
			if err != nil {
				return -1, fmt.Errorf("port %s not found", p.StrVal)
			}
			port = n
		}
	default:
		return -1, fmt.Errorf("intOrString had no kind: %+v", p)
	}
	if port > 0 && port < 65536 {
		return port, nil
	}
	return port, fmt.Errorf("invalid port number: %v", port)
}

// newHTTPRequest builds the GET request of an httpGet probe as upstream: the
// scheme lower-cased (default http), host defaulting to the pod IP, the path
// passed through url.Parse (kept raw if it does not parse), the probe's
// headers, User-Agent and Accept: */* unless set (an empty Accept removes it),
// and a Host header becoming the request's Host.
func newHTTPRequest(ctx context.Context, g *v1.HTTPGetAction, c *v1.Container, podIP string) (*http.Request, error) {
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	host := g.Host
	if host == "" {
		host = podIP
	}
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(g.Path)
	if err != nil {
		u = &url.URL{Path: g.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for _, hh := range g.HTTPHeaders {
		h.Add(hh.Name, hh.Value)
	}
	if _, ok := h["User-Agent"]; !ok {
		h.Set("User-Agent", UserAgent)
	}
	if _, ok := h["Accept"]; !ok {
		h.Set("Accept", "*/*")
	} else if h.Get("Accept") == "" {
		h.Del("Accept")
	}
	req.Header = h
	req.Host = h.Get("Host")
	return req, nil
}

// redirectSameHost follows redirects only to the original host name (the
// kubelet's followNonLocalRedirects=false); a redirect elsewhere returns the
// 3xx response itself, which counts as success with a warning.
func redirectSameHost(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	return nil
}

func httpProbe(req *http.Request, dial DialFunc, timeout time.Duration) outcome {
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probes never verify, as upstream
		DisableKeepAlives:   true,
		DisableCompression:  true,
		Proxy:               nil,
		TLSHandshakeTimeout: timeout,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: timeout, Transport: tr, CheckRedirect: redirectSameHost}
	res, err := client.Do(req)
	if err != nil {
		// Errors, timeouts included, are failures.
		return outcome{result: Failure, output: err.Error()}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxHTTPBody))
	if err != nil {
		return outcome{result: Failure, output: err.Error()}
	}
	body := string(b)
	if res.StatusCode >= http.StatusOK && res.StatusCode < http.StatusBadRequest {
		if res.StatusCode >= http.StatusMultipleChoices {
			return outcome{result: Success, warning: true, output: "Probe terminated redirects, Response body: " + body}
		}
		return outcome{result: Success, output: body}
	}
	// As upstream, the failure message does not carry the body.
	return outcome{result: Failure, output: fmt.Sprintf("HTTP probe failed with statuscode: %d", res.StatusCode)}
}

// tcpProbe succeeds when a connection can be opened; it is closed at once
// with SO_LINGER 0 (an RST, no TIME-WAIT), as upstream's probe dialer does.
func tcpProbe(ctx context.Context, dial DialFunc, addr string, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return outcome{result: Failure, output: err.Error()}
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
	return outcome{result: Success}
}
