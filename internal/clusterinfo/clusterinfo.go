// Package clusterinfo is what every agent must know about the cluster and
// cannot learn from its own flags: the pod and service ranges, the pod
// network backend, and cluster DNS. The server publishes it, from its own
// configuration, in the ConfigMap kube-system/skiff-cluster; agents read it
// after joining (k3s hands the same settings to agents in its join
// response instead).
//
// The ConfigMap's data keys:
//
//	clusterCIDR    10.42.0.0/16
//	serviceCIDR    10.43.0.0/16
//	podNetwork     vxlan | host-gw
//	clusterDNS     10.43.0.10
//	clusterDomain  cluster.local
package clusterinfo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Where the information lives.
const (
	Namespace = "kube-system"
	Name      = "skiff-cluster"
)

// Pod network backends (skiff server --pod-network, as k3s's
// --flannel-backend).
const (
	PodNetworkVXLAN  = "vxlan"
	PodNetworkHostGW = "host-gw"
)

// Data keys of the ConfigMap.
const (
	keyClusterCIDR   = "clusterCIDR"
	keyServiceCIDR   = "serviceCIDR"
	keyPodNetwork    = "podNetwork"
	keyClusterDNS    = "clusterDNS"
	keyClusterDomain = "clusterDomain"
)

// ErrNotPublished is returned by Get when the ConfigMap does not exist
// (a server that has not started yet, or one too old to publish it).
var ErrNotPublished = errors.New("cluster information not published")

// ErrMalformed is returned by Get when the ConfigMap exists but a key is
// missing or invalid.
var ErrMalformed = errors.New("malformed")

// Info is what agents must know about the cluster.
type Info struct {
	ClusterCIDR   netip.Prefix // pod IPs; each node's podCIDR is cut from it
	ServiceCIDR   netip.Prefix // service virtual IPs
	PodNetwork    string       // PodNetworkVXLAN or PodNetworkHostGW
	ClusterDNS    netip.Addr   // the cluster DNS service's IP
	ClusterDomain string       // "cluster.local"
}

// ValidPodNetwork reports whether s names a pod network backend.
func ValidPodNetwork(s string) bool { return s == PodNetworkVXLAN || s == PodNetworkHostGW }

// Validate reports every missing or invalid field.
func (i Info) Validate() error {
	var errs []error
	if !i.ClusterCIDR.IsValid() {
		errs = append(errs, errors.New("cluster CIDR is not set"))
	}
	if !i.ServiceCIDR.IsValid() {
		errs = append(errs, errors.New("service CIDR is not set"))
	}
	if !ValidPodNetwork(i.PodNetwork) {
		errs = append(errs, fmt.Errorf("pod network %q: want %s or %s", i.PodNetwork, PodNetworkVXLAN, PodNetworkHostGW))
	}
	if !i.ClusterDNS.IsValid() {
		errs = append(errs, errors.New("cluster DNS is not set"))
	}
	if i.ClusterDomain == "" {
		errs = append(errs, errors.New("cluster domain is not set"))
	}
	return errors.Join(errs...)
}

func (i Info) data() map[string]string {
	return map[string]string{
		keyClusterCIDR:   i.ClusterCIDR.String(),
		keyServiceCIDR:   i.ServiceCIDR.String(),
		keyPodNetwork:    i.PodNetwork,
		keyClusterDNS:    i.ClusterDNS.String(),
		keyClusterDomain: i.ClusterDomain,
	}
}

// Publish creates the ConfigMap, or updates it when its data differs
// from info (keys it does not know are dropped).
func Publish(ctx context.Context, c kubernetes.Interface, info Info) error {
	if err := info.Validate(); err != nil {
		return fmt.Errorf("clusterinfo: %w", err)
	}
	api := c.CoreV1().ConfigMaps(Namespace)
	want := info.data()
	cur, err := api.Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace}, Data: want}
		_, err = api.Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("clusterinfo: create %s/%s: %w", Namespace, Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("clusterinfo: get %s/%s: %w", Namespace, Name, err)
	}
	if maps.Equal(cur.Data, want) {
		return nil
	}
	cur = cur.DeepCopy()
	cur.Data = want
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("clusterinfo: update %s/%s: %w", Namespace, Name, err)
	}
	return nil
}

// Get reads and checks the published information. A missing ConfigMap is
// ErrNotPublished; a malformed one names every bad key.
func Get(ctx context.Context, c kubernetes.Interface) (Info, error) {
	cm, err := c.CoreV1().ConfigMaps(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Info{}, fmt.Errorf("clusterinfo: ConfigMap %s/%s not found: %w", Namespace, Name, ErrNotPublished)
	}
	if err != nil {
		return Info{}, fmt.Errorf("clusterinfo: get %s/%s: %w", Namespace, Name, err)
	}
	info, err := parse(cm.Data)
	if err != nil {
		return Info{}, fmt.Errorf("clusterinfo: ConfigMap %s/%s is %w: %w", Namespace, Name, ErrMalformed, err)
	}
	return info, nil
}

// Wait calls Get every interval until it succeeds, fails with
// ErrMalformed (no use waiting), or ctx ends; an agent that starts before
// its server is up waits here. The last error is wrapped in the ctx error.
func Wait(ctx context.Context, c kubernetes.Interface, interval time.Duration) (Info, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		info, err := Get(ctx, c)
		if err == nil || errors.Is(err, ErrMalformed) {
			return info, err
		}
		select {
		case <-ctx.Done():
			return Info{}, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func parse(d map[string]string) (Info, error) {
	var (
		info Info
		errs []error
	)
	prefix := func(key string) netip.Prefix {
		p, err := netip.ParsePrefix(d[key])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: not a CIDR", key, d[key]))
			return netip.Prefix{}
		}
		return p.Masked()
	}
	info.ClusterCIDR = prefix(keyClusterCIDR)
	info.ServiceCIDR = prefix(keyServiceCIDR)
	info.PodNetwork = d[keyPodNetwork]
	if !ValidPodNetwork(info.PodNetwork) {
		errs = append(errs, fmt.Errorf("%s %q: want %s or %s", keyPodNetwork, info.PodNetwork, PodNetworkVXLAN, PodNetworkHostGW))
	}
	if a, err := netip.ParseAddr(d[keyClusterDNS]); err != nil {
		errs = append(errs, fmt.Errorf("%s %q: not an IP address", keyClusterDNS, d[keyClusterDNS]))
	} else {
		info.ClusterDNS = a
	}
	info.ClusterDomain = d[keyClusterDomain]
	if info.ClusterDomain == "" {
		errs = append(errs, fmt.Errorf("%s is empty", keyClusterDomain))
	}
	return info, errors.Join(errs...)
}
