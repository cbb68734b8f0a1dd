// Package network is the pod network of one node: a Linux bridge (skiff0 by
// default) carrying the node's pod CIDR gateway (.1), one veth pair per pod
// (host side on the bridge, pod side eth0 in the pod's network namespace), and
// a file-backed IPAM that hands out the pod addresses.
//
// Routes (routes.go, vxlan.go) reach the other nodes' pod CIDRs, flannel
// style: host-gw (a route per peer via its node IP) or vxlan (a VXLAN device
// with permanent FDB and neighbour entries per peer). Every route skiff
// installs carries RouteProtocol. EnsureSysctls sets ip_forward (and
// bridge-nf-call-iptables where br_netfilter is loaded); Cleanup removes the
// bridge, the veths, the VXLAN device and skiff's routes, nothing else.
//
// Everything is done with netlink (github.com/vishvananda/netlink); nothing
// shells out. The "host" side is configured through a netlink handle opened in
// Config.HostNetNS / RoutesConfig.HostNetNS, so tests run entirely inside
// namespaces they create (cluster_test.go: hosts on a test switch).
//
// Out of scope here: masquerade of traffic leaving the cluster CIDR belongs to
// the proxy (nftables).
package network
