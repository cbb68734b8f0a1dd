package podworker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-dev/skiff/internal/agent/logs"
	"github.com/skiff-dev/skiff/internal/agent/podconfig"
	"github.com/skiff-dev/skiff/internal/agent/prober"
	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/runtime"
)

// Labels of containers and sandboxes (BRIEF5 contract); image GC and
// reconciliation read them.
const (
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodName       = "io.kubernetes.pod.name"
	LabelContainerName = "io.kubernetes.container.name"
	LabelRestartCount  = "io.kubernetes.container.restartCount"
	LabelImageID       = "skiff.image.id"
	// Extra labels the pod worker reads back after a restart: the status's
	// image and imageID.
	LabelImageRef  = "skiff.image.ref"
	LabelImageName = "skiff.image.name"
)

// maxTerminationMessage is the kubelet's per-container limit.
const maxTerminationMessage = 4096

// newID is a container ID: 64 random hex digits.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *Manager) cgroupParent(pod *corev1.Pod) string {
	return path.Join(m.cfg.CgroupRoot, podconfig.PodCgroupName(pod))
}

func (m *Manager) fifoPaths(id string) (string, string) {
	return filepath.Join(m.cfg.RunDir, id+".stdout"), filepath.Join(m.cfg.RunDir, id+".stderr")
}

func (m *Manager) nodeAllocatable() corev1.ResourceList {
	if m.cfg.NodeAllocatable == nil {
		return nil
	}
	return m.cfg.NodeAllocatable()
}

// ensureSandbox creates (or finds) the pod's sandbox and sets up its
// network.
func (w *podWorker) ensureSandbox(ctx context.Context, pod *corev1.Pod) error {
	w.mu.Lock()
	sb := w.sandbox
	w.mu.Unlock()
	if sb == nil {
		hostname, _, err := podconfig.PodHostname(pod, w.m.cfg.ClusterDomain, w.m.cfg.NodeHostname)
		if err != nil {
			return err
		}
		sb, err = w.m.rt.CreateSandbox(ctx, runtime.SandboxConfig{
			ID: string(pod.UID), Hostname: hostname, HostNetwork: pod.Spec.HostNetwork,
			Labels: map[string]string{LabelPodUID: string(pod.UID), LabelPodNamespace: pod.Namespace, LabelPodName: pod.Name},
		})
		if errors.Is(err, runtime.ErrExist) {
			sb, err = w.m.rt.GetSandbox(string(pod.UID))
		}
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.sandbox = sb
		w.mu.Unlock()
	}
	if w.netReady {
		return nil
	}
	if w.m.cfg.Network == nil || pod.Spec.HostNetwork {
		w.netReady = true
		return nil
	}
	ips, err := w.m.cfg.Network.SetUp(ctx, pod, sb.NetNSPath)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	w.podIPs, w.netReady, w.filesOK = ips, true, false
	return nil
}

