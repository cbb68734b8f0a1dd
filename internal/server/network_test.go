package server_test

import (
	"context"
	"testing"
	"time"

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
