package e2e

// The multi-node harness: a cluster of "hosts" on one machine, each host a
// network namespace joined to the others by a bridge in a "switch"
// namespace. Nothing is created in the namespace the tests run in: every
// link, address and route lives in the namespaces the harness makes, and
// the processes (skiff server, skiff agents, kubectl, probes) are started
// inside their host's namespace with nsenter(1), so they see only that
// host's network (their mount namespace is the machine's: sandbox netns
// files, data dirs and cgroups are where the single-host tests have them).
//
//	switch netns  skiffnc-<pid>-<n>-sw       bridge br0, one port per host
//	  ├─ server   skiffnc-<pid>-<n>-server   198.51.100.10/24  (skiff server, a node unless DisableServerAgent)
//	  ├─ agent-1  skiffnc-<pid>-<n>-agent-1  198.51.100.11/24  (skiff agent)
//	  ├─ agent-2  skiffnc-<pid>-<n>-agent-2  198.51.100.12/24  (skiff agent) …
//	  └─ client   skiffnc-<pid>-<n>-client   198.51.100.100/24 (no skiff: a machine outside the cluster)
//
// Each host has lo up, eth0 with its /24 and a default route via
// 198.51.100.1, an address nobody holds: locally sent traffic to a Service
// VIP has a route (the proxy's output hook DNATs it), anything else goes
// nowhere. Data dirs live in $TMPDIR/skiffnc-<pid>-<n>/<host>/data and the
// agents' cgroup roots are skiffnc-<pid>-<n>-<host>, so a later run can
// clean up after a test binary that was killed (ncCleanStale). The
// namespaces are bound at /run/skiffnc/<name> (see ncNetNSDir).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-dev/skiff/internal/runtime"
	"github.com/skiff-dev/skiff/internal/runtime/runtimetest"
)

// Addresses of the test hosts (198.51.100.0/24, TEST-NET-2, only ever
// inside the harness's namespaces).
const (
	ncServerIP  = "198.51.100.10"
	ncClientIP  = "198.51.100.100"
	ncGatewayIP = "198.51.100.1" // the hosts' default route; nobody holds it
	ncPrefixLen = 24

	// Host names, for Exec, HTTPGet, Dial and NetNS. Agents are "agent-1",
	// "agent-2", …; a host's node (if it is one) has the same name.
	ncServer = "server"
	ncClient = "client"

	// The namespaces are bound under a directory of the harness's own, not
	// /run/netns: the first `ip netns add` on a machine bind-mounts
	// /run/netns over itself, and a namespace bound there before that can
	// no longer be deleted (EBUSY). Enter one by hand with
	// `nsenter --net=/run/skiffnc/NAME`.
	ncNetNSDir = "/run/skiffnc"
	// Where the agents' runtime binds the pods' sandbox namespaces.
	ncSandboxNetNSDir = "/run/netns"
	ncPrefix          = "skiffnc-"
)

// netClusterOpts shapes a cluster; the zero value is 1 server node + 2 agents.
type netClusterOpts struct {
	Agents             int      // number of `skiff agent` hosts; 0 means 2
	ServerArgs         []string // more `skiff server` flags, e.g. "--pod-network=host-gw"
	AgentArgs          []string // more `skiff agent` flags, for every agent
	DisableServerAgent bool     // `skiff server --disable-agent`: the server host is not a node
}

// ncHost is one host: its namespace and, for server and agents, the skiff
// process running in it.
type ncHost struct {
	Name       string // "server", "agent-1", …, "client"; also its node name
	IP         string
	NetNS      string // /run/skiffnc/skiffnc-…
	dataDir    string // --data-dir ("" for the client)
	cgroupRoot string // --cgroup-root
	args       []string
	node       bool // runs an agent: a node of the cluster

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
	log    *syncBuffer // this run's output
	logs   []string    // output of earlier runs (before restarts)
}

