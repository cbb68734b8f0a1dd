// Command skiff is a single-binary, Kubernetes-compatible cluster: run
// `skiff server` for a control plane, `skiff kubectl` as its client.
package main

import (
	"os"

	_ "github.com/opencontainers/runc/libcontainer/nsenter" // C constructor that sets up `skiff init`'s namespaces

	"github.com/skiff-dev/skiff/internal/cli"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// init is libcontainer's re-exec hook: a container's setup runs as
// `skiff init` and must not reach flag parsing. It never returns.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.ContainerInit()
	}
}

func main() {
	os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
