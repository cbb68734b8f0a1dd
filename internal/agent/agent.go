// Package agent is skiff's node half, the kubelet of a skiff cluster: it
// joins a server with a token, registers its Node and keeps the node's lease,
// runs the pods bound to it through libcontainer, and serves their logs,
// exec, attach and port-forward to the API server on the kubelet port.
//
// A `skiff server` runs the same agent in-process (unless --disable-agent),
// joining its own API over loopback with its own token, so one command gives
// a one-node cluster.
//
// Everything lives under DATA/agent (see DESIGN.md): tls/ and
// kubelet.kubeconfig from the join, image-store/ and images/ (air-gap tars),
// containers/ (runtime state), pods/<uid>/ (volumes, logs), run/ (output
// FIFOs) and skiff.sock (the images API of `skiff images`).
package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-dev/skiff/internal/agent/imagesapi"
	"github.com/skiff-dev/skiff/internal/agent/join"
	"github.com/skiff-dev/skiff/internal/agent/kubeletserver"
	"github.com/skiff-dev/skiff/internal/agent/nodenet"
	"github.com/skiff-dev/skiff/internal/agent/nodestatus"
	"github.com/skiff-dev/skiff/internal/agent/podsources"
	"github.com/skiff-dev/skiff/internal/agent/podworker"
	"github.com/skiff-dev/skiff/internal/agent/token"
	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// Run joins the cluster and runs the node until ctx ends. Containers keep
