package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// ContainerConfig describes a container. Args, Env and WorkingDir are final
// (the caller has merged the image config and the pod spec).
type ContainerConfig struct {
	// ID names the container; libcontainer id characters
	// ([A-Za-z0-9_+.-]).
	ID string
	// SandboxID is the pod sandbox to join (network and IPC namespaces,
	// /dev/shm, hostname). Empty: the container gets namespaces of its own,
	// with only an unconfigured loopback.
	SandboxID string
	Rootfs    Rootfs
	Args      []string
	// Env as KEY=VALUE; PATH is added when missing.
	Env        []string
	WorkingDir string
	UID, GID   uint32
	// AdditionalGIDs are supplementary groups (pod fsGroup and
	// supplementalGroups).
	AdditionalGIDs []uint32
	// Hostname overrides the sandbox's.
	Hostname       string
	ReadonlyRootfs bool
	// Mounts are bind mounts (volumes, /etc/hosts, resolv.conf, the
	// service-account token) applied after the default /proc, /dev, /sys,
	// /dev/pts, /dev/shm and /dev/mqueue, in order.
	Mounts    []Mount
	Resources Resources
	// CgroupParent places the container at Options.CgroupParent/
	// CgroupParent/<id> instead of Options.CgroupParent/<id>: the agent
	// groups a pod's containers under its QoS cgroup (e.g.
	// "kubepods/burstable/pod<uid>"). Relative; RemoveCgroup removes it
	// once the pod's containers are deleted.
	CgroupParent string
	// StdoutPath and StderrPath receive the container's output: regular
	// files (created, appended to) or FIFOs made by the caller (opened
	// read-write here, so the container never gets SIGPIPE while nobody
	// reads; it blocks once the pipe is full). They may be the same path.
	// Empty: /dev/null.
	StdoutPath, StderrPath string
	// Stdin keeps a pipe open as the container's stdin for Attach;
	// StdinOnce closes it when the first attached client's stdin ends.
	Stdin, StdinOnce bool
	// Tty runs the process on a terminal; its output goes to StdoutPath
	// and to attached clients. The terminal and the stdin pipe are held by
	// this process: after an agent restart a re-adopted container's stdin
	// is at EOF and a TTY container has lost its terminal (it gets SIGHUP).
	Tty bool
	// Labels are kept with the container for the caller (pod UID,
	// container name, restart attempt…).
	Labels map[string]string
}

// Rootfs is either an overlay of read-only layers (Lowerdirs, top first;
// the runtime makes the upper and work dirs in the container's directory) or
// a plain directory used as is (Dir).
type Rootfs struct {
	Lowerdirs []string
	Dir       string
}

// Mount is a bind mount into the container.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// Resources are the container's cgroup limits; zero values mean unlimited.
type Resources struct {
	CPUShares   uint64 // from requests; see CPUShares
	CPUQuota    int64  // µs per CPUPeriod, from limits; see CPUQuota
	CPUPeriod   uint64 // µs; default DefaultCPUPeriod when CPUQuota is set
	MemoryLimit int64  // bytes
	PidsLimit   int64
}

// Status is a container's lifecycle state.
type Status string

const (
	StatusCreated Status = "created" // init waits for Start
	StatusRunning Status = "running"
	StatusExited  Status = "exited"
	StatusUnknown Status = "unknown" // half-created or its state is unreadable
)

// State is what the runtime knows about a container.
type State struct {
	ID        string
	SandboxID string
	Labels    map[string]string
	Status    Status
	// Pid is init's pid on the host while created or running.
	Pid        int
	CreatedAt  time.Time
	StartedAt  time.Time // zero until Start
	FinishedAt time.Time // zero until exited
	// ExitCode is set when Status is exited: the process's exit status,
	// or 128+signal when killed by a signal. ExitCodeUnknown: it could not
	// be obtained (see the package doc); ExitCode is then 255.
	ExitCode        int
	ExitCodeUnknown bool
	// OOMKilled: the kernel's OOM killer killed a process of the
	// container's cgroup.
	OOMKilled bool
	// CgroupPaths are the container's cgroup directories by controller
	// ("" on cgroup v2).
	CgroupPaths map[string]string
	// Error says why Status is unknown.
	Error string
}

// meta is what the runtime keeps in CONTAINER_DIR/meta.json.
type meta struct {
	Config    ContainerConfig
	CreatedAt time.Time
	StartedAt time.Time
	// Overlay: the rootfs is an overlay mounted at CONTAINER_DIR/rootfs.
	Overlay bool
}

