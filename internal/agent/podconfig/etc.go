package podconfig

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func dns1123Label(s string) string { return strings.Join(validation.IsDNS1123Label(s), ";") }

// PodHostname returns the pod's hostname and, with a subdomain, its domain
// ("sub.ns.svc.DOMAIN"), as upstream's GeneratePodHostNameAndDomain; with
// setHostnameAsFQDN the hostname is the FQDN. nodeHostname is used for
// hostNetwork pods.
func PodHostname(pod *corev1.Pod, clusterDomain, nodeHostname string) (hostname, domain string, err error) {
	if pod.Spec.HostNetwork {
		return nodeHostname, "", nil
	}
	hostname, domain, err = podHostnameDomain(pod, clusterDomain)
	if err != nil {
		return "", "", err
	}
	if isTrue(pod.Spec.SetHostnameAsFQDN) && domain != "" {
		fqdn := hostname + "." + domain
		if len(fqdn) > 64 {
			return "", "", fmt.Errorf("failed to construct FQDN from pod hostname and cluster domain, FQDN %s is too long (64 characters is the max, %d characters requested)", fqdn, len(fqdn))
		}
		hostname = fqdn
	}
	return hostname, domain, nil
}

// HostsFile is the kubelet's /etc/hosts for the pod
// (managedHostsFileContent, or nodeHostsFileContent for hostNetwork pods,
// where hostHosts is the node's /etc/hosts): the localhost entries, one line
// per pod IP ("IP\thostname.domain\thostname" when the pod has a subdomain),
// then the pod's hostAliases.
func HostsFile(pod *corev1.Pod, podIPs []string, clusterDomain string, hostHosts []byte) ([]byte, error) {
	var b bytes.Buffer
	if pod.Spec.HostNetwork {
		b.WriteString("# Kubernetes-managed hosts file (host network).\n")
		b.Write(hostHosts)
		b.Write(hostAliasesEntries(pod.Spec.HostAliases))
		return b.Bytes(), nil
	}
	hostname, domain, err := podHostnameDomain(pod, clusterDomain)
	if err != nil {
		return nil, err
	}
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	for _, ip := range podIPs {
		if domain != "" {
			fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", ip, hostname, domain, hostname)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	b.Write(hostAliasesEntries(pod.Spec.HostAliases))
	return b.Bytes(), nil
}

// hostAliasesEntries is upstream's hostsEntriesFromHostAliases.
func hostAliasesEntries(aliases []corev1.HostAlias) []byte {
	if len(aliases) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("\n# Entries added by HostAliases.\n")
	for _, a := range aliases {
		fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	return b.Bytes()
}

// DNSConfig is the node's DNS setup for ResolvConf.
type DNSConfig struct {
	// ClusterDNS are the cluster DNS server IPs (kubelet --cluster-dns);
	// empty: ClusterFirst pods fall back to Default, as upstream.
	ClusterDNS []string
	// ClusterDomain (kubelet --cluster-domain), e.g. "cluster.local".
	ClusterDomain string
	// HostResolvConf is the content of the node's resolv.conf (kubelet
	// --resolv-conf; on systemd-resolved hosts pass
	// /run/systemd/resolve/resolv.conf, not the 127.0.0.53 stub). nil: no
	// host resolver config, as upstream's --resolv-conf="" (Default pods
	// get 127.0.0.1 and search ".").
	HostResolvConf []byte
	// NodeIPs only matter with HostResolvConf nil (127.0.0.1 or ::1).
	NodeIPs []string
}

// ResolvConf is the pod's resolv.conf as upstream's Configurer.GetPodDNS
// builds it (and containerd writes it): by dnsPolicy — ClusterFirst (or
// ClusterFirstWithHostNet; ClusterFirst on hostNetwork means Default): the
// cluster DNS servers only, search "NS.svc.DOMAIN svc.DOMAIN DOMAIN" followed
// by the host's search list, options ndots:5; Default: the host's; None:
// nothing — then the pod's dnsConfig merged in (nameservers and searches
// appended without duplicates, options by name), trimmed to 3 nameservers
// and 32 search domains / 2048 characters.
func ResolvConf(pod *corev1.Pod, cfg DNSConfig) ([]byte, error) {
	servers, searches, options := parseResolvConf(cfg.HostResolvConf)
	hostNetwork := pod.Spec.HostNetwork
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	kind := ""
	switch policy {
	case corev1.DNSNone:
		kind = "none"
	case corev1.DNSClusterFirstWithHostNet:
		kind = "cluster"
	case corev1.DNSClusterFirst:
		kind = "cluster"
		if hostNetwork {
			kind = "host"
		}
	case corev1.DNSDefault:
		kind = "host"
	default:
		return nil, fmt.Errorf("invalid DNSPolicy=%v", policy)
	}
	if kind == "cluster" && len(cfg.ClusterDNS) == 0 {
		kind = "host" // upstream falls back to Default (and records an event)
	}
	switch kind {
	case "none":
		servers, searches, options = nil, nil, nil
	case "cluster":
		servers = append([]string{}, cfg.ClusterDNS...)
		if cfg.ClusterDomain != "" {
			d := cfg.ClusterDomain
			searches = omitDuplicates(append([]string{pod.Namespace + ".svc." + d, "svc." + d, d}, searches...))
		}
		options = []string{"ndots:5"}
	case "host":
		if cfg.HostResolvConf == nil {
			for _, ip := range cfg.NodeIPs {
				if strings.Contains(ip, ":") {
					servers = append(servers, "::1")
				} else {
					servers = append(servers, "127.0.0.1")
				}
			}
			if len(servers) == 0 {
				servers = []string{"127.0.0.1"}
			}
			searches = []string{"."}
		}
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		servers = omitDuplicates(append(servers, dc.Nameservers...))
		searches = omitDuplicates(append(searches, dc.Searches...))
		options = mergeDNSOptions(options, dc.Options)
	}
	// formDNSConfigFitsLimits
	if len(servers) > 3 {
		servers = servers[:3]
	}
	if len(searches) > 32 {
		searches = searches[:32]
	}
	for len(searches) > 0 && len(strings.Join(searches, " ")) > 2048 {
		searches = searches[:len(searches)-1]
	}
	var b bytes.Buffer
	if len(searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(searches, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.Bytes(), nil
}

// parseResolvConf is upstream's dns.parseResolvConf: nameservers, the last
// search line (trailing dots trimmed, "." dropped), options.
func parseResolvConf(data []byte) (servers, searches, options []string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 0 && (line[0] == '#' || line[0] == ';') {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) >= 2 {
				servers = append(servers, f[1])
			}
		case "search":
			searches = []string{}
			for _, s := range f[1:] {
				if s != "." {
					searches = append(searches, strings.TrimSuffix(s, "."))
				}
			}
		case "options":
			options = mergeDNSOptions(options, optionsFromStrings(f[1:]))
		}
	}
	return servers, searches, options
}

func optionsFromStrings(ss []string) []corev1.PodDNSConfigOption {
	var out []corev1.PodDNSConfigOption
	for _, s := range ss {
		n, v, ok := strings.Cut(s, ":")
		o := corev1.PodDNSConfigOption{Name: n}
		if ok {
			o.Value = &v
		}
		out = append(out, o)
	}
	return out
}

func omitDuplicates(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// mergeDNSOptions is upstream's mergeDNSOptions: later options replace
// earlier ones of the same name. Upstream's output order is a map's; here
// the first appearance of each name keeps its place.
func mergeDNSOptions(existing []string, add []corev1.PodDNSConfigOption) []string {
	var names []string
	vals := map[string]string{}
	set := func(n, v string) {
		if _, ok := vals[n]; !ok {
			names = append(names, n)
		}
		vals[n] = v
	}
	for _, op := range existing {
		n, v, _ := strings.Cut(op, ":")
		set(n, v)
	}
	for _, op := range add {
		v := ""
		if op.Value != nil {
			v = *op.Value
		}
		set(op.Name, v)
	}
	out := []string{}
	for _, n := range names {
		if vals[n] != "" {
			out = append(out, n+":"+vals[n])
		} else {
			out = append(out, n)
		}
	}
	return out
}

// WritePodFiles writes the pod-level files into podDir (etc-hosts, hostname,
// resolv.conf, as the kubelet and containerd keep them) and returns their
// paths for Options.PodFiles. It rewrites them atomically (rename), so a
// later sync may call it again; bind mounts of a replaced file keep the old
// content, so it only writes when the content changed.
func WritePodFiles(podDir string, hosts, hostname, resolv []byte) (PodFiles, error) {
	pf := PodFiles{
		Hosts:      filepath.Join(podDir, "etc-hosts"),
		Hostname:   filepath.Join(podDir, "hostname"),
		ResolvConf: filepath.Join(podDir, "resolv.conf"),
	}
	if err := os.MkdirAll(podDir, 0o750); err != nil {
		return PodFiles{}, err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{pf.Hosts, hosts}, {pf.Hostname, hostname}, {pf.ResolvConf, resolv}} {
		if old, err := os.ReadFile(f.path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o644); err != nil {
			return PodFiles{}, err
		}
		if err := os.Chmod(tmp, 0o644); err != nil {
			return PodFiles{}, err
		}
		if err := os.Rename(tmp, f.path); err != nil {
			return PodFiles{}, err
		}
	}
	return pf, nil
}

// CreateTerminationLog creates the empty host file for a container's
// termination message (the kubelet: PODDIR/containers/NAME/<random>, a new
// file per start; here one per restart attempt) and returns its path for
// Options.TerminationLogPath.
func CreateTerminationLog(podDir, containerName string, attempt int) (string, error) {
	dir := filepath.Join(podDir, "containers", containerName)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	p := filepath.Join(dir, fmt.Sprintf("termination-log-%d", attempt))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o666)
	if err != nil {
		return "", err
	}
	if err := f.Chmod(0o666); err != nil { // any uid may write its message
		f.Close()
		return "", err
	}
	return p, f.Close()
}