// running when it returns; a later Run re-adopts them.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	log := cfg.Logger.With("component", "agent")
	dir := Dir(cfg.DataDir)
	for _, d := range []string{dir, filepath.Join(dir, "images"), filepath.Join(dir, "pods"), filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	nodeIP := net.ParseIP(cfg.NodeIP)
	if cfg.NodeIP != "" && nodeIP == nil {
		return fmt.Errorf("--node-ip %q is not an IP address", cfg.NodeIP)
	}
	if nodeIP == nil {
		ip, err := nodestatus.DefaultNodeIP()
		if err != nil {
			return fmt.Errorf("no --node-ip given and no address on the default route: %w", err)
		}
		nodeIP = ip
	}

	nodeAddr, _ := netip.AddrFromSlice(nodeIP)
	nodeAddr = nodeAddr.Unmap()

	creds, err := join.Bootstrap(ctx, join.Options{
		DataDir: cfg.DataDir, ServerURL: cfg.ServerURL, Token: cfg.Token,
		NodeName: cfg.NodeName, NodeIPs: []net.IP{nodeIP}, Logger: cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("join %s: %w", cfg.ServerURL, err)
	}
	restCfg := rest.CopyConfig(creds.RESTConfig)
	restCfg.UserAgent = "skiff-agent/" + cfg.NodeName
	// The kubelet's defaults are 50/100 for a node of up to 110 pods; a pod
	// start costs a few requests (status, token) and events go through a
	// client of their own (the kubelet's event-qps), so a burst of pods is
	// not held back by its own events.
	restCfg.QPS, restCfg.Burst = 200, 400
	restCfg.ContentType = "application/vnd.kubernetes.protobuf"
	restCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}

	// Containers' setup processes are re-parented to us when they exit.
	if err := runtime.SetChildSubreaper(); err != nil {
		log.Warn("cannot become the child subreaper; orphaned processes may linger", "err", err)
	}
	images, err := image.Open(filepath.Join(dir, "image-store"), image.Options{InsecureRegistries: cfg.InsecureRegistries, Logger: cfg.Logger})
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	defer images.Close()
	if names, err := images.ImportDir(ctx, filepath.Join(dir, "images")); err != nil {
		log.Warn("importing air-gap images", "dir", filepath.Join(dir, "images"), "err", err)
	} else if len(names) > 0 {
		log.Info("imported air-gap images", "images", names)
	}
	rt, err := runtime.Open(filepath.Join(dir, "containers"), runtime.Options{CgroupParent: cfg.CgroupRoot, Logger: cfg.Logger})
	if err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	defer rt.Close()

	eventsCfg := rest.CopyConfig(restCfg)
	eventsCfg.QPS, eventsCfg.Burst = 50, 100
	eventClient, err := kubernetes.NewForConfig(eventsCfg)
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: eventClient.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName})

	capacity, err := nodestatus.HostCapacity(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("node capacity: %w", err)
	}
	allocatable := nodestatus.DefaultThresholds().Allocatable(capacity)

	sources, err := podsources.New(podsources.Config{Client: client, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	tokens := token.New(client, token.Options{Logger: cfg.Logger})
	netReady := make(chan struct{}, 1)
	podNet := nodenet.New(nodenet.Config{
		Client: client, NodeName: cfg.NodeName, NodeIP: nodeAddr,
		StateDir: filepath.Join(dir, "network"),
		LiveSandboxes: func() ([]types.UID, error) {
			sbs, err := rt.ListSandboxes()
			uids := make([]types.UID, 0, len(sbs))
			for _, sb := range sbs {
				uids = append(uids, types.UID(sb.ID))
			}
			return uids, err
		},
		DisableProxy: cfg.DisableProxy,
		Ready:        netReady,
		Logger:       cfg.Logger,
	})
	hostResolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		log.Warn("no /etc/resolv.conf on the host; pods get an empty one", "err", err)
	}
	pods, err := podworker.New(podworker.Config{
		Client:          client,
		NodeName:        cfg.NodeName,
		Runtime:         rt,
		Images:          images,
		PodsDir:         filepath.Join(dir, "pods"),
		RunDir:          filepath.Join(dir, "run"),
		Sources:         sources,
		Services:        sources.Services,
		Network:         podNet,
		PodRemoved:      tokens.Forget,
		Token:           tokens.Get,
		NodeIPs:         []string{nodeIP.String()},
		ClusterDNS:      cfg.ClusterDNS,
		ClusterDomain:   cfg.ClusterDomain,
		HostResolvConf:  hostResolv,
		NodeAllocatable: func() corev1.ResourceList { return allocatable },
		Recorder:        recorder,
		Logger:          cfg.Logger,
	})
	if err != nil {
		return err
	}
	sources.OnChange(func(ns, kind, name string) {
		for _, uid := range sources.PodsUsing(kind, ns, name) {
			pods.ResyncPod(uid)
		}
	})
	kubelet, err := kubeletserver.New(kubeletserver.Config{
		Addr:     net.JoinHostPort("", strconv.Itoa(cfg.KubeletPort)),
		CertFile: creds.ServingCertFile, KeyFile: creds.ServingKeyFile, ClientCAPEM: creds.CAPEM,
		Pods: pods, Runtime: rt, Logger: cfg.Logger,
	})
	if err != nil {
		return err
	}

	labels := map[string]string{}
	for k, v := range cfg.NodeLabels {
		labels[k] = v
	}
	if cfg.ControlPlane {
		labels[nodestatus.LabelControlPlane] = "true"
		labels[nodestatus.LabelMaster] = "true"
	}
	inUse := imagesapi.InUseFunc(rt)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return podNet.Run(gctx) })
	g.Go(func() error { runtime.ReapOrphans(gctx, cfg.Logger); return nil })
	g.Go(func() error { return sources.Run(gctx) })
	g.Go(func() error { return tokens.Run(gctx) })
	g.Go(func() error { return pods.Run(gctx) })
	g.Go(func() error { return kubelet.Serve(gctx) })
	g.Go(func() error {
		return (&imagesapi.Server{Store: images, InUse: inUse, Logger: cfg.Logger}).Serve(gctx, imagesapi.SocketPath(cfg.DataDir))
	})
	g.Go(func() error { imagesapi.RunGC(gctx, images, inUse, 0, cfg.Logger); return nil })
	g.Go(func() error {
		return nodestatus.Run(gctx, nodestatus.Config{
			Client: client, NodeName: cfg.NodeName, NodeIP: nodeIP,
			Labels: labels, Taints: cfg.NodeTaints,
			KubeletPort: int32(cfg.KubeletPort),
			DataDir:     dir, ImageDir: images.Root(),
			RuntimeVersion: runtime.Version(), KubeletVersion: KubeletVersion,
			Images:       func() []corev1.ContainerImage { return nodeImages(images) },
			NetworkReady: podNet.NetworkReady,
			Kick:         netReady,
			Recorder:     recorder,
			Logger:       cfg.Logger,
		})
	})
	log.Info("agent running", "node", cfg.NodeName, "server", cfg.ServerURL, "node-ip", nodeIP.String(), "kubelet-port", cfg.KubeletPort)
	err = g.Wait()
	log.Info("agent stopped; its containers keep running")
	return err
}

// nodeImages is status.images: the store's images with their names (repo
// digests, then tags) and sizes; nodestatus keeps the largest.
func nodeImages(st *image.Store) []corev1.ContainerImage {
	var out []corev1.ContainerImage
	for _, img := range st.List() {
		names := append(append([]string(nil), img.RepoDigests...), img.RepoTags...)
		if len(names) == 0 {
			continue
		}
		out = append(out, corev1.ContainerImage{Names: names, SizeBytes: img.Size()})
	}
	return out
}
