package apiserver

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A body that trickles in is cut off (400), not waited on forever.
func TestSlowBodyTimesOut(t *testing.T) {
	old := bodyReadTimeout
	bodyReadTimeout = 300 * time.Millisecond
	defer func() { bodyReadTimeout = old }()
	e := newTestEnv(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte(`{"metadata":`)) }() // and then nothing
	req, err := http.NewRequest("POST", e.http.URL+"/api/v1/namespaces/default/configmaps", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	select {
	case resp := <-done:
		if resp == nil {
			return
		}
		st := readStatus(t, resp)
		if st.Code != http.StatusBadRequest || !strings.Contains(st.Message, "unable to read request body") {
			t.Fatalf("got %d %q", st.Code, st.Message)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow body still being waited on")
	}
}

// ?watch= is read like kube-apiserver does (anything but false/0 is a
// watch), and a negative timeoutSeconds ends the watch at once.
func TestWatchQueryParameters(t *testing.T) {
	e := newTestEnv(t)
	for _, q := range []string{"watch=abc&timeoutSeconds=1", "watch=True&timeoutSeconds=1", "watch=1&timeoutSeconds=-5"} {
		start := time.Now()
		resp := e.do(t, "GET", "/api/v1/namespaces/default/configmaps?"+q, "", nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "ConfigMapList") {
			t.Errorf("%s: got %d %s, want a watch", q, resp.StatusCode, body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: watch lasted %v", q, d)
		}
	}
	resp := e.do(t, "GET", "/api/v1/namespaces/default/configmaps?watch=false", "", nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "ConfigMapList") {
		t.Errorf("watch=false: got %s, want a list", body)
	}
}

// Opening and dropping many watches leaves no goroutines behind.
func TestWatchOpenCloseLeavesNoGoroutines(t *testing.T) {
	e := newTestEnv(t)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	cycle := func() {
		resp, err := client.Get(e.http.URL + "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("watch: %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
	for i := 0; i < 20; i++ { // warm up pools and connections
		cycle()
	}
	client.CloseIdleConnections()
	base := settledGoroutines(0)
	for i := 0; i < 300; i++ {
		cycle()
	}
	client.CloseIdleConnections()
	if n := settledGoroutines(base + 5); n > base+5 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after 300 watch cycles\n%s", base, n, buf[:runtime.Stack(buf, true)])
	}
	// The server still answers.
	if _, err := e.client.CoreV1().ConfigMaps("default").List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
}

// settledGoroutines waits (up to 5s) for the goroutine count to drop to
// want, and returns the count.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		n = runtime.NumGoroutine()
		if want > 0 && n <= want {
			return n
		}
	}
	return n
}
