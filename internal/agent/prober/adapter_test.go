package prober_test

import (
	"context"
	"io"

	"github.com/skiff-dev/skiff/internal/agent/prober"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// execAdapter is how the agent hands runtime.Runtime.Exec to the prober; it
// is here so that a change of either signature breaks the build.
func execAdapter(rt *runtime.Runtime) prober.ExecFunc {
	return func(ctx context.Context, id string, args []string, stdout, stderr io.Writer) (int, error) {
		return rt.Exec(ctx, id, runtime.ExecConfig{Args: args, Stdout: stdout, Stderr: stderr})
	}
}

var _ = execAdapter
