package podworker

import (
	"context"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-dev/skiff/internal/agent/logs"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// The kubelet server's view of the pods (kubeletserver.Pods). Errors are
// apierrors: NotFound for an unknown pod, BadRequest for a container that
// is not in the pod or has no (previous) instance.

// instanceFor finds a container's current (or previous) instance.
func (m *Manager) instanceFor(namespace, pod, container string, previous bool) (*podWorker, *instance, error) {
	w := m.workerByName(namespace, pod)
	if w == nil {
		return nil, nil, notFoundPod(pod)
	}
	p := w.currentPod()
	if p == nil || containerSpec(p, container) == nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, pod))
	}
	w.mu.Lock()
	c := w.ctrs[container]
	var cur, prev *instance
	var reason string
	if c != nil {
		cur, prev = c.current(), c.previous()
		if c.waiting != nil {
			reason = c.waiting.Reason
		}
	}
	w.mu.Unlock()
	if previous {
		if prev == nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod))
		}
		return w, prev, nil
	}
	if cur == nil {
		if reason == "" {
			reason = ReasonContainerCreating
		}
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: %s", container, pod, reason))
	}
	return w, cur, nil
}

// ContainerID is the runtime ID of the container's current instance and
// whether it runs.
func (m *Manager) ContainerID(namespace, pod, container string) (string, bool, error) {
	_, in, err := m.instanceFor(namespace, pod, container, false)
	if err != nil {
		return "", false, err
	}
	st, err := m.rt.State(in.id)
	if err != nil {
		return in.id, false, nil
	}
	return in.id, st.Status == runtime.StatusRunning, nil
}

// ContainerLog is the CRI log file of the container's current run
// (previous: the run before) and a channel closed once that run's output is
// completely written.
func (m *Manager) ContainerLog(namespace, pod, container string, previous bool) (string, <-chan struct{}, error) {
	w, in, err := m.instanceFor(namespace, pod, container, previous)
	if err != nil {
		return "", nil, err
	}
	w.mu.Lock()
	done := in.done
	w.mu.Unlock()
	if done == nil {
		c := make(chan struct{})
		close(c)
		done = c
	}
	return logs.Path(m.podDir(w.uid), in.name, in.attempt), done, nil
}

// PodNetNS is the pod sandbox's network namespace path; for a hostNetwork
// pod the agent's own ("/proc/self/ns/net", the host's).
func (m *Manager) PodNetNS(namespace, pod string) (string, error) {
	w := m.workerByName(namespace, pod)
	if w == nil {
		return "", notFoundPod(pod)
	}
	w.mu.Lock()
	sb := w.sandbox
	w.mu.Unlock()
	if sb == nil {
		return "", apierrors.NewBadRequest(fmt.Sprintf("pod %q has no running sandbox", pod))
	}
	if sb.NetNSPath == "" {
		return "/proc/self/ns/net", nil
	}
	return sb.NetNSPath, nil
}

// AttachOutput streams a non-TTY container's raw output from now on until
// ctx ends or the container's output ends (kubeletserver.OutputAttacher).
func (m *Manager) AttachOutput(ctx context.Context, namespace, pod, container string, stdout, stderr io.Writer) error {
	w, in, err := m.instanceFor(namespace, pod, container, false)
	if err != nil {
		return err
	}
	w.mu.Lock()
	lw := in.writer
	w.mu.Unlock()
	if lw == nil {
		return apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is not running", container, pod))
	}
	return lw.Attach(ctx, stdout, stderr)
}
