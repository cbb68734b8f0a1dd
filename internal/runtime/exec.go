package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"
)

// TermSize is a terminal size in characters.
type TermSize struct{ Width, Height uint16 }

// ExecConfig describes a process to run in a running container (kubectl exec,
// exec probes).
type ExecConfig struct {
	Args []string
	// Env is added to the container's environment (later entries win).
	Env []string
	// WorkingDir defaults to the container's.
	WorkingDir string
	// Tty runs the process on a new terminal: Stdout receives the
	// terminal's output, Stderr is unused, Resize sets its size.
	Tty    bool
	Resize <-chan TermSize
	// Stdin, Stdout and Stderr may be nil. Exec returns once the process has
	// exited and its output is drained (output of background processes that
	// keep the streams open is cut off after a short delay).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// outputDrain is how long Exec waits for output after the process exited.
const outputDrain = 500 * time.Millisecond

// Exec runs a process in a running container and returns its exit code
// (128+signal when killed by a signal). When ctx ends first the process is
// killed and ctx's error returned.
func (r *Runtime) Exec(ctx context.Context, id string, cfg ExecConfig) (int, error) {
	if len(cfg.Args) == 0 {
		return -1, fmt.Errorf("exec: no args: %w", ErrInvalid)
	}
	c, err := r.load(id)
	if err != nil {
		return -1, err
	}
	if st, err := c.Status(); err != nil || st != libcontainer.Running {
		return -1, fmt.Errorf("exec in container %s: not running: %w", id, ErrState)
	}
	var m meta
	if err := readJSON(filepath.Join(r.containerDir(id), "meta.json"), &m); err != nil {
		return -1, err
	}
	env := mergeEnv(m.Config.Env, cfg.Env)
	if !hasEnv(env, "PATH") {
		env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = m.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	p := &libcontainer.Process{
		Args: cfg.Args, Env: env, Cwd: cwd,
		UID: int(m.Config.UID), GID: int(m.Config.GID),
	}
	for _, g := range m.Config.AdditionalGIDs {
		p.AdditionalGroups = append(p.AdditionalGroups, int(g))
	}

	var (
		closeAfterStart []io.Closer // our copies of the child's ends
		copies          []chan struct{}
		stdinW          *os.File
		console         *os.File
	)
	defer func() {
		for _, c := range closeAfterStart {
			c.Close()
		}
	}()
	copyOut := func(dst io.Writer, src *os.File) {
		done := make(chan struct{})
		copies = append(copies, done)
		go func() {
			defer close(done)
			_, _ = io.Copy(dst, src)
		}()
	}

	var consoleSock *os.File
	if cfg.Tty {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return -1, err
		}
		defer parent.Close()
		closeAfterStart = append(closeAfterStart, child)
		p.ConsoleSocket = child
		consoleSock = parent
		p.ConsoleWidth, p.ConsoleHeight = 80, 24
	} else {
		if cfg.Stdin != nil {
			pr, pw, err := os.Pipe()
			if err != nil {
				return -1, err
			}
			p.Stdin, stdinW = pr, pw
			closeAfterStart = append(closeAfterStart, pr)
		}
		for _, o := range []struct {
			w   io.Writer
			dst *io.Writer
		}{{cfg.Stdout, &p.Stdout}, {cfg.Stderr, &p.Stderr}} {
			if o.w == nil {
				continue
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				return -1, err
			}
			*o.dst = pw
			closeAfterStart = append(closeAfterStart, pw)
			defer pr.Close()
			copyOut(o.w, pr)
		}
	}

	if err := c.Run(p); err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	for _, c := range closeAfterStart {
		c.Close()
	}
	closeAfterStart = nil

	if cfg.Tty {
		console, err = utils.RecvFile(consoleSock)
		if err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			return -1, fmt.Errorf("exec: receiving the terminal: %w", err)
		}
		defer console.Close()
		if cfg.Stdout != nil {
			copyOut(cfg.Stdout, console)
		}
		if cfg.Stdin != nil {
			go func() { _, _ = io.Copy(console, cfg.Stdin) }()
		}
		if cfg.Resize != nil {
			// Stopped and joined before the deferred console.Close (defers
			// run last-in first-out), so it never touches a closed fd.
			stop, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				for {
					select {
					case s, ok := <-cfg.Resize:
						if !ok {
							return
						}
						_ = unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ,
							&unix.Winsize{Col: s.Width, Row: s.Height})
					case <-stop:
						return
					}
				}
			}()
			defer func() { close(stop); <-stopped }()
		}
	} else if stdinW != nil {
		go func() {
			_, _ = io.Copy(stdinW, cfg.Stdin)
			stdinW.Close()
		}()
	}

	waited := make(chan struct{})
	var ps *os.ProcessState
	go func() {
		defer close(waited)
		ps, _ = p.Wait()
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		_ = p.Signal(unix.SIGKILL)
		<-waited
		return -1, ctx.Err()
	}
	if stdinW != nil {
		stdinW.Close()
	}
	drain := time.After(outputDrain)
	for _, d := range copies {
		select {
		case <-d:
		case <-drain:
		}
	}
	if ps == nil {
		return -1, errors.New("exec: wait failed")
	}
	ws := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// mergeEnv appends extra to base, replacing earlier values of the same key.
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	idx := map[string]int{}
	for _, e := range append(append([]string{}, base...), extra...) {
		k := e
		for i := 0; i < len(e); i++ {
			if e[i] == '=' {
				k = e[:i]
				break
			}
		}
		if i, ok := idx[k]; ok {
			out[i] = e
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out
}
