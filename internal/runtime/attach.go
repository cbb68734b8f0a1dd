package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"
)

// stdio is what this process holds of a container's stdin and terminal.
type stdio struct {
	cfg       *ContainerConfig
	stdinW    *os.File // write end of the stdin pipe
	stdinR    *os.File // read end, ours until the container has it
	sock      *os.File // console socket, until the terminal is received
	sockChild *os.File
	console   *os.File // terminal master
	logOut    *os.File // where terminal output is copied (dup of stdout)

	mu        sync.Mutex
	attached  map[io.Writer]chan struct{}
	copyDone  chan struct{}
	stdinUsed bool
}

// newStdio prepares p's stdin pipe or console socket.
func newStdio(p *libcontainer.Process, cfg *ContainerConfig, stdout *os.File) (*stdio, error) {
	s := &stdio{cfg: cfg, attached: map[io.Writer]chan struct{}{}}
	if cfg.Tty {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return nil, err
		}
		s.sock, s.sockChild = parent, child
		p.ConsoleSocket = child
		p.ConsoleWidth, p.ConsoleHeight = 80, 24
		fd, err := unix.Dup(int(stdout.Fd()))
		if err != nil {
			s.close()
			return nil, err
		}
		unix.CloseOnExec(fd)
		s.logOut = os.NewFile(uintptr(fd), stdout.Name())
		p.Stdout, p.Stderr = nil, nil
	} else if cfg.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		s.stdinR, s.stdinW = r, w
		p.Stdin = r
	}
	return s, nil
}

// started finishes the setup once init runs: it receives the terminal.
func (s *stdio) started() error {
	if s.stdinR != nil {
		s.stdinR.Close()
		s.stdinR = nil
	}
	if s.sock == nil {
		return nil
	}
	s.sockChild.Close()
	s.sockChild = nil
	console, err := utils.RecvFile(s.sock)
	s.sock.Close()
	s.sock = nil
	if err != nil {
		return fmt.Errorf("receiving the terminal: %w", err)
	}
	s.console = console
	s.copyDone = make(chan struct{})
	go s.copyConsole()
	return nil
}

// copyConsole copies terminal output to the log and to attached clients.
func (s *stdio) copyConsole() {
	defer close(s.copyDone)
	buf := make([]byte, 32<<10)
	for {
		n, err := s.console.Read(buf)
		if n > 0 {
			_, _ = s.logOut.Write(buf[:n])
			s.mu.Lock()
			for w, gone := range s.attached {
				if _, err := w.Write(buf[:n]); err != nil {
					delete(s.attached, w)
					close(gone)
				}
			}
			s.mu.Unlock()
		}
		if err != nil {
			return // EIO once the last process on the terminal exited
		}
	}
}

// exited is called once the container's init has exited.
func (s *stdio) exited() {
	if s == nil {
		return
	}
	if s.copyDone != nil {
		<-s.copyDone
	}
	s.close()
}

func (s *stdio) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range []**os.File{&s.stdinW, &s.stdinR, &s.sock, &s.sockChild, &s.console, &s.logOut} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
	for w, gone := range s.attached {
		delete(s.attached, w)
		close(gone)
	}
}

// AttachConfig are a client's streams for Attach.
type AttachConfig struct {
	// Stdin is copied to the container's stdin (or terminal); with
	// StdinOnce its end closes the container's stdin.
	Stdin io.Reader
	// Stdout receives a TTY container's output from now on. Without a TTY,
	// output goes only to the container's StdoutPath/StderrPath, which the
	// caller follows (Attach then only feeds stdin).
	Stdout io.Writer
	Resize <-chan TermSize
}

// Attach connects a client to a container started by this Runtime with
// Stdin or Tty. It returns when the container exits or ctx ends.
func (r *Runtime) Attach(ctx context.Context, id string, cfg AttachConfig) error {
	w := r.watcherFor(id)
	if w == nil || w.io == nil || (w.io.stdinW == nil && w.io.console == nil) {
		return fmt.Errorf("attach to %s: no stdin or terminal held by this runtime: %w", id, ErrState)
	}
	s := w.io
	if cfg.Stdout != nil && s.console != nil {
		gone := make(chan struct{})
		s.mu.Lock()
		s.attached[cfg.Stdout] = gone
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			if _, ok := s.attached[cfg.Stdout]; ok {
				delete(s.attached, cfg.Stdout)
				close(gone)
			}
			s.mu.Unlock()
		}()
	}
	if cfg.Resize != nil && s.console != nil {
		go func() {
			for sz := range cfg.Resize {
				s.mu.Lock()
				if s.console != nil {
					_ = unix.IoctlSetWinsize(int(s.console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: sz.Width, Row: sz.Height})
				}
				s.mu.Unlock()
			}
		}()
	}
	if cfg.Stdin != nil {
		s.mu.Lock()
		dst := s.stdinW
		if s.console != nil {
			dst = s.console
		}
		once := s.cfg.StdinOnce && !s.stdinUsed
		s.stdinUsed = true
		s.mu.Unlock()
		if dst != nil {
			go func() {
				_, _ = io.Copy(dst, cfg.Stdin)
				if once {
					s.mu.Lock()
					if s.stdinW != nil {
						s.stdinW.Close()
						s.stdinW = nil
					} else if s.console != nil {
						_, _ = s.console.Write([]byte{4}) // ^D
					}
					s.mu.Unlock()
				}
			}()
		}
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
