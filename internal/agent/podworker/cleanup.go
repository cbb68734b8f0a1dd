package podworker

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-dev/skiff/internal/agent/podconfig"
)

// mountTmpfs mounts a tmpfs at dir unless one is mounted there already
// (podconfig.VolumeOptions.MountTmpfs).
func mountTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	mounted, err := isMountPoint(dir)
	if err != nil || mounted {
		return err
	}
	opts := "mode=0755"
	if size > 0 {
		opts += ",size=" + strconv.FormatInt(size, 10)
	}
	return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts)
}

// isMountPoint reports whether dir is on another device than its parent
// (enough for the tmpfs mounts made here).
func isMountPoint(dir string) (bool, error) {
	var st, pst unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(dir), &pst); err != nil {
		return false, err
	}
	return st.Dev != pst.Dev, nil
}

// unmount detaches every mount at dir; nothing mounted is fine.
func unmount(dir string) error {
	for range 16 {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		switch {
		case err == nil:
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return err
		}
	}
	return nil
}

// removePodResources removes a pod's cgroup (whatever its QoS class was)
// and its directory, once its containers are deleted.
func (m *Manager) removePodResources(uid types.UID) {
	pod := "pod" + string(uid)
	for _, rel := range []string{pod, "burstable/" + pod, "besteffort/" + pod} {
		p := path.Join(m.cfg.CgroupRoot, rel)
		if err := m.rt.RemoveCgroup(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			m.log.Warn("remove pod cgroup", "cgroup", p, "err", err)
		}
	}
	if err := podconfig.RemovePodDir(m.podDir(uid), unmount); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("remove pod dir", "pod", uid, "err", err)
	}
}

// scanRuntime groups the runtime's sandboxes and containers by pod UID.
func (m *Manager) scanRuntime() (map[types.UID]*adoption, error) {
	sbs, err := m.rt.ListSandboxes()
	if err != nil {
		return nil, err
	}
	cs, err := m.rt.List()
	if err != nil {
		return nil, err
	}
	out := map[types.UID]*adoption{}
	get := func(uid types.UID, l map[string]string) *adoption {
		a := out[uid]
		if a == nil {
			a = &adoption{}
			out[uid] = a
		}
		if a.ns == "" {
			a.ns, a.name = l[LabelPodNamespace], l[LabelPodName]
		}
		return a
	}
	for _, sb := range sbs {
		uid := types.UID(sb.Labels[LabelPodUID])
		if uid == "" {
			uid = types.UID(sb.ID)
		}
		get(uid, sb.Labels).sandbox = sb
	}
	for _, c := range cs {
		uid := types.UID(c.Labels[LabelPodUID])
		if uid == "" {
			continue // not a pod's container
		}
		a := get(uid, c.Labels)
		a.containers = append(a.containers, c)
	}
	return out, nil
}

// cleanupOrphans removes what belongs to pods the API no longer has
// (deleted while the agent was down): containers, sandboxes, cgroups, pod
// directories and FIFOs.
func (m *Manager) cleanupOrphans(ctx context.Context) {
	pods, err := m.lister.List(labels.Everything())
	if err != nil {
		return
	}
	known := map[types.UID]bool{}
	for _, p := range pods {
		known[p.UID] = true
	}
	m.mu.Lock()
	orphans := map[types.UID]*adoption{}
	for uid, a := range m.adopted {
		if !known[uid] {
			orphans[uid] = a
			delete(m.adopted, uid)
		}
	}
	busy := map[types.UID]bool{}
	for uid := range m.workers {
		busy[uid] = true
	}
	m.mu.Unlock()

	var wg sync.WaitGroup
	for uid, a := range orphans {
		stub := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid, Namespace: a.ns, Name: a.name}}
		w := newPodWorker(m, stub, a)
		w.gone = true
		m.log.Info("cleaning up pod removed while the agent was down", "pod", a.ns+"/"+a.name, "uid", uid)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.readopt(ctx, stub)
			w.adopt = nil
			w.cleanup(ctx, stub, 0)
		}()
	}
	wg.Wait()

	ents, _ := os.ReadDir(m.cfg.PodsDir)
	for _, e := range ents {
		uid := types.UID(e.Name())
		if !e.IsDir() || known[uid] || busy[uid] {
			continue
		}
		if m.worker(uid) != nil {
			continue
		}
		m.removePodResources(uid)
	}
	// FIFOs of containers that no longer exist.
	live := map[string]bool{}
	if cs, err := m.rt.List(); err == nil {
		for _, c := range cs {
			live[c.ID] = true
		}
	}
	fifos, _ := os.ReadDir(m.cfg.RunDir)
	for _, f := range fifos {
		id, ok := strings.CutSuffix(f.Name(), ".stdout")
		if !ok {
			id, ok = strings.CutSuffix(f.Name(), ".stderr")
		}
		if ok && len(id) == 64 && !live[id] {
			os.Remove(filepath.Join(m.cfg.RunDir, f.Name()))
		}
	}
}