// netCluster is a running multi-host cluster; see startNetCluster.
type netCluster struct {
	t          *testing.T
	name       string // skiffnc-<pid>-<n>
	dir        string // $TMPDIR/skiffnc-<pid>-<n>
	switchNS   string
	kubeconfig string // admin kubeconfig whose server is https://198.51.100.10:6443
	token      string

	Server  *ncHost
	Agents  []*ncHost // agent-1, agent-2, …
	ClientH *ncHost   // the client host outside the cluster

	hosts         []*ncHost // every host, switch excluded
	stopOnce      sync.Once
	stopNodesOnce sync.Once
	podUIDs       map[string]bool // pods seen before teardown: their sandbox netns must be gone
}

var ncSeq atomic.Int32

// startNetCluster builds the hosts, starts skiff in them and waits until
// every node is Ready and the default ServiceAccount exists. Everything is
// torn down when the test ends, also when it fails (nc.Stop does it earlier).
func startNetCluster(t *testing.T, opts netClusterOpts) *netCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the multi-node harness needs root (network namespaces, agents)")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter (util-linux) is not installed")
	}
	ncCleanStale(t)
	if opts.Agents <= 0 {
		opts.Agents = 2
	}
	nc := &netCluster{t: t, name: fmt.Sprintf("%s%d-%d", ncPrefix, os.Getpid(), ncSeq.Add(1))}
	nc.dir = filepath.Join(os.TempDir(), nc.name)
	if err := os.MkdirAll(nc.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	nc.kubeconfig = filepath.Join(nc.dir, "kubeconfig.yaml")
	// Registered before anything exists, so a failure half-way is undone.
	t.Cleanup(nc.Stop)

	nc.Server = nc.newHost(ncServer, ncServerIP, !opts.DisableServerAgent)
	for i := 1; i <= opts.Agents; i++ {
		nc.Agents = append(nc.Agents, nc.newHost(fmt.Sprintf("agent-%d", i), fmt.Sprintf("198.51.100.%d", 10+i), true))
	}
	nc.ClientH = nc.newHost(ncClient, ncClientIP, false)
	if err := nc.buildNetwork(); err != nil {
		t.Fatalf("multi-node harness network: %v", err)
	}

	// The server.
	s := nc.Server
	s.dataDir = filepath.Join(nc.dir, s.Name, "data")
	s.args = []string{"server", "--data-dir", s.dataDir, "--write-kubeconfig", filepath.Join(nc.dir, s.Name, "kubeconfig.yaml"),
		"--node-ip", s.IP, "--node-name", s.Name, "--cgroup-root", s.cgroupRoot}
	if !s.node {
		s.args = append(s.args, "--disable-agent")
	}
	s.args = append(s.args, opts.ServerArgs...)
	nc.linkTestImage(s)
	nc.start(s)
	nc.waitServer()

	// The agents, joined with the server's token over the bridge.
	tok, err := os.ReadFile(filepath.Join(s.dataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	nc.token = strings.TrimSpace(string(tok))
	for _, a := range nc.Agents {
		a.dataDir = filepath.Join(nc.dir, a.Name, "data")
		a.args = append([]string{"agent", "--server", "https://" + net.JoinHostPort(ncServerIP, "6443"), "--token", nc.token,
			"--data-dir", a.dataDir, "--node-name", a.Name, "--node-ip", a.IP, "--cgroup-root", a.cgroupRoot}, opts.AgentArgs...)
		nc.linkTestImage(a)
		nc.start(a)
	}
	for _, h := range nc.Nodes() {
		nc.waitNodeReady(h.Name, 120*time.Second)
	}
	nc.eventually(60*time.Second, "ServiceAccount default/default", func() bool {
		_, err := nc.Client().CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil
	})
	return nc
}

func (nc *netCluster) newHost(name, ip string, node bool) *ncHost {
	h := &ncHost{Name: name, IP: ip, NetNS: filepath.Join(ncNetNSDir, nc.name+"-"+name), node: node}
	if name != ncClient {
		h.cgroupRoot = nc.name + "-" + name
	}
	nc.hosts = append(nc.hosts, h)
	return h
}

// linkTestImage puts the busybox test image in the host's air-gap import
// directory.
func (nc *netCluster) linkTestImage(h *ncHost) {
	nc.t.Helper()
	dir := filepath.Join(h.dataDir, "agent", "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		nc.t.Fatal(err)
	}
	if err := os.Link(busyboxImageTar(nc.t), filepath.Join(dir, "busybox.tar")); err != nil {
		nc.t.Fatal(err)
	}
}

// buildNetwork makes the switch and host namespaces and wires them.
func (nc *netCluster) buildNetwork() error {
	nc.switchNS = filepath.Join(ncNetNSDir, nc.name+"-sw")
	if err := ncNewNetNS(nc.switchNS); err != nil {
		return err
	}
	sw, err := ncHandle(nc.switchNS)
	if err != nil {
		return err
	}
	defer sw.Close()
	if err := ncLinkUp(sw, "lo"); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := sw.LinkAdd(br); err != nil {
		return fmt.Errorf("switch bridge: %w", err)
	}
	if err := ncLinkUp(sw, "br0"); err != nil {
		return err
	}
	brLink, err := sw.LinkByName("br0")
	if err != nil {
		return err
	}
	for i, h := range nc.hosts {
		if err := ncNewNetNS(h.NetNS); err != nil {
			return err
		}
		if err := nc.wireHost(sw, brLink, h, i); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	return nil
}

// wireHost creates the host's veth pair in the switch namespace with its
// peer ("eth0") directly in the host's namespace, and configures the host.
func (nc *netCluster) wireHost(sw *netlink.Handle, br netlink.Link, h *ncHost, i int) error {
	fd, err := unix.Open(h.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	port := fmt.Sprintf("p%d", i)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(fd)}
	if err := sw.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	if err := ncLinkUp(sw, port); err != nil {
		return err
	}
	hh, err := ncHandle(h.NetNS)
	if err != nil {
		return err
	}
	defer hh.Close()
	if err := ncLinkUp(hh, "lo"); err != nil {
		return err
	}
	eth0, err := hh.LinkByName("eth0")
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", h.IP, ncPrefixLen))
	if err != nil {
		return err
	}
	if err := hh.AddrAdd(eth0, addr); err != nil {
		return fmt.Errorf("address: %w", err)
	}
	if err := hh.LinkSetUp(eth0); err != nil {
		return err
	}
	gw := net.ParseIP(ncGatewayIP)
	if err := hh.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw, Protocol: unix.RTPROT_BOOT}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

func ncLinkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return h.LinkSetUp(l)
}

// ncHandle is a netlink handle whose socket is in the namespace at path.
func ncHandle(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// ncNewNetNS creates a network namespace bound at path (as `ip netns
// add` does) from a throw-away locked OS thread: the calling thread, and so
// the test process, never leaves its own namespace.
func ncNewNetNS(path string) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- func() error {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
			if err != nil {
				return err
			}
			f.Close()
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				os.Remove(path)
				return fmt.Errorf("unshare: %w", err)
			}
			self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
				os.Remove(path)
				return fmt.Errorf("bind %s: %w", path, err)
			}
			return nil
		}()
	}()
	return <-errc
}

