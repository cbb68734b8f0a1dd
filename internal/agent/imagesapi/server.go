// Package imagesapi lets `skiff images import|ls|rm` work on a node whose
// agent runs. The agent owns the image store (image.Store holds an flock on
// it), so the CLI talks to the agent over a unix socket, DATA/agent/skiff.sock
// (mode 0600, root's), with a small HTTP API:
//
//	GET    /healthz          "ok"
//	GET    /images           {"images": [image.Image…]}
//	POST   /images/import    body: an OCI image-layout or `docker save` tar (streamed)
//	                         → {"names": ["docker.io/library/busybox:latest", …]}
//	DELETE /images/{ref}     → {"deleted": [repo tags, else repo digests, else the ID]}
//	                         409 when a container uses the image
//
// Errors are {"message": "…", "reason": "NotFound"|"Invalid"|"InUse"|"InternalError"}
// with 404/400/409/500; the Client turns them back into errors that match
// image.ErrNotFound, image.ErrInvalid and image.ErrInUse.
//
// When no agent runs, Connect opens the store directly (holding its lock only
// for the command), so the same commands work on a stopped node.
//
// RunGC is the agent's image garbage collection loop (the kubelet's: every
// 5 minutes, thresholds from image.Options, default 85%/80%).
//
// Wiring in the agent:
//
//	inUse := imagesapi.InUseFunc(rt) // images of the containers that exist (label skiff.image.id)
//	srv := &imagesapi.Server{Store: st, InUse: inUse, Logger: log}
//	g.Go(func() error { return srv.Serve(ctx, imagesapi.SocketPath(dataDir)) })
//	g.Go(func() error { imagesapi.RunGC(ctx, st, inUse, imagesapi.DefaultGCInterval, log); return nil })
package imagesapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/skiff-dev/skiff/internal/image"
)

// Paths under the data dir (see the agent's layout in DESIGN.md).
const (
	SocketName = "skiff.sock"
	// LabelImageID is the container label (runtime.ContainerConfig.Labels)
	// holding the image.Image.ID the container runs.
	LabelImageID = "skiff.image.id"
)

// SocketPath is DATA/agent/skiff.sock.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "agent", SocketName) }

// StoreDir is DATA/agent/image-store, the image.Store root.
func StoreDir(dataDir string) string { return filepath.Join(dataDir, "agent", "image-store") }

// maxSocketPath is what fits in sockaddr_un.sun_path with its NUL.
const maxSocketPath = 107

// Server serves the images API for the agent's store.
type Server struct {
	Store *image.Store
	// InUse returns the IDs of images that containers use; DELETE refuses
	// them. nil: no image is in use.
	InUse func() (map[string]bool, error)
	// Logger (default slog.Default()); the server adds component=imagesapi.
	Logger *slog.Logger
}

func (s *Server) log() *slog.Logger {
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "imagesapi")
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("GET /images", s.list)
	mux.HandleFunc("POST /images/import", s.importTar)
	mux.HandleFunc("DELETE /images/{ref...}", s.remove)
	return mux
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, listResponse{Images: s.Store.List()})
}

func (s *Server) importTar(w http.ResponseWriter, r *http.Request) {
	names, err := s.Store.Import(r.Context(), r.Body)
	if err != nil {
		s.log().Warn("image import failed", "err", err)
		writeError(w, err)
		return
	}
	s.log().Info("images imported", "names", names)
	writeJSON(w, http.StatusOK, importResponse{Names: names})
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	deleted, err := removeImage(s.Store, ref, s.InUse)
	if err != nil {
		writeError(w, err)
		return
	}
	s.log().Info("image removed", "ref", ref, "deleted", deleted)
	writeJSON(w, http.StatusOK, removeResponse{Deleted: deleted})
}

// removeImage removes ref unless a container uses it, and returns the names
// it had (as crictl rmi prints them: repo tags, else repo digests).
func removeImage(st *image.Store, ref string, inUseFn func() (map[string]bool, error)) ([]string, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty image reference", image.ErrInvalid)
	}
	img, err := st.Get(ref)
	if err != nil {
		return nil, err
	}
	var inUse map[string]bool
	if inUseFn != nil {
		if inUse, err = inUseFn(); err != nil {
			return nil, fmt.Errorf("cannot tell which images containers use, not removing %s: %w", ref, err)
		}
	}
	if inUse[img.ID] {
		return nil, fmt.Errorf("%w by a container: %s (%s); delete the pods using it first", image.ErrInUse, ref, img.ID)
	}
	if err := st.Remove(img.ID, inUse); err != nil {
		return nil, err
	}
	names := img.RepoTags
	if len(names) == 0 {
		names = img.RepoDigests
	}
	if len(names) == 0 {
		names = []string{img.ID}
	}
	return names, nil
}

type listResponse struct {
	Images []*image.Image `json:"images"`
}

type importResponse struct {
	Names []string `json:"names"`
}

type removeResponse struct {
	Deleted []string `json:"deleted"`
}

type errorResponse struct {
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

const (
	reasonNotFound = "NotFound"
	reasonInvalid  = "Invalid"
	reasonInUse    = "InUse"
	reasonInternal = "InternalError"
)

func writeError(w http.ResponseWriter, err error) {
	code, reason := http.StatusInternalServerError, reasonInternal
	switch {
	case errors.Is(err, image.ErrNotFound):
		code, reason = http.StatusNotFound, reasonNotFound
	case errors.Is(err, image.ErrInUse):
		code, reason = http.StatusConflict, reasonInUse
	case errors.Is(err, image.ErrInvalid), errors.Is(err, image.ErrUnsafe):
		code, reason = http.StatusBadRequest, reasonInvalid
	}
	writeJSON(w, code, errorResponse{Message: err.Error(), Reason: reason})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Listen listens on socketPath with mode 0600, replacing a stale socket (one
// nobody answers on). It refuses when another process serves there.
func Listen(socketPath string) (net.Listener, error) {
	if len(socketPath) > maxSocketPath {
		return nil, fmt.Errorf("images API socket path %s is longer than %d bytes", socketPath, maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(socketPath), 0o700); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(socketPath); err == nil {
		c, err := net.DialTimeout("unix", socketPath, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("images API socket %s: another process serves it", socketPath)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOTSOCK) {
			return nil, fmt.Errorf("images API socket %s: %w", socketPath, err)
		}
		if err := os.Remove(socketPath); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	// Bind under a temporary name, chmod, then rename into place, so the
	// socket is never reachable with the umask's mode.
	tmp := fmt.Sprintf("%s.%d.tmp", socketPath, os.Getpid())
	if len(tmp) > maxSocketPath {
		tmp = filepath.Join(filepath.Dir(socketPath), fmt.Sprintf(".s%d", os.Getpid()))
	}
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("images API: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, socketPath)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("images API: %w", err)
	}
	return ln, nil
}

// Serve serves the API on socketPath (see Listen) until ctx ends, then
// removes the socket.
func (s *Server) Serve(ctx context.Context, socketPath string) error {
	ln, err := Listen(socketPath)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, ln, socketPath)
}

// ServeListener serves on ln until ctx ends; socketPath (if not empty) is
// removed when it stops.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener, socketPath string) error {
	if s.Store == nil {
		ln.Close()
		return errors.New("imagesapi: no store")
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log().Info("images API listening", "socket", socketPath)
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if hs.Shutdown(sctx) != nil {
			hs.Close()
		}
		cancel()
		<-errc
	}
	if socketPath != "" {
		os.Remove(socketPath)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
