package server_test

// Tests of what the server does for the pod network and Services:
// clusterinfo for agents, ServiceLB.

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/clusterinfo"
	"github.com/skiff-dev/skiff/internal/server"
	"github.com/skiff-dev/skiff/internal/server/servertest"
)

// TestServerPublishesClusterInfo: agents read the pod network, CIDRs and
// DNS settings from kube-system/skiff-cluster, which the server writes
// from its flags by the time it is ready.
func TestServerPublishesClusterInfo(t *testing.T) {
	s := servertest.Start(t, server.Config{
		ClusterCIDR: "10.244.0.0/16",
		ServiceCIDR: "10.43.0.0/16",
		ClusterDNS:  "10.43.0.53",
		PodNetwork:  "host-gw",
	})
	client, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := clusterinfo.Get(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	want := "10.244.0.0/16 10.43.0.0/16 host-gw 10.43.0.53 cluster.local"
	if got := info.ClusterCIDR.String() + " " + info.ServiceCIDR.String() + " " + info.PodNetwork + " " +
		info.ClusterDNS.String() + " " + info.ClusterDomain; got != want {
		t.Fatalf("published %q, want %q", got, want)
	}
}

// TestServerRunsServiceLBWithPool: with --lb-ip-pool, a LoadBalancer
// service gets a VIP from the pool through the server's controllers.
func TestServerRunsServiceLBWithPool(t *testing.T) {
	s := servertest.Start(t, server.Config{LBIPPool: "203.0.113.8/29", DisableScheduler: true})
	client, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "lb", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err := client.CoreV1().Services("default").Get(ctx, "lb", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		in := got.Status.LoadBalancer.Ingress
		return len(in) == 1 && in[0].IP == "203.0.113.9", nil
	})
	if err != nil {
		t.Fatalf("service got no ingress 203.0.113.9 from the pool: %v", err)
	}
}
