package podworker

import "github.com/skiff-dev/skiff/internal/agent/kubeletserver"

var (
	_ kubeletserver.Pods           = (*Manager)(nil)
	_ kubeletserver.OutputAttacher = (*Manager)(nil)
)
