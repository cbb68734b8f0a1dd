package network

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
)

// Cleanup removes, in the namespace at hostNetNS ("" = the current one),
// everything the pod network made on a node and nothing else: every route
// with RouteProtocol (any table), the VXLAN device DefaultVXLANDevice (its
// neighbour and FDB entries go with it), every veth whose name starts with
// "skv" (each pod's eth0 goes with it) and the bridge DefaultBridgeName. A
// link of that name but another type is left alone. Idempotent; errors are
// joined and the rest is still removed. IPAM state files are the caller's.
func Cleanup(hostNetNS string) error {
	h, err := openHandle(hostNetNS)
	if err != nil {
		return err
	}
	defer h.Close()
	var errs []error

	routes, err := listOurRoutes(h, 0)
	if err != nil {
		errs = append(errs, fmt.Errorf("network: list routes: %w", err))
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete route %v: %w", r.Dst, err))
		}
	}

	links, err := retryDump(h.LinkList)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("network: list links: %w", err))...)
	}
	// VXLAN device and veths first, the bridge last (its ports are gone by then).
	var bridge netlink.Link
	for _, l := range links {
		a := l.Attrs()
		switch {
		case a.Name == DefaultVXLANDevice && l.Type() == "vxlan",
			strings.HasPrefix(a.Name, vethPrefix) && l.Type() == "veth":
			if err := h.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("network: delete %s: %w", a.Name, err))
			}
		case a.Name == DefaultBridgeName && l.Type() == "bridge":
			bridge = l
		}
	}
	if bridge != nil {
		if err := h.LinkDel(bridge); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("network: delete %s: %w", DefaultBridgeName, err))
		}
	}
	return errors.Join(errs...)
}
