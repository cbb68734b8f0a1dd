package endpointslice

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

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

// sliceSummary renders a Service's slices: per endpoint
// "ip[:port...](r,s,t)[host]", sorted.
func sliceSummary(ss []discoveryv1.EndpointSlice) string {
	var parts []string
	for _, s := range ss {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprint(*p.Port))
		}
		for _, ep := range s.Endpoints {
			b := func(p *bool) string {
				if p != nil && *p {
					return "1"
				}
				return "0"
			}
			part := fmt.Sprintf("%s:%s(%s%s%s)", strings.Join(ep.Addresses, "+"), strings.Join(ports, "+"),
				b(ep.Conditions.Ready), b(ep.Conditions.Serving), b(ep.Conditions.Terminating))
			if ep.Hostname != nil {
				part += "[" + *ep.Hostname + "]"
			}
			parts = append(parts, part)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func serviceSlices(ctx context.Context, client kubernetes.Interface, svc string) ([]discoveryv1.EndpointSlice, error) {
	l, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func expectSlices(t *testing.T, client kubernetes.Interface, svc, want string) {
	t.Helper()
	eventually(t, "slices of "+svc, func() string {
		ss, err := serviceSlices(context.Background(), client, svc)
		if err != nil {
			return err.Error()
		}
		if got := sliceSummary(ss); got != want {
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
	c, err := New(cc, Options{MaxEndpointsPerSlice: 2})
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
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sel := map[string]string{"app": "web"}
	for _, s := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"team": "a"}}, Spec: corev1.ServiceSpec{Selector: sel,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: corev1.ServiceSpec{Selector: sel, ClusterIP: corev1.ClusterIPNone}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pub"}, Spec: corev1.ServiceSpec{Selector: sel, PublishNotReadyAddresses: true,
			Ports: []corev1.ServicePort{{Port: 81, TargetPort: intstr.FromInt32(9000)}}}},
	} {
		if _, err := client.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// No pods yet: one placeholder slice each, with the reserved labels.
	eventually(t, "placeholder", func() string {
		ss, err := serviceSlices(ctx, client, "web")
		if err != nil || len(ss) != 1 {
			return fmt.Sprintf("%d slices (err %v)", len(ss), err)
		}
		s := ss[0]
		if s.Labels[discoveryv1.LabelManagedBy] != managedBy || s.Labels["team"] != "a" || !strings.HasPrefix(s.Name, "web-") ||
			len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Name != "web" || len(s.Endpoints) != 0 {
			return fmt.Sprintf("slice %+v", s.ObjectMeta)
		}
		return ""
	})
	eventually(t, "headless label", func() string {
		ss, err := serviceSlices(ctx, client, "db")
		if err != nil || len(ss) != 1 {
			return fmt.Sprintf("%d slices (err %v)", len(ss), err)
		}
		if _, ok := ss[0].Labels[corev1.IsHeadlessService]; !ok {
			return fmt.Sprintf("labels %v", ss[0].Labels)
		}
		return ""
	})

	for i, port := range []int32{8080, 8080, 8081} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Labels: sel},
			Spec: corev1.PodSpec{NodeName: "node-1", Hostname: fmt.Sprintf("h%d", i), Subdomain: "db",
				Containers: []corev1.Container{{Name: "c", Image: "nginx", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: port}}}}},
		}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setPodStatus(t, client, "pod-0", "10.244.0.1", true)
	setPodStatus(t, client, "pod-1", "10.244.0.2", false)
	setPodStatus(t, client, "pod-2", "10.244.0.3", true)

	expectSlices(t, client, "web", "10.244.0.1:8080(110) 10.244.0.2:8080(000) 10.244.0.3:8081(110)")
	expectSlices(t, client, "db", "10.244.0.1:(110)[h0] 10.244.0.2:(000)[h1] 10.244.0.3:(110)[h2]")
	expectSlices(t, client, "pub", "10.244.0.1:9000(110) 10.244.0.2:9000(100) 10.244.0.3:9000(110)")
	eventually(t, "zone and slice size", func() string {
		ss, _ := serviceSlices(ctx, client, "db")
		for _, s := range ss {
			if len(s.Endpoints) > 2 {
				return fmt.Sprintf("slice %s has %d endpoints", s.Name, len(s.Endpoints))
			}
			for _, ep := range s.Endpoints {
				if ep.Zone == nil || *ep.Zone != "z1" || ep.NodeName == nil || *ep.NodeName != "node-1" || ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
					return fmt.Sprintf("endpoint %+v", ep)
				}
			}
		}
		return ""
	})

	// Readiness and IP changes.
	setPodStatus(t, client, "pod-1", "10.244.0.2", true)
	setPodStatus(t, client, "pod-0", "10.244.0.9", true)
	expectSlices(t, client, "web", "10.244.0.2:8080(110) 10.244.0.3:8081(110) 10.244.0.9:8080(110)")

	// Graceful deletion: terminating, not ready, still serving.
	if err := client.CoreV1().Pods("default").Delete(ctx, "pod-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectSlices(t, client, "web", "10.244.0.2:8080(110) 10.244.0.3:8081(011) 10.244.0.9:8080(110)")
	expectSlices(t, client, "pub", "10.244.0.2:9000(110) 10.244.0.3:9000(111) 10.244.0.9:9000(110)")
	zero := int64(0)
	if err := client.CoreV1().Pods("default").Delete(ctx, "pod-2", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	expectSlices(t, client, "web", "10.244.0.2:8080(110) 10.244.0.9:8080(110)")

	// Someone deletes one of our slices: it comes back.
	ss, err := serviceSlices(ctx, client, "web")
	if err != nil || len(ss) == 0 {
		t.Fatalf("slices: %v %v", ss, err)
	}
	if err := client.DiscoveryV1().EndpointSlices("default").Delete(ctx, ss[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectSlices(t, client, "web", "10.244.0.2:8080(110) 10.244.0.9:8080(110)")

	// Steady state: nothing is rewritten.
	before := map[string]string{}
	ss, _ = serviceSlices(ctx, client, "web")
	for _, s := range ss {
		before[s.Name] = s.ResourceVersion
	}
	if err := client.CoreV1().Services("default").Delete(ctx, "pub", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Touch a pod in a way that does not matter to endpoints.
	pod, err := client.CoreV1().Pods("default").Get(ctx, "pod-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Annotations = map[string]string{"touched": "yes"}
	if _, err := client.CoreV1().Pods("default").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Sync directly (as a resync would) once the cache shows the pod
	// change: the slices must come out equal to what the server stored.
	eventually(t, "pod cache", func() string {
		p, err := c.pods.Lister.Pods("default").Get("pod-0")
		if err != nil || p.Annotations["touched"] != "yes" {
			return fmt.Sprintf("not yet (err %v)", err)
		}
		return ""
	})
	if err := c.sync(ctx, "default/web"); err != nil {
		t.Fatalf("steady-state sync: %v", err)
	}
	ss, _ = serviceSlices(ctx, client, "web")
	for _, s := range ss {
		if before[s.Name] != s.ResourceVersion {
			t.Errorf("slice %s rewritten without a change", s.Name)
		}
	}
}