// ncDeleteNetNS unbinds a namespace made by ncNewNetNS; the kernel
// frees it (and its links: a veth goes with either end) once no process
// holds it.
func ncDeleteNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// start runs the host's skiff command inside its namespace.
func (nc *netCluster) start(h *ncHost) {
	nc.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.log != nil {
		h.logs = append(h.logs, h.log.String())
	}
	h.log = &syncBuffer{}
	h.cmd = exec.Command("nsenter", append([]string{"--net=" + h.NetNS, "--", skiffBin}, h.args...)...)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		nc.t.Fatalf("start %s: %v", h.Name, err)
	}
	h.exited = make(chan error, 1)
	cmd, exited := h.cmd, h.exited
	go func() { exited <- cmd.Wait() }()
}

// stop sends sig (SIGTERM: a clean stop that leaves the pods running, as
// an agent upgrade does; SIGKILL: a crash) and waits for the exit.
func (h *ncHost) stop(sig syscall.Signal) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return nil
	}
	defer func() { h.cmd = nil }()
	// nsenter execs skiff: the process is skiff itself.
	_ = h.cmd.Process.Signal(sig)
	select {
	case err := <-h.exited:
		if sig == syscall.SIGKILL {
			return nil
		}
		return err
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
		return fmt.Errorf("%s did not stop within 30s of %v", h.Name, sig)
	}
}

