package podworker

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// runHook runs a lifecycle handler (postStart / preStop) as the kubelet's
// handlerRunner: exec in the container, or an HTTP GET from inside the
// pod's network namespace. It returns the handler's output on failure.
func (w *podWorker) runHook(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, in *instance, h *corev1.LifecycleHandler) (string, error) {
	switch {
	case h.Exec != nil:
		var out lockedWriter // stdout and stderr are copied concurrently
		code, err := w.m.rt.Exec(ctx, in.id, runtime.ExecConfig{Args: h.Exec.Command, Stdout: &out, Stderr: &out})
		if err != nil {
			return out.String(), err
		}
		if code != 0 {
			return out.String(), fmt.Errorf("command '%v' exited with %d: %s", h.Exec.Command, code, out.String())
		}
		return "", nil
	case h.HTTPGet != nil:
		return w.httpHook(ctx, pod, spec, h.HTTPGet)
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
		}
		return "", nil
	}
	return "", fmt.Errorf("invalid lifecycle handler")
}

// lockedWriter is a bytes.Buffer safe for concurrent writers.
type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (w *podWorker) httpHook(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, g *corev1.HTTPGetAction) (string, error) {
	host := g.Host
	if host == "" {
		host = "127.0.0.1"
		if ips := w.ipsForPod(pod); len(ips) > 0 {
			host = ips[0]
		}
	}
	port := g.Port.IntValue()
	if port == 0 && g.Port.StrVal != "" {
		for _, p := range spec.Ports {
			if p.Name == g.Port.StrVal {
				port = int(p.ContainerPort)
			}
		}
	}
	if port == 0 {
		port = 80
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
	if u.Path == "" {
		u.Path = "/"
	}
	w.mu.Lock()
	sb := w.sandbox
	w.mu.Unlock()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true} //nolint:gosec // as the kubelet
	if sb != nil && sb.NetNSPath != "" {
		netns := sb.NetNSPath
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return runtime.DialInNetNS(ctx, netns, network, addr)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	for _, hd := range g.HTTPHeaders {
		req.Header.Add(hd.Name, hd.Value)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return string(body), fmt.Errorf("HTTP lifecycle hook (%s) for Container %q in Pod %q failed - error: received status code %d, message: %q",
			g.Path, spec.Name, pod.Name, resp.StatusCode, string(body))
	}
	return "", nil
}
