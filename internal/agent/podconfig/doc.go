// Package podconfig is the kubelet's translation of a Pod into what the
// runtime runs: pure functions over the pod spec, the image config and
// already-resolved objects, with no API calls. The pod worker passes
// ConfigMaps and Secrets through [Sources] (its informer caches), tokens
// through a [TokenFunc], and node facts through [Options].
//
// Each rule follows an upstream function, named in its doc comment, so the
// behaviour can be checked against Kubernetes: env (makeEnvironmentVariables,
// envvars.FromServices), command/args ($(VAR) expansion from
// third_party/forked/golang/expansion; containerd's merge with the image's
// Entrypoint/Cmd), user (determineEffectiveSecurityContext plus containerd's
// WithUser/WithAdditionalGIDs), resources (generateLinuxContainerResources),
// QoS (qos.GetPodQOS), volumes (the configmap, secret, downwardapi, projected,
// emptydir and hostpath plugins; AtomicWriter), /etc/hosts
// (managedHostsFileContent) and resolv.conf (dns.Configurer.GetPodDNS).
//
// # Pod directory layout
//
//	PODDIR/volumes/kubernetes.io~empty-dir/NAME/
//	PODDIR/volumes/kubernetes.io~configmap/NAME/     ..data -> ..2026_…/, key -> ..data/key
//	PODDIR/volumes/kubernetes.io~secret/NAME/        (tmpfs when VolumeOptions.MountTmpfs)
//	PODDIR/volumes/kubernetes.io~downward-api/NAME/
//	PODDIR/volumes/kubernetes.io~projected/NAME/     e.g. kube-api-access-*: token, ca.crt, namespace
//	PODDIR/etc-hosts, PODDIR/hostname, PODDIR/resolv.conf
//	PODDIR/containers/NAME/termination-log-N
//
// # Use by the pod worker
//
// On every sync of a pod (creation, and again when the pod or a ConfigMap /
// Secret it uses changes, or periodically for token renewal):
//
//	podDir := filepath.Join(data, "agent/pods", string(pod.UID))
//	vols, err := podconfig.WriteVolumes(ctx, podDir, pod, caches, podconfig.VolumeOptions{
//		Token:           tokenManager.Get,       // cached TokenRequest, renewed at 80% TTL
//		MountTmpfs:      mountTmpfsIfNotMounted, // secret/projected/emptyDir Memory
//		NodeAllocatable: node.Status.Allocatable,
//	}) // err: event FailedMount, retry; idempotent, atomic updates
//	hostname, _, err := podconfig.PodHostname(pod, clusterDomain, nodeName)
//	hosts, err := podconfig.HostsFile(pod, podIPs, clusterDomain, hostEtcHosts)
//	resolv, err := podconfig.ResolvConf(pod, podconfig.DNSConfig{ClusterDNS: …, ClusterDomain: …, HostResolvConf: …})
//	files, err := podconfig.WritePodFiles(podDir, hosts, []byte(hostname+"\n"), resolv)
//	parent := podconfig.PodCgroupParent(cgroupRoot, pod) // needs a per-pod parent in the runtime (see PodCgroupName)
//
// Then per container start (init containers in order, then the others):
//
//	img, _ := store.Ensure(…); lower, _ := store.LowerDirs(img)
//	tlog, _ := podconfig.CreateTerminationLog(podDir, c.Name, restartCount)
//	spec, err := podconfig.Build(pod, c, podconfig.ImageConfigFrom(img.Config), caches, podconfig.Options{
//		PodIPs: podIPs, HostIPs: hostIPs, NodeAllocatable: alloc, Services: svcLister(ns, "default"),
//		ReadRootfsFile: podconfig.LowerdirReader(lower),
//		Volumes: vols, PodFiles: files, TerminationLogPath: tlog,
//	}) // err → CreateContainerConfigError with err.Error() as the message
//	   // (missing ConfigMap/Secret/key, runAsNonRoot violations, unknown image user…)
//	rt.Create(ctx, runtime.ContainerConfig{
//		Args: spec.Args, Env: spec.Env, WorkingDir: spec.WorkingDir, ReadonlyRootfs: spec.ReadonlyRootfs,
//		UID: spec.User.UID, GID: spec.User.GID, AdditionalGIDs: spec.User.AdditionalGIDs,
//		Mounts: spec.Mounts, Resources: spec.Resources, Hostname: hostname, …})
//	// spec.Warnings → Warning events (InvalidEnvironmentVariableNames)
//
// When the pod is gone and its containers are deleted:
//
//	podconfig.RemovePodDir(podDir, unmountIfMounted)
//
// WriteVolumes, WritePodFiles and RemovePodDir of one pod must not run
// concurrently (the pod worker serializes a pod's syncs); different pods are
// independent. The package does no logging: everything is returned.
//
// # Differences from upstream
//
//   - Env order is deterministic: envFrom keys sorted per source, env in
//     spec order, service-link variables sorted (upstream: map order). The
//     image env comes first; a pod variable replaces the image's in place.
//   - The group part of the image's User ("uid:gid", "name:group") is
//     honoured (Docker/OCI semantics); kubelet+containerd ignore it.
//   - subPath is resolved with securejoin instead of the kubelet's
//     fd-based bind mount; a symlink swapped in after Build is not caught.
//   - Service-account token files are not chowned to runAsUser (upstream's
//     FsUser for the token); with fsGroup they are 0640 group fsGroup.
//   - /etc/hosts is written whether or not the pod has an IP yet (upstream
//     mounts it only once pod IPs are known); pass the IPs when they are.
//   - No pod-level cgroup limits, OOM score, mount propagation, image
//     volumes, clusterTrustBundle/podCertificate projections, fileKeyRef.
package podconfig
