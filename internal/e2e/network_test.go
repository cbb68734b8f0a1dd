package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiff-dev/skiff/internal/network"
	"github.com/skiff-dev/skiff/internal/proxy"
)

// The seed's example: three httpd replicas labelled app: myapp behind a
// NodePort Service (port 80, targetPort 80, nodePort 31000). Each replica
// serves its own pod name, so a response says who answered; httpd -v logs
// the client's address, so a pod can tell whether traffic was NATed.
const myappManifest = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: myapp
spec:
  replicas: 3
  selector:
    matchLabels:
      app: myapp
  template:
    metadata:
      labels:
        app: myapp
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: ` + testImage + `
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -v -p 80 -h /www"]
        ports:
        - containerPort: 80
        readinessProbe:
          httpGet:
            path: /
            port: 80
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: myapp
spec:
  type: NodePort
  selector:
    app: myapp
  ports:
  - port: 80
    targetPort: 80
    nodePort: 31000
`

// pinnedPod is an httpd pod (serving its name) on one node.
func pinnedPod(name, node string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels:
    role: pinned
spec:
  nodeSelector:
    kubernetes.io/hostname: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: %s
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -v -p 80 -h /www"]
    readinessProbe:
      tcpSocket:
        port: 80
      periodSeconds: 1
`, name, node, testImage)
}

func podReadyCond(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && p.Status.PodIP != ""
		}
	}
	return false
}

// startPinned creates an httpd pod on every node and waits until all are
// Ready; it returns node name → pod.
func startPinned(nc *netCluster) map[string]*corev1.Pod {
	nc.t.Helper()
	var manifest strings.Builder
	for _, h := range nc.Nodes() {
		manifest.WriteString("---\n" + pinnedPod("pod-on-"+h.Name, h.Name))
	}
	nc.MustKubectl(manifest.String(), "apply", "-f", "-")
	pods := map[string]*corev1.Pod{}
	for _, h := range nc.Nodes() {
		pods[h.Name] = nc.WaitPod("default", "pod-on-"+h.Name, "Ready with an IP", 90*time.Second, podReadyCond)
	}
	return pods
}

// podGet fetches url from inside pod with busybox wget; the error says why.
func podGet(nc *netCluster, pod, url string) (string, error) {
	return nc.Kubectl("exec", pod, "--", "timeout", "3", "wget", "-qO-", url)
}

// checkPodToPod: every pinned pod reaches every other by pod IP, and the
// receiver sees the sender's pod IP (no NAT between pods).
func checkPodToPod(nc *netCluster, pods map[string]*corev1.Pod) {
	nc.t.Helper()
	for from, src := range pods {
		for to, dst := range pods {
			if from == to {
				continue
			}
			out, err := podGet(nc, src.Name, "http://"+dst.Status.PodIP+"/")
			if err != nil || strings.TrimSpace(out) != dst.Name {
				nc.t.Errorf("pod on %s → pod IP %s on %s: %q, %v", from, dst.Status.PodIP, to, out, err)
				continue
			}
			logs, _ := nc.Kubectl("logs", dst.Name)
			if !strings.Contains(logs, src.Status.PodIP) {
				nc.t.Errorf("pod on %s did not see the caller's pod IP %s (NATed?); its log:\n%s", to, src.Status.PodIP, logs)
			}
		}
	}
}

// myappPods returns the names and IPs of the Ready myapp replicas.
func myappPods(nc *netCluster) map[string]string {
	nc.t.Helper()
	list, err := nc.Client().CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=myapp"})
	if err != nil {
		nc.t.Fatal(err)
	}
	out := map[string]string{}
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp == nil && podReadyCond(p) {
			out[p.Name] = p.Status.PodIP
		}
	}
	return out
}

func waitMyappReady(nc *netCluster, n int) map[string]string {
	nc.t.Helper()
	var pods map[string]string
	nc.eventually(120*time.Second, fmt.Sprintf("%d Ready myapp replicas", n), func() bool {
		pods = myappPods(nc)
		return len(pods) == n
	})
	return pods
}

