package podconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Volume is a pod volume prepared on the host.
type Volume struct {
	Name string
	// Kind is the volume source: "emptyDir", "configMap", "secret",
	// "downwardAPI", "projected", "hostPath".
	Kind string
	// HostPath is what containers bind-mount: the volume directory under
	// the pod directory, or the hostPath path.
	HostPath string
	// ReadOnly volumes are always mounted read-only (configMap, secret,
	// downwardAPI, projected: the kubelet's mustMountRO).
	ReadOnly bool
	// Tmpfs is set for memory-backed volumes: emptyDir medium Memory, and
	// (as the kubelet does) secret, downwardAPI and projected volumes. A
	// tmpfs must be mounted at HostPath before anything is written there:
	// WriteVolumes calls VolumeOptions.MountTmpfs for that when it is set.
	Tmpfs *TmpfsSpec
}

// TmpfsSpec is a tmpfs the pod worker mounts.
type TmpfsSpec struct {
	// SizeBytes is the size= option; 0: the kernel's default (half of RAM).
	SizeBytes int64
}

// VolumeOptions are what WriteVolumes needs besides the pod.
type VolumeOptions struct {
	// Token issues service-account tokens for serviceAccountToken
	// projections; nil makes such volumes fail.
	Token TokenFunc
	// MountTmpfs mounts a tmpfs of the given size at dir unless one is
	// already mounted there (it is called on every WriteVolumes). nil: no
	// tmpfs is mounted; memory-backed volumes are plain directories on the
	// pod directory's filesystem and the caller handles Volume.Tmpfs.
	MountTmpfs func(dir string, sizeBytes int64) error
	// NodeAllocatable: default limits for resourceFieldRef items and the
	// size of memory-backed volumes.
	NodeAllocatable corev1.ResourceList
}

// Plugin directory names under PODDIR/volumes, as the kubelet names them.
var pluginDirs = map[string]string{
	"emptyDir":    "kubernetes.io~empty-dir",
	"configMap":   "kubernetes.io~configmap",
	"secret":      "kubernetes.io~secret",
	"downwardAPI": "kubernetes.io~downward-api",
	"projected":   "kubernetes.io~projected",
}

// VolumeDir is where WriteVolumes keeps volume name of the given kind:
// PODDIR/volumes/kubernetes.io~<plugin>/<name>, as the kubelet.
func VolumeDir(podDir, kind, name string) string {
	return filepath.Join(podDir, "volumes", pluginDirs[kind], name)
}

// WriteVolumes prepares every volume of pod under podDir and returns them by
// name (for Options.Volumes). It is idempotent and is meant to be called on
// every pod sync: configMap, secret, downwardAPI and projected contents are
// rewritten with WriteAtomic when they changed (containers see the new
// version through the ..data symlink; subPath mounts keep the old one, as
// upstream), and nothing is written when nothing changed. hostPath volumes
// are checked against their type (DirectoryOrCreate/FileOrCreate create the
// path; an unset type creates a missing directory, as containerd does).
// Errors name the volume, as the kubelet's "MountVolume.SetUp failed for
// volume …"; the other volumes are still prepared.
func WriteVolumes(ctx context.Context, podDir string, pod *corev1.Pod, src Sources, opts VolumeOptions) (map[string]Volume, error) {
	out := map[string]Volume{}
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		vol, err := writeVolume(ctx, podDir, pod, v, src, &opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", v.Name, err))
			continue
		}
		out[v.Name] = vol
	}
	return out, errors.Join(errs...)
}

