// Package prober runs a container's liveness, readiness and startup probes
// and decides container restarts and their back-off, as the kubelet does
// (pkg/kubelet/prober, pkg/probe/{exec,http,tcp}, kuberuntime's restart
// back-off). It knows nothing about the runtime or the API server: exec
// probes go through an [ExecFunc], network probes through a [DialFunc], and
// the pod worker feeds it container instances and reads results.
//
// # Probes
//
// [Probe] runs one probe: exec (exit code 0; output capped at 10 KiB; the
// timeout kills the command and fails the probe), httpGet (HTTP or HTTPS
// without certificate checks; host defaults to the pod IP; port by number or
// container port name; User-Agent kube-probe/1.32 and Accept */* unless the
// probe sets them; redirects followed only to the same host name, a redirect
// elsewhere is a success with a ProbeWarning event; 200–399 succeed; at most
// 10 KiB of body read), tcpSocket (a connection opens). gRPC probes are not
// implemented: they report an error, which leaves the result unchanged.
//
// # Workers and results
//
// [Manager.AddContainer] starts one worker per configured probe of a running
// container instance; [Manager.RemoveContainer] stops them when the container
// stops. A worker probes at once (after a random part of a period when the
// manager has just started), then every periodSeconds; it skips probes during
// initialDelaySeconds (counted from the container's start) and, for liveness
// and readiness, until the container has started (startup probe succeeded).
// A result is recorded after successThreshold / failureThreshold equal
// results in a row; errors (probe could not run, after 3 tries) are dropped.
// Initial results: readiness Failure, liveness Success, startup Unknown. A
// liveness failure, and any startup result, puts the worker on hold: the
// container is killed and restarted (a new instance) or has started.
//
// Each change is sent on [Manager.Updates]; the pod worker reacts by
// re-syncing the pod: [Manager.Ready] and [Manager.Started] give
// containerStatus.ready/started, [Manager.Unhealthy] says whether to kill
// the container (with the probe's terminationGracePeriodSeconds).
//
// # Restarts
//
// [ShouldRestart] applies restartPolicy to an exited container, [PlanInit]
// the init container ordering (sidecars with restartPolicy Always included),
// and [Backoff] the CrashLoopBackOff delays: 10 s doubling to 5 min, reset
// when the container ran more than 10 minutes since its last restart.
//
// # Use by the agent
//
//	pm, _ := prober.New(prober.Config{Exec: execAdapter(rt), Logger: l})
//	go pm.Run(ctx)
//	backoff := prober.NewBackoff(nil)
//	// container started:
//	pm.AddContainer(prober.Target{PodUID: pod.UID, Namespace: ns, PodName: name, PodIP: ip,
//		Container: &spec, ContainerID: id, StartedAt: started, Dial: podNetnsDialer,
//		PodGracePeriod: pod.Spec.TerminationGracePeriodSeconds})
//	// pod worker loop: on <-pm.Updates() re-sync the pod:
//	if k, bad := pm.Unhealthy(id); bad { kill with k.GracePeriod, message k.Message+", will be restarted" }
//	status.Ready, status.Started = pm.Ready(id), pm.Started(id)
//	// container exited: pm.RemoveContainer(id); if ShouldRestart(policy, code) {
//	//	r := backoff.Restart(pod, &spec, finishedAt); if r.Now start it, else report r.Waiting
//	//	and requeue after r.After }
//	// pod deleted: pm.PodTerminating(uid) at the start of the grace period, pm.RemovePod(uid) at the end.
package prober
