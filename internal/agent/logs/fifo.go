package logs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FIFO is the read end of a named pipe that a container writes one stream
// to (runtime.ContainerConfig.StdoutPath/StderrPath). Create it before the
// container: OpenFIFO also holds a write end so that reads do not see EOF
// before the container has opened its own; call ReleaseWriter once the
// runtime has created the container (or failed to), after which EOF means
// every process of the container closed the stream.
//
// The runtime opens the FIFO read-write for the container, so the container
// never gets EPIPE when no reader is there (agent restart): its writes block
// once the pipe buffer (64 KiB) is full, until a new reader appears.
type FIFO struct {
	*os.File
	hold *os.File
}

// OpenFIFO creates the FIFO at path if needed and opens its read end.
func OpenFIFO(path string) (*FIFO, error) {
	if err := unix.Mkfifo(path, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("logs: mkfifo %s: %w", path, err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	w, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("logs: %w", err)
	}
	return &FIFO{File: r, hold: w}, nil
}

// ReleaseWriter closes the write end held since OpenFIFO.
func (f *FIFO) ReleaseWriter() error {
	if f.hold == nil {
		return nil
	}
	err := f.hold.Close()
	f.hold = nil
	return err
}

// Close closes both ends.
func (f *FIFO) Close() error {
	_ = f.ReleaseWriter()
	return f.File.Close()
}
