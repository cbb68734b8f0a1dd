package logs

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

// Stream names a container output stream as it appears in a CRI log line.
type Stream string

// The two streams of a container.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Tags of a CRI log line: F closes a line (the content had a newline, which
// is not stored), P is a piece of a longer line that continues in the next
// record of the same stream (or the last bytes before EOF without a newline).
const (
	tagFull    = 'F'
	tagPartial = 'P'
)

// TimeFormat is the timestamp format of the log files and of the timestamps
// ReadLogs prefixes lines with: RFC 3339 in UTC with a fixed nine-digit
// fraction (the kubelet's RFC3339NanoFixed). Parsing accepts any RFC 3339
// timestamp (time.RFC3339Nano), as the kubelet does.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// ErrInvalidLine is returned by ParseLine for a line not in the CRI format.
var ErrInvalidLine = errors.New("logs: invalid CRI log line")

// Dir is the directory holding the log files of one container of a pod:
// podDir/logs/<container>. podDir is DATA/agent/pods/<uid>.
func Dir(podDir, container string) string {
	return filepath.Join(podDir, "logs", container)
}

// Path is the log file of one run of a container: Dir(podDir,
// container)/<restartCount>.log. `kubectl logs --previous` reads the file of
// restartCount-1.
func Path(podDir, container string, restartCount int) string {
	return filepath.Join(Dir(podDir, container), strconv.Itoa(restartCount)+".log")
}

// Message is one parsed CRI log record.
type Message struct {
	Time    time.Time
	Stream  Stream
	Partial bool
	// Content is the record's content without the terminating newline of the
	// file line (and without the tag's implied newline for F records).
	Content []byte
}

// AppendLine appends the CRI log line for one record, newline included:
// "<TimeFormat> <stream> <F|P> <content>\n".
func AppendLine(dst []byte, t time.Time, s Stream, partial bool, content []byte) []byte {
	dst = t.UTC().AppendFormat(dst, TimeFormat)
	dst = append(dst, ' ')
	dst = append(dst, s...)
	dst = append(dst, ' ')
	if partial {
		dst = append(dst, tagPartial)
	} else {
		dst = append(dst, tagFull)
	}
	dst = append(dst, ' ')
	dst = append(dst, content...)
	return append(dst, '\n')
}

// ParseLine parses one line of a CRI log file (with or without its trailing
// newline). The returned Content aliases line. Tags are parsed forward
// compatibly: only the first ':'-separated tag counts, as in the kubelet.
func ParseLine(line []byte) (Message, error) {
	var m Message
	line = bytes.TrimSuffix(line, []byte{'\n'})
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return m, fmt.Errorf("%w: no timestamp", ErrInvalidLine)
	}
	t, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return m, fmt.Errorf("%w: timestamp: %v", ErrInvalidLine, err)
	}
	m.Time = t
	line = line[i+1:]
	i = bytes.IndexByte(line, ' ')
	if i < 0 {
		return m, fmt.Errorf("%w: no stream", ErrInvalidLine)
	}
	switch s := Stream(line[:i]); s {
	case Stdout, Stderr:
		m.Stream = s
	default:
		return m, fmt.Errorf("%w: stream %q", ErrInvalidLine, s)
	}
	line = line[i+1:]
	i = bytes.IndexByte(line, ' ')
	if i < 0 {
		return m, fmt.Errorf("%w: no tag", ErrInvalidLine)
	}
	tag := line[:i]
	if j := bytes.IndexByte(tag, ':'); j >= 0 {
		tag = tag[:j]
	}
	m.Partial = len(tag) == 1 && tag[0] == tagPartial
	m.Content = line[i+1:]
	return m, nil
}
