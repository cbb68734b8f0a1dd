package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	_ "github.com/opencontainers/cgroups/devices" // device rules for the cgroup managers
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // C constructor for `init`; see ContainerInit

	_ "github.com/skiff-dev/skiff/internal/containerinit" // the `init` hook, run before the k8s.io package inits
)

// Sentinel errors, wrapped with context by the methods that return them.
var (
	ErrNotFound = errors.New("not found")
	ErrExist    = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	ErrState    = errors.New("wrong state")
)

// runcModule is the module whose version Version reports.
const runcModule = "github.com/opencontainers/runc"

// Version returns the runtime's version as a node reports it in
// nodeInfo.containerRuntimeVersion: "runc://<libcontainer version>".
func Version() string {
	v := "1.4.4"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == runcModule {
				if d.Replace != nil {
					d = d.Replace
				}
				v = strings.TrimPrefix(d.Version, "v")
			}
		}
	}
	return "runc://" + v
}

// ContainerInit is the libcontainer re-exec hook. Package main calls it from
// func init() when os.Args[1] == "init"; it sets up the container and execs
// the container's process, so it never returns.
func ContainerInit() {
	libcontainer.Init()
}

// Options configure a Runtime.
type Options struct {
	// CgroupParent is the cgroup under which each container gets
	// CgroupParent/<id> (in every v1 hierarchy, or under the v2 root).
	// Default "skiff".
	CgroupParent string
	// NetNSDir holds the sandboxes' bind-mounted namespace files.
	// Default /run/netns (what `ip netns` uses).
	NetNSDir string
	// Logger; the runtime adds component=runtime. Default slog.Default().
	Logger *slog.Logger
}

// Runtime manages the containers and sandboxes under one root directory.
// It is safe for concurrent use; several Runtimes must not share a root.
type Runtime struct {
	root      string
	stateRoot string // libcontainer's root
	opts      Options
	log       *slog.Logger

	mu       sync.Mutex
	watchers map[string]*watcher // container id → exit watcher
	locks    map[string]*sync.Mutex
}

// Open opens (creating if needed) a runtime root and re-adopts the containers
// found there: running ones are watched for their exit as if this process had
// started them. Open starts no containers.
func Open(root string, opts Options) (*Runtime, error) {
	if root == "" {
		return nil, fmt.Errorf("runtime root: %w", ErrInvalid)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = "skiff"
	}
	opts.CgroupParent = "/" + strings.Trim(opts.CgroupParent, "/")
	if opts.NetNSDir == "" {
		opts.NetNSDir = "/run/netns"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Runtime{
		root:      root,
		stateRoot: filepath.Join(root, "state"),
		opts:      opts,
		log:       opts.Logger.With("component", "runtime"),
		watchers:  map[string]*watcher{},
		locks:     map[string]*sync.Mutex{},
	}
	for _, d := range []string{r.stateRoot, r.containersDir(), r.sandboxesDir()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	ids, err := r.containerIDs()
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		r.adopt(id)
	}
	return r, nil
}

// Root returns the runtime's root directory.
func (r *Runtime) Root() string { return r.root }

// Close stops watching containers. Containers keep running; a later Open on
// the same root re-adopts them.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, w := range r.watchers {
		w.stop()
		delete(r.watchers, id)
	}
	return nil
}

func (r *Runtime) containersDir() string         { return filepath.Join(r.root, "containers") }
func (r *Runtime) sandboxesDir() string          { return filepath.Join(r.root, "sandboxes") }
func (r *Runtime) containerDir(id string) string { return filepath.Join(r.containersDir(), id) }
func (r *Runtime) sandboxDir(id string) string   { return filepath.Join(r.sandboxesDir(), id) }

// lock serialises operations on one container or sandbox id.
func (r *Runtime) lock(id string) func() {
	r.mu.Lock()
	l, ok := r.locks[id]
	if !ok {
		l = &sync.Mutex{}
		r.locks[id] = l
	}
	r.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (r *Runtime) containerIDs() ([]string, error) {
	ents, err := os.ReadDir(r.containersDir())
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// validID accepts what libcontainer accepts, minus "." and "..".
func validID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 1024 {
		return fmt.Errorf("id %q: %w", id, ErrInvalid)
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.', c == '+':
		default:
			return fmt.Errorf("id %q: character %q: %w", id, c, ErrInvalid)
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