// answerers requests url n times from a pod and returns who answered.
func answerers(nc *netCluster, pod, url string, n int) (map[string]int, error) {
	out, err := nc.Kubectl("exec", pod, "--", "sh", "-c",
		fmt.Sprintf("for i in $(seq %d); do timeout 3 wget -qO- %s || echo FAILED; done", n, url))
	seen := map[string]int{}
	for _, l := range strings.Fields(out) {
		seen[l]++
	}
	return seen, err
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestNetworkServices is issue 5's acceptance test on the default (vxlan)
// pod network: 1 server node + 2 agent nodes in their own "hosts", and a
// client host outside the cluster.
func TestNetworkServices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	nc := startNetCluster(t, netClusterOpts{})
	nodeIPs := nc.NodeIPs()

	t.Run("pod-to-pod", func(t *testing.T) {
		pods := startPinned(nc)
		checkPodToPod(nc, pods)
	})
	probe := "pod-on-" + ncServer // a pod to make requests from

	nc.MustKubectl(myappManifest, "apply", "-f", "-")
	pods := waitMyappReady(nc, 3)
	svc, err := nc.Client().CoreV1().Services("default").Get(context.Background(), "myapp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vip := svc.Spec.ClusterIP

	nodePortAnswers := func(what string) {
		t.Helper()
		for node, ip := range nodeIPs {
			// Within a bounded time, and then from a Ready replica (a
			// replica scaled away may answer until its endpoint is gone).
			nc.eventually(30*time.Second, what+": NodePort 31000 on "+node+" answered by a Ready replica", func() bool {
				b, err := nc.HTTPGet(ncClient, "http://"+ip+":31000/", "")
				_, ready := myappPods(nc)[strings.TrimSpace(b)]
				return err == nil && ready
			})
		}
	}

	t.Run("nodeport-every-node", func(t *testing.T) { nodePortAnswers("3 replicas") })

	t.Run("clusterip-from-pod-all-replicas", func(t *testing.T) {
		seen, err := answerers(nc, probe, "http://"+vip+"/", 45)
		if err != nil {
			t.Fatal(err)
		}
		if seen["FAILED"] > 0 {
			t.Errorf("%d of 45 requests to the ClusterIP failed", seen["FAILED"])
		}
		for name := range pods {
			if seen[name] == 0 {
				t.Errorf("replica %s never answered through ClusterIP %s: %v", name, vip, seen)
			}
		}
	})

	t.Run("pod-replaced-service-keeps-answering", func(t *testing.T) {
		victim := sortedKeys(pods)[0]
		nc.MustKubectl("", "delete", "pod", victim, "--wait=false")
		var now map[string]string
		nc.eventually(90*time.Second, "a replacement replica", func() bool {
			now = myappPods(nc)
			_, old := now[victim]
			return len(now) == 3 && !old
		})
		if slices.Equal(sortedKeys(now), sortedKeys(pods)) {
			t.Fatalf("pod set did not change: %v", now)
		}
		// Within a bounded time every request goes to the new set only.
		nc.eventually(30*time.Second, "ClusterIP answering from the new replica set only", func() bool {
			seen, err := answerers(nc, probe, "http://"+vip+"/", 15)
			if err != nil || seen["FAILED"] > 0 || seen[victim] > 0 {
				return false
			}
			for n := range seen {
				if _, ok := now[n]; !ok {
					return false
				}
			}
			return true
		})
		nodePortAnswers("after a replica was replaced")
		if svc2, _ := nc.Client().CoreV1().Services("default").Get(context.Background(), "myapp", metav1.GetOptions{}); svc2.Spec.ClusterIP != vip {
			t.Errorf("ClusterIP changed from %s to %s", vip, svc2.Spec.ClusterIP)
		}
		pods = now
	})

	t.Run("headless", func(t *testing.T) {
		nc.MustKubectl(`
apiVersion: v1
kind: Service
metadata:
  name: myapp-headless
spec:
  clusterIP: None
  selector:
    app: myapp
  ports:
  - port: 80
`, "apply", "-f", "-")
		s, err := nc.Client().CoreV1().Services("default").Get(context.Background(), "myapp-headless", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("headless service got clusterIP %q", s.Spec.ClusterIP)
		}
		var want []string
		for _, ip := range myappPods(nc) {
			want = append(want, ip)
		}
		sort.Strings(want)
		nc.eventually(30*time.Second, "headless Endpoints listing the pod IPs", func() bool {
			out, err := nc.Kubectl("get", "endpoints", "myapp-headless", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
			got := strings.Fields(out)
			sort.Strings(got)
			return err == nil && slices.Equal(got, want)
		})
	})

	t.Run("loadbalancer", func(t *testing.T) {
		nc.MustKubectl(`
apiVersion: v1
kind: Service
metadata:
  name: myapp-lb
spec:
  type: LoadBalancer
  selector:
    app: myapp
  ports:
  - port: 8081
    targetPort: 80
`, "apply", "-f", "-")
		var ingress []string
		nc.eventually(30*time.Second, "LoadBalancer ingress IPs", func() bool {
			s, err := nc.Client().CoreV1().Services("default").Get(context.Background(), "myapp-lb", metav1.GetOptions{})
			if err != nil {
				return false
			}
			ingress = nil
			for _, in := range s.Status.LoadBalancer.Ingress {
				ingress = append(ingress, in.IP)
			}
			return len(ingress) == len(nodeIPs)
		})
		var want []string
		for _, ip := range nodeIPs {
			want = append(want, ip)
		}
		sort.Strings(want)
		sort.Strings(ingress)
		if !slices.Equal(ingress, want) {
			t.Errorf("ingress IPs %v, want the node IPs %v", ingress, want)
		}
		for _, ip := range ingress {
			nc.eventually(30*time.Second, "LoadBalancer answering on "+ip+":8081", func() bool {
				b, err := nc.HTTPGet(ncClient, "http://"+ip+":8081/", "")
				return err == nil && strings.TrimSpace(b) != ""
			})
		}
	})

	t.Run("client-ip-affinity", func(t *testing.T) {
		nc.MustKubectl(`
apiVersion: v1
kind: Service
metadata:
  name: myapp-sticky
spec:
  type: NodePort
  sessionAffinity: ClientIP
  selector:
    app: myapp
  ports:
  - port: 80
    targetPort: 80
    nodePort: 31001
`, "apply", "-f", "-")
		s, err := nc.Client().CoreV1().Services("default").Get(context.Background(), "myapp-sticky", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nc.eventually(30*time.Second, "sticky service answering", func() bool {
			seen, err := answerers(nc, probe, "http://"+s.Spec.ClusterIP+"/", 1)
			return err == nil && seen["FAILED"] == 0
		})
		seen, err := answerers(nc, probe, "http://"+s.Spec.ClusterIP+"/", 20)
		if err != nil || len(seen) != 1 || seen["FAILED"] > 0 {
			t.Errorf("ClientIP affinity from a pod: 20 requests answered by %v (err %v), want one replica", seen, err)
		}
		// From outside the cluster through a NodePort too.
		got := map[string]int{}
		for range 20 {
			b, err := nc.HTTPGet(ncClient, "http://"+nodeIPs[ncServer]+":31001/", "")
			if err != nil {
				got["error: "+err.Error()]++
				continue
			}
			got[strings.TrimSpace(b)]++
		}
		if len(got) != 1 {
			t.Errorf("ClientIP affinity from the client host: answered by %v, want one replica", got)
		}
	})

	t.Run("no-endpoints-refused-quickly", func(t *testing.T) {
		nc.MustKubectl(`
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  type: NodePort
  selector:
    app: nobody
  ports:
  - port: 80
    nodePort: 31002
`, "apply", "-f", "-")
		s, err := nc.Client().CoreV1().Services("default").Get(context.Background(), "nobody", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nc.eventually(30*time.Second, "connections to a service without endpoints refused", func() bool {
			out, err := nc.Kubectl("exec", probe, "--", "sh", "-c", "timeout 10 wget -qO- http://"+s.Spec.ClusterIP+"/ 2>&1; true")
			return err == nil && strings.Contains(out, "refused")
		})
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := nc.Dial(ctx, ncClient, "tcp", nodeIPs["agent-1"]+":31002")
		if err == nil {
			c.Close()
			t.Fatal("NodePort of a service without endpoints accepted a connection")
		}
		if !strings.Contains(err.Error(), "refused") || time.Since(start) > 3*time.Second {
			t.Errorf("NodePort without endpoints: %v after %s, want connection refused at once", err, time.Since(start))
		}
	})

	t.Run("scaled-to-one-nodeport-on-every-node", func(t *testing.T) {
		nc.MustKubectl("", "scale", "deployment/myapp", "--replicas=1")
		only := waitMyappReady(nc, 1)
		nodePortAnswers("1 replica")
		// Hairpin: the one replica reaches itself through its Service.
		for name := range only {
			out, err := podGet(nc, name, "http://"+vip+"/")
			if err != nil || strings.TrimSpace(out) != name {
				t.Errorf("pod %s through its own ClusterIP: %q, %v", name, out, err)
			}
		}
	})

	t.Run("agent-restart-keeps-rules-and-routes", func(t *testing.T) {
		agent := nc.Agents[0]
		// Wait for the scale-down's endpoint changes to settle.
		var before string
		nc.eventually(30*time.Second, "a settled network state on "+agent.Name, func() bool {
			a := nodeNetState(t, agent.NetNS)
			time.Sleep(time.Second)
			before = nodeNetState(t, agent.NetNS)
			return a == before
		})
		nc.RestartAgent(0)
		nc.waitNodeReady(agent.Name, 60*time.Second)
		// Give the restarted agent time to sync everything once.
		time.Sleep(3 * time.Second)
		after := nodeNetState(t, agent.NetNS)
		if before != after {
			t.Errorf("network state of %s changed across an agent restart:\nbefore:\n%s\nafter:\n%s", agent.Name, before, after)
		}
		b, err := nc.HTTPGet(ncClient, "http://"+agent.IP+":31000/", "")
		if err != nil || strings.TrimSpace(b) == "" {
			t.Errorf("NodePort on %s after its agent restarted: %q, %v", agent.Name, b, err)
		}
	})

	t.Run("cleanup-leaves-nothing", func(t *testing.T) {
		nc.StopNodes() // stops skiff everywhere and runs skiff killall in each host
		for _, h := range nc.Nodes() {
			nothingLeft(t, h.NetNS)
			if left := nc.Leftovers(h.Name); left != "" {
				t.Errorf("after killall, %s still holds:\n%s", h.Name, left)
			}
		}
	})
}

// TestNetworkHostGW runs pod-to-pod and Service traffic over the host-gw
// backend: a route per peer node's podCIDR via its node IP, no overlay.
func TestNetworkHostGW(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	nc := startNetCluster(t, netClusterOpts{ServerArgs: []string{"--pod-network=host-gw", "--lb-ip-pool=203.0.113.0/28"}})
	pods := startPinned(nc)
	checkPodToPod(nc, pods)

	// Routes: each node has exactly one route per other node's podCIDR,
	// via that node's IP.
	nodes, err := nc.Client().CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: labels.Everything().String()})
	if err != nil {
		t.Fatal(err)
	}
	cidrs := map[string]string{}
	for _, n := range nodes.Items {
		cidrs[n.Name] = n.Spec.PodCIDR
	}
	for _, h := range nc.Nodes() {
		var want []string
		for name, cidr := range cidrs {
			if name != h.Name {
				want = append(want, cidr+" via "+nc.NodeIPs()[name])
			}
		}
		sort.Strings(want)
		got := skiffRoutes(t, h.NetNS)
		if !slices.Equal(got, want) {
			t.Errorf("routes on %s: %v, want %v", h.Name, got, want)
		}
	}

	// A ClusterIP reaches a pod on another node from a pod and from a node.
	nc.MustKubectl(`
apiVersion: v1
kind: Service
metadata:
  name: on-agent-2
spec:
  selector:
    role: pinned
  ports:
  - port: 80
`, "apply", "-f", "-")
	nc.MustKubectl("", "label", "pod", "pod-on-agent-2", "only=yes")
	nc.MustKubectl("", "patch", "service", "on-agent-2", "-p", `{"spec":{"selector":{"role":"pinned","only":"yes"}}}`)
	s, err := nc.Client().CoreV1().Services("default").Get(context.Background(), "on-agent-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nc.eventually(30*time.Second, "ClusterIP to the pod on agent-2 from the server's pod", func() bool {
		out, err := podGet(nc, "pod-on-server", "http://"+s.Spec.ClusterIP+"/")
		return err == nil && strings.TrimSpace(out) == "pod-on-agent-2"
	})
	nc.eventually(30*time.Second, "ClusterIP from the agent-1 host itself", func() bool {
		out, err := nc.Exec("agent-1", "timeout", "3", "busybox", "wget", "-qO-", "http://"+s.Spec.ClusterIP+"/")
		return err == nil && strings.TrimSpace(out) == "pod-on-agent-2"
	})

	// A LoadBalancer VIP from --lb-ip-pool, routed by the client to a node
	// that has no endpoint of the service.
	nc.MustKubectl(`
apiVersion: v1
kind: Service
metadata:
  name: pool-lb
spec:
  type: LoadBalancer
  selector:
    only: "yes"
  ports:
  - port: 8090
    targetPort: 80
`, "apply", "-f", "-")
	var vip string
	nc.eventually(30*time.Second, "a VIP from the pool", func() bool {
		s, err := nc.Client().CoreV1().Services("default").Get(context.Background(), "pool-lb", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) != 1 {
			return false
		}
		vip = s.Status.LoadBalancer.Ingress[0].IP
		return true
	})
	if !strings.HasPrefix(vip, "203.0.113.") {
		t.Fatalf("LoadBalancer ingress %q is not from the pool 203.0.113.0/28", vip)
	}
	nc.AddRoute(ncClient, "203.0.113.0/28", nc.NodeIPs()["agent-1"])
	nc.eventually(30*time.Second, "the pool VIP answering from the client host", func() bool {
		b, err := nc.HTTPGet(ncClient, "http://"+vip+":8090/", "")
		return err == nil && strings.TrimSpace(b) == "pod-on-agent-2"
	})
}

// skiffRoutes lists the routes skiff installed in a host namespace as
// "DST via GW".
func skiffRoutes(t *testing.T, nsPath string) []string {
	t.Helper()
	h := nsHandle(t, nsPath)
	defer h.Close()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: network.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s via %s", r.Dst, r.Gw))
	}
	sort.Strings(out)
	return out
}