// Create creates a container: mounts its rootfs, sets up its cgroup and
// namespaces, and leaves its init process waiting for Start. On error
// nothing is left behind.
func (r *Runtime) Create(ctx context.Context, cfg ContainerConfig) (_ *State, retErr error) {
	if err := validID(cfg.ID); err != nil {
		return nil, err
	}
	if len(cfg.Args) == 0 {
		return nil, fmt.Errorf("container %s: no args: %w", cfg.ID, ErrInvalid)
	}
	if (cfg.Rootfs.Dir == "") == (len(cfg.Rootfs.Lowerdirs) == 0) {
		return nil, fmt.Errorf("container %s: rootfs needs exactly one of Dir and Lowerdirs: %w", cfg.ID, ErrInvalid)
	}
	if err := validCgroupParent(cfg.CgroupParent); err != nil {
		return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	defer r.lock(cfg.ID)()
	var sb *Sandbox
	if cfg.SandboxID != "" {
		var err error
		if sb, err = r.GetSandbox(cfg.SandboxID); err != nil {
			return nil, err
		}
	}
	dir := r.containerDir(cfg.ID)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %s: %w", cfg.ID, ErrExist)
		}
		return nil, err
	}
	m := &meta{Config: cfg, CreatedAt: time.Now()}
	defer func() {
		if retErr != nil {
			if err := r.cleanup(cfg.ID, nil); err != nil {
				r.log.Warn("cleanup after failed create", "container", cfg.ID, "err", err)
			}
		}
	}()

	rootfs := cfg.Rootfs.Dir
	if rootfs != "" {
		var err error
		if rootfs, err = filepath.Abs(rootfs); err != nil {
			return nil, err
		}
	} else {
		m.Overlay = true
		var err error
		if rootfs, err = mountOverlay(dir, cfg.Rootfs.Lowerdirs); err != nil {
			return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
		}
	}
	if err := writeJSON(filepath.Join(dir, "meta.json"), m); err != nil {
		return nil, err
	}
	s, err := r.spec(&cfg, rootfs, sb)
	if err != nil {
		return nil, err
	}
	lcfg, err := libcontainerConfig(cfg.ID, s)
	if err != nil {
		return nil, fmt.Errorf("container %s: config: %w", cfg.ID, err)
	}
	c, err := libcontainer.Create(r.stateRoot, cfg.ID, lcfg)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	stdout, stderr, err := openOutputs(cfg.StdoutPath, cfg.StderrPath)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	defer stderr.Close()
	p := &libcontainer.Process{
		Args: s.Process.Args, Env: s.Process.Env, Cwd: s.Process.Cwd,
		UID: int(cfg.UID), GID: int(cfg.GID),
		Stdout: stdout, Stderr: stderr,
		Init: true,
	}
	for _, g := range cfg.AdditionalGIDs {
		p.AdditionalGroups = append(p.AdditionalGroups, int(g))
	}
	sio, err := newStdio(p, &cfg, stdout)
	if err != nil {
		_ = c.Destroy()
		return nil, err
	}
	if err := c.Start(p); err != nil {
		sio.close()
		_ = c.Destroy()
		return nil, fmt.Errorf("container %s: start init: %w", cfg.ID, err)
	}
	if err := sio.started(); err != nil {
		_ = c.Signal(unix.SIGKILL)
		_, _ = p.Wait()
		sio.close()
		_ = c.Destroy()
		return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	r.watchChild(cfg.ID, p, sio)
	r.log.Debug("container created", "container", cfg.ID, "sandbox", cfg.SandboxID)
	return r.state(cfg.ID)
}

