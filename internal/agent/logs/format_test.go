package logs

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestFormatRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 28, 23, 59, 59, 123456789, time.UTC)
	for _, tc := range []struct {
		stream  Stream
		partial bool
		content string
		want    string
	}{
		{Stdout, false, "message", "2026-11-28T23:59:59.123456789Z stdout F message\n"},
		{Stderr, true, "part", "2026-11-28T23:59:59.123456789Z stderr P part\n"},
		{Stdout, false, "", "2026-11-28T23:59:59.123456789Z stdout F \n"},
		{Stdout, false, "a b  c ", "2026-11-28T23:59:59.123456789Z stdout F a b  c \n"},
	} {
		line := AppendLine(nil, ts, tc.stream, tc.partial, []byte(tc.content))
		if string(line) != tc.want {
			t.Fatalf("AppendLine = %q, want %q", line, tc.want)
		}
		m, err := ParseLine(line)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Time.Equal(ts) || m.Stream != tc.stream || m.Partial != tc.partial || string(m.Content) != tc.content {
			t.Fatalf("ParseLine(%q) = %+v", line, m)
		}
	}
	// Fixed width even with trailing zeros, and local times are written in UTC.
	line := AppendLine(nil, time.Date(2026, 1, 2, 3, 4, 5, 100, time.FixedZone("x", 3600)), Stdout, false, nil)
	if want := "2026-01-02T02:04:05.000000100Z stdout F \n"; string(line) != want {
		t.Fatalf("got %q want %q", line, want)
	}
}

func TestParseLine(t *testing.T) {
	// Trimmed fractions (containerd's RFC3339Nano) and offsets parse; extra tags are ignored.
	m, err := ParseLine([]byte("2016-10-06T00:17:09.6697942Z stdout P:x log content 1\n"))
	if err != nil || !m.Partial || string(m.Content) != "log content 1" {
		t.Fatalf("got %+v, %v", m, err)
	}
	m, err = ParseLine([]byte("2016-10-06T02:17:09+02:00 stderr F x"))
	if err != nil || !m.Time.Equal(time.Date(2016, 10, 6, 0, 17, 9, 0, time.UTC)) || m.Stream != Stderr {
		t.Fatalf("got %+v, %v", m, err)
	}
	for _, bad := range []string{"", "garbage", "2016-10-06T00:17:09Z", "2016-10-06T00:17:09Z stdin F x",
		"2016-10-06T00:17:09Z stdout", "notatime stdout F x", `{"log":"x"}`} {
		if _, err := ParseLine([]byte(bad)); !errors.Is(err, ErrInvalidLine) {
			t.Errorf("ParseLine(%q) err = %v", bad, err)
		}
	}
}

func TestPaths(t *testing.T) {
	if got, want := Path("/d/agent/pods/u1", "app", 3), filepath.FromSlash("/d/agent/pods/u1/logs/app/3.log"); got != want {
		t.Fatalf("Path = %q want %q", got, want)
	}
	if !bytes.HasPrefix([]byte(Path("p", "c", 0)), []byte(Dir("p", "c"))) {
		t.Fatal("Path not under Dir")
	}
}
