package prober

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// fakeExec is an ExecFunc whose behaviour the test sets.
func fakeExec(fn func(ctx context.Context, args []string, out io.Writer) (int, error)) ExecFunc {
	return func(ctx context.Context, id string, args []string, stdout, stderr io.Writer) (int, error) {
		return fn(ctx, args, stdout)
	}
}

func execTarget() *Target {
	return &Target{ContainerID: "c1", Container: &v1.Container{Name: "app"}}
}

func TestExecProbe(t *testing.T) {
	long := strings.Repeat("x", 20<<10)
	tests := []struct {
		name    string
		fn      func(ctx context.Context, args []string, out io.Writer) (int, error)
		timeout int32
		want    Result
		output  string
		wantErr bool
	}{
		{name: "exit 0", fn: func(_ context.Context, _ []string, out io.Writer) (int, error) {
			_, _ = io.WriteString(out, "ok")
			return 0, nil
		}, want: Success, output: "ok"},
		{name: "exit 1", fn: func(_ context.Context, _ []string, out io.Writer) (int, error) {
			_, _ = io.WriteString(out, "bad")
			return 1, nil
		}, want: Failure, output: "bad"},
		{name: "output truncated to 10 KiB", fn: func(_ context.Context, _ []string, out io.Writer) (int, error) {
			n, err := io.WriteString(out, long)
			if n != len(long) || err != nil {
				return -1, errors.New("short write")
			}
			return 0, nil
		}, want: Success, output: long[:10<<10]},
		{name: "timeout", timeout: 1, fn: func(ctx context.Context, _ []string, _ io.Writer) (int, error) {
			<-ctx.Done()
			return -1, ctx.Err()
		}, want: Failure, output: `command "sh -c true" timed out`},
		{name: "cannot exec", fn: func(context.Context, []string, io.Writer) (int, error) {
			return -1, errors.New("container not running")
		}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"sh", "-c", "true"}}}, TimeoutSeconds: tc.timeout}
			start := time.Now()
			r, out, err := Probe(context.Background(), p, execTarget(), fakeExec(tc.fn))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v %q", r, out)
				}
				return
			}
			if err != nil || r != tc.want || out != tc.output {
				t.Fatalf("got %v %.40q %v, want %v %.40q", r, out, err, tc.want, tc.output)
			}
			if tc.timeout > 0 && time.Since(start) > 5*time.Second {
				t.Fatalf("timeout not honoured: %v", time.Since(start))
			}
		})
	}
}

// serverTarget returns a target whose pod IP and named port point at srv.
func serverTarget(t *testing.T, srv *httptest.Server) (*Target, int) {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	host, ps, _ := net.SplitHostPort(u.Host)
	port, _ := strconv.Atoi(ps)
	return &Target{PodIP: host, ContainerID: "c1", Container: &v1.Container{Name: "web",
		Ports: []v1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}}, port
}

func httpProbeSpec(path string, port intstr.IntOrString) *v1.Probe {
	return &v1.Probe{TimeoutSeconds: 2, ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: path, Port: port}}}
}

func TestHTTPProbeStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "body")
	}))
	t.Cleanup(srv.Close)
	tgt, _ := serverTarget(t, srv)
	for code, want := range map[int]Result{200: Success, 204: Success, 302: Success, 399: Success, 400: Failure, 404: Failure, 500: Failure, 503: Failure} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			r, out, err := Probe(context.Background(), httpProbeSpec("/"+strconv.Itoa(code), intstr.FromString("http")), tgt, nil)
			if err != nil || r != want {
				t.Fatalf("got %v %q %v, want %v", r, out, err, want)
			}
			if want == Failure && out != "HTTP probe failed with statuscode: "+strconv.Itoa(code) {
				t.Fatalf("output %q", out)
			}
		})
	}
}

func TestHTTPProbeHeadersAndBodyLimit(t *testing.T) {
	var got http.Header
	var host string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, host = r.Header.Clone(), r.Host
		_, _ = io.WriteString(w, strings.Repeat("b", 64<<10))
	}))
	t.Cleanup(srv.Close)
	tgt, port := serverTarget(t, srv)

	p := httpProbeSpec("/healthz?x=1", intstr.FromInt32(int32(port)))
	r, out, err := Probe(context.Background(), p, tgt, nil)
	if err != nil || r != Success || len(out) != 10<<10 {
		t.Fatalf("got %v len %d %v", r, len(out), err)
	}
	if ua := got.Get("User-Agent"); ua != "kube-probe/1.32" {
		t.Errorf("User-Agent %q", ua)
	}
	if a := got.Get("Accept"); a != "*/*" {
		t.Errorf("Accept %q", a)
	}

	p.HTTPGet.HTTPHeaders = []v1.HTTPHeader{{Name: "user-agent", Value: "mine"}, {Name: "X-Custom", Value: "a"},
		{Name: "X-Custom", Value: "b"}, {Name: "Accept", Value: ""}, {Name: "Host", Value: "example.test"}}
	if r, _, err := Probe(context.Background(), p, tgt, nil); err != nil || r != Success {
		t.Fatalf("got %v %v", r, err)
	}
	if ua := got.Get("User-Agent"); ua != "mine" {
		t.Errorf("User-Agent %q", ua)
	}
	if v := got.Values("X-Custom"); len(v) != 2 {
		t.Errorf("X-Custom %q", v)
	}
	if _, ok := got["Accept"]; ok {
		t.Errorf("empty Accept header should remove it: %q", got["Accept"])
	}
	if host != "example.test" {
		t.Errorf("Host %q", host)
	}
}