func nsHandle(t *testing.T, nsPath string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// nodeNetState renders what skiff programmed in a host namespace: the
// nftables table (chains with their rule counts, maps with their element
// counts), skiff's links and routes. Two renderings are equal when nothing
// was added, lost or duplicated.
func nodeNetState(t *testing.T, nsPath string) string {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	var lines []string
	table := &nftables.Table{Name: proxy.TableName, Family: nftables.TableFamilyIPv4}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	haveTable := false
	for _, ch := range chains {
		haveTable = haveTable || ch.Table.Name == proxy.TableName
	}
	for _, ch := range chains {
		if ch.Table.Name != proxy.TableName {
			continue
		}
		rules, err := conn.GetRules(table, ch)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("chain %s: %d rules", ch.Name, len(rules)))
	}
	var sets []*nftables.Set
	if haveTable {
		if sets, err = conn.GetSets(table); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range sets {
		if s.Anonymous {
			continue
		}
		if strings.HasPrefix(s.Name, "affinity-") {
			// Clients' affinity entries come and go with traffic.
			lines = append(lines, "set "+s.Name)
			continue
		}
		els, err := conn.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("set %s: %d elements", s.Name, len(els)))
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Name == network.DefaultBridgeName || a.Name == network.DefaultVXLANDevice || strings.HasPrefix(a.Name, "skv") {
			lines = append(lines, fmt.Sprintf("link %s %s mtu %d", a.Name, l.Type(), a.MTU))
		}
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: network.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		lines = append(lines, fmt.Sprintf("route %s via %s dev %d", r.Dst, r.Gw, r.LinkIndex))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// nothingLeft fails the test if skiff's network is still in a host
// namespace (after `skiff killall`).
func nothingLeft(t *testing.T, nsPath string) {
	t.Helper()
	if s := nodeNetState(t, nsPath); s != "" {
		t.Errorf("skiff's network left behind in %s:\n%s", nsPath, s)
	}
}
