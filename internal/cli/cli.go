// Package cli turns skiff's command line into typed configurations and runs
// the chosen role. It is the only package that knows about flags.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/kubectl"
	"github.com/skiff-dev/skiff/internal/server"
)

// Main runs the skiff command line and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := &cli.App{
		Name:      "skiff",
		Usage:     "a small, Kubernetes-compatible cluster in one binary",
		Version:   server.Version,
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "debug", Usage: "log at debug level", EnvVars: []string{"SKIFF_DEBUG"}},
		},
		Commands: []*cli.Command{
			serverCommand(),
			agentCommand(),
			kubectlCommand(stdin, stdout, stderr),
			simCommand(),
			tokenCommand(),
			imagesCommand(),
			killallCommand(),
		},
		// Errors are printed once, here, not also by urfave/cli.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.RunContext(ctx, args); err != nil {
		var exit cli.ExitCoder
		if errors.As(err, &exit) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(stderr, msg)
			}
			return exit.ExitCode()
		}
		fmt.Fprintf(stderr, "skiff: %v\n", err)
		return 1
	}
	return 0
}

func newLogger(c *cli.Context) *slog.Logger {
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	h := slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})
	// libcontainer logs through logrus: its debug lines (namespaces, mounts,
	// exe sealing) only with --debug.
	logrus.SetOutput(c.App.ErrWriter)
	if c.Bool("debug") {
		logrus.SetLevel(logrus.DebugLevel)
	} else {
		logrus.SetLevel(logrus.WarnLevel)
	}
	// client-go logs through klog; send that through slog too, with its
	// informational chatter ("Waiting for caches to sync") at debug level.
	klog.SetSlogLogger(slog.New(quietInfo{h}).With("component", "client-go"))
	return slog.New(h)
}

// quietInfo lowers Info records to Debug.
type quietInfo struct{ slog.Handler }

func (q quietInfo) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return q.Handler.Enabled(ctx, l)
}

func (q quietInfo) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo || closedConnNoise(r) {
		r.Level = slog.LevelDebug
	}
	if !q.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

// closedConnNoise is spdystream's report of a stream connection closed by
// its own side at the end of every exec/attach/port-forward session; it is
// logged as an error but is the normal end.
func closedConnNoise(r slog.Record) bool {
	if r.Message != "Error on socket receive" {
		return false
	}
	noise := false
	r.Attrs(func(a slog.Attr) bool {
		noise = strings.Contains(a.Value.String(), "use of closed network connection")
		return !noise
	})
	return noise
}

func (q quietInfo) WithAttrs(a []slog.Attr) slog.Handler { return quietInfo{q.Handler.WithAttrs(a)} }
func (q quietInfo) WithGroup(n string) slog.Handler      { return quietInfo{q.Handler.WithGroup(n)} }

