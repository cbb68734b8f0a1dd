package endpoints

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// eventually polls check until it returns "" or the deadline passes.
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = check(); last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %s", what, last)
}

// summary renders an Endpoints' subsets as "ready|notReady|ports" per subset.
func summary(ep *corev1.Endpoints) string {
	var parts []string
	for _, s := range ep.Subsets {
		var ready, notReady, ports []string
		for _, a := range s.Addresses {
			ready = append(ready, a.IP)
		}
		for _, a := range s.NotReadyAddresses {
			notReady = append(notReady, a.IP)
		}
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d", p.Name, p.Port))
		}
		parts = append(parts, strings.Join(ready, ",")+"|"+strings.Join(notReady, ",")+"|"+strings.Join(ports, ","))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func expectEndpoints(t *testing.T, client kubernetes.Interface, name, want string) {
	t.Helper()
	eventually(t, "endpoints "+name, func() string {
		ep, err := client.CoreV1().Endpoints("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if got := summary(ep); got != want {
			return fmt.Sprintf("got %q, want %q", got, want)
		}
		return ""
	})
}

func setPodStatus(t *testing.T, client kubernetes.Interface, name, ip string, ready bool) {
	t.Helper()
	ctx := context.Background()
	pod, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestIntegration(t *testing.T) {
	api := controllertest.Start(t)
	cc := api.Context(t)
	c, err := New(cc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		<-done
		cc.Informers.Shutdown()
	})
	cc.Informers.Start(ctx.Done())
	go func() { done <- c.Run(ctx, 2) }()

	client := api.Client
	sel := map[string]string{"app": "web"}
	svcs := []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"team": "a"}}, Spec: corev1.ServiceSpec{Selector: sel,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "hl"}, Spec: corev1.ServiceSpec{Selector: sel, ClusterIP: corev1.ClusterIPNone}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pub"}, Spec: corev1.ServiceSpec{Selector: sel, PublishNotReadyAddresses: true,
			Ports: []corev1.ServicePort{{Name: "p", Port: 81, TargetPort: intstr.FromInt32(9000)}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "manual"}, Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Port: 82}}}},
	}
	for _, s := range svcs {
		if _, err := client.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	manual := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "manual"}, Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: "192.168.9.9"}}, Ports: []corev1.EndpointPort{{Port: 82}}}}}
	if _, err := client.CoreV1().Endpoints("default").Create(ctx, manual, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Services with a selector get (empty) Endpoints at once.
	expectEndpoints(t, client, "web", "")
	eventually(t, "headless label", func() string {
		ep, err := client.CoreV1().Endpoints("default").Get(ctx, "hl", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if _, ok := ep.Labels[corev1.IsHeadlessService]; !ok {
			return fmt.Sprintf("labels %v", ep.Labels)
		}
		return ""
	})
	if ep, err := client.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{}); err != nil || ep.Labels["team"] != "a" {
		t.Errorf("web endpoints labels: %v %v", err, ep)
	}

	for i, port := range []int32{8080, 8081} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Labels: sel},
			Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c", Image: "nginx",
				Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: port}}}}},
		}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setPodStatus(t, client, "pod-0", "10.244.0.1", true)
	setPodStatus(t, client, "pod-1", "10.244.0.2", false)

	// The named targetPort resolves per pod; readiness splits addresses.
	expectEndpoints(t, client, "web", "10.244.0.1||http:8080 |10.244.0.2|http:8081")
	expectEndpoints(t, client, "hl", "10.244.0.1|10.244.0.2|")
	expectEndpoints(t, client, "pub", "10.244.0.1,10.244.0.2||p:9000")

	// Ready, and a new IP.
	setPodStatus(t, client, "pod-1", "10.244.0.2", true)
	setPodStatus(t, client, "pod-0", "10.244.0.7", true)
	expectEndpoints(t, client, "web", "10.244.0.2||http:8081 10.244.0.7||http:8080")
	expectEndpoints(t, client, "hl", "10.244.0.2,10.244.0.7||")

	// A bound pod's graceful deletion makes it terminating: gone from
	// addresses except where not-ready addresses are published.
	if err := client.CoreV1().Pods("default").Delete(ctx, "pod-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEndpoints(t, client, "web", "10.244.0.2||http:8081")
	expectEndpoints(t, client, "pub", "10.244.0.2,10.244.0.7||p:9000")
	zero := int64(0)
	if err := client.CoreV1().Pods("default").Delete(ctx, "pod-0", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	expectEndpoints(t, client, "pub", "10.244.0.2||p:9000")

	// The service goes, and so do its Endpoints.
	if err := client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "endpoints of a deleted service", func() string {
		_, err := client.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return ""
		}
		return fmt.Sprintf("still there (err %v)", err)
	})
	// Deleting a managed Endpoints gets it rewritten.
	if err := client.CoreV1().Endpoints("default").Delete(ctx, "hl", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEndpoints(t, client, "hl", "10.244.0.2||")

	// Steady state: a sync from the cache (as a resync would do) finds the
	// stored object equal and writes nothing.
	for _, name := range []string{"hl", "pub"} {
		var stored *corev1.Endpoints
		eventually(t, "endpoints cache", func() string {
			var err error
			stored, err = client.CoreV1().Endpoints("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err.Error()
			}
			cached, err := c.endpoints.Endpoints("default").Get(name)
			if err != nil || cached.ResourceVersion != stored.ResourceVersion {
				return fmt.Sprintf("cache behind (err %v)", err)
			}
			return ""
		})
		if err := c.sync(ctx, "default/"+name); err != nil {
			t.Fatalf("steady-state sync: %v", err)
		}
		if again, err := client.CoreV1().Endpoints("default").Get(ctx, name, metav1.GetOptions{}); err != nil || again.ResourceVersion != stored.ResourceVersion {
			t.Errorf("endpoints %s rewritten without a change (err %v)", name, err)
		}
	}

	// The selector-less service's Endpoints were never touched.
	got, err := client.CoreV1().Endpoints("default").Get(ctx, "manual", metav1.GetOptions{})
	if err != nil || summary(got) != "192.168.9.9||:82" || len(got.Labels) != 0 {
		t.Errorf("manual endpoints: %v %+v", err, got)
	}
}
