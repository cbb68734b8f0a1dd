package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-dev/skiff/internal/server"
	"github.com/skiff-dev/skiff/internal/sim"
)

func simCommand() *cli.Command {
	return &cli.Command{
		Name:  "sim",
		Usage: "run simulated (hollow) nodes that take pods without running containers",
		Description: "Registers N nodes named PREFIX-0 … PREFIX-(N-1), keeps their leases fresh, and reports the pods\n" +
			"bound to them Running and Ready at once with an IP from the node's podCIDR. Stopping it lets the\n" +
			"nodes go NotReady. --fail NODE --after D stops one node's heartbeats after D, to exercise eviction.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Aliases: []string{"n"}, Required: true, Usage: "how many nodes"},
			&cli.StringFlag{Name: "kubeconfig", EnvVars: []string{"KUBECONFIG"}, Usage: "kubeconfig (default " + server.DefaultKubeconfig + ")"},
			&cli.StringFlag{Name: "name-prefix", Value: "sim", Usage: "node name prefix"},
			&cli.IntFlag{Name: "pods-per-node", Value: 110, Usage: "pods capacity of each node"},
			&cli.StringFlag{Name: "cpu", Value: "4", Usage: "cpu capacity of each node"},
			&cli.StringFlag{Name: "memory", Value: "16Gi", Usage: "memory capacity of each node"},
			&cli.StringSliceFlag{Name: "fail", Usage: "node(s) that stop heartbeating after --after"},
			&cli.DurationFlag{Name: "after", Usage: "when the --fail nodes stop"},
			&cli.DurationFlag{Name: "lease-renew-interval", Value: 10 * time.Second, Usage: "how often node leases are renewed (keep it well under the server's --node-monitor-grace-period)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("skiff sim: unexpected argument %q", c.Args().First()), 2)
			}
			cpu, err := resource.ParseQuantity(c.String("cpu"))
			if err != nil {
				return cli.Exit(fmt.Sprintf("skiff sim: --cpu %q: %v", c.String("cpu"), err), 2)
			}
			mem, err := resource.ParseQuantity(c.String("memory"))
			if err != nil {
				return cli.Exit(fmt.Sprintf("skiff sim: --memory %q: %v", c.String("memory"), err), 2)
			}
			if c.Duration("lease-renew-interval") <= 0 {
				return cli.Exit("skiff sim: --lease-renew-interval must be positive", 2)
			}
			if len(c.StringSlice("fail")) == 0 && c.IsSet("after") {
				return cli.Exit("skiff sim: --after needs --fail", 2)
			}
			path := c.String("kubeconfig")
			if path == "" {
				path = server.DefaultKubeconfig
			}
			if len(filepath.SplitList(path)) > 1 {
				path = filepath.SplitList(path)[0]
			}
			if _, err := os.Stat(path); err != nil {
				return cli.Exit(fmt.Sprintf("skiff sim: kubeconfig: %v", err), 1)
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				return cli.Exit(fmt.Sprintf("skiff sim: kubeconfig %s: %v", path, err), 1)
			}
			// Thousands of nodes renew leases and report pods; a client
			// side limit of 5 QPS would make them look dead.
			cfg.QPS, cfg.Burst = 1000, 2000
			cfg.UserAgent = "skiff-sim/" + server.Version
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			s, err := sim.New(client, sim.Config{
				Nodes:       c.Int("nodes"),
				Prefix:      c.String("name-prefix"),
				PodsPerNode: c.Int("pods-per-node"),
				CPU:         cpu,
				Memory:      mem,
				Fail:        c.StringSlice("fail"),
				FailAfter:   c.Duration("after"),

				RenewInterval: c.Duration("lease-renew-interval"),
			}, newLogger(c))
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			err = s.Run(c.Context)
			if c.Context.Err() != nil {
				return nil // interrupted: the normal way to stop
			}
			return err
		},
	}
}
