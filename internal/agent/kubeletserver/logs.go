package kubeletserver

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/agent/logs"
)

// ParsePodLogOptions reads the query parameters of a pods/log request (the
// API server's and the kubelet's; "tail" is the kubelet's legacy name of
// tailLines, "all" meaning no limit). An error means a malformed value.
func ParsePodLogOptions(q url.Values) (*corev1.PodLogOptions, error) {
	if tail := q.Get("tail"); tail != "" && q.Get("tailLines") == "" {
		q = cloneValues(q)
		if tail != "all" {
			q.Set("tailLines", tail)
		}
	}
	o := &corev1.PodLogOptions{Container: q.Get("container")}
	var err error
	boolParam := func(name string, dst *bool) {
		if v := q.Get(name); v != "" && err == nil {
			b, perr := strconv.ParseBool(v)
			if perr != nil {
				err = fmt.Errorf("%s: %w", name, perr)
				return
			}
			*dst = b
		}
	}
	intParam := func(name string, dst **int64) {
		if v := q.Get(name); v != "" && err == nil {
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil {
				err = fmt.Errorf("%s: %w", name, perr)
				return
			}
			*dst = &n
		}
	}
	boolParam("follow", &o.Follow)
	boolParam("previous", &o.Previous)
	boolParam("timestamps", &o.Timestamps)
	boolParam("insecureSkipTLSVerifyBackend", &o.InsecureSkipTLSVerifyBackend)
	intParam("sinceSeconds", &o.SinceSeconds)
	intParam("limitBytes", &o.LimitBytes)
	intParam("tailLines", &o.TailLines)
	if v := q.Get("sinceTime"); v != "" && err == nil {
		t, perr := time.Parse(time.RFC3339, v)
		if perr != nil {
			err = fmt.Errorf("sinceTime: %w", perr)
		} else {
			mt := metav1.NewTime(t)
			o.SinceTime = &mt
		}
	}
	if v := q.Get("stream"); v != "" {
		o.Stream = &v
	}
	return o, err
}

func cloneValues(q url.Values) url.Values {
	c := make(url.Values, len(q))
	for k, v := range q {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// containerLogs serves GET /containerLogs/{ns}/{pod}/{container}.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request, ns, pod, container string) {
	opts, err := ParsePodLogOptions(r.URL.Query())
	if err != nil {
		writeText(w, http.StatusBadRequest, `{"message": "Unable to decode query."}`)
		return
	}
	ro, err := logs.FromPodLogOptions(opts, time.Now())
	if err != nil {
		writeText(w, http.StatusUnprocessableEntity, `{"message": "Invalid request."}`)
		return
	}
	path, done, err := s.cfg.Pods.ContainerLog(ns, pod, container, opts.Previous)
	if err != nil {
		writeError(w, err, http.StatusBadRequest)
		return
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			writeText(w, http.StatusBadRequest, fmt.Sprintf("container %q in pod %q has no log yet", container, pod))
			return
		}
		writeError(w, err, http.StatusInternalServerError)
		return
	}
	ro.Done = done
	ro.Logger = s.log
	w.Header().Set("Content-Type", "text/plain")
	out := &flushWriter{w: w}
	if opts.Follow {
		out.flusher, _ = w.(http.Flusher)
		// Send the headers now: a follower may wait long for the first line.
		w.WriteHeader(http.StatusOK)
		if out.flusher != nil {
			out.flusher.Flush()
		}
	}
	if err := logs.ReadLogs(r.Context(), path, ro, out); err != nil && r.Context().Err() == nil {
		s.log.Warn("reading container log", "pod", ns+"/"+pod, "container", container, "err", err)
		if !out.wrote && !opts.Follow {
			writeError(w, err, http.StatusInternalServerError)
		}
	}
}

// flushWriter flushes after each write when flusher is set (following).
type flushWriter struct {
	w       http.ResponseWriter
	flusher http.Flusher
	wrote   bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.wrote = true
	n, err := f.w.Write(p)
	if f.flusher != nil {
		f.flusher.Flush()
	}
	return n, err
}