// running reports whether the host's skiff process is alive.
func (h *ncHost) running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return false
	}
	select {
	case err := <-h.exited:
		h.exited <- err
		return false
	default:
		return true
	}
}

// Log is the host's skiff output (all runs, restarts included).
func (h *ncHost) Log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := strings.Join(h.logs, "\n--- restarted ---\n")
	if h.log != nil {
		if s != "" {
			s += "\n--- restarted ---\n"
		}
		s += h.log.String()
	}
	return s
}

// waitServer waits for the API on 198.51.100.10:6443 (reached inside the
// server's namespace) and writes the harness's kubeconfig, which names that
// address: the server certificate must carry the node IP.
func (nc *netCluster) waitServer() {
	nc.t.Helper()
	s := nc.Server
	written := filepath.Join(nc.dir, s.Name, "kubeconfig.yaml")
	insecure := nc.httpClient(s.Name, 2*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if !s.running() {
			nc.t.Fatalf("skiff server exited early\n%s", tail(s.Log(), 6000))
		}
		if _, err := os.Stat(written); err == nil {
			if resp, err := insecure.Get("https://" + net.JoinHostPort(ncServerIP, "6443") + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			nc.t.Fatalf("skiff server not ready in 60s\n%s", tail(s.Log(), 6000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	cfg, err := clientcmd.LoadFromFile(written)
	if err != nil {
		nc.t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + net.JoinHostPort(ncServerIP, "6443")
	}
	if err := clientcmd.WriteToFile(*cfg, nc.kubeconfig); err != nil {
		nc.t.Fatal(err)
	}
}

// Kubeconfig is the admin kubeconfig (server https://198.51.100.10:6443,
// reachable from any host namespace, not from the test's own).
func (nc *netCluster) Kubeconfig() string { return nc.kubeconfig }

// RESTConfig is the admin config whose connections are made inside the
// server's namespace.
func (nc *netCluster) RESTConfig() *rest.Config {
	nc.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", nc.kubeconfig)
	if err != nil {
		nc.t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	ns := nc.Server.NetNS
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return runtime.DialInNetNS(ctx, ns, network, addr)
	}
	return cfg
}

// Client is a client-go client for the cluster.
func (nc *netCluster) Client() kubernetes.Interface {
	nc.t.Helper()
	return kubernetes.NewForConfigOrDie(nc.RESTConfig())
}

// Kubectl runs upstream kubectl in the server's namespace with the
// harness's kubeconfig. It returns stdout; the error carries stderr.
func (nc *netCluster) Kubectl(args ...string) (string, error) {
	return nc.KubectlIn("", args...)
}

// KubectlIn is Kubectl with stdin (e.g. a manifest for `apply -f -`).
func (nc *netCluster) KubectlIn(stdin string, args ...string) (string, error) {
	kc, err := exec.LookPath("kubectl")
	if err != nil {
		return "", fmt.Errorf("upstream kubectl is not installed: %w", err)
	}
	return nc.run(nc.Server.NetNS, stdin, 90*time.Second, append([]string{kc, "--kubeconfig", nc.kubeconfig}, args...)...)
}

// MustKubectl fails the test unless kubectl succeeds.
func (nc *netCluster) MustKubectl(stdin string, args ...string) string {
	nc.t.Helper()
	out, err := nc.KubectlIn(stdin, args...)
	if err != nil {
		nc.t.Fatalf("kubectl %s: %v\nstdout:\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Exec runs argv inside the named host's namespace (60 s limit) and returns
// its stdout; the error carries stderr.
func (nc *netCluster) Exec(host string, argv ...string) (string, error) {
	return nc.run(nc.Host(host).NetNS, "", 60*time.Second, argv...)
}

func (nc *netCluster) run(netNS, stdin string, timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netNS, "--"}, argv...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w\nstderr:\n%s", strings.Join(argv, " "), err, errb.String())
	}
	return out.String(), nil
}

// Host returns a host by name ("server", "agent-1", …, "client").
func (nc *netCluster) Host(name string) *ncHost {
	nc.t.Helper()
	for _, h := range nc.hosts {
		if h.Name == name {
			return h
		}
	}
	nc.t.Fatalf("no host %q in the harness", name)
	return nil
}

// Nodes are the hosts that run an agent: the server (unless
// DisableServerAgent) and the agents.
func (nc *netCluster) Nodes() []*ncHost {
	var out []*ncHost
	for _, h := range nc.hosts {
		if h.node {
			out = append(out, h)
		}
	}
	return out
}

// NodeIPs maps each node's name to its IP.
func (nc *netCluster) NodeIPs() map[string]string {
	m := map[string]string{}
	for _, h := range nc.Nodes() {
		m[h.Name] = h.IP
	}
	return m
}

// Dial connects from inside the named host's namespace (addr is a literal
// IP:port).
func (nc *netCluster) Dial(ctx context.Context, fromHost, network, addr string) (net.Conn, error) {
	return runtime.DialInNetNS(ctx, nc.Host(fromHost).NetNS, network, addr)
}

// httpClient makes every connection from inside the host's namespace, a new
// one per request (so a Service's load balancing is seen).
func (nc *netCluster) httpClient(fromHost string, timeout time.Duration) *http.Client {
	ns := nc.Host(fromHost).NetNS
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the API's self-signed CA; a probe, not a client
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return runtime.DialInNetNS(ctx, ns, network, addr)
		},
	}}
}

// HTTPGet fetches url from inside the named host's namespace (5 s limit,
// new connection) with the given Host header ("" for the URL's). A status
// other than 2xx is an error (the body is still returned). The URL's host
// must be a literal IP.
func (nc *netCluster) HTTPGet(fromHost, url, hostHeader string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if hostHeader != "" {
		req.Host = hostHeader
	}
	resp, err := nc.httpClient(fromHost, 5*time.Second).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return string(body), err
	}
	if resp.StatusCode/100 != 2 {
		return string(body), fmt.Errorf("GET %s from %s: %s", url, fromHost, resp.Status)
	}
	return string(body), nil
}

// AddRoute adds a route to cidr via the address via in the named host's
// namespace, e.g. from the client host to a LoadBalancer IP pool through a
// node: nc.AddRoute(ncClient, "203.0.113.0/24", nc.NodeIPs()["agent-1"]).
func (nc *netCluster) AddRoute(host, cidr, via string) {
	nc.t.Helper()
	_, dst, err := net.ParseCIDR(cidr)
	if err != nil {
		nc.t.Fatal(err)
	}
	h, err := ncHandle(nc.Host(host).NetNS)
	if err != nil {
		nc.t.Fatal(err)
	}
	defer h.Close()
	if err := h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(via), Protocol: unix.RTPROT_BOOT}); err != nil {
		nc.t.Fatalf("route %s via %s on %s: %v", cidr, via, host, err)
	}
}