func serverCommand() *cli.Command {
	return &cli.Command{
		Name:  "server",
		Usage: "run the control plane (and, unless --disable-agent, an agent)",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: server.DefaultDataDir, EnvVars: []string{"SKIFF_DATA_DIR"}, Usage: "where state is kept"},
			&cli.StringFlag{Name: "bind-address", Value: "0.0.0.0", Usage: "address the API server listens on"},
			&cli.IntFlag{Name: "https-listen-port", Value: 6443, Usage: "API server port"},
			&cli.StringFlag{Name: "write-kubeconfig", Aliases: []string{"o"}, Value: server.DefaultKubeconfig, EnvVars: []string{"SKIFF_KUBECONFIG_OUTPUT"}, Usage: "write the admin kubeconfig here"},
			&cli.StringFlag{Name: "write-kubeconfig-mode", Value: "0600", EnvVars: []string{"SKIFF_KUBECONFIG_MODE"}, Usage: "file mode of the kubeconfig"},
			&cli.StringFlag{Name: "token", Aliases: []string{"t"}, EnvVars: []string{"SKIFF_TOKEN"}, Usage: "join token (generated when empty)"},
			&cli.BoolFlag{Name: "disable-agent", Usage: "run only the control plane"},
			&cli.StringFlag{Name: "node-name", EnvVars: []string{"SKIFF_NODE_NAME"}, Usage: "node name (default: host name)"},
			&cli.StringFlag{Name: "node-ip", Aliases: []string{"i"}, Usage: "IP address to advertise (default: the default route's)"},
			&cli.StringFlag{Name: "cluster-cidr", Value: server.DefaultClusterCIDR, Usage: "pod network"},
			&cli.StringFlag{Name: "service-cidr", Value: server.DefaultServiceCIDR, Usage: "service virtual IPs"},
			&cli.StringFlag{Name: "cluster-dns", Value: server.DefaultClusterDNS, Usage: "cluster DNS service IP"},
			&cli.StringFlag{Name: "cluster-domain", Value: server.DefaultClusterDomain, Usage: "cluster domain"},
			&cli.StringFlag{Name: "service-node-port-range", Value: server.DefaultNodePortRange, Usage: "NodePort range"},
			&cli.StringFlag{Name: "datastore-endpoint", Usage: "external datastore (not yet supported; bbolt is built in)"},
			&cli.StringFlag{Name: "pod-network", Value: server.DefaultPodNetwork, Usage: "how pod traffic crosses nodes: vxlan (needs only L3 reachability between nodes) or host-gw (one route per node; nodes on one L2 network)"},
			&cli.StringFlag{Name: "lb-ip-pool", Usage: "CIDR to hand LoadBalancer services one VIP each from (default: the services get the nodes' addresses)"},
			&cli.DurationFlag{Name: "node-monitor-grace-period", Value: server.DefaultNodeMonitorGracePeriod, Usage: "how long a node may go without a heartbeat before it is marked Unknown"},
			&cli.DurationFlag{Name: "node-monitor-period", Value: server.DefaultNodeMonitorPeriod, Usage: "how often the node lifecycle controller checks node heartbeats"},
			&cli.Int64Flag{Name: "default-not-ready-toleration-seconds", Value: server.DefaultTolerationSeconds, Usage: "tolerationSeconds given to pods for the not-ready:NoExecute taint"},
			&cli.Int64Flag{Name: "default-unreachable-toleration-seconds", Value: server.DefaultTolerationSeconds, Usage: "tolerationSeconds given to pods for the unreachable:NoExecute taint"},
			&cli.DurationFlag{Name: "event-ttl", Value: server.DefaultEventTTL, Usage: "how long events are kept"},
			&cli.BoolFlag{Name: "disable-scheduler", Usage: "do not run the scheduler"},
			&cli.BoolFlag{Name: "disable-controller-manager", Usage: "do not run the controllers"},
		}, agentFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("skiff server: unexpected argument %q", c.Args().First()), 2)
			}
			// 0 would mean "default" to server.Config; on the command line
			// it is a mistake.
			if p := c.Int("https-listen-port"); p < 1 || p > 65535 {
				return cli.Exit(fmt.Sprintf("skiff server: --https-listen-port %d: must be 1-65535", p), 2)
			}
			var mode uint32
			if _, err := fmt.Sscanf(c.String("write-kubeconfig-mode"), "%o", &mode); err != nil || mode > 0o777 {
				return cli.Exit(fmt.Sprintf("--write-kubeconfig-mode %q: want an octal file mode such as 0600", c.String("write-kubeconfig-mode")), 2)
			}
			cfg := server.Config{
				DataDir:             c.String("data-dir"),
				BindAddress:         c.String("bind-address"),
				HTTPSPort:           c.Int("https-listen-port"),
				WriteKubeconfig:     c.String("write-kubeconfig"),
				WriteKubeconfigMode: os.FileMode(mode),
				Token:               c.String("token"),
				NodeName:            c.String("node-name"),
				NodeIP:              c.String("node-ip"),
				ClusterCIDR:         c.String("cluster-cidr"),
				ServiceCIDR:         c.String("service-cidr"),
				ClusterDNS:          c.String("cluster-dns"),
				ClusterDomain:       c.String("cluster-domain"),
				NodePortRange:       c.String("service-node-port-range"),
				DatastoreEndpoint:   c.String("datastore-endpoint"),
				PodNetwork:          c.String("pod-network"),
				LBIPPool:            c.String("lb-ip-pool"),

				NodeMonitorGracePeriod:              c.Duration("node-monitor-grace-period"),
				NodeMonitorPeriod:                   c.Duration("node-monitor-period"),
				DefaultNotReadyTolerationSeconds:    c.Int64("default-not-ready-toleration-seconds"),
				DefaultUnreachableTolerationSeconds: c.Int64("default-unreachable-toleration-seconds"),
				EventTTL:                            c.Duration("event-ttl"),
				DisableScheduler:                    c.Bool("disable-scheduler"),
				DisableControllerManager:            c.Bool("disable-controller-manager"),
			}
			log := newLogger(c)
			srv, err := server.New(cfg, log)
			if err != nil {
				return cli.Exit(fmt.Sprintf("skiff server: %v", err), 2)
			}
			if c.Bool("disable-agent") {
				return srv.Run(c.Context)
			}
			acfg, err := agentConfig(c)
			if err != nil {
				return cli.Exit("skiff server: "+err.Error(), 2)
			}
			acfg.DataDir = cfg.DataDir
			acfg.ClusterDomain = cfg.ClusterDomain
			acfg.Logger = log
			return runServerWithAgent(c.Context, srv, acfg)
		},
	}
}

func kubectlCommand(stdin io.Reader, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:            "kubectl",
		Usage:           "the embedded Kubernetes client (uses $KUBECONFIG, else " + server.DefaultKubeconfig + ")",
		SkipFlagParsing: true,
		HideHelp:        true,
		Action: func(c *cli.Context) error {
			err := kubectl.Run(c.Context, c.Args().Slice(), stdin, stdout, stderr)
			var exit *kubectl.ExitError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &exit):
				// kubectl already printed the error in its own words.
				return cli.Exit("", exit.Code)
			default:
				return cli.Exit(fmt.Sprintf("error: %v", err), 1)
			}
		},
	}
}
