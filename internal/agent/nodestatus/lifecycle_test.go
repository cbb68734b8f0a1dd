package nodestatus

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
	"github.com/skiff-dev/skiff/internal/controller/nodelifecycle"
)

// TestRunWithNodeLifecycle runs two agents with Run (real clock, host
// and short intervals) next to the node lifecycle controller: both become
// Ready with fresh leases; one stops, goes Unknown and gets the
// unreachable taints; started again it is Ready and the controller takes
// the taints away.
func TestRunWithNodeLifecycle(t *testing.T) {
	api := controllertest.Start(t)
	cc := api.Context(t)
	nlc, err := nodelifecycle.New(cc, nodelifecycle.Options{
		NodeMonitorPeriod: 100 * time.Millisecond, NodeMonitorGracePeriod: 2 * time.Second, NodeStartupGracePeriod: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = nlc.Run(ctx, 2) })
	cc.Informers.Start(ctx.Done())
	t.Cleanup(func() { cancel(); wg.Wait(); cc.Informers.Shutdown() })

	dataDir := t.TempDir()
	start := func(name, ip string) (stop func()) {
		actx, acancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- Run(actx, Config{
				Client: api.Client, NodeName: name, Hostname: name, NodeIP: net.ParseIP(ip),
				DataDir: dataDir, RuntimeVersion: "runc://1.4.4", KubeletVersion: "v1.32.0",
				RenewInterval: 200 * time.Millisecond, StatusUpdateFrequency: 200 * time.Millisecond,
				Logger: slog.New(slog.DiscardHandler),
			})
		}()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				acancel()
				if err := <-done; err != nil {
					t.Errorf("Run(%s) = %v", name, err)
				}
			})
		}
		t.Cleanup(stop)
		return stop
	}
	nodeState := func(name string) (corev1.ConditionStatus, []corev1.Taint) {
		n, err := api.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status, n.Spec.Taints
			}
		}
		return "", n.Spec.Taints
	}
	lifecycleTaints := func(taints []corev1.Taint) int {
		n := 0
		for _, t := range taints {
			if t.Key == corev1.TaintNodeUnreachable || t.Key == corev1.TaintNodeNotReady {
				n++
			}
		}
		return n
	}

	start("good", "10.0.0.1")
	stopBad := start("bad", "10.0.0.2")
	for _, name := range []string{"good", "bad"} {
		waitFor(t, name+" Ready with a lease", func() bool {
			ready, taints := nodeState(name)
			l, err := api.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
			return ready == corev1.ConditionTrue && lifecycleTaints(taints) == 0 && err == nil && len(l.OwnerReferences) == 1
		})
	}

	stopBad()
	waitFor(t, "bad Unknown with the unreachable taints", func() bool {
		ready, taints := nodeState("bad")
		return ready == corev1.ConditionUnknown && lifecycleTaints(taints) == 2
	})
	if ready, _ := nodeState("good"); ready != corev1.ConditionTrue {
		t.Fatalf("good node Ready = %s", ready)
	}

	start("bad", "10.0.0.2")
	waitFor(t, "bad Ready again without the taints", func() bool {
		ready, taints := nodeState("bad")
		return ready == corev1.ConditionTrue && lifecycleTaints(taints) == 0
	})
}

// TestRunIdleDoesNotPatch runs the agent on the real host and clock: once
// registered, status updates read the node but write nothing while the
// host does not change (StatusReportFrequency is the default 5m).
func TestRunIdleDoesNotPatch(t *testing.T) {
	api := controllertest.Start(t)
	client, reqs := counted(t, api)
	rec := record.NewFakeRecorder(100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Client: client, NodeName: nodeName, NodeIP: net.ParseIP("10.0.0.1"), DataDir: t.TempDir(),
			RuntimeVersion: "runc://1.4.4", KubeletVersion: "v1.32.0",
			RenewInterval: 50 * time.Millisecond, StatusUpdateFrequency: 50 * time.Millisecond,
			Recorder: rec, Logger: slog.New(slog.DiscardHandler),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	waitFor(t, "10 status updates", func() bool { return reqs.get("GET "+nodePath) >= 10 })
	if n := reqs.get("POST /api/v1/nodes"); n != 1 {
		t.Errorf("%d node creations", n)
	}
	if n := reqs.get(patchReq); n != 0 {
		t.Errorf("%d status patches while idle", n)
	}
	if n := reqs.get("PUT " + leasePath); n == 0 {
		t.Errorf("no lease renewals")
	}
	if e := <-rec.Events; e != "Normal Starting Starting kubelet." {
		t.Errorf("first event %q", e)
	}
}
