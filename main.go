// Command skiff is a single-binary, Kubernetes-compatible cluster: run
// `skiff server` for a control plane, `skiff kubectl` as its client.
//
// The binary is also libcontainer's `skiff init` (the process that sets up
// each container); that hook lives in internal/containerinit, linked through
// internal/runtime, so it runs before the heavier package inits.
package main

import (
	"os"

	"github.com/skiff-dev/skiff/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
