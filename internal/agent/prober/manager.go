package prober

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// ProbeType names the three kinds of container probes.
type ProbeType int

const (
	Liveness ProbeType = iota
	Readiness
	Startup
)

func (t ProbeType) String() string {
	switch t {
	case Liveness:
		return "Liveness"
	case Readiness:
		return "Readiness"
	default:
		return "Startup"
	}
}

// Target is one running container instance to probe. The pod worker builds
// it when the container starts and passes it to [Manager.AddContainer].
type Target struct {
	PodUID    types.UID
	Namespace string
	PodName   string
	// PodIP is the default host of httpGet and tcpSocket probes.
	PodIP string
	// Container is the spec (probes and named ports); it is not modified.
	Container *v1.Container
	// ContainerID identifies this instance; a restarted container gets a new
	// ID and a new AddContainer.
	ContainerID string
	// StartedAt is when the container started (initialDelaySeconds counts
	// from it).
	StartedAt time.Time
	// Dial opens connections for httpGet/tcpSocket probes, typically inside
	// the pod's network namespace. Default: Config.Dial.
	Dial DialFunc
	// PodGracePeriod is the pod's terminationGracePeriodSeconds, used for a
	// kill after a failed liveness/startup probe unless the probe sets its own.
	PodGracePeriod *int64
}

func (t *Target) dial() DialFunc {
	if t.Dial != nil {
		return t.Dial
	}
	var d net.Dialer
	return d.DialContext
}

// Update is sent on [Manager.Updates] whenever a container's result for a
// probe type changes (including the initial value when its worker starts).
type Update struct {
	PodUID        types.UID
	ContainerID   string
	ContainerName string
	Type          ProbeType
	Result        Result
	// Output is the last probe's output (failure message, body, exec output).
	Output string
}

// Event is a probe event for the pod's container, in the kubelet's wording
// (reason Unhealthy / ProbeWarning). The agent may record it as a v1 Event.
type Event struct {
	PodUID        types.UID
	Namespace     string
	PodName       string
	ContainerName string
	Type          string // v1.EventTypeWarning
	Reason        string
	Message       string
}

// Config of a [Manager].
type Config struct {
	// Exec runs exec probes (required for containers with exec probes).
	Exec ExecFunc
	// Dial is the default dialer for targets without their own.
	Dial DialFunc
	// Clock (default real); tests pass k8s.io/utils/clock/testing.FakeClock.
	Clock clock.WithTicker
	// Logger; the manager adds component=prober.
	Logger *slog.Logger
	// OnEvent, when set, receives probe failure/warning events. It is called
	// from worker goroutines and must not block for long.
	OnEvent func(Event)
	// Rand returns a float in [0,1) for the first-probe jitter (default
	// math/rand/v2). Tests set it for determinism.
	Rand func() float64
}

// Manager runs one worker per container per probe type and keeps their
// results. It is safe for concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	clk   clock.WithTicker
	start time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	updates chan Update

	// probed, in tests, is called after every doProbe of a worker.
	probed func(ProbeType)

	mu          sync.RWMutex
	containers  map[string]*containerEntry // by container ID
	terminating map[types.UID]bool
}

type containerEntry struct {
	target  Target
	has     [3]bool   // probe configured, by ProbeType
	result  [3]Result // latest result
	set     [3]bool   // result recorded
	output  [3]string
	workers []*worker
}

// updatesBuffer as upstream's results manager.
const updatesBuffer = 20

// New validates cfg and returns a Manager; it starts no goroutine until
// containers are added.
func New(cfg Config) (*Manager, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Rand == nil {
		cfg.Rand = randFloat
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "prober"),
		clk:         cfg.Clock,
		start:       cfg.Clock.Now(),
		ctx:         ctx,
		cancel:      cancel,
		updates:     make(chan Update, updatesBuffer),
		containers:  map[string]*containerEntry{},
		terminating: map[types.UID]bool{},
	}, nil
}

// Run blocks until ctx ends, then stops every worker and waits for them.
func (m *Manager) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-m.ctx.Done():
	}
	m.Close()
	return nil
}

// Close stops every worker and waits for them to return.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// Updates delivers result changes. The pod worker must keep reading it:
// workers block (until removed) when its buffer is full.
func (m *Manager) Updates() <-chan Update { return m.updates }

// ErrInvalid is returned for a target that cannot be probed.
var ErrInvalid = errors.New("invalid")

// AddContainer starts the workers for t's probes. Call it when the container
// is running; adding an ID twice is a no-op. Containers without probes are
// recorded too, so that Ready and Started answer for them.
func (m *Manager) AddContainer(t Target) error {
	if t.ContainerID == "" || t.Container == nil {
		return fmt.Errorf("prober: target needs ContainerID and Container: %w", ErrInvalid)
	}
	if t.Dial == nil {
		t.Dial = m.cfg.Dial
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return errors.New("prober: manager closed")
	}
	if _, ok := m.containers[t.ContainerID]; ok {
		return nil
	}
	e := &containerEntry{target: t}
	specs := [3]*v1.Probe{t.Container.LivenessProbe, t.Container.ReadinessProbe, t.Container.StartupProbe}
	for typ, spec := range specs {
		if spec == nil {
			continue
		}
		e.has[typ] = true
		w := newWorker(m, &e.target, ProbeType(typ), spec)
		e.workers = append(e.workers, w)
	}
	m.containers[t.ContainerID] = e
	for _, w := range e.workers {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			w.run()
		}()
	}
	return nil
}

