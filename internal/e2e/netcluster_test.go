package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/runtime/runtimetest"
)

// ncPod is a busybox pod pinned to a node; hostNetwork runs it in the
// node's own namespace.
func ncPod(name, node string, hostNetwork bool, command ...string) string {
	hn := ""
	if hostNetwork {
		hn = "\n  hostNetwork: true"
	}
	return `apiVersion: v1
kind: Pod
metadata: {name: ` + name + `, labels: {app: ` + name + `}}
spec:
  nodeSelector: {kubernetes.io/hostname: ` + node + `}` + hn + `
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ` + testImage + `
    command: ["` + strings.Join(command, `", "`) + `"]
`
}

// TestNetClusterBasics checks the multi-node harness itself: three nodes
// (the server's and two agents, each in its own host namespace) become
// Ready with their host IPs, upstream kubectl works, each agent runs a pod,
// the API reaches every kubelet over the switch (exec), a client host
// outside the cluster reaches the server and a host-network pod, an agent
// restart leaves its pod running, and the teardown leaves nothing.
func TestNetClusterBasics(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster")
	}
	upstreamKubectl(t)
	nc := startNetCluster(t, netClusterOpts{})
	client := nc.Client()
	ctx := context.Background()

	// Nodes and their InternalIPs.
	want := nc.NodeIPs()
	if len(want) != 3 {
		t.Fatalf("NodeIPs: %v", want)
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
		ip := ""
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
			}
		}
		if ip != want[n.Name] {
			t.Errorf("node %s InternalIP %q, want %q", n.Name, ip, want[n.Name])
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "agent-1,agent-2,server" {
		t.Errorf("nodes %v", names)
	}
	out := nc.MustKubectl("", "get", "nodes", "-o", "wide")
	for name, ip := range want {
		if !strings.Contains(out, name) || !strings.Contains(out, ip) {
			t.Errorf("kubectl get nodes -o wide lacks %s %s:\n%s", name, ip, out)
		}
	}

	// A pod on each agent; a host-network web server on agent-2.
	for _, a := range nc.Agents {
		nc.MustKubectl(ncPod("sleeper-"+a.Name, a.Name, false, "sleep", "3600"), "apply", "-f", "-")
	}
	nc.MustKubectl(ncPod("hostweb", "agent-2", true, "httpd", "-f", "-p", "8080", "-h", "/var/www"), "apply", "-f", "-")
	running := func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }
	for _, a := range nc.Agents {
		p := nc.WaitPod("default", "sleeper-"+a.Name, "Running", 90*time.Second, running)
		if p.Spec.NodeName != a.Name {
			t.Errorf("sleeper-%s on %q", a.Name, p.Spec.NodeName)
		}
		// API server → that agent's kubelet, over the switch.
		if out := nc.MustKubectl("", "exec", "sleeper-"+a.Name, "--", "echo", "hi from", a.Name); out != "hi from "+a.Name+"\n" {
			t.Errorf("exec on %s: %q", a.Name, out)
		}
	}
	nc.WaitPod("default", "hostweb", "Running", 90*time.Second, running)

	// The client host reaches the API server and the host-network pod.
	nc.eventually(30*time.Second, "client → server /readyz", func() bool {
		body, err := nc.HTTPGet(ncClient, "https://"+ncServerIP+":6443/readyz", "")
		return err == nil && strings.Contains(body, "ok")
	})
	nc.eventually(30*time.Second, "client → hostweb on agent-2", func() bool {
		body, err := nc.HTTPGet(ncClient, "http://"+want["agent-2"]+":8080/", "web.example")
		return err == nil && strings.Contains(body, "skiff")
	})
	// The hosts see only each other: the client's namespace has no route
	// to anything but the test subnet's hosts.
	if out, err := nc.Exec(ncClient, "cat", "/proc/net/route"); err != nil || strings.Count(out, "\n") != 3 {
		t.Errorf("client routes (want header, subnet, default): %v\n%s", err, out)
	}
	nc.AddRoute(ncClient, "203.0.113.0/24", want["agent-1"])
	if out, err := nc.Exec(ncClient, "cat", "/proc/net/route"); err != nil || strings.Count(out, "\n") != 4 || !strings.Contains(out, "007100CB") {
		t.Errorf("client routes after AddRoute: %v\n%s", err, out)
	}

	t.Run("agent crash keeps its pod", func(t *testing.T) {
		before := nc.WaitPod("default", "sleeper-agent-2", "Running", time.Second, running)
		nc.CrashAgent(1)
		nc.StartAgent(1)
		if out := nc.MustKubectl("", "exec", "sleeper-agent-2", "--", "echo", "back"); out != "back\n" {
			t.Errorf("exec after crash: %q", out)
		}
		after := nc.WaitPod("default", "sleeper-agent-2", "Running", 10*time.Second, running)
		if after.UID != before.UID || len(after.Status.ContainerStatuses) != 1 || after.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("pod after agent crash: %s (uid %s → %s)", podSummary(after), before.UID, after.UID)
		}
	})

	// Leftovers sees what the harness did not make.
	{
		h, err := ncHandle(nc.ClientH.NetNS)
		if err != nil {
			t.Fatal(err)
		}
		probe := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "probe0"}} // (no dummy links in this kernel)
		if err := h.LinkAdd(probe); err != nil {
			t.Fatal(err)
		}
		if left := nc.Leftovers(ncClient); left != "link probe0 (bridge)" {
			t.Errorf("Leftovers with a stray bridge: %q", left)
		}
		if err := h.LinkDel(probe); err != nil {
			t.Fatal(err)
		}
		h.Close()
	}

	t.Run("agent restart keeps its pod", func(t *testing.T) {
		before := nc.WaitPod("default", "sleeper-agent-1", "Running", time.Second, running)
		nc.RestartAgent(0)
		nc.waitNodeReady("agent-1", 60*time.Second)
		if out := nc.MustKubectl("", "exec", "sleeper-agent-1", "--", "echo", "back"); out != "back\n" {
			t.Errorf("exec after restart: %q", out)
		}
		after := nc.WaitPod("default", "sleeper-agent-1", "Running", 10*time.Second, running)
		if after.UID != before.UID || len(after.Status.ContainerStatuses) != 1 || after.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("pod after agent restart: %s (uid %s → %s)", podSummary(after), before.UID, after.UID)
		}
	})

	// Teardown (t.Cleanup would do it too) leaves nothing behind.
	// StopNodes keeps the hosts for inspection, with nothing running.
	nc.StopNodes()
	for _, h := range nc.hosts {
		if _, err := os.Stat(h.NetNS); err != nil {
			t.Errorf("%s after StopNodes: %v", h.Name, err)
		}
		if pids := ncPIDsInNetNS(h.NetNS); len(pids) > 0 {
			t.Errorf("%s after StopNodes: processes %v", h.Name, pids)
		}
		if left := nc.Leftovers(h.Name); left != "" {
			t.Errorf("%s after StopNodes (skiff killall):\n%s", h.Name, left)
		}
	}
	nsDir := nc.Server.NetNS
	dir := nc.dir
	nc.Stop()
	if _, err := os.Stat(nsDir); !os.IsNotExist(err) {
		t.Errorf("server netns after Stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data dir after Stop: %v", err)
	}
	ents, _ := os.ReadDir(ncNetNSDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), filepath.Base(dir)) {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestNetClusterStaleCleanup fakes what a killed test binary leaves — a
// host namespace with a process in it, data dirs with a mount, one host
// whose namespace is already gone — and checks the next harness start
// removes it all.
func TestNetClusterStaleCleanup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := dead.Process.Pid
	if unix.Kill(pid, 0) != unix.ESRCH {
		t.Skipf("pid %d was reused already", pid)
	}
	name := fmt.Sprintf("%s%d-1", ncPrefix, pid)
	dir := filepath.Join(os.TempDir(), name)
	ns := filepath.Join(ncNetNSDir, name+"-server")
	t.Cleanup(func() { // only if the cleaner failed
		_ = ncDeleteNetNS(ns)
		for _, m := range runtimetest.MountsUnder(t, dir) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
		_ = os.RemoveAll(dir)
	})
	if err := ncNewNetNS(ns); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("nsenter", "--net="+ns, "--", "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(exited) }()
	defer func() { _ = sleeper.Process.Kill() }()
	// nsenter enters the namespace, then execs sleep.
	for deadline := time.Now().Add(10 * time.Second); !slices.Contains(ncPIDsInNetNS(ns), sleeper.Process.Pid); {
		if time.Now().After(deadline) {
			t.Fatal("the process did not enter the namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mnt := filepath.Join(dir, "server", "data", "agent", "pods", "vol")
	for _, d := range []string{mnt, filepath.Join(dir, "agent-1", "data")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}

	ncCleanStale(t)

	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Error("the process in the stale namespace still runs")
	}
	if _, err := os.Stat(ns); !os.IsNotExist(err) {
		t.Errorf("stale netns: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ncNetNSDir, name+"-scratch")); !os.IsNotExist(err) {
		t.Errorf("scratch netns: %v", err)
	}
	if ms := runtimetest.MountsUnder(t, dir); len(ms) > 0 {
		t.Errorf("mounts left: %v", ms)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("stale dir: %v", err)
	}
}
