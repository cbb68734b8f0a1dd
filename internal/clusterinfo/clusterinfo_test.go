package clusterinfo

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func sample() Info {
	return Info{
		ClusterCIDR:   netip.MustParsePrefix("10.42.0.0/16"),
		ServiceCIDR:   netip.MustParsePrefix("10.43.0.0/16"),
		PodNetwork:    PodNetworkVXLAN,
		ClusterDNS:    netip.MustParseAddr("10.43.0.10"),
		ClusterDomain: "cluster.local",
	}
}

func writes(c *fake.Clientset) (creates, updates int) {
	for _, a := range c.Actions() {
		if a.GetResource().Resource != "configmaps" {
			continue
		}
		switch a.GetVerb() {
		case "create":
			creates++
		case "update":
			updates++
		}
	}
	return
}

func TestPublishGetRoundTripAndUpdatesOnlyOnChange(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	if _, err := Get(ctx, c); !errors.Is(err, ErrNotPublished) || !strings.Contains(err.Error(), "kube-system/skiff-cluster") {
		t.Fatalf("Get before Publish: %v", err)
	}
	info := sample()
	if err := Publish(ctx, c, info); err != nil {
		t.Fatal(err)
	}
	got, err := Get(ctx, c)
	if err != nil || got != info {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, info)
	}
	if err := Publish(ctx, c, info); err != nil {
		t.Fatal(err)
	}
	if cr, up := writes(c); cr != 1 || up != 0 {
		t.Fatalf("after two identical publishes: %d creates, %d updates; want 1, 0", cr, up)
	}
	info.PodNetwork = PodNetworkHostGW
	if err := Publish(ctx, c, info); err != nil {
		t.Fatal(err)
	}
	if cr, up := writes(c); cr != 1 || up != 1 {
		t.Fatalf("after a change: %d creates, %d updates; want 1, 1", cr, up)
	}
	if got, err := Get(ctx, c); err != nil || got.PodNetwork != PodNetworkHostGW {
		t.Fatalf("Get after change = %+v, %v", got, err)
	}
}

func TestPublishRefusesInvalidInfo(t *testing.T) {
	info := sample()
	info.PodNetwork = "flannel"
	info.ClusterDNS = netip.Addr{}
	err := Publish(context.Background(), fake.NewClientset(), info)
	if err == nil || !strings.Contains(err.Error(), `pod network "flannel"`) || !strings.Contains(err.Error(), "cluster DNS") {
		t.Fatalf("err = %v", err)
	}
}

func TestGetNamesEveryMalformedKey(t *testing.T) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace},
		Data: map[string]string{
			"clusterCIDR": "10.42.0.0", "serviceCIDR": "10.43.0.0/16",
			"podNetwork": "udp", "clusterDNS": "ten", "clusterDomain": "",
		},
	}
	_, err := Get(context.Background(), fake.NewClientset(cm))
	if err == nil {
		t.Fatal("malformed ConfigMap accepted")
	}
	for _, want := range []string{"malformed", `clusterCIDR "10.42.0.0"`, `podNetwork "udp"`, `clusterDNS "ten"`, "clusterDomain is empty"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "serviceCIDR") {
		t.Errorf("error %q blames the valid serviceCIDR", err)
	}
}

func TestWaitReturnsOncePublishedAndStopsOnMalformed(t *testing.T) {
	c := fake.NewClientset()
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = Publish(context.Background(), c, sample())
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if info, err := Wait(ctx, c, 10*time.Millisecond); err != nil || info != sample() {
		t.Fatalf("Wait = %+v, %v", info, err)
	}

	bad := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace}})
	if _, err := Wait(ctx, bad, 10*time.Millisecond); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Wait on a malformed ConfigMap: %v", err)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := Wait(short, fake.NewClientset(), 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotPublished) {
		t.Fatalf("Wait with nothing published: %v", err)
	}
}
