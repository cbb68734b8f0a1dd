package runtime

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// exitRecord is CONTAINER_DIR/exit.json.
type exitRecord struct {
	Code       int
	Unknown    bool `json:",omitempty"`
	Signal     int  `json:",omitempty"`
	OOMKilled  bool `json:",omitempty"`
	FinishedAt time.Time
}

func readExit(dir string) (exitRecord, bool) {
	var ex exitRecord
	if err := readJSON(filepath.Join(dir, "exit.json"), &ex); err != nil {
		return ex, false
	}
	return ex, true
}

// watcher waits for one container's init to exit and records it.
type watcher struct {
	done     chan struct{} // closed once the exit is recorded (or given up)
	stopOnce sync.Once
	stopc    chan struct{}
	pidfd    *os.File // re-adopted containers only
	io       *stdio   // containers started here only
}

func newWatcher() *watcher {
	return &watcher{done: make(chan struct{}), stopc: make(chan struct{})}
}

func (w *watcher) stop() {
	w.stopOnce.Do(func() {
		close(w.stopc)
		if w.pidfd != nil {
			w.pidfd.Close() // wakes the poller
		}
	})
}

func (r *Runtime) watcherFor(id string) *watcher {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.watchers[id]
}

func (r *Runtime) setWatcher(id string, w *watcher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.watchers[id]; old != nil {
		old.stop()
	}
	r.watchers[id] = w
}

// watchChild waits for an init this process started (our child).
func (r *Runtime) watchChild(id string, p *libcontainer.Process, io *stdio) {
	w := newWatcher()
	w.io = io
	r.setWatcher(id, w)
	go func() {
		defer close(w.done)
		ps, err := p.Wait()
		io.exited()
		if ps == nil {
			r.log.Warn("waiting for container init", "container", id, "err", err)
			return
		}
		r.recordExit(id, ps.Sys().(syscall.WaitStatus), false)
	}()
}

// adopt starts watching a container found on disk by Open.
func (r *Runtime) adopt(id string) {
	dir := r.containerDir(id)
	if _, ok := readExit(dir); ok {
		return
	}
	c, err := libcontainer.Load(r.stateRoot, id)
	if err != nil {
		return
	}
	status, err := c.Status()
	if err != nil || status == libcontainer.Stopped {
		return // State records it as exited with an unknown code
	}
	ls, err := c.State()
	if err != nil {
		return
	}
	fd, err := unix.PidfdOpen(ls.InitProcessPid, 0)
	if err != nil {
		r.log.Warn("pidfd_open for re-adopted container", "container", id, "err", err)
		return
	}
	// The pid could have been reused between Status and PidfdOpen.
	if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
		unix.Close(fd)
		return
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return
	}
	w := newWatcher()
	w.pidfd = os.NewFile(uintptr(fd), "pidfd") // non-blocking: the netpoller waits for it
	r.setWatcher(id, w)
	r.log.Info("re-adopted container", "container", id, "pid", ls.InitProcessPid, "status", status.String())
	pid := ls.InitProcessPid
	go func() {
		defer close(w.done)
		rc, err := w.pidfd.SyscallConn()
		if err != nil {
			return
		}
		var ws syscall.WaitStatus
		known := false
		err = rc.Read(func(fd uintptr) bool {
			n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			return n > 0
		})
		if err != nil {
			return // stopped
		}
		// The kernel keeps the exit status for the pidfd once the process
		// is reaped by its parent. When that parent is us (a subreaper
		// inherited the orphan), reap it here.
		for i := 0; i < 200; i++ {
			if ws, known = pidfdExitStatus(rc); known {
				break
			}
			if ws, known = reapIfChild(pid); known {
				break
			}
			select {
			case <-w.stopc:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		r.recordExit(id, ws, !known)
	}()
}

// recordExit writes exit.json unless one exists.
func (r *Runtime) recordExit(id string, ws syscall.WaitStatus, unknown bool) {
	dir := r.containerDir(id)
	if _, ok := readExit(dir); ok {
		return
	}
	ex := exitRecord{FinishedAt: time.Now(), Unknown: unknown}
	switch {
	case unknown:
		ex.Code = 255
	case ws.Signaled():
		ex.Signal = int(ws.Signal())
		ex.Code = 128 + ex.Signal
	default:
		ex.Code = ws.ExitStatus()
	}
	if c, err := libcontainer.Load(r.stateRoot, id); err == nil {
		if ls, err := c.State(); err == nil {
			ex.OOMKilled = oomKilled(ls.CgroupPaths)
		}
	}
	if err := writeJSON(filepath.Join(dir, "exit.json"), ex); err != nil {
		if !errors.Is(err, os.ErrNotExist) { // deleted meanwhile
			r.log.Warn("recording exit", "container", id, "err", err)
		}
		return
	}
	r.log.Debug("container exited", "container", id, "code", ex.Code, "oomKilled", ex.OOMKilled, "unknown", unknown)
}

// reapIfChild reaps pid if it is a zombie child of this process.
func reapIfChild(pid int) (syscall.WaitStatus, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // state ppid …
	if len(f) < 2 || f[0] != "Z" || f[1] != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	var ws unix.WaitStatus
	if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil || got != pid {
		return 0, false
	}
	return syscall.WaitStatus(ws), true
}

// pidfdInfo is struct pidfd_info (PIDFD_INFO_SIZE_VER0, 64 bytes).
type pidfdInfo struct {
	Mask     uint64
	CgroupID uint64
	Pid      uint32
	Tgid     uint32
	Ppid     uint32
	Ruid     uint32
	Rgid     uint32
	Euid     uint32
	Egid     uint32
	Suid     uint32
	Sgid     uint32
	Fsuid    uint32
	Fsgid    uint32
	ExitCode int32
}

const (
	pidfdInfoExit = 1 << 3 // PIDFD_INFO_EXIT, Linux 6.15
	// pidfdGetInfo is _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info).
	pidfdGetInfo = 3<<30 | uint(unsafe.Sizeof(pidfdInfo{}))<<16 | 0xFF<<8 | 11
)

// pidfdExitStatus asks the kernel for an exited process's wait status
// through its pidfd: it works for processes that are not our children.
func pidfdExitStatus(rc syscall.RawConn) (syscall.WaitStatus, bool) {
	var info pidfdInfo
	var errno syscall.Errno
	_ = rc.Control(func(fd uintptr) {
		info.Mask = pidfdInfoExit
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(pidfdGetInfo), uintptr(unsafe.Pointer(&info)))
	})
	if errno != 0 || info.Mask&pidfdInfoExit == 0 {
		return 0, false
	}
	return syscall.WaitStatus(info.ExitCode), true
}

// oomKilled reads the container cgroup's OOM kill counter: memory.events
// on cgroup v2, memory.oom_control on v1 (kernel ≥ 4.13).
func oomKilled(paths map[string]string) bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return readKey(filepath.Join(paths[""], "memory.events"), "oom_kill") > 0
	}
	// Hybrid hosts also list the cgroup2 path under "": memory is v1 there.
	if p, ok := paths["memory"]; ok {
		return readKey(filepath.Join(p, "memory.oom_control"), "oom_kill") > 0
	}
	return false
}

// readKey reads "key N" from a flat-keyed cgroup file; -1 if absent.
func readKey(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}
