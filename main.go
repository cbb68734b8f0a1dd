// Command skiff is a single-binary, Kubernetes-compatible cluster: run
// `skiff server` for a control plane, `skiff kubectl` as its client.
package main

import (
	"os"

	"github.com/skiff-dev/skiff/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