// openOutputs opens the stdout and stderr destinations (see ContainerConfig).
func openOutputs(stdoutPath, stderrPath string) (stdout, stderr *os.File, err error) {
	open := func(p string) (*os.File, error) {
		if p == "" {
			return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
			return os.OpenFile(p, os.O_RDWR, 0)
		}
		return os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	if stdout, err = open(stdoutPath); err != nil {
		return nil, nil, err
	}
	if stderr, err = open(stderrPath); err != nil {
		stdout.Close()
		return nil, nil, err
	}
	return stdout, stderr, nil
}

// mountOverlay mounts lowerdirs (top first) with an upper and work dir in
// dir at dir/rootfs and returns the mount point.
func mountOverlay(dir string, lowerdirs []string) (string, error) {
	target := filepath.Join(dir, "rootfs")
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{target, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	for _, l := range lowerdirs {
		if strings.ContainsAny(l, ":,") {
			return "", fmt.Errorf("overlay lowerdir %q: ':' and ',' are not allowed: %w", l, ErrInvalid)
		}
	}
	data := "lowerdir=" + strings.Join(lowerdirs, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(data) < unix.Getpagesize()-1 {
		if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
			return "", fmt.Errorf("mount overlay: %w", err)
		}
		return target, nil
	}
	// Too long for one page (images with many layers): name the layers
	// relative to their common parent, from a thread whose working
	// directory is that parent.
	common := filepath.Dir(lowerdirs[0])
	for _, l := range lowerdirs[1:] {
		for common != "/" && !strings.HasPrefix(l, common+"/") {
			common = filepath.Dir(common)
		}
	}
	rel := make([]string, len(lowerdirs))
	for i, l := range lowerdirs {
		r, err := filepath.Rel(common, l)
		if err != nil {
			return "", err
		}
		rel[i] = r
	}
	data = "lowerdir=" + strings.Join(rel, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(data) >= unix.Getpagesize()-1 {
		return "", fmt.Errorf("overlay options too long (%d layers): %w", len(lowerdirs), ErrInvalid)
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread's cwd is private and it dies with us
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- err
			return
		}
		if err := unix.Chdir(common); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount("overlay", target, "overlay", 0, data)
	}()
	if err := <-errc; err != nil {
		return "", fmt.Errorf("mount overlay (%d layers): %w", len(lowerdirs), err)
	}
	return target, nil
}

// Start releases a created container's init to exec its process.
func (r *Runtime) Start(ctx context.Context, id string) error {
	defer r.lock(id)()
	c, err := r.load(id)
	if err != nil {
		return err
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	if st != libcontainer.Created {
		return fmt.Errorf("container %s is %s: %w", id, st, ErrState)
	}
	var m meta
	if err := readJSON(filepath.Join(r.containerDir(id), "meta.json"), &m); err != nil {
		return err
	}
	m.StartedAt = time.Now()
	if err := writeJSON(filepath.Join(r.containerDir(id), "meta.json"), &m); err != nil {
		return err
	}
	ls, err := c.State()
	if err != nil {
		return err
	}
	exe := "/proc/" + strconv.Itoa(ls.InitProcessPid) + "/exe"
	initExe, _ := os.Readlink(exe)
	if err := c.Exec(); err != nil {
		return fmt.Errorf("container %s: start: %w", id, err)
	}
	// Exec returns once init has been released, before it has exec'd the
	// process: a signal in between would reach libcontainer's Go init
	// (SIGTERM makes it exit 2 instead of being ignored by the process).
	// Wait for the execve.
	deadline := time.Now().Add(5 * time.Second)
	for initExe != "" && time.Now().Before(deadline) {
		if now, err := os.Readlink(exe); err != nil || now != initExe {
			break
		}
		time.Sleep(500 * time.Microsecond)
	}
	return nil
}

func (r *Runtime) load(id string) (*libcontainer.Container, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	c, err := libcontainer.Load(r.stateRoot, id)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return c, nil
}

// State returns a container's state.
func (r *Runtime) State(id string) (*State, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	return r.state(id)
}

func (r *Runtime) state(id string) (*State, error) {
	dir := r.containerDir(id)
	var m meta
	if err := readJSON(filepath.Join(dir, "meta.json"), &m); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(dir); err == nil {
				return &State{ID: id, Status: StatusUnknown, Error: "no meta.json (half-created)"}, nil
			}
			return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
		}
		return nil, err
	}
	st := &State{
		ID: id, SandboxID: m.Config.SandboxID, Labels: m.Config.Labels,
		CreatedAt: m.CreatedAt, StartedAt: m.StartedAt,
	}
	c, err := r.load(id)
	if err != nil {
		st.Status, st.Error = StatusUnknown, err.Error()
		return st, nil
	}
	ls, err := c.State()
	if err != nil {
		st.Status, st.Error = StatusUnknown, err.Error()
		return st, nil
	}
	st.CgroupPaths = ls.CgroupPaths
	status, err := c.Status()
	if err != nil {
		st.Status, st.Error = StatusUnknown, err.Error()
		return st, nil
	}
	switch status {
	case libcontainer.Created:
		st.Status, st.Pid = StatusCreated, ls.InitProcessPid
		return st, nil
	case libcontainer.Running, libcontainer.Paused:
		// A recorded exit wins: libcontainer may still see the zombie.
		if ex, ok := readExit(dir); ok {
			st.applyExit(ex)
			return st, nil
		}
		st.Status, st.Pid = StatusRunning, ls.InitProcessPid
		return st, nil
	}
	// Stopped. Our watcher may still be writing the exit record.
	ex, ok := readExit(dir)
	if !ok {
		if w := r.watcherFor(id); w != nil {
			select {
			case <-w.done:
			case <-time.After(2 * time.Second):
			}
			ex, ok = readExit(dir)
		}
	}
	if !ok {
		ex = exitRecord{Unknown: true, Code: 255, FinishedAt: time.Now(), OOMKilled: oomKilled(ls.CgroupPaths)}
		if m.StartedAt.IsZero() {
			// Died before Start (or was killed while created).
			ex.FinishedAt = m.CreatedAt
		}
		_ = writeJSON(filepath.Join(dir, "exit.json"), ex)
	}
	st.applyExit(ex)
	return st, nil
}

func (st *State) applyExit(ex exitRecord) {
	st.Status = StatusExited
	st.Pid = 0
	st.ExitCode, st.ExitCodeUnknown = ex.Code, ex.Unknown
	st.FinishedAt, st.OOMKilled = ex.FinishedAt, ex.OOMKilled
}

// List returns the state of every container under the root, for
// reconciling after a restart.
func (r *Runtime) List() ([]*State, error) {
	ids, err := r.containerIDs()
	if err != nil {
		return nil, err
	}
	out := make([]*State, 0, len(ids))
	for _, id := range ids {
		st, err := r.state(id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			st = &State{ID: id, Status: StatusUnknown, Error: err.Error()}
		}
		out = append(out, st)
	}
	return out, nil
}

// Kill sends a signal to the container's init. SIGKILL kills every process
// of the container (init is PID 1 of its PID namespace).
func (r *Runtime) Kill(id string, sig syscall.Signal) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	if err := c.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("container %s: %w", id, ErrState)
		}
		return err
	}
	return nil
}