func writeVolume(ctx context.Context, podDir string, pod *corev1.Pod, v *corev1.Volume, src Sources, opts *VolumeOptions) (Volume, error) {
	var fsGroup *int64
	if pod.Spec.SecurityContext != nil {
		fsGroup = pod.Spec.SecurityContext.FSGroup
	}
	vs := &v.VolumeSource
	switch {
	case vs.HostPath != nil:
		if err := checkHostPath(vs.HostPath.Path, vs.HostPath.Type); err != nil {
			return Volume{}, err
		}
		return Volume{Name: v.Name, Kind: "hostPath", HostPath: vs.HostPath.Path}, nil

	case vs.EmptyDir != nil:
		vol := Volume{Name: v.Name, Kind: "emptyDir", HostPath: VolumeDir(podDir, "emptyDir", v.Name)}
		if vs.EmptyDir.Medium == corev1.StorageMediumMemory {
			vol.Tmpfs = &TmpfsSpec{SizeBytes: memoryVolumeSize(pod, vs.EmptyDir.SizeLimit, opts.NodeAllocatable)}
		}
		if err := prepareDir(&vol, opts, 0o777); err != nil {
			return Volume{}, err
		}
		if fsGroup != nil {
			// SetVolumeOwnership on a writable volume: group fsGroup,
			// setgid, g+rwx.
			if err := os.Chown(vol.HostPath, -1, int(*fsGroup)); err != nil {
				return Volume{}, err
			}
			if err := os.Chmod(vol.HostPath, 0o777|os.ModeSetgid); err != nil {
				return Volume{}, err
			}
		}
		return vol, nil
	}

	var kind string
	var payload map[string]FileProjection
	var err error
	switch {
	case vs.ConfigMap != nil:
		kind = "configMap"
		payload, err = configMapPayload(src, pod.Namespace, vs.ConfigMap.Name, vs.ConfigMap.Items, vs.ConfigMap.DefaultMode, isTrue(vs.ConfigMap.Optional))
	case vs.Secret != nil:
		kind = "secret"
		payload, err = secretPayload(src, pod.Namespace, vs.Secret.SecretName, vs.Secret.Items, vs.Secret.DefaultMode, isTrue(vs.Secret.Optional))
	case vs.DownwardAPI != nil:
		kind = "downwardAPI"
		payload, err = downwardPayload(pod, vs.DownwardAPI.Items, vs.DownwardAPI.DefaultMode, opts.NodeAllocatable)
	case vs.Projected != nil:
		kind = "projected"
		payload, err = projectedPayload(ctx, pod, vs.Projected, src, opts, fsGroup != nil)
	default:
		return Volume{}, errors.New("unsupported volume type")
	}
	if err != nil {
		return Volume{}, err
	}
	vol := Volume{Name: v.Name, Kind: kind, HostPath: VolumeDir(podDir, kind, v.Name), ReadOnly: true}
	if kind != "configMap" {
		vol.Tmpfs = &TmpfsSpec{SizeBytes: memoryVolumeSize(pod, nil, opts.NodeAllocatable)}
	}
	if err := prepareDir(&vol, opts, 0o755); err != nil {
		return Volume{}, err
	}
	if fsGroup != nil {
		for k, fp := range payload {
			fp.GID = fsGroup
			payload[k] = fp
		}
	}
	if _, err := WriteAtomic(vol.HostPath, payload); err != nil {
		return Volume{}, err
	}
	return vol, nil
}

func prepareDir(vol *Volume, opts *VolumeOptions, perm os.FileMode) error {
	if err := os.MkdirAll(vol.HostPath, 0o750); err != nil {
		return err
	}
	if vol.Tmpfs != nil && opts.MountTmpfs != nil {
		if err := opts.MountTmpfs(vol.HostPath, vol.Tmpfs.SizeBytes); err != nil {
			return fmt.Errorf("mount tmpfs: %w", err)
		}
	}
	return os.Chmod(vol.HostPath, perm)
}

// memoryVolumeSize is upstream's calculateEmptyDirMemorySize: the node's
// allocatable memory, lowered to the pod's memory limit (when every
// container has one) and then to the volume's sizeLimit.
func memoryVolumeSize(pod *corev1.Pod, sizeLimit *resource.Quantity, allocatable corev1.ResourceList) int64 {
	size := int64(0)
	if m, ok := allocatable[corev1.ResourceMemory]; ok {
		size = m.Value()
	}
	lower := func(v int64) {
		if v > 0 && (size == 0 || v <= size) {
			size = v
		}
	}
	// The pod's memory limit as ResourceConfigForPod: the sum of the app
	// containers' limits, at least the largest init container's; only
	// when every container has a limit.
	var sum, initMax int64
	limited := true
	for _, c := range pod.Spec.Containers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || q.IsZero() {
			limited = false
			break
		}
		sum += q.Value()
	}
	for _, c := range pod.Spec.InitContainers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || q.IsZero() {
			limited = false
			break
		}
		initMax = max(initMax, q.Value())
	}
	if limited {
		lower(max(sum, initMax))
	}
	if sizeLimit != nil {
		lower(sizeLimit.Value())
	}
	return size
}

