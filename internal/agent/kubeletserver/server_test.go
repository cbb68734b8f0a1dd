package kubeletserver

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func httpClient(cfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

func TestAuthentication(t *testing.T) {
	p := newTestPKI(t)
	addr := startServer(t, p, newFakePods(), nil)
	url := "https://" + addr + "/healthz"

	resp, err := httpClient(p.apiserverTLS).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp.Body); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("healthz as the API server: %d %q", resp.StatusCode, body)
	}
	resp.Body.Close()

	// A cluster certificate of someone else: 403.
	resp, err = httpClient(p.clientTLS(t, "system:node:n1", []string{"system:nodes"})).Get("https://" + addr + "/containerLogs/ns/p/c")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "user=system:node:n1") {
		t.Fatalf("other user: %d %q", resp.StatusCode, body)
	}

	// No client certificate: the handshake fails.
	if resp, err := httpClient(&tls.Config{RootCAs: p.ca.Pool()}).Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("no client certificate: got %d, want a TLS error", resp.StatusCode)
	}
	// A certificate of another CA: likewise.
	other := newTestPKI(t)
	cfg := other.clientTLS(t, APIServerUser, nil)
	cfg.RootCAs = p.ca.Pool()
	if resp, err := httpClient(cfg).Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("foreign CA: got %d, want a TLS error", resp.StatusCode)
	}
}

func TestContainerLogs(t *testing.T) {
	p := newTestPKI(t)
	pods := newFakePods()
	dir := t.TempDir()
	start := time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)
	cur, prev := filepath.Join(dir, "1.log"), filepath.Join(dir, "0.log")
	writeCRILog(t, cur, start, "one", "err:two", "three")
	writeCRILog(t, prev, start, "previous run")
	done := make(chan struct{})
	close(done)
	pods.add("ns", "p", "c", &fakeContainer{id: "x", running: true, log: cur, prev: prev, done: done})
	pods.netns["ns/p"] = "/nonexistent"
	addr := startServer(t, p, pods, nil)
	c := httpClient(p.apiserverTLS)

	for _, tc := range []struct {
		query string
		code  int
		body  string
	}{
		{"", 200, "one\ntwo\nthree\n"},
		{"?tailLines=1", 200, "three\n"},
		{"?tail=2", 200, "two\nthree\n"},
		{"?tail=all", 200, "one\ntwo\nthree\n"},
		{"?limitBytes=6", 200, "one\ntw"},
		{"?timestamps=true&tailLines=1", 200, "2026-11-29T01:00:02.000000000Z three\n"},
		{"?sinceTime=2026-11-29T01:00:01Z", 200, "two\nthree\n"},
		{"?previous=true", 200, "previous run\n"},
		{"?follow=true", 200, "one\ntwo\nthree\n"},
		{"?tailLines=-1", 422, `{"message": "Invalid request."}`},
		{"?follow=maybe", 400, `{"message": "Unable to decode query."}`},
	} {
		resp, err := c.Get("https://" + addr + "/containerLogs/ns/p/c" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || body != tc.body {
			t.Errorf("%s: got %d %q, want %d %q", tc.query, resp.StatusCode, body, tc.code, tc.body)
		}
	}
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/containerLogs/ns/nope/c", 404, `pods "nope" not found`},
		{"/containerLogs/ns/p/nope", 400, `container "nope" not found in pod "p"`},
		{"/exec/ns/p/nope?output=1&command=true", 400, `container "nope" not found in pod "p"`},
		{"/exec/ns/p/c?command=true", 400, "you must specify at least 1 of stdin, stdout, stderr"},
		{"/portForward/ns/nope", 404, `pods "nope" not found`},
		{"/nothing", 404, "404 page not found"},
	} {
		resp, err := c.Get("https://" + addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || body != tc.body {
			t.Errorf("%s: got %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
	}
}

// A follower gets lines as they are written and ends when the run's output
// is complete.
func TestContainerLogsFollow(t *testing.T) {
	p := newTestPKI(t)
	pods := newFakePods()
	path := filepath.Join(t.TempDir(), "0.log")
	writeCRILog(t, path, time.Now(), "first")
	done := make(chan struct{})
	pods.add("ns", "p", "c", &fakeContainer{id: "x", running: true, log: path, done: done})
	addr := startServer(t, p, pods, nil)
	resp, err := httpClient(p.apiserverTLS).Get("https://" + addr + "/containerLogs/ns/p/c?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); err != nil || l != "first\n" {
		t.Fatalf("first line: %q %v", l, err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := string(appendRecord(time.Now(), "second"))
	if _, err := f.WriteString(rec); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if l, err := br.ReadString('\n'); err != nil || l != "second\n" {
		t.Fatalf("second line: %q %v", l, err)
	}
	close(done)
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after done: %q %v", rest, err)
	}
}
