package kubeletserver

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// TestAPIServerPodLogs checks the API server's side of pods/log and
// pods/exec without containers: validation, errors and their wording, and
// the proxying of a node's answer.
func TestAPIServerPodLogs(t *testing.T) {
	p := newTestPKI(t)
	pods := newFakePods()
	path := filepath.Join(t.TempDir(), "0.log")
	writeCRILog(t, path, time.Now(), "line 1", "line 2")
	done := make(chan struct{})
	close(done)
	pods.add("default", "two", "a", &fakeContainer{id: "x", running: true, log: path, done: done})
	pods.netns["default/two"] = "/nonexistent"
	addr := startServer(t, p, pods, nil)
	_, client := startAPIServer(t, p)
	ctx := context.Background()
	var port int32
	fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &port)
	addNode(t, client, "n1", port)
	addNode(t, client, "gone", 1) // nothing listens on port 1
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := map[string]string{"a": "x", "b": "y"}
	createPodSpec(t, client, "two", "n1", []string{"a", "b"}, running)
	createPodSpec(t, client, "unbound", "", []string{"c"}, nil)
	createPodSpec(t, client, "far", "gone", []string{"c"}, map[string]string{"c": "z"})

	logs := func(pod string, o *corev1.PodLogOptions) (string, error) {
		// As kubectl reads logs: Stream.
		rc, err := client.CoreV1().Pods("default").GetLogs(pod, o).Stream(ctx)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		return readAll(t, rc), nil
	}
	if out, err := logs("two", &corev1.PodLogOptions{Container: "a"}); err != nil || out != "line 1\nline 2\n" {
		t.Errorf("logs: %q %v", out, err)
	}
	tail := int64(1)
	if out, err := logs("two", &corev1.PodLogOptions{Container: "a", TailLines: &tail}); err != nil || out != "line 2\n" {
		t.Errorf("logs --tail=1: %q %v", out, err)
	}
	for _, tc := range []struct {
		pod  string
		opts *corev1.PodLogOptions
		code int32
		msg  string
	}{
		{"two", &corev1.PodLogOptions{}, 400, "a container name must be specified for pod two, choose one of: [a b]"},
		{"two", &corev1.PodLogOptions{Container: "zz"}, 400, "container zz is not valid for pod two"},
		{"two", &corev1.PodLogOptions{Container: "a", TailLines: new(int64(-1))}, 422, "tailLines: Invalid value: -1: must be greater than or equal to 0"},
		{"two", &corev1.PodLogOptions{Container: "a", Previous: true}, 400, `previous terminated container "a" in pod "two" not found`},
		// The node's own answer (the container is gone there) comes through.
		{"two", &corev1.PodLogOptions{Container: "b"}, 400, `container "b" not found in pod "two"`},
		{"nope", &corev1.PodLogOptions{}, 404, `pods "nope" not found`},
		{"far", &corev1.PodLogOptions{}, 500, "connect: connection refused"},
	} {
		_, err := logs(tc.pod, tc.opts)
		se, ok := err.(apierrors.APIStatus)
		if !ok || se.Status().Code != tc.code || !strings.Contains(se.Status().Message, tc.msg) {
			t.Errorf("logs %s %+v: %v; want %d %q", tc.pod, tc.opts, err, tc.code, tc.msg)
		}
	}
	if out, err := logs("unbound", &corev1.PodLogOptions{}); err != nil || out != "" {
		t.Errorf("logs of an unscheduled pod: %q %v", out, err)
	}

	// exec without an upgrade, and of a pod without a node.
	for _, tc := range []struct {
		pod  string
		code int32
		msg  string
	}{
		{"two", 400, "Upgrade request required"},
		{"unbound", 400, "pod unbound does not have a host assigned"},
	} {
		err := client.CoreV1().RESTClient().Post().Namespace("default").Resource("pods").Name(tc.pod).SubResource("exec").
			Param("container", map[string]string{"two": "a"}[tc.pod]).Param("command", "true").Param("stdout", "true").Do(ctx).Error()
		se, ok := err.(apierrors.APIStatus)
		if !ok || se.Status().Code != tc.code || !strings.Contains(se.Status().Message, tc.msg) {
			t.Errorf("exec %s: %v; want %d %q", tc.pod, err, tc.code, tc.msg)
		}
	}
}

// An unreachable node: the upgrade fails with kube-apiserver's wording.
func TestAPIServerExecNodeUnreachable(t *testing.T) {
	p := newTestPKI(t)
	cfg, client := startAPIServer(t, p)
	ctx := context.Background()
	addNode(t, client, "gone", 1)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPodSpec(t, client, "far", "gone", []string{"c"}, map[string]string{"c": "z"})
	req := client.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("far").SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: []string{"true"}, Stdout: true}, scheme.ParameterCodec)
	for _, proto := range []string{"spdy", "websocket"} {
		var ex remotecommand.Executor
		var err error
		if proto == "spdy" {
			ex, err = remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
		} else {
			ex, err = remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
		}
		if err != nil {
			t.Fatal(err)
		}
		err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "error dialing backend") || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s: %v", proto, err)
		}
	}
}

func addNode(t *testing.T, client kubernetes.Interface, name string, port int32) {
	t.Helper()
	ctx := context.Background()
	node, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPodSpec creates a pod with the named containers, running (with the
// given IDs) when ids is set.
func createPodSpec(t *testing.T, client kubernetes.Interface, name, node string, containers []string, ids map[string]string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: node}}
	for _, n := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
	}
	pod, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ids == nil {
		return
	}
	pod.Status.Phase = corev1.PodRunning
	for _, n := range containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: n, Image: "busybox",
			ImageID: "sha256:0", ContainerID: "skiff://" + ids[n], Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}})
	}
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
