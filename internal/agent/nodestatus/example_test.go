package nodestatus_test

import (
	"context"
	"log/slog"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-dev/skiff/internal/agent/nodestatus"
)

// How an agent runs it: with the node's own client, its events recorded
// as the kubelet's. The server's in-process agent adds the control-plane
// labels.
func ExampleRun() {
	ctx := context.Background()
	var client kubernetes.Interface // from DATA/agent/kubelet.kubeconfig
	dataDir := "/var/lib/skiff"

	events := record.NewBroadcaster(record.WithContext(ctx))
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer events.Shutdown()

	err := nodestatus.Run(ctx, nodestatus.Config{
		Client:         client,
		NodeName:       "node-1", // --node-name, default the hostname
		NodeIP:         nil,      // --node-ip, default DefaultNodeIP()
		Labels:         map[string]string{nodestatus.LabelControlPlane: "true", nodestatus.LabelMaster: "true"},
		DataDir:        filepath.Join(dataDir, "agent"),
		ImageDir:       filepath.Join(dataDir, "agent", "image-store"),
		RuntimeVersion: "runc://1.4.4", // runtime.Version()
		KubeletVersion: "v1.32.0",
		Recorder:       events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: "node-1"}),
		Logger:         slog.Default(),
	})
	_ = err
}