// Leftovers describes what a host's namespace holds beyond what the harness
// made (lo, eth0 with its address, the subnet and default routes, routes
// added with AddRoute): other links, routes and nftables tables, one per
// line; "" when there is nothing. After StopNodes (skiff killall) it should
// be "".
func (nc *netCluster) Leftovers(host string) string {
	nc.t.Helper()
	h := nc.Host(host)
	nh, err := ncHandle(h.NetNS)
	if err != nil {
		nc.t.Fatal(err)
	}
	defer nh.Close()
	var out []string
	links, err := nh.LinkList()
	if err != nil {
		nc.t.Fatal(err)
	}
	for _, l := range links {
		if n := l.Attrs().Name; n != "lo" && n != "eth0" {
			out = append(out, fmt.Sprintf("link %s (%s)", n, l.Type()))
		}
	}
	routes, err := nh.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		nc.t.Fatal(err)
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Protocol == unix.RTPROT_BOOT { // the subnet's, the harness's
			continue
		}
		out = append(out, "route "+r.String())
	}
	ns, err := netns.GetFromPath(h.NetNS)
	if err != nil {
		nc.t.Fatal(err)
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		nc.t.Fatal(err)
	}
	defer conn.CloseLasting()
	tables, err := conn.ListTables()
	if err != nil {
		nc.t.Fatal(err)
	}
	for _, tb := range tables {
		out = append(out, fmt.Sprintf("nftables table %s (family %d)", tb.Name, tb.Family))
	}
	return strings.Join(out, "\n")
}

