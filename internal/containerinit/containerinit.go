// Package containerinit is libcontainer's re-exec hook, `skiff init`, run as
// early as Go allows.
//
// libcontainer sets up every container (and every exec) by re-executing the
// running binary as `<argv0> init`. That process only needs libcontainer,
// yet Go runs every package's init before main's: in skiff, the Kubernetes
// API types' scheme registrations and friends cost ~20 ms, a third of a
// container start. Go initialises packages in import-path order once their
// dependencies are done (Go 1.21+), and this package depends on nothing but
// libcontainer and the standard library, so it runs before the k8s.io and
// skiff packages that sort after it — and for `init` it never returns.
//
// Any binary that links internal/runtime gets the hook (the runtime imports
// this package), including test binaries.
package containerinit

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // C constructor that joins the container's namespaces before Go starts
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}
