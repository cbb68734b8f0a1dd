package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-dev/skiff/internal/agent"
	"github.com/skiff-dev/skiff/internal/server"
)

// agentFlags are the node flags `skiff agent` and `skiff server` share.
func agentFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "node-label", Usage: "label to register the node with (KEY=VALUE; repeatable)"},
		&cli.StringSliceFlag{Name: "node-taint", Usage: "taint to register the node with (KEY=VALUE:EFFECT; repeatable)"},
		&cli.IntFlag{Name: "kubelet-port", Value: agent.DefaultKubeletPort, Usage: "port of the node's HTTPS endpoint for logs, exec and port-forward"},
		&cli.StringFlag{Name: "cgroup-root", Value: agent.DefaultCgroupRoot, Usage: "cgroup under which pods run"},
		&cli.StringSliceFlag{Name: "insecure-registry", Usage: "registry (HOST[:PORT]) that may be reached over plain HTTP (repeatable)"},
		&cli.BoolFlag{Name: "disable-kube-proxy", Usage: "run no Service proxy on this node (no nftables rules for Services)"},
	}
}

// agentConfig reads the shared node flags.
func agentConfig(c *cli.Context) (agent.Config, error) {
	cfg := agent.Config{
		KubeletPort:        c.Int("kubelet-port"),
		CgroupRoot:         c.String("cgroup-root"),
		InsecureRegistries: c.StringSlice("insecure-registry"),
		DisableProxy:       c.Bool("disable-kube-proxy"),
		NodeLabels:         map[string]string{},
	}
	if p := cfg.KubeletPort; p < 1 || p > 65535 {
		return cfg, fmt.Errorf("--kubelet-port %d: must be 1-65535", p)
	}
	for _, l := range c.StringSlice("node-label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return cfg, fmt.Errorf("--node-label %q: want KEY=VALUE", l)
		}
		cfg.NodeLabels[k] = v
	}
	for _, s := range c.StringSlice("node-taint") {
		t, err := parseTaint(s)
		if err != nil {
			return cfg, fmt.Errorf("--node-taint %q: %v", s, err)
		}
		cfg.NodeTaints = append(cfg.NodeTaints, t)
	}
	return cfg, nil
}

// parseTaint reads KEY[=VALUE]:EFFECT as kubectl taint and the kubelet's
// --register-with-taints do.
func parseTaint(s string) (corev1.Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if !ok {
		return corev1.Taint{}, fmt.Errorf("want KEY[=VALUE]:EFFECT")
	}
	k, v, _ := strings.Cut(kv, "=")
	switch e := corev1.TaintEffect(effect); e {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		return corev1.Taint{}, fmt.Errorf("invalid taint effect %q: want NoSchedule, PreferNoSchedule or NoExecute", effect)
	}
	if k == "" {
		return corev1.Taint{}, fmt.Errorf("empty taint key")
	}
	return corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)}, nil
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "join a skiff server as a node that runs pods",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "server", Aliases: []string{"s"}, EnvVars: []string{"SKIFF_URL"}, Usage: "server to join (https://HOST:6443)"},
			&cli.StringFlag{Name: "token", Aliases: []string{"t"}, EnvVars: []string{"SKIFF_TOKEN"}, Usage: "join token (the server's DATA/server/token, or one from 'skiff token create')"},
			&cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: server.DefaultDataDir, EnvVars: []string{"SKIFF_DATA_DIR"}, Usage: "where state is kept"},
			&cli.StringFlag{Name: "node-name", EnvVars: []string{"SKIFF_NODE_NAME"}, Usage: "node name (default: host name)"},
			&cli.StringFlag{Name: "node-ip", Aliases: []string{"i"}, Usage: "IP address to advertise (default: the default route's)"},
		}, agentFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("skiff agent: unexpected argument %q", c.Args().First()), 2)
			}
			cfg, err := agentConfig(c)
			if err != nil {
				return cli.Exit("skiff agent: "+err.Error(), 2)
			}
			cfg.ServerURL = c.String("server")
			cfg.Token = c.String("token")
			if cfg.ServerURL == "" {
				return cli.Exit("skiff agent: --server (or SKIFF_URL) is required", 2)
			}
			if cfg.Token == "" {
				return cli.Exit("skiff agent: --token (or SKIFF_TOKEN) is required", 2)
			}
			cfg.DataDir = c.String("data-dir")
			cfg.NodeName = c.String("node-name")
			cfg.NodeIP = c.String("node-ip")
			cfg.Logger = newLogger(c)
			if err := agent.Run(c.Context, cfg); err != nil {
				return cli.Exit("skiff agent: "+err.Error(), 1)
			}
			return nil
		},
	}
}

// runServerWithAgent runs the control plane and, once it serves, the agent
// joined to it over loopback with the server's own token: `skiff server`
// alone is a one-node cluster. Either half failing stops both.
func runServerWithAgent(ctx context.Context, srv *server.Server, cfg agent.Config) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error {
		select {
		case <-srv.Ready():
		case <-gctx.Done():
			return nil
		}
		cfg.ServerURL = srv.URL()
		cfg.Token = srv.Token()
		cfg.NodeName = srv.NodeName()
		cfg.NodeIP = srv.AdvertiseIP().String()
		cfg.ControlPlane = true
		if err := agent.Run(gctx, cfg); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		return nil
	})
	return g.Wait()
}
