// Package podworker is the agent's pod worker, the kubelet's heart: it
// watches the pods bound to its node and runs them through internal/runtime
// (sandboxes and containers), internal/image (Ensure, LowerDirs),
// internal/agent/podconfig (container specs, volumes, /etc/hosts,
// resolv.conf), internal/agent/logs (CRI log files fed from FIFOs) and
// internal/agent/prober (probes, restart back-off, init ordering), and
// reports their status.
//
// # Use by the agent
//
//	src, _ := podsources.New(podsources.Config{Client: nodeClient, Logger: l})
//	tokens := token.New(nodeClient, token.Options{Logger: l})
//	m, err := podworker.New(podworker.Config{
//		Client: nodeClient, NodeName: name, Runtime: rt, Images: store,
//		PodsDir: data + "/agent/pods", RunDir: data + "/agent/run",
//		Sources: src, Services: src.Services, Token: tokens.Get, PodRemoved: tokens.Forget,
//		Network: nil, // issue 5
//		NodeIPs: ips, ClusterDNS: dns, ClusterDomain: "cluster.local",
//		HostResolvConf: resolv, NodeAllocatable: allocatable,
//		CgroupRoot: "kubepods", // under runtime.Options.CgroupParent
//		Recorder: recorder, // component "kubelet", host = node name
//		Logger: l,
//	})
//	src.OnChange(func(ns, kind, name string) {
//		for _, uid := range src.PodsUsing(kind, ns, name) {
//			m.ResyncPod(uid) // refresh volumes now
//		}
//	})
//	g.Go(func() error { return src.Run(ctx) })
//	g.Go(func() error { return tokens.Run(ctx) })
//	g.Go(func() error { return m.Run(ctx) }) // returns when ctx ends; containers keep running
//	<-m.Started()                            // re-adoption done and the pod informer synced
//	kubeletserver: *Manager is its Pods and OutputAttacher
//
// The runtime must be opened (runtime.Open re-adopts containers) before Run
// and closed after it returns; the image store likewise. The agent calls
// runtime.SetChildSubreaper and runs runtime.ReapOrphans. Image GC's in-use
// set is the skiff.image.id label of runtime.List. Sources that implement
// PodRegistrar (podsources) get RegisterPod on every sync where the pod
// object changed and UnregisterPod once it is cleaned up; Resync(namespace)
// re-syncs a namespace's pods (all with "").
//
// # Per pod
//
// Each pod (by UID) has one goroutine that serializes its syncs; pods are
// independent, with no lock held around runtime calls. A sync is triggered
// by a pod event (except the echo of our own status patch), a container
// exit (runtime.Wait), a prober update, a back-off expiring, Resync, and
// every Config.ResyncPeriod (10 s). A sync:
//
//  1. creates the sandbox (ID = pod UID, hostname, labels) and calls
//     Network.SetUp, which returns the pod IPs;
//  2. writes volumes (podconfig.WriteVolumes; tmpfs for secret, projected,
//     downwardAPI and Memory emptyDirs) and the pod files;
//  3. kills containers whose liveness/startup probe failed;
//  4. runs init containers in order (prober.PlanInit, sidecars included),
//     then starts the other containers; exited containers restart under
//     restartPolicy with the CrashLoopBackOff back-off (prober.Backoff);
//  5. computes the status (generateAPIPodStatus: phase, conditions
//     PodReadyToStartContainers, Initialized, ContainersReady, Ready with
//     readinessGates, container statuses) and patches pods/status only
//     when it differs from the pod's (strategic merge patch with the UID);
//  6. once the pod is Succeeded/Failed, stops what still runs and releases
//     the sandbox; exited containers and logs stay until deletion.
//
// Starting a container: image (imagePullPolicy, imagePullSecrets through
// Sources; ErrImagePull with the registry's message, then ImagePullBackOff
// with its own 10 s → 5 min back-off; ErrImageNeverPull), podconfig.Build
// (errors: CreateContainerConfigError), output FIFOs RunDir/<id>.stdout and
// .stderr copied by a logs.Writer into logs.Path(podDir, name,
// restartCount), runtime.Create with the cgroup parent
// CgroupRoot/podconfig.PodCgroupName(pod) and the labels below, Start,
// probes (exec via runtime.Exec, httpGet/tcpSocket dialled inside the pod's
// netns via runtime.DialInNetNS), postStart hook. A container's two newest
// instances are kept (status lastState, `logs --previous`); older ones are
// deleted with their logs.
//
// Container labels (BRIEF5): io.kubernetes.pod.uid, .pod.namespace,
// .pod.name, io.kubernetes.container.name, .container.restartCount,
// skiff.image.id; plus skiff.image.ref and skiff.image.name (the status's
// imageID and image after a restart). Container IDs are 64 random hex
// digits; status containerID is "runc://<id>".
//
// # Deletion and cleanup
//
// A pod with deletionTimestamp: prober.PodTerminating, preStop hooks,
// runtime.Stop with the deletion grace period (SIGTERM, then SIGKILL), then
// cleanup — containers deleted, FIFOs removed, Network.TearDown,
// RemoveSandbox, RemoveCgroup, podconfig.RemovePodDir (tmpfs unmounted) —
// and the pod deleted with gracePeriodSeconds 0 and a UID precondition. A pod
// that leaves the API (force-deleted) is cleaned up the same way with a 2 s
// grace; at start, whatever the runtime, PodsDir or RunDir hold for pods the
// API no longer has is removed.
//
// # Restart safety
//
// Run starts from runtime.List/ListSandboxes: each pod's instances are
// rebuilt from their labels (restartCount), running containers' FIFOs are
// reopened so their output keeps flowing into the same log file (output
// written meanwhile waited in the pipe), exits are watched and probes
// re-added; nothing that runs is restarted. A re-adopted running
// container keeps the ready/started it had in the API until its probes
// report (or a window of a few probe periods passes), so a restart changes
// no status. Pod IPs of re-adopted sandboxes come from the pod's status
// (Network.SetUp is called again only when the status has none).
//
// # Differences from the kubelet
//
//   - hostNetwork pods share the host's network namespace (a
//     runtime.SandboxConfig.HostNetwork sandbox) but keep a pod IPC
//     namespace and their own UTS namespace with the node's hostname;
//     hostIPC/hostPID are not supported.
//   - No pod-level resize, ephemeral containers, image volume, static pods,
//     eviction, or spec-hash restarts (a changed image does not restart the
//     container).
//   - A pod being deleted is not first reported with a terminal phase
//     (kubelet ≥ 1.27 does): the API server deletes a terminal pod that
//     has a deletionTimestamp at once, so the pod would leave the API
//     before its node has cleaned up.
package podworker
