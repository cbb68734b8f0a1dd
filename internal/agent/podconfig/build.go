package podconfig

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-dev/skiff/internal/runtime"
)

// ImageConfig is the part of an image's config that shapes a container.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=VALUE
	WorkingDir string
	User       string // "uid", "uid:gid", "name", "name:group"
}

// ImageConfigFrom takes the fields Build needs from an image config
// (image.Image.Config is a v1.Config).
func ImageConfigFrom(c v1.Config) ImageConfig {
	return ImageConfig{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}
}

// Options are the node- and pod-level facts Build needs besides the spec.
type Options struct {
	// PodIPs and HostIPs for status.podIP(s) / status.hostIP(s) fieldRefs
	// and /etc/hosts (primary first).
	PodIPs, HostIPs []string
	// NodeAllocatable is the default for unset limits in resourceFieldRef.
	NodeAllocatable corev1.ResourceList
	// Services are the Services the kubelet would list: at least those of
	// the pod's namespace and default/kubernetes (service-link env vars).
	Services []*corev1.Service
	// ReadRootfsFile reads a file of the container's rootfs ("/etc/passwd",
	// "/etc/group") for resolving the image's User; see LowerdirReader.
	// nil: only numeric image users are accepted.
	ReadRootfsFile func(path string) ([]byte, error)
	// Volumes are the pod's volumes as WriteVolumes returned them, by name;
	// needed when the container has volumeMounts.
	Volumes map[string]Volume
	// PodFiles are the pod-level files mounted into every container
	// (empty fields are not mounted).
	PodFiles PodFiles
	// TerminationLogPath is the host file mounted at the container's
	// terminationMessagePath (see CreateTerminationLog); empty: none.
	TerminationLogPath string
}

// PodFiles are the host paths of the files the kubelet (and the CRI runtime)
// mount into each container of a pod.
type PodFiles struct {
	Hosts, Hostname, ResolvConf string
}

// ContainerSpec is what the runtime runs for a container: the fields of
// runtime.ContainerConfig that come from the pod spec and the image.
type ContainerSpec struct {
	Args       []string
	Env        []string // KEY=VALUE: image env, then the pod's
	WorkingDir string
	User       User
	Resources  runtime.Resources
	Mounts     []runtime.Mount
	// ReadonlyRootfs from securityContext.readOnlyRootFilesystem.
	ReadonlyRootfs bool
	// Warnings are events the kubelet would record (envFrom keys skipped).
	Warnings []string
}

// Build resolves container c of pod into what the runtime runs, as the
// kubelet (kuberuntime generateContainerConfig) and containerd together
// would: env, command/args, working dir, user, resources and mounts.
// Errors are those the kubelet reports as CreateContainerConfigError.
func Build(pod *corev1.Pod, c *corev1.Container, img ImageConfig, src Sources, opts Options) (*ContainerSpec, error) {
	podEnv, warnings, err := containerEnv(pod, c, src, &opts)
	if err != nil {
		return nil, err
	}
	spec := &ContainerSpec{Warnings: warnings}
	spec.Env = mergeEnv(img.Env, podEnv)
	envMap := make(map[string]string, len(podEnv))
	for _, e := range podEnv {
		envMap[e.Name] = e.Value
	}
	spec.Args, err = commandArgs(c, img, envMap)
	if err != nil {
		return nil, err
	}
	spec.WorkingDir = c.WorkingDir
	if spec.WorkingDir == "" {
		spec.WorkingDir = img.WorkingDir
	}
	if spec.WorkingDir == "" {
		spec.WorkingDir = "/"
	}
	spec.User, err = ResolveUser(pod, c, img.User, opts.ReadRootfsFile)
	if err != nil {
		return nil, err
	}
	if err := verifyRunAsNonRoot(pod, c, img.User); err != nil {
		return nil, err
	}
	spec.ReadonlyRootfs = c.SecurityContext != nil && isTrue(c.SecurityContext.ReadOnlyRootFilesystem)
	spec.Resources = ContainerResources(c)
	spec.Mounts, err = containerMounts(pod, c, envMap, &opts)
	if err != nil {
		return nil, err
	}
	return spec, nil
}

