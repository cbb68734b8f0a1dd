package kubeletserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	gwebsocket "github.com/gorilla/websocket"
	clientpf "k8s.io/client-go/tools/portforward"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// portForward serves /portForward/{ns}/{pod}.
func (s *Server) portForward(w http.ResponseWriter, r *http.Request, ns, pod string) {
	tunneled := wsstream.IsWebSocketRequestWithTunnelingProtocol(r)
	var opts *portforward.V4Options
	if !tunneled {
		var err error
		if opts, err = portforward.NewV4Options(r); err != nil {
			writeText(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	netns, err := s.cfg.Pods.PodNetNS(ns, pod)
	if err != nil {
		writeError(w, err, http.StatusNotFound)
		return
	}
	pf := &forwarder{dial: s.cfg.Dial, netns: netns}
	s.log.Debug("port-forward", "pod", ns+"/"+pod, "tunneled", tunneled)
	if tunneled {
		s.serveTunneledPortForward(w, r, pf, pod)
		return
	}
	portforward.ServePortForward(w, r, pf, pod, "", opts,
		s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout, portforward.SupportedProtocols)
}

// serveTunneledPortForward serves SPDY tunneled through WebSocket (kubectl ≥
// 1.31): the WebSocket carries the SPDY connection's bytes, so once it is
// upgraded the usual SPDY port-forward handler runs over it, with a request
// rewritten as the SPDY upgrade it stands for and a response writer whose
// Hijack returns the tunnel (the WebSocket handshake was the upgrade
// response: nothing else is written to the client).
func (s *Server) serveTunneledPortForward(w http.ResponseWriter, r *http.Request, pf *forwarder, pod string) {
	var spdyProtocols, wsProtocols []string
	for _, p := range gwebsocket.Subprotocols(r) {
		if rest, ok := strings.CutPrefix(p, portforward.WebsocketsSPDYTunnelingPrefix); ok && strings.HasSuffix(p, portforward.KubernetesSuffix) {
			for _, sp := range portforward.SupportedProtocols {
				if rest == sp {
					spdyProtocols = append(spdyProtocols, rest)
					wsProtocols = append(wsProtocols, p)
				}
			}
		}
	}
	if len(spdyProtocols) == 0 {
		writeText(w, http.StatusBadRequest, "unable to upgrade: no supported tunneling spdy protocols provided")
		return
	}
	up := gwebsocket.Upgrader{
		CheckOrigin:  func(*http.Request) bool { return true },
		Subprotocols: wsProtocols[:1],
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		s.log.Debug("websocket upgrade failed", "path", r.URL.Path, "err", err)
		return // Upgrade answered the client
	}
	tunnel := clientpf.NewTunnelingConnection("server", ws)
	defer tunnel.Close()

	req := r.Clone(r.Context())
	for _, h := range []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions", wsstream.WebSocketProtocolHeader} {
		req.Header.Del(h)
	}
	req.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Set(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	req.Header.Del(httpstream.HeaderProtocolVersion)
	req.Header.Add(httpstream.HeaderProtocolVersion, spdyProtocols[0])
	tw := &tunnelWriter{header: http.Header{}, conn: tunnel}
	portforward.ServePortForward(tw, req, pf, pod, "", &portforward.V4Options{},
		s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout, portforward.SupportedProtocols)
}

// tunnelWriter is the http.ResponseWriter of a tunneled SPDY upgrade: the
// upgrade response already went out as the WebSocket handshake, so headers
// and bodies are dropped and Hijack hands out the tunnel.
type tunnelWriter struct {
	header http.Header
	conn   net.Conn
}

func (t *tunnelWriter) Header() http.Header         { return t.header }
func (t *tunnelWriter) Write(p []byte) (int, error) { return len(p), nil }
func (t *tunnelWriter) WriteHeader(int)             {}
func (t *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}

// forwarder connects port-forward streams to ports in a pod's network
// namespace.
type forwarder struct {
	dial  DialFunc
	netns string
}

var _ portforward.PortForwarder = (*forwarder)(nil)

// PortForward copies between stream and a connection to the pod's port
// until the pod side closes (or the client resets the stream, or ctx ends).
// The client closing its side half-closes the pod connection, so a reply
// still comes back.
func (f *forwarder) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	conn, err := f.connect(ctx, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go func() {
		_, _ = io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, err = io.Copy(stream, conn)
	if err != nil && (errors.Is(err, net.ErrClosed) || ctx.Err() != nil) {
		err = nil
	}
	return err
}

func (f *forwarder) connect(ctx context.Context, port int32) (net.Conn, error) {
	p := strconv.Itoa(int(port))
	conn, err4 := f.dial(ctx, f.netns, "tcp", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return conn, nil
	}
	conn, err6 := f.dial(ctx, f.netns, "tcp", net.JoinHostPort("::1", p))
	if err6 == nil {
		return conn, nil
	}
	// As containerd words it.
	return nil, fmt.Errorf("failed to connect to localhost:%d inside namespace %q, IPv4: %v IPv6 %v", port, f.netns, err4, err6)
}
