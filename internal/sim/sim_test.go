package sim

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

func TestIPAM(t *testing.T) {
	a := newIPAM(netip.MustParsePrefix("10.42.3.0/30"))
	ip1, err := a.allocate("a")
	if err != nil || ip1.String() != "10.42.3.2" {
		t.Fatalf("first = %v, %v; want 10.42.3.2 (.1 is the gateway)", ip1, err)
	}
	if again, _ := a.allocate("a"); again != ip1 {
		t.Fatalf("same key got a second address %v", again)
	}
	if _, err := a.allocate("b"); err == nil {
		t.Fatal("a /30 has one pod address; the second allocation must fail")
	}
	a.release("a")
	if ip, err := a.allocate("b"); err != nil || ip != ip1 {
		t.Fatalf("after release got %v, %v", ip, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{}, {Nodes: 2, Fail: []string{"sim-7"}}, {Nodes: 1, PodsPerNode: -1}} {
		if _, err := New(nil, c, nil); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestSimulatedNodes(t *testing.T) {
	api := controllertest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(api.Client, Config{Nodes: 2, RenewInterval: 200 * time.Millisecond, Fail: []string{"sim-1"}, FailAfter: 2 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready")
	}
	c := api.Client
	node, err := c.CoreV1().Nodes().Get(ctx, "sim-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Status.Allocatable[corev1.ResourcePods]; got.Value() != 110 {
		t.Errorf("pods allocatable = %v", got.String())
	}
	// The server's node IPAM controller is not running here; play its part.
	// The hollow node writes its status meanwhile: retry on a conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := c.CoreV1().Nodes().Get(ctx, "sim-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Spec.PodCIDR, node.Spec.PodCIDRs = "10.42.7.0/24", []string{"10.42.7.0/24"}
		_, err = c.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec:       corev1.PodSpec{NodeName: "sim-0", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	poll(t, func() bool {
		got, err = c.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning && controller.IsPodReady(got)
	})
	if ip := netip.MustParseAddr(got.Status.PodIP); !netip.MustParsePrefix("10.42.7.0/24").Contains(ip) || ip.String() == "10.42.7.1" {
		t.Errorf("pod IP %s not a pod address of the node's CIDR", ip)
	}
	if len(got.Status.ContainerStatuses) != 1 || got.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("container statuses: %+v", got.Status.ContainerStatuses)
	}
	// A graceful delete is finished by the hollow kubelet.
	if err := c.CoreV1().Pods("default").Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, func() bool {
		_, err := c.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	// sim-1 stops renewing its lease after FailAfter; sim-0 keeps going.
	renew := func(name string) time.Time {
		l, err := c.CoordinationV1().Leases("kube-node-lease").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Spec.RenewTime.Time
	}
	time.Sleep(3 * time.Second) // past FailAfter; what is measured is lease age, below
	failed, live := renew("sim-1"), renew("sim-0")
	poll(t, func() bool { return renew("sim-0").After(live) })
	if now := renew("sim-1"); !now.Equal(failed) {
		t.Errorf("failed node's lease still renewed: %v → %v", failed, now)
	}
}

func poll(t *testing.T, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatal("condition not met in 30s")
	}
}