// StopAgent stops agent i (0-based index into nc.Agents) with SIGTERM, as
// an upgrade does: its pods keep running.
func (nc *netCluster) StopAgent(i int) {
	nc.t.Helper()
	if err := nc.Agents[i].stop(syscall.SIGTERM); err != nil {
		nc.t.Errorf("stopping %s: %v\n%s", nc.Agents[i].Name, err, tail(nc.Agents[i].Log(), 4000))
	}
}

// CrashAgent kills agent i with SIGKILL: its pods keep running.
func (nc *netCluster) CrashAgent(i int) {
	nc.t.Helper()
	_ = nc.Agents[i].stop(syscall.SIGKILL)
}

// StartAgent starts agent i again (after StopAgent or CrashAgent) with the
// same data dir and flags, and waits until its kubelet port answers.
func (nc *netCluster) StartAgent(i int) {
	nc.t.Helper()
	a := nc.Agents[i]
	if a.running() {
		nc.t.Fatalf("%s is running", a.Name)
	}
	nc.start(a)
	nc.eventually(60*time.Second, a.Name+" kubelet port", func() bool {
		if !a.running() {
			nc.t.Fatalf("%s exited after restart\n%s", a.Name, tail(a.Log(), 6000))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := runtime.DialInNetNS(ctx, a.NetNS, "tcp", net.JoinHostPort(a.IP, "10250"))
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// RestartAgent stops agent i cleanly (pods keep running) and starts it
// again.
func (nc *netCluster) RestartAgent(i int) {
	nc.t.Helper()
	nc.StopAgent(i)
	nc.StartAgent(i)
}

// WaitNodeReady waits until the node reports Ready.
func (nc *netCluster) waitNodeReady(name string, timeout time.Duration) {
	nc.t.Helper()
	client := nc.Client()
	nc.eventually(timeout, "node "+name+" Ready", func() bool {
		n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	})
}

// WaitPod waits until the pod satisfies cond and returns it.
func (nc *netCluster) WaitPod(ns, name, what string, timeout time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	nc.t.Helper()
	client := nc.Client()
	var last *corev1.Pod
	var lastErr error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		lastErr = err
		if err != nil {
			return false, nil
		}
		last = p
		return cond(p), nil
	})
	if err != nil {
		nc.t.Fatalf("timed out after %s waiting for pod %s/%s: %s (last: %s, err %v)\n%s",
			timeout, ns, name, what, podSummary(last), lastErr, nc.logTails(3000))
	}
	return last
}

// eventually polls cond every 200ms until it holds, failing the test with
// what (and the processes' logs) after timeout.
func (nc *netCluster) eventually(timeout time.Duration, what string, cond func() bool) {
	nc.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		nc.t.Fatalf("timed out after %s waiting for %s\n%s", timeout, what, nc.logTails(3000))
	}
}

func (nc *netCluster) logTails(n int) string {
	var b strings.Builder
	for _, h := range nc.hosts {
		if h.args != nil {
			fmt.Fprintf(&b, "=== %s log:\n%s\n", h.Name, tail(h.Log(), n))
		}
	}
	return b.String()
}

// Stop tears the cluster down: processes, their containers, mounts and
// cgroups (skiff killall, run inside each host's namespace), the
// namespaces and the data. It checks nothing is left. Idempotent; runs in
// t.Cleanup anyway.
func (nc *netCluster) Stop() {
	nc.stopOnce.Do(nc.teardown)
}

// StopNodes stops every skiff process (agents first, then the server) and
// runs skiff killall inside each host, but keeps the hosts: a test can then
// check what killall left in a host's namespace (h.NetNS, nc.Exec). Stop
// finishes the teardown. Idempotent.
func (nc *netCluster) StopNodes() {
	nc.stopNodesOnce.Do(nc.stopNodes)
}

func (nc *netCluster) stopNodes() {
	t := nc.t
	if t.Failed() {
		t.Logf("multi-node harness logs:\n%s", nc.logTails(8000))
	}
	// The pods' sandboxes must be gone afterwards.
	nc.podUIDs = map[string]bool{}
	if nc.Server != nil && nc.Server.running() && nc.kubeconfig != "" {
		if _, err := os.Stat(nc.kubeconfig); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if pods, err := nc.Client().CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
				for _, p := range pods.Items {
					nc.podUIDs[string(p.UID)] = true
				}
			}
			cancel()
		}
	}
	// Agents first, then the server (its agent with it).
	for i := len(nc.hosts) - 1; i >= 0; i-- {
		h := nc.hosts[i]
		if err := h.stop(syscall.SIGTERM); err != nil {
			t.Errorf("stopping %s: %v\n%s", h.Name, err, tail(h.Log(), 4000))
		}
	}
	for _, h := range nc.hosts {
		if h.dataDir == "" {
			continue
		}
		if _, err := os.Stat(h.NetNS); err != nil {
			t.Errorf("%s: netns %s is gone before killall: %v", h.Name, h.NetNS, err)
			continue
		}
		if out, err := nc.run(h.NetNS, "", 2*time.Minute, skiffBin, "killall", "--data-dir", h.dataDir, "--cgroup-root", h.cgroupRoot); err != nil {
			t.Errorf("skiff killall on %s: %v\n%s", h.Name, err, out)
		}
	}
}