// checkHostPath is upstream's hostpath checkType (checkTypeInternal), with
// the kubelet's MakeDir (0755) and MakeFile (0644) for the …OrCreate types.
func checkHostPath(p string, t *corev1.HostPathType) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("hostPath %q must be an absolute path", p)
	}
	typ := corev1.HostPathUnset
	if t != nil {
		typ = *t
	}
	fi, statErr := os.Stat(p)
	exists := statErr == nil
	isType := func(m os.FileMode) bool { return exists && fi.Mode().Type() == m }
	switch typ {
	case corev1.HostPathUnset:
		// No check. containerd creates a missing source directory.
		if !exists && errors.Is(statErr, fs.ErrNotExist) {
			return os.MkdirAll(p, 0o755)
		}
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			return os.MkdirAll(p, 0o755)
		}
		fallthrough
	case corev1.HostPathDirectory:
		if !exists || !fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", p)
		}
	case corev1.HostPathFileOrCreate:
		if !exists {
			f, err := os.OpenFile(p, os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		fallthrough
	case corev1.HostPathFile:
		if !exists || !fi.Mode().IsRegular() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", p)
		}
	case corev1.HostPathSocket:
		if !isType(os.ModeSocket) {
			return fmt.Errorf("hostPath type check failed: %s is not a socket file", p)
		}
	case corev1.HostPathCharDev:
		if !isType(os.ModeDevice | os.ModeCharDevice) {
			return fmt.Errorf("hostPath type check failed: %s is not a character device", p)
		}
	case corev1.HostPathBlockDev:
		if !isType(os.ModeDevice) {
			return fmt.Errorf("hostPath type check failed: %s is not a block device", p)
		}
	default:
		return fmt.Errorf("%s is an invalid volume type", typ)
	}
	return nil
}

const defaultVolumeMode int32 = 0o644

func modeOr(m *int32) int32 {
	if m != nil {
		return *m
	}
	return defaultVolumeMode
}

