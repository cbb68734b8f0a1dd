// Package server is the control-plane half of a skiff process: it opens the
// store, loads or creates the PKI, and serves the Kubernetes API over HTTPS.
// The agent half (issue 4) is built by its own package; cli composes them.
package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/internal/clusterinfo"
)

// Config is the typed form of `skiff server` flags.
type Config struct {
	DataDir             string // DATA: server state lives in DATA/server
	BindAddress         string // address the API listens on (0.0.0.0)
	HTTPSPort           int    // 6443
	WriteKubeconfig     string // admin kubeconfig path ("" = don't write)
	WriteKubeconfigMode os.FileMode
	Token               string // join token or bare secret; "" = generate once
	NodeName            string
	NodeIP              string // advertised address; "" = default route's address
	ClusterCIDR         string
	ServiceCIDR         string
	ClusterDNS          string
	ClusterDomain       string
	NodePortRange       string // "30000-32767"
	DatastoreEndpoint   string // "" = bbolt in DATA/server/db
	PodNetwork          string // "vxlan" (default) or "host-gw", as k3s --flannel-backend
	LBIPPool            string // CIDR LoadBalancer VIPs come from; "" = the nodes' addresses (ServiceLB)

	// Control-plane tuning, named after the kube-controller-manager and
	// kube-apiserver flags they mirror.
	NodeMonitorGracePeriod              time.Duration // 40s: lease age after which a node is Unknown
	NodeMonitorPeriod                   time.Duration // 5s: how often node health is checked
	DefaultNotReadyTolerationSeconds    int64         // 300
	DefaultUnreachableTolerationSeconds int64         // 300
	EventTTL                            time.Duration // 1h
	DisableScheduler                    bool
	DisableControllerManager            bool
}

// Defaults mirror k3s.
const (
	DefaultDataDir       = "/var/lib/skiff"
	DefaultKubeconfig    = "/etc/skiff/skiff.yaml"
	DefaultServiceCIDR   = "10.43.0.0/16"
	DefaultClusterCIDR   = "10.42.0.0/16"
	DefaultClusterDNS    = "10.43.0.10"
	DefaultClusterDomain = "cluster.local"
	DefaultNodePortRange = "30000-32767"
	DefaultPodNetwork    = clusterinfo.PodNetworkVXLAN

	DefaultNodeMonitorGracePeriod = 40 * time.Second
	DefaultNodeMonitorPeriod      = 5 * time.Second
	DefaultTolerationSeconds      = 300
	DefaultEventTTL               = time.Hour
)

