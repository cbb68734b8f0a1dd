// Package network is the pod network of one node: a Linux bridge (skiff0 by
// default) carrying the node's pod CIDR gateway (.1), one veth pair per pod
// (host side on the bridge, pod side eth0 in the pod's network namespace), and
// a file-backed IPAM that hands out the pod addresses.
//
// Everything is done with netlink (github.com/vishvananda/netlink); nothing
// shells out. The "host" side is configured through a netlink handle opened in
// Config.HostNetNS, so tests run entirely inside namespaces they create.
//
// Out of scope here (plug points): cross-node routes (host-gw) or a VXLAN
// device with FDB/neighbour entries go beside EnsureBridge in the host
// namespace, keyed by the peer nodes' podCIDRs; masquerade of traffic leaving
// the cluster CIDR and ip_forward belong to the agent / proxy (nftables).
package network
