// Package agent is skiff's node half, the kubelet of a skiff cluster: it
// joins a server with a token, registers its Node and keeps the node's lease,
// runs the pods bound to it through libcontainer, and serves their logs,
// exec, attach and port-forward to the API server on the kubelet port.
//
// A `skiff server` runs the same agent in-process (unless --disable-agent),
// joining its own API over loopback with its own token, so one command gives
// a one-node cluster.
//
// Everything lives under DATA/agent (see DESIGN.md): tls/ and
// kubelet.kubeconfig from the join, image-store/ and images/ (air-gap tars),
// containers/ (runtime state), pods/<uid>/ (volumes, logs) and run/.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Defaults, as the kubelet's.
const (
	DefaultKubeletPort = 10250
	DefaultCgroupRoot  = "skiff"
	// KubeletVersion is what the node reports; it follows the API version
	// the server answers as.
	KubeletVersion = "v1.32.0"
)

// Config is the typed form of `skiff agent` flags (and of the agent half
// of `skiff server`).
type Config struct {
	DataDir   string // DATA; the agent keeps its state in DATA/agent
	ServerURL string // https://HOST:6443
	Token     string // K10… join token
	NodeName  string // default: the host name
	NodeIP    string // InternalIP; default: the default route's address
	// NodeLabels and NodeTaints are applied when the node registers
	// (--node-label, --node-taint).
	NodeLabels map[string]string
	NodeTaints []corev1.Taint
	// ControlPlane marks the server's own node with the k3s role labels.
	ControlPlane bool
	KubeletPort  int
	// ClusterDNS and ClusterDomain go into pods' resolv.conf and /etc/hosts
	// (empty ClusterDNS: the host's resolvers, until cluster DNS exists).
	ClusterDNS    []string
	ClusterDomain string
	// InsecureRegistries may be reached over plain HTTP.
	InsecureRegistries []string
	// CgroupRoot is the cgroup under which every pod's cgroup lives
	// (default "skiff"); two agents on one host need different roots.
	CgroupRoot string
	// DisableProxy runs no Service proxy on the node (no nftables table):
	// `--disable-kube-proxy`, for clusters that bring their own.
	DisableProxy bool
	Logger       *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return errors.New("agent: no data dir")
	}
	if c.ServerURL == "" {
		return errors.New("agent: --server is required")
	}
	if c.Token == "" {
		return errors.New("agent: --token is required")
	}
	if c.KubeletPort == 0 {
		c.KubeletPort = DefaultKubeletPort
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = DefaultCgroupRoot
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("agent: node name: %w", err)
		}
		c.NodeName = strings.ToLower(h)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Dir is where the agent keeps its state under a data dir.
func Dir(dataDir string) string { return filepath.Join(dataDir, "agent") }