// resolved holds the parsed and derived settings.
type resolved struct {
	serviceCIDR   netip.Prefix
	clusterCIDR   netip.Prefix
	apiServiceIP  netip.Addr // first address of the service CIDR (10.43.0.1)
	nodePortFirst int
	nodePortLast  int
	advertiseIP   net.IP
	nodeName      string
	clusterDNS    netip.Addr
	lbIPPool      netip.Prefix // invalid = hand out node addresses
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.BindAddress == "" {
		c.BindAddress = "0.0.0.0"
	}
	if c.HTTPSPort == 0 {
		c.HTTPSPort = 6443
	}
	if c.WriteKubeconfigMode == 0 {
		c.WriteKubeconfigMode = 0o600
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = DefaultServiceCIDR
	}
	if c.ClusterCIDR == "" {
		c.ClusterCIDR = DefaultClusterCIDR
	}
	if c.ClusterDNS == "" {
		c.ClusterDNS = DefaultClusterDNS
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	if c.NodePortRange == "" {
		c.NodePortRange = DefaultNodePortRange
	}
	if c.PodNetwork == "" {
		c.PodNetwork = DefaultPodNetwork
	}
	if c.NodeMonitorGracePeriod == 0 {
		c.NodeMonitorGracePeriod = DefaultNodeMonitorGracePeriod
	}
	if c.NodeMonitorPeriod == 0 {
		c.NodeMonitorPeriod = DefaultNodeMonitorPeriod
	}
	if c.DefaultNotReadyTolerationSeconds == 0 {
		c.DefaultNotReadyTolerationSeconds = DefaultTolerationSeconds
	}
	if c.DefaultUnreachableTolerationSeconds == 0 {
		c.DefaultUnreachableTolerationSeconds = DefaultTolerationSeconds
	}
	if c.EventTTL == 0 {
		c.EventTTL = DefaultEventTTL
	}
}

func (c *Config) resolve() (resolved, error) {
	var r resolved
	var errs []error
	if c.HTTPSPort < 1 || c.HTTPSPort > 65535 {
		errs = append(errs, fmt.Errorf("--https-listen-port %d: must be 1-65535", c.HTTPSPort))
	}
	if net.ParseIP(c.BindAddress) == nil {
		errs = append(errs, fmt.Errorf("--bind-address %q: not an IP address", c.BindAddress))
	}
	svc, err := netip.ParsePrefix(c.ServiceCIDR)
	if err != nil || !svc.Addr().Is4() || svc.Bits() > 30 {
		errs = append(errs, fmt.Errorf("--service-cidr %q: need an IPv4 CIDR of /30 or larger", c.ServiceCIDR))
	} else {
		r.serviceCIDR = svc.Masked()
		r.apiServiceIP = r.serviceCIDR.Addr().Next()
	}
	if p, err := netip.ParsePrefix(c.ClusterCIDR); err != nil || !p.Addr().Is4() || p.Bits() > 24 {
		errs = append(errs, fmt.Errorf("--cluster-cidr %q: need an IPv4 CIDR of /24 or larger (each node gets a /24)", c.ClusterCIDR))
	} else {
		r.clusterCIDR = p.Masked()
		if r.serviceCIDR.IsValid() && r.clusterCIDR.Overlaps(r.serviceCIDR) {
			errs = append(errs, fmt.Errorf("--cluster-cidr %s overlaps --service-cidr %s", r.clusterCIDR, r.serviceCIDR))
		}
	}
	if c.NodeMonitorGracePeriod < time.Second {
		errs = append(errs, fmt.Errorf("--node-monitor-grace-period %s: must be at least 1s", c.NodeMonitorGracePeriod))
	}
	if c.NodeMonitorPeriod < 100*time.Millisecond || c.NodeMonitorPeriod >= c.NodeMonitorGracePeriod {
		errs = append(errs, fmt.Errorf("--node-monitor-period %s: must be at least 100ms and shorter than --node-monitor-grace-period %s", c.NodeMonitorPeriod, c.NodeMonitorGracePeriod))
	}
	if c.DefaultNotReadyTolerationSeconds < 0 || c.DefaultUnreachableTolerationSeconds < 0 {
		errs = append(errs, errors.New("--default-not-ready-toleration-seconds and --default-unreachable-toleration-seconds must not be negative"))
	}
	if c.EventTTL < time.Second {
		errs = append(errs, fmt.Errorf("--event-ttl %s: must be at least 1s", c.EventTTL))
	}
	if ip, err := netip.ParseAddr(c.ClusterDNS); err != nil || (r.serviceCIDR.IsValid() && !r.serviceCIDR.Contains(ip)) {
		errs = append(errs, fmt.Errorf("--cluster-dns %q: need an IP inside --service-cidr", c.ClusterDNS))
	} else {
		r.clusterDNS = ip
	}
	if !clusterinfo.ValidPodNetwork(c.PodNetwork) {
		errs = append(errs, fmt.Errorf("--pod-network %q: want %s or %s", c.PodNetwork, clusterinfo.PodNetworkVXLAN, clusterinfo.PodNetworkHostGW))
	}
	if c.LBIPPool != "" {
		p, err := netip.ParsePrefix(c.LBIPPool)
		switch {
		case err != nil || !p.Addr().Is4():
			errs = append(errs, fmt.Errorf("--lb-ip-pool %q: need an IPv4 CIDR", c.LBIPPool))
		case r.serviceCIDR.IsValid() && p.Overlaps(r.serviceCIDR):
			errs = append(errs, fmt.Errorf("--lb-ip-pool %s overlaps --service-cidr %s", p.Masked(), r.serviceCIDR))
		case r.clusterCIDR.IsValid() && p.Overlaps(r.clusterCIDR):
			errs = append(errs, fmt.Errorf("--lb-ip-pool %s overlaps --cluster-cidr %s", p.Masked(), r.clusterCIDR))
		default:
			r.lbIPPool = p.Masked()
		}
	}
	first, last, err := parsePortRange(c.NodePortRange)
	if err != nil {
		errs = append(errs, fmt.Errorf("--service-node-port-range %q: %w", c.NodePortRange, err))
	}
	r.nodePortFirst, r.nodePortLast = first, last
	if c.DatastoreEndpoint != "" {
		errs = append(errs, fmt.Errorf("--datastore-endpoint %q: only the built-in bbolt datastore is supported in this version", c.DatastoreEndpoint))
	}
	if c.NodeIP != "" {
		if r.advertiseIP = net.ParseIP(c.NodeIP); r.advertiseIP == nil || r.advertiseIP.To4() == nil {
			errs = append(errs, fmt.Errorf("--node-ip %q: not an IPv4 address", c.NodeIP))
		}
	} else {
		r.advertiseIP = defaultRouteIP()
	}
	r.nodeName = c.NodeName
	if r.nodeName == "" {
		h, _ := os.Hostname()
		r.nodeName = strings.ToLower(h)
	}
	return r, errors.Join(errs...)
}

func parsePortRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, errors.New("want FIRST-LAST")
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || first < 1 || last > 65535 || first > last {
		return 0, 0, errors.New("want FIRST-LAST within 1-65535")
	}
	return first, last, nil
}

func (c *Config) serverDir() string { return filepath.Join(c.DataDir, "server") }

// defaultRouteIP is the IPv4 address of the interface holding the default
// route, or 127.0.0.1 on a host without one.
func defaultRouteIP() net.IP {
	data, err := os.ReadFile("/proc/net/route")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 3 || f[1] != "00000000" {
				continue
			}
			iface, err := net.InterfaceByName(f[0])
			if err != nil {
				continue
			}
			addrs, _ := iface.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
					return ipn.IP.To4()
				}
			}
		}
	}
	return net.IPv4(127, 0, 0, 1).To4()
}