func (nc *netCluster) teardown() {
	t := nc.t
	nc.StopNodes()
	// Nothing may still run in a host: killall stopped host-network pods too.
	for _, h := range nc.hosts {
		if pids := ncPIDsInNetNS(h.NetNS); len(pids) > 0 {
			t.Errorf("processes left in %s after killall: %v", h.Name, pids)
			ncKillPIDs(pids)
		}
	}
	for _, h := range nc.hosts {
		if err := ncDeleteNetNS(h.NetNS); err != nil {
			t.Errorf("delete netns of %s: %v", h.Name, err)
		}
	}
	if nc.switchNS != "" {
		if err := ncDeleteNetNS(nc.switchNS); err != nil {
			t.Errorf("delete switch netns: %v", err)
		}
	}
	nc.checkNothingLeft()
	if err := os.RemoveAll(nc.dir); err != nil {
		t.Errorf("remove %s: %v", nc.dir, err)
	}
}

// checkNothingLeft reports namespaces, mounts and cgroups of this cluster
// that outlived the teardown.
func (nc *netCluster) checkNothingLeft() {
	t := nc.t
	ents, _ := os.ReadDir(ncNetNSDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), nc.name+"-") {
			t.Errorf("netns left behind: %s", e.Name())
		}
	}
	ents, _ = os.ReadDir(ncSandboxNetNSDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "skiff-") {
			uid := strings.TrimSuffix(strings.TrimPrefix(e.Name(), "skiff-"), ".ipc")
			if nc.podUIDs[uid] {
				t.Errorf("pod sandbox namespace left behind: %s", e.Name())
			}
		}
	}
	if ms := runtimetest.MountsUnder(t, nc.dir); len(ms) > 0 {
		t.Errorf("mounts left under %s: %v", nc.dir, ms)
	}
	for _, h := range nc.hosts {
		if h.cgroupRoot == "" {
			continue
		}
		for _, d := range runtimetest.CgroupDirs(t, h.cgroupRoot) {
			if _, err := os.Stat(d); err == nil {
				t.Errorf("cgroup left behind: %s", d)
			}
		}
	}
}