// RemoveContainer stops the container's workers and forgets its results.
// Call it when the container stops (or is being killed). It does not wait
// for a probe in flight to finish.
func (m *Manager) RemoveContainer(containerID string) {
	m.mu.Lock()
	e, ok := m.containers[containerID]
	delete(m.containers, containerID)
	m.mu.Unlock()
	if !ok {
		return
	}
	for _, w := range e.workers {
		w.stop()
	}
}

// RemovePod removes every container of the pod, and its terminating mark.
func (m *Manager) RemovePod(uid types.UID) {
	m.mu.Lock()
	var ids []string
	for id, e := range m.containers {
		if e.target.PodUID == uid {
			ids = append(ids, id)
		}
	}
	delete(m.terminating, uid)
	m.mu.Unlock()
	for _, id := range ids {
		m.RemoveContainer(id)
	}
}

// PodTerminating marks the pod as being deleted: as upstream, its liveness
// and startup workers record Success and stop (no restarts during graceful
// shutdown); readiness keeps probing.
func (m *Manager) PodTerminating(uid types.UID) {
	m.mu.Lock()
	m.terminating[uid] = true
	m.mu.Unlock()
}

func (m *Manager) isTerminating(uid types.UID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.terminating[uid]
}

// Result returns the latest result of a probe type for a container; ok is
// false when the container is unknown or has no result yet for that type.
func (m *Manager) Result(containerID string, typ ProbeType) (r Result, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, found := m.containers[containerID]
	if !found || !e.set[typ] {
		return Unknown, false
	}
	return e.result[typ], true
}

// Started reports whether the container counts as started (containerStatus
// .started): its startup probe succeeded, or it has none. Unknown containers
// are not started.
func (m *Manager) Started(containerID string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.containers[containerID]
	if !ok {
		return false
	}
	return e.startedLocked()
}

func (e *containerEntry) startedLocked() bool {
	if !e.has[Startup] {
		return true
	}
	return e.set[Startup] && e.result[Startup] == Success
}

// Ready reports containerStatus.ready as the kubelet computes it for a
// running container: started, and its readiness probe's latest result is
// Success (readiness starts as Failure), or it has no readiness probe.
func (m *Manager) Ready(containerID string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.containers[containerID]
	if !ok || !e.startedLocked() {
		return false
	}
	if !e.has[Readiness] {
		return true
	}
	return e.set[Readiness] && e.result[Readiness] == Success
}

// Kill tells the pod worker how to kill a container that failed its
// liveness or startup probe.
type Kill struct {
	// Reason is "LivenessProbe" or "StartupProbe" (the kubelet's internal
	// kill reasons), Message "Container NAME failed liveness probe".
	// The pod worker appends ", will be restarted" when the restart policy
	// is not Never, as the kubelet does.
	Reason, Message string
	// GracePeriod is the probe's terminationGracePeriodSeconds if set, else
	// the pod's (nil if neither is set: the caller's default applies).
	GracePeriod *int64
	// Output is the failing probe's output.
	Output string
}

// Unhealthy reports whether the container must be killed because its
// liveness (checked first, as upstream) or startup probe failed.
func (m *Manager) Unhealthy(containerID string) (Kill, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.containers[containerID]
	if !ok {
		return Kill{}, false
	}
	c := e.target.Container
	for _, typ := range []ProbeType{Liveness, Startup} {
		if !e.set[typ] || e.result[typ] != Failure {
			continue
		}
		k := Kill{Output: e.output[typ], GracePeriod: e.target.PodGracePeriod}
		var spec *v1.Probe
		if typ == Liveness {
			k.Reason, k.Message, spec = "LivenessProbe", fmt.Sprintf("Container %s failed liveness probe", c.Name), c.LivenessProbe
		} else {
			k.Reason, k.Message, spec = "StartupProbe", fmt.Sprintf("Container %s failed startup probe", c.Name), c.StartupProbe
		}
		if spec != nil && spec.TerminationGracePeriodSeconds != nil {
			g := *spec.TerminationGracePeriodSeconds
			k.GracePeriod = &g
		}
		return k, true
	}
	return Kill{}, false
}

// setResult records r for the container and, if it changed, sends an
// Update (blocking until read, the worker stopped or the manager closed).
func (m *Manager) setResult(w *worker, r Result, output string) {
	m.mu.Lock()
	e, ok := m.containers[w.target.ContainerID]
	if !ok || &e.target != w.target { // removed, or re-added with a new worker
		m.mu.Unlock()
		return
	}
	changed := !e.set[w.typ] || e.result[w.typ] != r
	e.set[w.typ], e.result[w.typ], e.output[w.typ] = true, r, output
	m.mu.Unlock()
	if !changed {
		return
	}
	u := Update{PodUID: w.target.PodUID, ContainerID: w.target.ContainerID, ContainerName: w.target.Container.Name, Type: w.typ, Result: r, Output: output}
	select {
	case m.updates <- u:
	case <-w.stopCh:
	case <-m.ctx.Done():
	}
}

func (m *Manager) event(t *Target, reason, msg string) {
	if m.cfg.OnEvent == nil {
		return
	}
	m.cfg.OnEvent(Event{PodUID: t.PodUID, Namespace: t.Namespace, PodName: t.PodName, ContainerName: t.Container.Name,
		Type: v1.EventTypeWarning, Reason: reason, Message: msg})
}