// mergeEnv is containerd's WithEnv over the image env: image variables first,
// a pod variable with the same name replaces the image's in place, new ones
// are appended in order.
func mergeEnv(image []string, pod []EnvVar) []string {
	out := make([]string, 0, len(image)+len(pod))
	idx := map[string]int{}
	for _, kv := range image {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	for _, e := range pod {
		kv := e.Name + "=" + e.Value
		if i, ok := idx[e.Name]; ok {
			out[i] = kv
			continue
		}
		idx[e.Name] = len(out)
		out = append(out, kv)
	}
	return out
}

// ErrNoCommand is containerd's "no command specified": neither the pod nor
// the image gives a command.
var ErrNoCommand = errors.New("no command specified")

// commandArgs is upstream's kubecontainer.ExpandContainerCommandAndArgs
// ($(VAR) in command and args from the pod's env, not the image's) followed
// by containerd's getCommand/args merge: command replaces the image's
// Entrypoint and drops its Cmd; args alone replace Cmd.
func commandArgs(c *corev1.Container, img ImageConfig, env map[string]string) ([]string, error) {
	mapping := mappingFuncFor(env)
	var command, args []string
	for _, s := range c.Command {
		command = append(command, Expand(s, mapping))
	}
	for _, s := range c.Args {
		args = append(args, Expand(s, mapping))
	}
	if len(command) == 0 {
		if len(args) == 0 {
			args = append([]string{}, img.Cmd...)
		}
		if !(len(img.Entrypoint) == 1 && img.Entrypoint[0] == "") {
			command = append([]string{}, img.Entrypoint...)
		}
	}
	if len(command) == 0 && len(args) == 0 {
		return nil, ErrNoCommand
	}
	return append(command, args...), nil
}

// ContainerResources is the kubelet's generateLinuxContainerResources:
// shares from the CPU request (the limit when only a limit is set), a CFS
// quota from the CPU limit over a 100 ms period, the memory limit.
func ContainerResources(c *corev1.Container) runtime.Resources {
	var r runtime.Resources
	cpuReq := c.Resources.Requests.Cpu()
	cpuLim := c.Resources.Limits.Cpu()
	if cpuReq.IsZero() && !cpuLim.IsZero() {
		r.CPUShares = runtime.CPUShares(cpuLim.MilliValue())
	} else {
		r.CPUShares = runtime.CPUShares(cpuReq.MilliValue())
	}
	if q := runtime.CPUQuota(cpuLim.MilliValue()); q > 0 {
		r.CPUQuota = q
		r.CPUPeriod = runtime.DefaultCPUPeriod
	}
	r.MemoryLimit = c.Resources.Limits.Memory().Value()
	return r
}

// podHostnameDomain is upstream's Kubelet.GeneratePodHostNameAndDomain.
func podHostnameDomain(pod *corev1.Pod, clusterDomain string) (string, string, error) {
	hostname := pod.Name
	if pod.Spec.Hostname != "" {
		if msgs := dns1123Label(pod.Spec.Hostname); msgs != "" {
			return "", "", fmt.Errorf("pod Hostname %q is not a valid DNS label: %s", pod.Spec.Hostname, msgs)
		}
		hostname = pod.Spec.Hostname
	}
	// truncatePodHostnameIfNeeded
	if len(hostname) > 63 {
		t := strings.TrimRight(hostname[:63], "-.")
		if t == "" {
			return "", "", fmt.Errorf("hostname for pod %q was invalid: %q", pod.Name, hostname)
		}
		hostname = t
	}
	domain := ""
	if pod.Spec.Subdomain != "" {
		if msgs := dns1123Label(pod.Spec.Subdomain); msgs != "" {
			return "", "", fmt.Errorf("pod Subdomain %q is not a valid DNS label: %s", pod.Spec.Subdomain, msgs)
		}
		domain = fmt.Sprintf("%s.%s.svc.%s", pod.Spec.Subdomain, pod.Namespace, clusterDomain)
	}
	return hostname, domain, nil
}

// verifyRunAsNonRoot is upstream's kuberuntime verifyRunAsNonRoot, with the
// image user as getImageUser reads it (numeric uid part, else the name; no
// user means root).
func verifyRunAsNonRoot(pod *corev1.Pod, c *corev1.Container, imageUser string) error {
	var nonRoot *bool
	var runAsUser *int64
	if sc := pod.Spec.SecurityContext; sc != nil {
		nonRoot, runAsUser = sc.RunAsNonRoot, sc.RunAsUser
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			runAsUser = sc.RunAsUser
		}
	}
	if !isTrue(nonRoot) {
		return nil
	}
	podRef := fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID) // format.Pod
	if runAsUser != nil {
		if *runAsUser == 0 {
			return fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podRef, c.Name)
		}
		return nil
	}
	name, _, _ := strings.Cut(imageUser, ":")
	if name == "" {
		name = "0"
	}
	uid, err := strconv.ParseInt(name, 10, 64)
	switch {
	case err != nil:
		return fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", name, podRef, c.Name)
	case uid == 0:
		return fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podRef, c.Name)
	}
	return nil
}
