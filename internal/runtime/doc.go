// Package runtime runs pod sandboxes and containers through runc's libcontainer,
// linked into the skiff binary (no runc executable). It is what the agent's pod
// worker calls: it takes a rootfs description (overlay lowerdirs from the image
// store, or a plain directory), resolved args/env, resources and mounts, and
// knows nothing about images or the Kubernetes API.
//
// # Process model
//
// libcontainer re-executes the running binary as `<argv0> init` to set up each
// container. The binary's package main must therefore import
// github.com/opencontainers/runc/libcontainer/nsenter (for its C constructor)
// and call [ContainerInit] from its func init() when os.Args[1] == "init"
// (skiff's main.go does; test binaries of this package do the same).
//
// Containers outlive the agent process: their init is a child of the agent
// while it runs, and is reparented when it exits. The agent should call
// [SetChildSubreaper] at start and run [ReapOrphans] so that stray processes
// reparented to it (libcontainer's intermediate setup processes) are reaped.
//
// # Exit codes
//
// For a container started by this process, its init is our child and the exit
// status comes from wait(2). For a container re-adopted by [Open] after an agent
// restart, init is no longer our child: the runtime holds a pidfd for it and,
// once it exits, reads the exit code with the PIDFD_GET_INFO ioctl
// (PIDFD_INFO_EXIT, Linux ≥ 6.15). Either way the result is written to
// CONTAINER_DIR/exit.json, so it survives further restarts. When neither source
// is available (older kernel, or the container exited while no agent ran) the
// state is Exited with ExitCodeUnknown set and ExitCode 255; OOMKilled is still
// derived from the cgroup (memory.events oom_kill on v2, memory.oom_control
// oom_kill on v1), which libcontainer keeps until Delete.
//
// # Layout under the root
//
//	ROOT/state/<id>/        libcontainer state (state.json, exec fifo)
//	ROOT/containers/<id>/   meta.json (our config and times), exit.json,
//	                        rootfs/ (overlay mount point), upper/, work/
//	ROOT/sandboxes/<id>/    sandbox.json, shm/ (tmpfs shared as /dev/shm)
//	NETNS_DIR/skiff-<id>    the sandbox's network namespace, bind-mounted
//	                        (default NETNS_DIR /run/netns, so `ip netns` sees it)
//	                        and its IPC namespace at NETNS_DIR/skiff-<id>.ipc
//
// # Sandboxes
//
// A pod sandbox is pause-less: [Runtime.CreateSandbox] makes a network and an
// IPC namespace, holds them as bind-mounted nsfs files, brings loopback up and
// mounts a tmpfs for the pod's /dev/shm. Every container of the pod joins the
// netns and IPC namespace by path and gets its own mount, PID and UTS
// namespaces (the pod's hostname is set in each). The networking code later puts
// a veth into [Sandbox.NetNSPath]; nothing here needs to change for that. A
// [SandboxConfig].HostNetwork sandbox (pod hostNetwork) makes no network
// namespace: its containers stay in the host's and NetNSPath is empty.
//
// # Cgroups
//
// Containers get the cgroup Options.CgroupParent/[ContainerConfig.CgroupParent/]<id>
// (the agent passes the pod's QoS cgroup, removed with RemoveCgroup after the
// pod's containers are deleted) through libcontainer's fs
// managers (cgroup v1, hybrid and v2; never systemd): cpu shares (weight on v2)
// from requests, quota/period from limits, memory limit (swap disabled where the
// kernel accounts it), pids limit.
//
// # Streams
//
// A container's stdout and stderr go straight to StdoutPath/StderrPath
// (regular files, or FIFOs the caller reads to write CRI-format logs). With
// Stdin the runtime holds a pipe as the container's stdin, with Tty a
// terminal whose output it copies to StdoutPath; [Runtime.Attach] feeds stdin,
// resizes the terminal and streams TTY output. Both are held in memory: a
// re-adopted container's stdin is at EOF, and a TTY container loses its
// terminal when the agent restarts. [Runtime.Exec] runs a process with its own
// streams (optionally a terminal) and returns its exit code.
//
// # Use by the agent
//
//	rt, _ := runtime.Open(dataDir+"/agent/containers", runtime.Options{Logger: l})
//	sb, _ := rt.CreateSandbox(ctx, runtime.SandboxConfig{ID: podUID, Hostname: name})
//	c, _ := rt.Create(ctx, runtime.ContainerConfig{ID: cid, SandboxID: sb.ID, Rootfs: …, Args: …})
//	_ = rt.Start(ctx, c.ID)
//	st, _ := rt.State(c.ID) // Running / Exited + ExitCode, OOMKilled, times
//	_, _ = rt.Stop(ctx, c.ID, grace); _ = rt.Delete(ctx, c.ID); _ = rt.RemoveSandbox(ctx, sb.ID)
//
// After a restart, Open the same root and reconcile against [Runtime.List] and
// [Runtime.ListSandboxes]; IDs, states and exit codes are preserved.
package runtime