// Wait blocks until the container has exited or ctx ends.
func (r *Runtime) Wait(ctx context.Context, id string) (*State, error) {
	for {
		if w := r.watcherFor(id); w != nil {
			select {
			case <-w.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		st, err := r.state(id)
		if err != nil {
			return nil, err
		}
		if st.Status == StatusExited || st.Status == StatusUnknown {
			return st, nil
		}
		if r.watcherFor(id) == nil {
			// Not watched (Close was called): poll.
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return nil, err
			}
		}
	}
}

// Stop sends SIGTERM, waits up to grace for the container to exit, then
// sends SIGKILL and waits for the exit (bounded by ctx). Stopping an exited
// container is no error.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) (*State, error) {
	if err := r.Kill(id, unix.SIGTERM); err != nil && !errors.Is(err, ErrState) {
		return nil, err
	}
	if grace > 0 {
		gctx, cancel := context.WithTimeout(ctx, grace)
		st, err := r.Wait(gctx, id)
		cancel()
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if err := r.Kill(id, unix.SIGKILL); err != nil && !errors.Is(err, ErrState) {
		return nil, err
	}
	return r.Wait(ctx, id)
}

// Delete removes a container: kills it if it still runs, destroys its
// libcontainer state and cgroup, unmounts its rootfs and removes its
// directory. Deleting a missing container is no error.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if st, err := r.state(id); err == nil && (st.Status == StatusRunning || st.Status == StatusCreated) {
		if err := r.Kill(id, unix.SIGKILL); err != nil && !errors.Is(err, ErrState) {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := r.Wait(wctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("container %s: waiting for exit: %w", id, err)
		}
	}
	defer r.lock(id)()
	c, err := r.load(id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return r.cleanup(id, c)
}

// removeAllRetry is os.RemoveAll, retried a few times when a concurrent
// writer (State recording an unknown exit) adds a file meanwhile.
func removeAllRetry(dir string) error {
	var err error
	for range 5 {
		if err = os.RemoveAll(dir); err == nil || !errors.Is(err, unix.ENOTEMPTY) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// cleanup destroys c (when known), unmounts the rootfs and removes the
// container's directories.
func (r *Runtime) cleanup(id string, c *libcontainer.Container) error {
	var errs []error
	if c == nil {
		if lc, err := libcontainer.Load(r.stateRoot, id); err == nil {
			c = lc
		}
	}
	if c != nil {
		if err := c.Destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	r.mu.Lock()
	w := r.watchers[id]
	if w != nil {
		w.stop()
		delete(r.watchers, id)
	}
	r.mu.Unlock()
	if w != nil {
		// The watcher may be recording the exit (exit.json) right now:
		// removing the directory under it fails with ENOTEMPTY.
		select {
		case <-w.done:
		case <-time.After(2 * time.Second):
		}
	}
	dir := r.containerDir(id)
	if err := unmountAll(filepath.Join(dir, "rootfs")); err != nil {
		errs = append(errs, err)
	} else if err := removeAllRetry(dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(filepath.Join(r.stateRoot, id)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