func TestHTTPProbeRedirects(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(other.Close)
	otherURL, _ := url.Parse(other.URL)
	_, otherPort, _ := net.SplitHostPort(otherURL.Host)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/local":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/local-bad":
			http.Redirect(w, r, "/bad", http.StatusFound)
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/bad":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/remote":
			// Another host name (localhost vs 127.0.0.1): not followed.
			http.Redirect(w, r, "http://localhost:"+otherPort+"/", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	tgt, _ := serverTarget(t, srv)
	tests := []struct {
		path string
		want Result
		out  string
	}{
		{"/local", Success, ""},
		{"/local-bad", Failure, "HTTP probe failed with statuscode: 503"},
		{"/remote", Success, "Probe terminated redirects, Response body: "},
		{"/loop", Failure, "stopped after 10 redirects"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			o, err := runProbe(context.Background(), httpProbeSpec(tc.path, intstr.FromString("http")), tgt, nil)
			if err != nil || o.result != tc.want || !strings.Contains(o.output, tc.out) {
				t.Fatalf("got %+v %v, want %v %q", o, err, tc.want, tc.out)
			}
			if tc.path == "/remote" && !o.warning {
				t.Fatal("remote redirect should be a warning")
			}
		})
	}
}

func TestHTTPProbeTimeoutAndHTTPS(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	tgt, _ := serverTarget(t, slow)
	p := httpProbeSpec("/", intstr.FromString("http"))
	p.TimeoutSeconds = 1
	start := time.Now()
	r, out, err := Probe(context.Background(), p, tgt, nil)
	if err != nil || r != Failure || !strings.Contains(out, "Timeout") {
		t.Fatalf("got %v %q %v", r, out, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout not honoured: %v", d)
	}

	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(tlsSrv.Close)
	tgt, _ = serverTarget(t, tlsSrv)
	p = httpProbeSpec("/", intstr.FromString("http"))
	p.HTTPGet.Scheme = v1.URISchemeHTTPS
	if r, out, err := Probe(context.Background(), p, tgt, nil); err != nil || r != Success {
		t.Fatalf("https (self-signed) got %v %q %v", r, out, err)
	}
}

// TestHTTPProbeDialer checks that connections go through the target's dialer
// (the seam for entering the pod's network namespace).
func TestHTTPProbeDialer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	tgt, _ := serverTarget(t, srv)
	var dialed []string
	realAddr := strings.TrimPrefix(srv.URL, "http://")
	tgt.PodIP = "10.244.9.9" // not routable: only the dialer makes it work
	tgt.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, network+" "+addr)
		var d net.Dialer
		return d.DialContext(ctx, network, realAddr)
	}
	_, port, _ := net.SplitHostPort(realAddr)
	if r, out, err := Probe(context.Background(), httpProbeSpec("/", intstr.FromString("http")), tgt, nil); err != nil || r != Success {
		t.Fatalf("got %v %q %v", r, out, err)
	}
	if len(dialed) != 1 || dialed[0] != "tcp 10.244.9.9:"+port {
		t.Fatalf("dialed %q", dialed)
	}
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	tgt := &Target{PodIP: "127.0.0.1", ContainerID: "c1", Container: &v1.Container{Name: "db",
		Ports: []v1.ContainerPort{{Name: "sql", ContainerPort: int32(port)}}}}
	p := &v1.Probe{TimeoutSeconds: 1, ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromString("sql")}}}
	if r, out, err := Probe(context.Background(), p, tgt, nil); err != nil || r != Success {
		t.Fatalf("open port: %v %q %v", r, out, err)
	}

	// A port nobody listens on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	p.TCPSocket.Port = intstr.FromInt32(int32(closedPort))
	if r, out, err := Probe(context.Background(), p, tgt, nil); err != nil || r != Failure || !strings.Contains(out, "refused") {
		t.Fatalf("closed port: %v %q %v", r, out, err)
	}
}

func TestResolvePort(t *testing.T) {
	c := &v1.Container{Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	tests := []struct {
		in      intstr.IntOrString
		want    int
		wantErr bool
	}{
		{intstr.FromInt32(80), 80, false},
		{intstr.FromString("http"), 8080, false},
		{intstr.FromString("9090"), 9090, false},
		{intstr.FromString("nope"), 0, true},
		{intstr.FromInt32(0), 0, true},
		{intstr.FromInt32(70000), 0, true},
	}
	for _, tc := range tests {
		got, err := resolvePort(tc.in, c)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("resolvePort(%v) = %d, %v", tc.in.String(), got, err)
		}
	}
	p := &v1.Probe{ProbeHandler: v1.ProbeHandler{GRPC: &v1.GRPCAction{Port: 1}}}
	if _, _, err := Probe(context.Background(), p, execTarget(), nil); err == nil {
		t.Error("grpc probe should report unsupported")
	}
}
