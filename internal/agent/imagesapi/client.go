package imagesapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/skiff-dev/skiff/internal/image"
)

// Images is what `skiff images` does: through the agent (Client) or on the
// store itself (Local).
type Images interface {
	// ImportFile imports an OCI image-layout or `docker save` tar and
	// returns the names imported.
	ImportFile(ctx context.Context, path string) ([]string, error)
	List(ctx context.Context) ([]*image.Image, error)
	// Remove deletes the image ref names unless a container uses it and
	// returns the names it had.
	Remove(ctx context.Context, ref string) ([]string, error)
	Close() error
}

var (
	_ Images = (*Client)(nil)
	_ Images = (*Local)(nil)
)

// ErrNoAgent means nothing listens on the images API socket.
var ErrNoAgent = errors.New("no agent is running")

// Client calls the images API of the agent on a unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the agent listening on socketPath.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		DisableCompression: true,
	}
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Ping checks that the agent answers. A socket that does not exist or that
// nobody listens on gives an error matching ErrNoAgent.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// Import streams a tar to the agent.
func (c *Client) Import(ctx context.Context, r io.Reader) ([]string, error) {
	var out importResponse
	if err := c.do(ctx, http.MethodPost, "/images/import", r, &out); err != nil {
		return nil, err
	}
	return out.Names, nil
}

// ImportFile streams the tar at path to the agent.
func (c *Client) ImportFile(ctx context.Context, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return c.Import(ctx, f)
}

// List returns the agent's images.
func (c *Client) List(ctx context.Context) ([]*image.Image, error) {
	var out listResponse
	if err := c.do(ctx, http.MethodGet, "/images", nil, &out); err != nil {
		return nil, err
	}
	return out.Images, nil
}

// Remove asks the agent to remove ref.
func (c *Client) Remove(ctx context.Context, ref string) ([]string, error) {
	var out removeResponse
	if err := c.do(ctx, http.MethodDelete, "/images/"+ref, nil, &out); err != nil {
		return nil, err
	}
	return out.Deleted, nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	u := &url.URL{Scheme: "http", Host: "skiff-agent", Path: path}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-tar")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (%s: %v)", ErrNoAgent, c.socket, errors.Unwrap(err))
		}
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("images API %s: %w (run as root)", c.socket, err)
		}
		return fmt.Errorf("images API %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorResponse
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("images API: %s: %s", resp.Status, b)
		}
		return &apiError{msg: e.Message, reason: e.Reason}
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("images API: bad response: %w", err)
	}
	return nil
}

// apiError is an error the agent returned; it matches the image package's
// sentinel errors like the store's own errors do.
type apiError struct{ msg, reason string }

func (e *apiError) Error() string { return e.msg }

func (e *apiError) Unwrap() error {
	switch e.reason {
	case reasonNotFound:
		return image.ErrNotFound
	case reasonInvalid:
		return image.ErrInvalid
	case reasonInUse:
		return image.ErrInUse
	}
	return nil
}

// Local works on the store directly, for when no agent runs.
type Local struct {
	// Store is nil when there is no store yet (nothing to list or remove).
	Store *image.Store
	// InUse as in Server; nil: no image is in use.
	InUse func() (map[string]bool, error)
}

// ImportFile imports the tar at path into the store.
func (l *Local) ImportFile(ctx context.Context, path string) ([]string, error) {
	if l.Store == nil {
		return nil, errors.New("no image store")
	}
	return l.Store.ImportFile(ctx, path)
}

// List returns the store's images.
func (l *Local) List(context.Context) ([]*image.Image, error) {
	if l.Store == nil {
		return nil, nil
	}
	return l.Store.List(), nil
}

// Remove removes ref unless a container uses it.
func (l *Local) Remove(_ context.Context, ref string) ([]string, error) {
	if l.Store == nil {
		return nil, fmt.Errorf("%w: %s", image.ErrNotFound, ref)
	}
	return removeImage(l.Store, ref, l.InUse)
}

// Close releases the store (and its lock).
func (l *Local) Close() error {
	if l.Store == nil {
		return nil
	}
	return l.Store.Close()
}

// ConnectOptions configure Connect.
type ConnectOptions struct {
	// InUse is used when the store is opened directly (no agent runs):
	// containers may outlive a stopped agent. nil: no image is in use.
	InUse func() (map[string]bool, error)
	// Create the store if it does not exist yet (import); otherwise a
	// missing store is an empty one.
	Create bool
	// Logger for the directly opened store (default: warnings only, to
	// stderr).
	Logger *slog.Logger
}

// Connect reaches the images of the node whose data dir is dataDir: through
// the agent when one answers on SocketPath(dataDir), else by opening the
// store itself (image.ErrLocked, with a clear message, when another process
// holds it but no agent answers).
func Connect(ctx context.Context, dataDir string, opts ConnectOptions) (Images, error) {
	c := NewClient(SocketPath(dataDir))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second) // an agent that accepts but hangs
	err := c.Ping(pctx)
	cancel()
	if err == nil {
		return c, nil
	}
	c.Close()
	if !errors.Is(err, ErrNoAgent) {
		return nil, err
	}
	dir := StoreDir(dataDir)
	if !opts.Create {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return &Local{InUse: opts.InUse}, nil
		}
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	st, err := image.Open(dir, image.Options{Logger: lg})
	if errors.Is(err, image.ErrLocked) {
		return nil, fmt.Errorf("%w (%s), but no agent answers on %s: is the agent starting or stopping? "+
			"Try again, or drop the tar into %s", image.ErrLocked, dir, SocketPath(dataDir), filepath.Join(dataDir, "agent", "images"))
	}
	if err != nil {
		return nil, err
	}
	return &Local{Store: st, InUse: opts.InUse}, nil
}