// prepareVolumes writes the pod's volumes and files; false: not ready yet
// (a FailedMount event says why).
func (w *podWorker) prepareVolumes(ctx context.Context, pod *corev1.Pod) bool {
	podDir := w.m.podDir(pod.UID)
	vols, err := podconfig.WriteVolumes(ctx, podDir, pod, w.m.cfg.Sources, podconfig.VolumeOptions{
		Token: w.m.cfg.Token, MountTmpfs: mountTmpfs, NodeAllocatable: w.m.nodeAllocatable(),
	})
	w.vols = vols
	if err != nil {
		w.m.event(podRef(pod, ""), corev1.EventTypeWarning, "FailedMount", err.Error())
		return false
	}
	if w.filesOK {
		return true
	}
	hostname, _, err := podconfig.PodHostname(pod, w.m.cfg.ClusterDomain, w.m.cfg.NodeHostname)
	if err != nil {
		w.m.event(podRef(pod, ""), corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		return false
	}
	hosts, err := podconfig.HostsFile(pod, w.ipsForPod(pod), w.m.cfg.ClusterDomain, w.m.cfg.HostEtcHosts)
	if err != nil {
		w.m.event(podRef(pod, ""), corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		return false
	}
	resolv, err := podconfig.ResolvConf(pod, podconfig.DNSConfig{
		ClusterDNS: w.m.cfg.ClusterDNS, ClusterDomain: w.m.cfg.ClusterDomain,
		HostResolvConf: w.m.cfg.HostResolvConf, NodeIPs: w.m.cfg.NodeIPs,
	})
	if err != nil {
		w.m.event(podRef(pod, ""), corev1.EventTypeWarning, "DNSConfigForming", err.Error())
		return false
	}
	files, err := podconfig.WritePodFiles(podDir, hosts, []byte(hostname+"\n"), resolv)
	if err != nil {
		w.m.event(podRef(pod, ""), corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
		return false
	}
	w.files, w.filesOK = files, true
	return true
}

// ipsForPod are the pod's IPs as its containers see them.
func (w *podWorker) ipsForPod(pod *corev1.Pod) []string {
	if pod.Spec.HostNetwork {
		return w.m.cfg.NodeIPs
	}
	return w.podIPs
}

// keychain builds the registry credentials from the pod's imagePullSecrets;
// missing secrets are skipped, as the kubelet does.
func (w *podWorker) keychain(pod *corev1.Pod) (authn.Keychain, error) {
	var datas [][]byte
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := w.m.cfg.Sources.Secret(pod.Namespace, ref.Name)
		if err != nil || s == nil {
			w.m.log.Warn("unable to retrieve pull secret", "pod", klogKey(pod), "secret", ref.Name, "err", err)
			continue
		}
		if d, ok := s.Data[image.DockerConfigJSONKey]; ok {
			datas = append(datas, d)
		} else if d, ok := s.Data[image.DockerConfigKey]; ok {
			datas = append(datas, d)
		}
	}
	if len(datas) == 0 {
		return authn.DefaultKeychain, nil
	}
	return image.KeychainFromSecrets(datas...)
}

// ensureImage applies the container's imagePullPolicy; on failure it sets
// the container's waiting state and returns nil.
func (w *podWorker) ensureImage(ctx context.Context, pod *corev1.Pod, spec *corev1.Container) *image.Image {
	ref := spec.Image
	key := string(pod.UID) + "/" + ref
	c := w.ctr(spec.Name)
	ev := podRef(pod, spec.Name)
	now := time.Now()
	w.mu.Lock()
	lastErr, waiting := c.pullErr, c.waiting
	w.mu.Unlock()
	if waiting != nil && (waiting.Reason == ReasonErrImagePull || waiting.Reason == ReasonImagePullBackOff) &&
		w.m.pullBO.IsInBackOffSinceUpdate(key, now) {
		w.m.event(ev, corev1.EventTypeNormal, "BackOff", fmt.Sprintf("Back-off pulling image %q", ref))
		w.setWaiting(spec.Name, &corev1.ContainerStateWaiting{Reason: ReasonImagePullBackOff,
			Message: fmt.Sprintf("Back-off pulling image %q: %s: %s", ref, ReasonErrImagePull, lastErr)})
		w.wakeIn(w.m.pullBO.Get(key))
		return nil
	}
	policy := image.PullPolicy(spec.ImagePullPolicy)
	present, getErr := w.m.cfg.Images.Get(ref)
	pull, err := image.ShouldPull(policy, ref, getErr == nil)
	if err == nil && !pull {
		// No pull: skip Ensure, whose MarkUsed writes (and fsyncs) the
		// image record under the store's lock for every container.
		w.m.event(ev, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", ref))
		w.m.markUsed(present.ID)
		return present
	}
	if errors.Is(err, image.ErrNeverPull) {
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", ref)
		w.m.event(ev, corev1.EventTypeWarning, ReasonErrImageNeverPull, msg)
		w.setWaiting(spec.Name, &corev1.ContainerStateWaiting{Reason: ReasonErrImageNeverPull, Message: msg})
		return nil
	}
	kc, err := w.keychain(pod)
	if err == nil {
		if pull {
			// A pull may take long: show the pod as Pending with its
			// containers waiting (ContainerCreating) meanwhile.
			w.report(ctx, pod, false)
			w.m.event(ev, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", ref))
		}
		t0 := time.Now()
		var img *image.Image
		img, err = w.m.cfg.Images.Ensure(ctx, ref, policy, kc)
		if err == nil {
			d := time.Since(t0).Round(time.Millisecond)
			if pull {
				w.m.event(ev, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %v (%v including waiting). Image size: %d bytes.", ref, d, d, img.Size()))
			} else {
				w.m.event(ev, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", ref))
			}
			w.m.pullBO.Reset(key)
			w.mu.Lock()
			c.pullErr = ""
			w.mu.Unlock()
			return img
		}
	}
	if errors.Is(err, image.ErrNeverPull) {
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", ref)
		w.m.event(ev, corev1.EventTypeWarning, ReasonErrImageNeverPull, msg)
		w.setWaiting(spec.Name, &corev1.ContainerStateWaiting{Reason: ReasonErrImageNeverPull, Message: msg})
		return nil
	}
	msg := err.Error()
	w.m.event(ev, corev1.EventTypeWarning, "Failed", fmt.Sprintf("Failed to pull image %q: %s", ref, msg))
	w.m.event(ev, corev1.EventTypeWarning, "Failed", "Error: "+ReasonErrImagePull)
	w.m.pullBO.Next(key, time.Now())
	w.mu.Lock()
	c.pullErr = msg
	w.mu.Unlock()
	w.setWaiting(spec.Name, &corev1.ContainerStateWaiting{Reason: ReasonErrImagePull, Message: msg})
	w.wakeIn(w.m.pullBO.Get(key))
	return nil
}

// configError reports a container that could not be created.
func (w *podWorker) configError(pod *corev1.Pod, spec *corev1.Container, reason string, err error) {
	msg := err.Error()
	w.m.event(podRef(pod, spec.Name), corev1.EventTypeWarning, "Failed", "Error: "+msg)
	w.setWaiting(spec.Name, &corev1.ContainerStateWaiting{Reason: reason, Message: msg})
}

// services are the Services whose env vars the pod's containers get.
func (m *Manager) services(ns string) []*corev1.Service {
	if m.cfg.Services == nil {
		return nil
	}
	return m.cfg.Services(ns)
}

// startContainer creates and starts a new instance of spec.
func (w *podWorker) startContainer(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, isInit bool) {
	m := w.m
	t0 := time.Now()
	img := w.ensureImage(ctx, pod, spec)
	if img == nil {
		return
	}
	tImage := time.Since(t0)
	c := w.ctr(spec.Name)
	attempt := 0
	if cur := c.current(); cur != nil {
		attempt = cur.attempt + 1
	}
	lower, err := m.cfg.Images.LowerDirs(img)
	if err != nil {
		w.configError(pod, spec, ReasonCreateContainerError, err)
		return
	}
	podDir := m.podDir(pod.UID)
	tlog, err := podconfig.CreateTerminationLog(podDir, spec.Name, attempt)
	if err != nil {
		w.configError(pod, spec, ReasonCreateContainerError, err)
		return
	}
	cs, err := podconfig.Build(pod, spec, podconfig.ImageConfigFrom(img.Config), m.cfg.Sources, podconfig.Options{
		PodIPs: w.ipsForPod(pod), HostIPs: m.cfg.NodeIPs, NodeAllocatable: m.nodeAllocatable(),
		Services: m.services(pod.Namespace), ReadRootfsFile: podconfig.LowerdirReader(lower),
		Volumes: w.vols, PodFiles: w.files, TerminationLogPath: tlog,
	})
	if err != nil {
		w.configError(pod, spec, ReasonCreateContainerConfigError, err)
		return
	}
	for _, warn := range cs.Warnings {
		m.event(podRef(pod, spec.Name), corev1.EventTypeWarning, "InvalidEnvironmentVariableNames", warn)
	}
	imageName := ref2name(spec.Image)
	id := newID()
	outPath, errPath := m.fifoPaths(id)
	out, err := logs.OpenFIFO(outPath)
	if err != nil {
		w.configError(pod, spec, ReasonCreateContainerError, err)
		return
	}
	errf, err := logs.OpenFIFO(errPath)
	if err != nil {
		out.Close()
		os.Remove(outPath)
		w.configError(pod, spec, ReasonCreateContainerError, err)
		return
	}
	lw, err := logs.NewWriter(logs.Path(podDir, spec.Name, attempt), logs.WriterOptions{Logger: m.cfg.Logger})
	if err != nil {
		out.Close()
		errf.Close()
		os.Remove(outPath)
		os.Remove(errPath)
		w.configError(pod, spec, ReasonCreateContainerError, err)
		return
	}
	tPrep := time.Since(t0)
	release := m.acquireStart(ctx)
	_, err = m.rt.Create(ctx, runtime.ContainerConfig{
		ID: id, SandboxID: string(pod.UID), Rootfs: runtime.Rootfs{Lowerdirs: lower},
		Args: cs.Args, Env: cs.Env, WorkingDir: cs.WorkingDir,
		UID: cs.User.UID, GID: cs.User.GID, AdditionalGIDs: cs.User.AdditionalGIDs,
		ReadonlyRootfs: cs.ReadonlyRootfs, Mounts: cs.Mounts, Resources: cs.Resources,
		CgroupParent: m.cgroupParent(pod), StdoutPath: outPath, StderrPath: errPath,
		Stdin: spec.Stdin, StdinOnce: spec.StdinOnce, Tty: spec.TTY,
		Labels: map[string]string{
			LabelPodUID: string(pod.UID), LabelPodNamespace: pod.Namespace, LabelPodName: pod.Name,
			LabelContainerName: spec.Name, LabelRestartCount: strconv.Itoa(attempt),
			LabelImageID: img.ID, LabelImageRef: img.ImageRef(), LabelImageName: imageName,
		},
	})
	out.ReleaseWriter()
	errf.ReleaseWriter()
	if err != nil {
		release()
		lw.Close()
		out.Close()
		errf.Close()
		os.Remove(outPath)
		os.Remove(errPath)
		w.configError(pod, spec, ReasonCreateContainerError, err)
		return
	}
	lw.Copy(out, errf)
	in := &instance{
		id: id, name: spec.Name, attempt: attempt, imageID: img.ID, imageRef: img.ImageRef(), image: imageName,
		termLog: tlog, writer: lw, done: lw.Done(),
		state: &runtime.State{ID: id, Status: runtime.StatusCreated},
	}
	w.addInstance(ctx, c, in)
	tCreate := time.Since(t0)
	m.event(podRef(pod, spec.Name), corev1.EventTypeNormal, "Created", "Created container: "+spec.Name)
	err = m.rt.Start(ctx, id)
	release()
	if err != nil {
		m.event(podRef(pod, spec.Name), corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		if st, serr := m.rt.State(id); serr == nil {
			w.mu.Lock()
			in.state = st
			w.mu.Unlock()
		}
		w.setWaiting(spec.Name, &corev1.ContainerStateWaiting{Reason: ReasonRunContainerError, Message: err.Error()})
		m.rt.Kill(id, 9)
		w.watchExit(id)
		return
	}
	m.event(podRef(pod, spec.Name), corev1.EventTypeNormal, "Started", "Started container "+spec.Name)
	m.log.Debug("container started", "pod", klogKey(pod), "container", spec.Name, "id", id, "image", tImage,
		"prepare", tPrep-tImage, "create", tCreate-tPrep, "start", time.Since(t0)-tCreate)
	if st, err := m.rt.State(id); err == nil {
		w.mu.Lock()
		in.state = st
		c.waiting = nil
		w.mu.Unlock()
	}
	w.watchExit(id)
	w.addProbes(pod, spec, in)
	if spec.Lifecycle != nil && spec.Lifecycle.PostStart != nil {
		if msg, err := w.runHook(ctx, pod, spec, in, spec.Lifecycle.PostStart); err != nil {
			m.event(podRef(pod, spec.Name), corev1.EventTypeWarning, "FailedPostStartHook", hookMessage(msg, err))
			m.event(podRef(pod, spec.Name), corev1.EventTypeNormal, "Killing",
				fmt.Sprintf("Container %s failed post start hook, will be killed", spec.Name))
			w.m.pm.RemoveContainer(in.id)
			in.probed = false
			w.stopInstance(ctx, pod, spec, in, gracePeriod(pod, nil), false)
		}
	}
}

// acquireStart bounds how many containers are being created and started
// at once (Config.MaxParallelStarts); it returns the release function.
func (m *Manager) acquireStart(ctx context.Context) func() {
	if m.startSem == nil {
		return func() {}
	}
	select {
	case m.startSem <- struct{}{}:
		return func() { <-m.startSem }
	case <-ctx.Done():
		return func() {}
	}
}

// markUsed records an image's use for image GC's LRU order at most once a
// minute per image: Store.MarkUsed persists the record synchronously under
// the store's lock, which 50 containers starting at once would queue on.
func (m *Manager) markUsed(id string) {
	m.usedMu.Lock()
	last, ok := m.used[id]
	now := time.Now()
	if ok && now.Sub(last) < time.Minute {
		m.usedMu.Unlock()
		return
	}
	m.used[id] = now
	m.usedMu.Unlock()
	m.cfg.Images.MarkUsed(id)
}

// ref2name is the normalised image name the status shows.
func ref2name(ref string) string {
	if n, err := image.NormalizeReference(ref); err == nil {
		return n
	}
	return ref
}

// addInstance makes in the container's newest instance; instances older
// than the previous one are removed (kubelet keeps one dead container for
// lastState and `logs --previous`).
func (w *podWorker) addInstance(ctx context.Context, c *ctr, in *instance) {
	w.mu.Lock()
	c.insts = append(c.insts, in)
	var old []*instance
	if len(c.insts) > 2 {
		old = append(old, c.insts[:len(c.insts)-2]...)
		c.insts = append([]*instance(nil), c.insts[len(c.insts)-2:]...)
	}
	w.mu.Unlock()
	for _, o := range old {
		go func() {
			w.m.removeInstance(ctx, o)
			w.m.removeRunFiles(w.uid, o)
		}()
	}
}

func (w *podWorker) watchExit(id string) {
	ctx := w.m.ctx
	go func() {
		if _, err := w.m.rt.Wait(ctx, id); err == nil {
			w.poke()
		}
	}()
}

// addProbes registers a running instance with the prober.
func (w *podWorker) addProbes(pod *corev1.Pod, spec *corev1.Container, in *instance) {
	w.mu.Lock()
	sb := w.sandbox
	started := time.Now()
	if in.state != nil && !in.state.StartedAt.IsZero() {
		started = in.state.StartedAt
	}
	w.mu.Unlock()
	ip := "127.0.0.1"
	if ips := w.ipsForPod(pod); len(ips) > 0 {
		ip = ips[0]
	}
	t := prober.Target{
		PodUID: pod.UID, Namespace: pod.Namespace, PodName: pod.Name, PodIP: ip,
		Container: spec, ContainerID: in.id, StartedAt: started,
		PodGracePeriod: pod.Spec.TerminationGracePeriodSeconds,
	}
	if sb != nil && sb.NetNSPath != "" {
		netns := sb.NetNSPath
		t.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return runtime.DialInNetNS(ctx, netns, network, addr)
		}
	} else {
		t.Dial = (&net.Dialer{}).DialContext // host network
	}
	if err := w.m.pm.AddContainer(t); err != nil {
		w.m.log.Warn("add probes", "pod", klogKey(pod), "container", spec.Name, "err", err)
		return
	}
	in.probed = true
}

// terminationMessage is the kubelet's: the termination log file's content,
// or with FallbackToLogsOnError the end of the log of a failed run.
func (w *podWorker) terminationMessage(spec *corev1.Container, in *instance) string {
	w.mu.Lock()
	if in.msg != nil {
		defer w.mu.Unlock()
		return *in.msg
	}
	w.mu.Unlock()
	var msg string
	if in.termLog != "" {
		if b, err := os.ReadFile(in.termLog); err == nil {
			if len(b) > maxTerminationMessage {
				b = b[:maxTerminationMessage]
			}
			msg = string(b)
		}
	}
	if msg == "" && spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && in.state.ExitCode != 0 {
		if in.done != nil {
			select {
			case <-in.done:
			case <-time.After(time.Second):
			}
		}
		var buf bytes.Buffer
		tail := int64(80)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = logs.ReadLogs(ctx, logs.Path(w.m.podDir(w.uid), in.name, in.attempt), logs.ReadOptions{TailLines: &tail}, &buf)
		cancel()
		b := buf.Bytes()
		if len(b) > 2048 {
			b = b[len(b)-2048:]
		}
		msg = string(b)
	}
	w.mu.Lock()
	in.msg = &msg
	w.mu.Unlock()
	return msg
}

// removeInstance deletes a container and its FIFOs.
func (m *Manager) removeInstance(ctx context.Context, in *instance) {
	m.pm.RemoveContainer(in.id)
	if err := m.rt.Delete(ctx, in.id); err != nil {
		m.log.Warn("delete container", "id", in.id, "err", err)
	}
	if in.writer != nil {
		select {
		case <-in.writer.Done():
		case <-time.After(2 * time.Second):
		}
		in.writer.Close()
	}
	o, e := m.fifoPaths(in.id)
	os.Remove(o)
	os.Remove(e)
}

// removeRunFiles removes the log files and termination log of a removed
// instance.
func (m *Manager) removeRunFiles(uid types.UID, in *instance) {
	p := logs.Path(m.podDir(uid), in.name, in.attempt)
	matches, _ := filepath.Glob(p + ".*")
	for _, f := range append(matches, p) {
		os.Remove(f)
	}
	if in.termLog != "" {
		os.Remove(in.termLog)
	}
}

// readopt rebuilds the worker's state from what the runtime held for the
// pod when the manager started: containers keep running, their output keeps
// flowing into the same CRI log files, probes start again.
func (w *podWorker) readopt(ctx context.Context, pod *corev1.Pod) {
	a := w.adopt
	m := w.m
	if a.sandbox != nil {
		w.sandbox = a.sandbox
		if !pod.Spec.HostNetwork {
			for _, ip := range pod.Status.PodIPs {
				w.podIPs = append(w.podIPs, ip.IP)
			}
		}
		w.netReady = m.cfg.Network == nil || pod.Spec.HostNetwork || len(w.podIPs) > 0
	} else if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		w.released = true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodInitialized && c.Status == corev1.ConditionTrue {
			w.initialized = true
		}
	}
	byName := map[string][]*instance{}
	var stray []*instance
	for _, st := range a.containers {
		name := st.Labels[LabelContainerName]
		attempt, _ := strconv.Atoi(st.Labels[LabelRestartCount])
		in := &instance{
			id: st.ID, name: name, attempt: attempt, state: st,
			imageID: st.Labels[LabelImageID], imageRef: st.Labels[LabelImageRef], image: st.Labels[LabelImageName],
			termLog: filepath.Join(m.podDir(pod.UID), "containers", name, fmt.Sprintf("termination-log-%d", attempt)),
		}
		if containerSpec(pod, name) == nil || st.Status == runtime.StatusCreated || st.Status == runtime.StatusUnknown && st.StartedAt.IsZero() {
			stray = append(stray, in)
			continue
		}
		byName[name] = append(byName[name], in)
	}
	for name, insts := range byName {
		sort.Slice(insts, func(i, j int) bool { return insts[i].attempt < insts[j].attempt })
		if len(insts) > 2 {
			stray = append(stray, insts[:len(insts)-2]...)
			insts = insts[len(insts)-2:]
		}
		spec := containerSpec(pod, name)
		for _, in := range insts {
			w.reopenLog(pod, in)
			if in.running() {
				w.watchExit(in.id)
				for _, cs := range append(append([]corev1.ContainerStatus(nil), pod.Status.ContainerStatuses...), pod.Status.InitContainerStatuses...) {
					if cs.Name == name && cs.ContainerID == runtimeID(in.id) && cs.State.Running != nil {
						in.assumeReady = cs.Ready
						in.assumeStarted = cs.Started != nil && *cs.Started
						in.assumeUntil = time.Now().Add(assumeWindow(spec))
					}
				}
				w.addProbes(pod, spec, in)
			}
		}
		if spec != nil && !prober.IsSidecar(spec) {
			for _, ic := range pod.Spec.Containers {
				if ic.Name == name {
					w.initialized = true // a regular container ran
				}
			}
		}
		w.mu.Lock()
		w.ctrs[name] = &ctr{insts: insts}
		w.mu.Unlock()
	}
	for _, in := range stray {
		m.removeInstance(ctx, in)
	}
	m.log.Info("pod re-adopted", "pod", klogKey(pod), "containers", len(a.containers), "removed", len(stray))
}

// assumeWindow is how long a re-adopted container keeps the ready/started
// it had before its probes report: long enough for a first probe result.
func assumeWindow(spec *corev1.Container) time.Duration {
	d := 3 * time.Second
	for _, p := range []*corev1.Probe{spec.ReadinessProbe, spec.StartupProbe} {
		if p == nil {
			continue
		}
		period, timeout, thr := p.PeriodSeconds, p.TimeoutSeconds, p.FailureThreshold
		if period <= 0 {
			period = 10
		}
		if timeout <= 0 {
			timeout = 1
		}
		if thr <= 0 {
			thr = 3
		}
		if x := time.Duration(2*period+timeout)*time.Second + time.Duration(period*thr)*time.Second; x > d {
			d = x
		}
	}
	return d
}

// reopenLog reconnects a re-adopted instance's FIFOs to its CRI log file;
// output buffered in the pipes while no agent ran is written too.
func (w *podWorker) reopenLog(pod *corev1.Pod, in *instance) {
	closed := make(chan struct{})
	close(closed)
	in.done = closed
	outPath, errPath := w.m.fifoPaths(in.id)
	if _, err := os.Stat(outPath); err != nil {
		return
	}
	out, err := logs.OpenFIFO(outPath)
	if err != nil {
		return
	}
	errf, err := logs.OpenFIFO(errPath)
	if err != nil {
		out.Close()
		return
	}
	lw, err := logs.NewWriter(logs.Path(w.m.podDir(pod.UID), in.name, in.attempt), logs.WriterOptions{Logger: w.m.cfg.Logger})
	if err != nil {
		out.Close()
		errf.Close()
		return
	}
	out.ReleaseWriter()
	errf.ReleaseWriter()
	lw.Copy(out, errf)
	in.writer, in.done = lw, lw.Done()
}
