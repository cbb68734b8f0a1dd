package podconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Upstream TestManagedHostsFileContent / TestRunInContainerNoSuchPod-style
// expectations of managedHostsFileContent and nodeHostsFileContent.
func TestHostsFile(t *testing.T) {
	pod := testPod()
	got, err := HostsFile(pod, []string{"10.42.0.5", "fd00::5"}, "cluster.local", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Kubernetes-managed hosts file.\n" +
		"127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"fe00::0\tip6-mcastprefix\n" +
		"fe00::1\tip6-allnodes\n" +
		"fe00::2\tip6-allrouters\n" +
		"10.42.0.5\tweb-0\n" +
		"fd00::5\tweb-0\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	pod.Spec.Hostname = "h"
	pod.Spec.Subdomain = "sub"
	pod.Spec.HostAliases = []corev1.HostAlias{{IP: "1.2.3.4", Hostnames: []string{"a", "b"}}, {IP: "5.6.7.8", Hostnames: []string{"c"}}}
	got, err = HostsFile(pod, []string{"10.42.0.5"}, "cluster.local", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(got), "fe00::2\tip6-allrouters\n"+
		"10.42.0.5\th.sub.ns1.svc.cluster.local\th\n"+
		"\n# Entries added by HostAliases.\n1.2.3.4\ta\tb\n5.6.7.8\tc\n") {
		t.Errorf("got\n%s", got)
	}

	pod.Spec.HostNetwork = true
	got, _ = HostsFile(pod, nil, "cluster.local", []byte("127.0.0.1 localhost\n"))
	if string(got) != "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n# Entries added by HostAliases.\n1.2.3.4\ta\tb\n5.6.7.8\tc\n" {
		t.Errorf("host network:\n%s", got)
	}

	pod = testPod()
	pod.Spec.Hostname = "Bad_Name"
	if _, err := HostsFile(pod, nil, "cluster.local", nil); err == nil || !strings.HasPrefix(err.Error(), `pod Hostname "Bad_Name" is not a valid DNS label`) {
		t.Errorf("err %v", err)
	}
}

func TestPodHostname(t *testing.T) {
	pod := testPod()
	pod.Name = strings.Repeat("a", 62) + "-.b"
	h, _, err := PodHostname(pod, "cluster.local", "node")
	if err != nil || h != strings.Repeat("a", 62) { // truncated to 63, trailing "-." trimmed
		t.Errorf("%q %v", h, err)
	}
	pod = testPod()
	pod.Spec.Subdomain = "sub"
	pod.Spec.SetHostnameAsFQDN = ptr(true)
	h, d, err := PodHostname(pod, "cluster.local", "node")
	if err != nil || h != "web-0.sub.ns1.svc.cluster.local" || d != "sub.ns1.svc.cluster.local" {
		t.Errorf("%q %q %v", h, d, err)
	}
	pod.Spec.HostNetwork = true
	if h, _, _ := PodHostname(pod, "cluster.local", "node"); h != "node" {
		t.Errorf("host network hostname %q", h)
	}
}

// Upstream pkg/kubelet/network/dns TestGetPodDNS / TestGetPodDNSCustom.
func TestResolvConf(t *testing.T) {
	host := []byte("# generated\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example. lab.example .\noptions rotate timeout:2\n")
	cfg := DNSConfig{ClusterDNS: []string{"10.43.0.10"}, ClusterDomain: "cluster.local", HostResolvConf: host}
	for _, tc := range []struct {
		name   string
		mod    func(*corev1.Pod)
		cfg    DNSConfig
		want   string
		errStr string
	}{
		{"cluster first", nil, cfg,
			"search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n", ""},
		{"empty policy is cluster first", func(p *corev1.Pod) { p.Spec.DNSPolicy = "" }, cfg,
			"search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n", ""},
		{"default", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSDefault }, cfg,
			"search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions rotate timeout:2\n", ""},
		{"cluster first on host network is default", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, cfg,
			"search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions rotate timeout:2\n", ""},
		{"cluster first with host net", func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			p.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
		}, cfg, "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n", ""},
		{"no cluster dns falls back", nil, DNSConfig{ClusterDomain: "cluster.local", HostResolvConf: host},
			"search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions rotate timeout:2\n", ""},
		{"none with dnsConfig", func(p *corev1.Pod) {
			p.Spec.DNSPolicy = corev1.DNSNone
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example"},
				Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("2")}, {Name: "edns0"}}}
		}, cfg, "search a.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n", ""},
		{"cluster first merged", func(p *corev1.Pod) {
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"10.43.0.10", "1.1.1.1", "8.8.8.8", "9.9.9.9"},
				Searches: []string{"cluster.local", "x.example"},
				Options:  []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("1")}, {Name: "single-request"}}}
		}, cfg, "search ns1.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example x.example\nnameserver 10.43.0.10\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions ndots:1 single-request\n", ""},
		{"no host resolv.conf", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSDefault },
			DNSConfig{NodeIPs: []string{"192.168.1.10", "fd00::1"}},
			"search .\nnameserver 127.0.0.1\nnameserver ::1\n", ""},
		{"invalid", func(p *corev1.Pod) { p.Spec.DNSPolicy = "Bogus" }, cfg, "", "invalid DNSPolicy=Bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod()
			pod.Spec.DNSPolicy = corev1.DNSClusterFirst
			if tc.mod != nil {
				tc.mod(pod)
			}
			got, err := ResolvConf(pod, tc.cfg)
			if tc.errStr != "" {
				if err == nil || err.Error() != tc.errStr {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %v\n%s\nwant\n%s", err, got, tc.want)
			}
		})
	}
}

func TestWritePodFilesAndMounts(t *testing.T) {
	dir := t.TempDir()
	pf, err := WritePodFiles(dir, []byte("hosts\n"), []byte("web-0\n"), []byte("nameserver 1.1.1.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(pf.Hosts)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%v %v", fi, err)
	}
	// Unchanged content is not rewritten (same inode: bind mounts stay valid).
	ino := inode(t, pf.Hosts)
	if _, err := WritePodFiles(dir, []byte("hosts\n"), []byte("web-0\n"), []byte("nameserver 1.1.1.1\n")); err != nil {
		t.Fatal(err)
	}
	if inode(t, pf.Hosts) != ino {
		t.Error("unchanged hosts file rewritten")
	}
	tlog, err := CreateTerminationLog(dir, "c", 3)
	if err != nil || tlog != filepath.Join(dir, "containers/c/termination-log-3") {
		t.Fatal(tlog, err)
	}
	pod := testPod(corev1.Container{Name: "c", Command: []string{"x"}, TerminationMessagePath: "/tmp/msg",
		SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr(true)},
		VolumeMounts:    []corev1.VolumeMount{{Name: "v", MountPath: "/etc/resolv.conf"}}})
	spec, err := Build(pod, &pod.Spec.Containers[0], ImageConfig{}, nil, Options{
		PodFiles: pf, TerminationLogPath: tlog,
		Volumes: map[string]Volume{"v": {Name: "v", HostPath: "/srv/resolv"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range spec.Mounts {
		got = append(got, m.Source+">"+m.Destination+map[bool]string{true: ":ro", false: ""}[m.ReadOnly])
	}
	want := []string{"/srv/resolv>/etc/resolv.conf", pf.Hosts + ">/etc/hosts:ro", pf.Hostname + ">/etc/hostname:ro", tlog + ">/tmp/msg"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("mounts\n got %v\nwant %v", got, want)
	}
}