// configMapPayload is upstream's configmap volume SetUpAt + MakePayload.
func configMapPayload(src Sources, ns, name string, items []corev1.KeyToPath, defaultMode *int32, optional bool) (map[string]FileProjection, error) {
	cm, err := getConfigMap(src, ns, name, optional)
	if err != nil {
		return nil, err
	}
	if cm == nil {
		cm = &corev1.ConfigMap{}
	}
	mode := modeOr(defaultMode)
	payload := map[string]FileProjection{}
	if len(items) == 0 {
		for k, v := range cm.Data {
			payload[k] = FileProjection{Data: []byte(v), Mode: mode}
		}
		for k, v := range cm.BinaryData {
			payload[k] = FileProjection{Data: v, Mode: mode}
		}
		return payload, nil
	}
	for _, it := range items {
		var data []byte
		if s, ok := cm.Data[it.Key]; ok {
			data = []byte(s)
		} else if b, ok := cm.BinaryData[it.Key]; ok {
			data = b
		} else {
			if optional {
				continue
			}
			return nil, fmt.Errorf("configmap references non-existent config key: %s", it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		payload[it.Path] = FileProjection{Data: data, Mode: m}
	}
	return payload, nil
}

// secretPayload is upstream's secret volume SetUpAt + MakePayload.
func secretPayload(src Sources, ns, name string, items []corev1.KeyToPath, defaultMode *int32, optional bool) (map[string]FileProjection, error) {
	s, err := getSecret(src, ns, name, optional)
	if err != nil {
		return nil, err
	}
	if s == nil {
		s = &corev1.Secret{}
	}
	mode := modeOr(defaultMode)
	payload := map[string]FileProjection{}
	if len(items) == 0 {
		for k, v := range s.Data {
			payload[k] = FileProjection{Data: v, Mode: mode}
		}
		return payload, nil
	}
	for _, it := range items {
		data, ok := s.Data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("references non-existent secret key: %s", it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		payload[it.Path] = FileProjection{Data: data, Mode: m}
	}
	return payload, nil
}

// downwardPayload is upstream's downwardapi.CollectData.
func downwardPayload(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defaultMode *int32, allocatable corev1.ResourceList) (map[string]FileProjection, error) {
	payload := map[string]FileProjection{}
	var errs []error
	for _, it := range items {
		fp := FileProjection{Mode: modeOr(defaultMode)}
		if it.Mode != nil {
			fp.Mode = *it.Mode
		}
		switch {
		case it.FieldRef != nil:
			v, err := podFieldValue(it.FieldRef.FieldPath, pod, nil, nil, false)
			if err != nil {
				errs = append(errs, err)
			}
			fp.Data = []byte(v)
		case it.ResourceFieldRef != nil:
			c := findContainer(pod, it.ResourceFieldRef.ContainerName)
			if c == nil {
				errs = append(errs, fmt.Errorf("container %s not found", it.ResourceFieldRef.ContainerName))
				continue
			}
			v, err := containerResourceValue(it.ResourceFieldRef, c, allocatable)
			if err != nil {
				errs = append(errs, err)
			}
			fp.Data = []byte(v)
		}
		payload[filepath.Clean(it.Path)] = fp
	}
	return payload, errors.Join(errs...)
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// projectedPayload is upstream's projected volume collectData: sources
// merged in order (a later source's path replaces an earlier one).
func projectedPayload(ctx context.Context, pod *corev1.Pod, p *corev1.ProjectedVolumeSource, src Sources, opts *VolumeOptions, fsOwned bool) (map[string]FileProjection, error) {
	payload := map[string]FileProjection{}
	var errs []error
	merge := func(m map[string]FileProjection) {
		for k, v := range m {
			payload[k] = v
		}
	}
	for _, s := range p.Sources {
		switch {
		case s.Secret != nil:
			m, err := secretPayload(src, pod.Namespace, s.Secret.Name, s.Secret.Items, p.DefaultMode, isTrue(s.Secret.Optional))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			merge(m)
		case s.ConfigMap != nil:
			m, err := configMapPayload(src, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, p.DefaultMode, isTrue(s.ConfigMap.Optional))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			merge(m)
		case s.DownwardAPI != nil:
			m, err := downwardPayload(pod, s.DownwardAPI.Items, p.DefaultMode, opts.NodeAllocatable)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			merge(m)
		case s.ServiceAccountToken != nil:
			tp := s.ServiceAccountToken
			if opts.Token == nil {
				errs = append(errs, errors.New("no service account token source"))
				continue
			}
			exp := int64(3600)
			if tp.ExpirationSeconds != nil {
				exp = *tp.ExpirationSeconds
			}
			tok, err := opts.Token(ctx, pod, tp.Audience, exp)
			if err != nil {
				errs = append(errs, fmt.Errorf("failed to fetch token: %w", err))
				continue
			}
			mode := modeOr(p.DefaultMode)
			if fsOwned {
				// Upstream: 0600, which SetVolumeOwnership makes 0640.
				mode = 0o600
			}
			payload[tp.Path] = FileProjection{Data: tok, Mode: mode}
		default:
			errs = append(errs, errors.New("unsupported projected volume source"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return payload, nil
}

// RemovePodDir tears down what WriteVolumes, WritePodFiles and
// CreateTerminationLog made for a pod once all its containers are gone
// (the kubelet's volume TearDown + pod directory cleanup): unmount is called
// for every volume directory of a plugin that may be memory-backed (it must
// tolerate a directory with nothing mounted) and the pod directory is then
// removed. hostPath volumes live outside podDir and are never touched;
// symlinks are not followed.
func RemovePodDir(podDir string, unmount func(dir string) error) error {
	if unmount != nil {
		for _, kind := range []string{"emptyDir", "secret", "downwardAPI", "projected"} {
			base := filepath.Join(podDir, "volumes", pluginDirs[kind])
			ents, err := os.ReadDir(base)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			for _, e := range ents {
				if e.IsDir() {
					if err := unmount(filepath.Join(base, e.Name())); err != nil {
						return fmt.Errorf("unmount volume %s: %w", e.Name(), err)
					}
				}
			}
		}
	}
	return os.RemoveAll(podDir)
}
