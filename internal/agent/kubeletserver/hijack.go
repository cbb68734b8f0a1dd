package kubeletserver

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
)

// withDisconnect returns w and r such that r's context ends once the
// connection w's handler hijacks (for SPDY or WebSocket) fails to read —
// the client went away — or is closed. After a hijack net/http no longer
// watches the connection, and the streaming libraries run the exec or
// attach with the request's context: without this a disconnected client
// would leave its exec running and its attach registered until the
// container exits.
func withDisconnect(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	hj, ok := w.(http.Hijacker)
	if !ok {
		return w, r.WithContext(ctx), cancel
	}
	return &disconnectWriter{ResponseWriter: w, hj: hj, cancel: cancel}, r.WithContext(ctx), cancel
}

type disconnectWriter struct {
	http.ResponseWriter
	hj     http.Hijacker
	cancel context.CancelFunc
}

// (No Unwrap: cri-streaming's WebSocket handler unwraps writers to find a
// Hijacker, and this one must stay in the chain.)

func (d *disconnectWriter) Flush() {
	if f, ok := d.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (d *disconnectWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := d.hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	dc := &disconnectConn{Conn: conn, cancel: d.cancel}
	// Bytes the server had already read stay in front of the connection.
	var r io.Reader = dc
	if n := rw.Reader.Buffered(); n > 0 {
		buf, _ := rw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(buf)), dc)
	}
	return dc, bufio.NewReadWriter(bufio.NewReader(r), bufio.NewWriter(dc)), nil
}

// disconnectConn cancels once a read fails or the connection is closed.
type disconnectConn struct {
	net.Conn
	cancel context.CancelFunc
	once   sync.Once
}

func (c *disconnectConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(c.cancel)
	}
	return n, err
}

func (c *disconnectConn) Close() error {
	c.once.Do(c.cancel)
	return c.Conn.Close()
}