// ncPIDsInNetNS lists the processes whose network namespace is the one bound
// at path.
func ncPIDsInNetNS(path string) []int {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return nil
	}
	var out []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+p.Name()+"/ns/net", &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			out = append(out, pid)
		}
	}
	return out
}

func ncKillPIDs(pids []int) {
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for unix.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

var ncStaleRE = regexp.MustCompile(`^skiffnc-(\d+)-(\d+)`)

// ncCleanStale removes what a killed test binary left: for each
// skiffnc-<pid>-<n> whose pid is dead, it kills what still runs in its
// namespaces, runs skiff killall for each host's data dir and cgroup root
// (inside the host's namespace, or a scratch one if that is gone, never in
// the test's own), and deletes the namespaces and the directory.
func ncCleanStale(t *testing.T) {
	t.Helper()
	stale := map[string]bool{}
	isStale := func(name string) bool {
		m := ncStaleRE.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			return false
		}
		stale[m[0]] = true
		return true
	}
	nsEnts, _ := os.ReadDir(ncNetNSDir)
	for _, e := range nsEnts {
		isStale(e.Name())
	}
	dirEnts, _ := os.ReadDir(os.TempDir())
	for _, e := range dirEnts {
		if e.IsDir() {
			isStale(e.Name())
		}
	}
	for name := range stale {
		t.Logf("cleaning up stale multi-node cluster %s", name)
		var nss []string
		for _, e := range nsEnts {
			if strings.HasPrefix(e.Name(), name+"-") {
				path := filepath.Join(ncNetNSDir, e.Name())
				nss = append(nss, path)
				ncKillPIDs(ncPIDsInNetNS(path))
			}
		}
		dir := filepath.Join(os.TempDir(), name)
		hosts, _ := os.ReadDir(dir)
		scratch := ""
		for _, h := range hosts {
			data := filepath.Join(dir, h.Name(), "data")
			if _, err := os.Stat(data); err != nil {
				continue
			}
			ns := filepath.Join(ncNetNSDir, name+"-"+h.Name())
			if _, err := os.Stat(ns); err != nil {
				if scratch == "" {
					scratch = filepath.Join(ncNetNSDir, name+"-scratch")
					if err := ncNewNetNS(scratch); err != nil {
						t.Errorf("stale cleanup: %v", err)
						continue
					}
					nss = append(nss, scratch)
				}
				ns = scratch
			}
			cmd := exec.Command("nsenter", "--net="+ns, "--", skiffBin, "killall", "--data-dir", data, "--cgroup-root", name+"-"+h.Name())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("stale cleanup: skiff killall %s: %v\n%s", data, err, out)
			}
		}
		for _, ns := range nss {
			if err := ncDeleteNetNS(ns); err != nil {
				t.Logf("stale cleanup: %v", err)
			}
		}
		for _, m := range runtimetest.MountsUnder(t, dir) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("stale cleanup: %v", err)
		}
	}
}
