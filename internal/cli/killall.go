package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/skiff-dev/skiff/internal/agent"
	"github.com/skiff-dev/skiff/internal/server"
)

// killallCommand stops every container of a stopped agent and removes its
// sandboxes, mounts and cgroups (skiff-killall.sh runs it after stopping the
// service). Pods stay in the API; the agent restarts them when it returns.
func killallCommand() *cli.Command {
	return &cli.Command{
		Name:  "killall",
		Usage: "stop all containers of this node's (stopped) agent and remove their namespaces, mounts and cgroups",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: server.DefaultDataDir, EnvVars: []string{"SKIFF_DATA_DIR"}, Usage: "the agent's data dir"},
			&cli.StringFlag{Name: "cgroup-root", Value: agent.DefaultCgroupRoot, Usage: "the agent's --cgroup-root"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("skiff killall: unexpected argument %q", c.Args().First()), 2)
			}
			if err := agent.KillAll(c.Context, c.String("data-dir"), c.String("cgroup-root"), newLogger(c)); err != nil {
				return cli.Exit(fmt.Sprintf("skiff killall: %v", err), 1)
			}
			return nil
		},
	}
}
