package nodeipam

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

func node(name string, cidrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
		n.Spec.PodCIDRs = cidrs
	}
	return n
}

// start runs the controller over client until the test ends.
func start(t *testing.T, client kubernetes.Interface, rec record.EventRecorder, opts Options) *Controller {
	t.Helper()
	cc := controller.Context{
		Client:    client,
		Informers: informers.NewSharedInformerFactory(client, 0),
		Recorder:  func(string) record.EventRecorder { return rec },
		Log:       slog.New(slog.DiscardHandler),
	}
	c, err := New(cc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx, 2) }()
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); wg.Wait(); cc.Informers.Shutdown() })
	return c
}

func waitCIDR(t *testing.T, client kubernetes.Interface, name string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			if len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR {
				t.Fatalf("node %s: podCIDR %q, podCIDRs %v", name, n.Spec.PodCIDR, n.Spec.PodCIDRs)
			}
			return n.Spec.PodCIDR
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("node %s got no podCIDR", name)
	return ""
}

func TestAllocatesAroundExistingCIDRs(t *testing.T) {
	// Existing nodes hold .0 and .2 (and one is outside the cluster CIDR);
	// new nodes must get .1 and .3, never a taken one.
	client := fake.NewSimpleClientset(
		node("a", "10.42.0.0/24"),
		node("b", "10.42.2.0/24"),
		node("outside", "192.168.7.0/24"),
		node("new1"),
	)
	rec := record.NewFakeRecorder(10)
	start(t, client, rec, Options{ClusterCIDR: netip.MustParsePrefix("10.42.0.0/16")})
	got1 := waitCIDR(t, client, "new1")
	if got1 != "10.42.1.0/24" {
		t.Fatalf("new1 got %s, want 10.42.1.0/24", got1)
	}
	if _, err := client.CoreV1().Nodes().Create(context.Background(), node("new2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := waitCIDR(t, client, "new2"); got != "10.42.3.0/24" {
		t.Fatalf("new2 got %s, want 10.42.3.0/24", got)
	}
	n, _ := client.CoreV1().Nodes().Get(context.Background(), "outside", metav1.GetOptions{})
	if n.Spec.PodCIDR != "192.168.7.0/24" {
		t.Fatalf("outside node's CIDR changed to %s", n.Spec.PodCIDR)
	}
}

func TestExhaustedRecordsCIDRNotAvailableAndDeleteReleases(t *testing.T) {
	client := fake.NewSimpleClientset(node("a"))
	rec := record.NewFakeRecorder(10)
	c := start(t, client, rec, Options{ClusterCIDR: netip.MustParsePrefix("10.9.0.0/24"), NodeCIDRMaskSize: 24})
	if got := waitCIDR(t, client, "a"); got != "10.9.0.0/24" {
		t.Fatalf("a got %s", got)
	}
	ctx := context.Background()
	if _, err := client.CoreV1().Nodes().Create(ctx, node("b"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-rec.Events:
		if ev != "Normal CIDRNotAvailable Node b status is now: CIDRNotAvailable" {
			t.Fatalf("event %q", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no CIDRNotAvailable event")
	}
	if err := client.CoreV1().Nodes().Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// b is retried with backoff; poke it so the test need not wait.
	c.queue.Add("b")
	if got := waitCIDR(t, client, "b"); got != "10.9.0.0/24" {
		t.Fatalf("b got %s after a's release", got)
	}
}

func TestPatchIsStrategicMergeOfBothFields(t *testing.T) {
	client := fake.NewSimpleClientset(node("a"))
	var patch string
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		patch = string(a.(k8stesting.PatchAction).GetPatch())
		return false, nil, nil
	})
	start(t, client, record.NewFakeRecorder(10), Options{})
	waitCIDR(t, client, "a")
	if !strings.Contains(patch, `"podCIDR":"10.42.0.0/24"`) || !strings.Contains(patch, `"podCIDRs":["10.42.0.0/24"]`) {
		t.Fatalf("patch %s", patch)
	}
}

// TestUniqueCIDRsAgainstAPIServer runs the allocator against the real API
// server: every node gets its own /24 as it registers.
func TestUniqueCIDRsAgainstAPIServer(t *testing.T) {
	api := controllertest.Start(t)
	cc := api.Context(t)
	c, err := New(cc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx, 2) }()
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); wg.Wait(); cc.Informers.Shutdown() })

	names := []string{"n0", "n1", "n2", "n3", "n4"}
	for _, n := range names {
		if _, err := api.Client.CoreV1().Nodes().Create(ctx, node(n), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]string{}
	for _, n := range names {
		cidr := waitCIDR(t, api.Client, n)
		p := netip.MustParsePrefix(cidr)
		if p.Bits() != 24 || !netip.MustParsePrefix("10.42.0.0/16").Contains(p.Addr()) {
			t.Fatalf("node %s got %s", n, cidr)
		}
		if other, dup := seen[cidr]; dup {
			t.Fatalf("nodes %s and %s share %s", other, n, cidr)
		}
		seen[cidr] = n
	}
}
