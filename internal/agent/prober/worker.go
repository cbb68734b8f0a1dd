package prober

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
)

// maxProbeRetries: a probe that errors (cannot be run) is retried this many
// times before the attempt is dropped, as upstream.
const maxProbeRetries = 3

func randFloat() float64 { return rand.Float64() }

// worker probes one container instance with one probe type, periodically,
// until stopped. It follows pkg/kubelet/prober/worker.go: the first probe
// runs at once (after a random part of a period if the manager has just
// started, to spread probes after an agent restart), then every period;
// probes are skipped during initialDelaySeconds and, for liveness/readiness,
// until the container has started (startup probe succeeded); a result is
// recorded only once it repeated successThreshold/failureThreshold times;
// after a liveness failure or a startup result the worker holds (no more
// probes): the container is to be restarted (a new instance, a new worker)
// or has started.
type worker struct {
	m      *Manager
	target *Target
	typ    ProbeType
	spec   v1.Probe // defaults applied

	stopCh   chan struct{}
	stopOnce sync.Once

	lastResult Result
	resultRun  int
	onHold     bool
}

func newWorker(m *Manager, t *Target, typ ProbeType, spec *v1.Probe) *worker {
	s := *spec
	// API defaults, in case the pod did not go through defaulting.
	if s.PeriodSeconds <= 0 {
		s.PeriodSeconds = 10
	}
	if s.TimeoutSeconds <= 0 {
		s.TimeoutSeconds = 1
	}
	if s.SuccessThreshold <= 0 {
		s.SuccessThreshold = 1
	}
	if s.FailureThreshold <= 0 {
		s.FailureThreshold = 3
	}
	return &worker{m: m, target: t, typ: typ, spec: s, stopCh: make(chan struct{}), lastResult: Unknown}
}

func (w *worker) stop() { w.stopOnce.Do(func() { close(w.stopCh) }) }

// initialValue as upstream: readiness Failure, liveness Success, startup
// Unknown (not started).
func (w *worker) initialValue() Result {
	switch w.typ {
	case Readiness:
		return Failure
	case Liveness:
		return Success
	default:
		return Unknown
	}
}

func (w *worker) run() {
	ctx, cancel := context.WithCancel(w.m.ctx)
	defer cancel()
	go func() {
		select {
		case <-w.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	clk := w.m.clk
	period := time.Duration(w.spec.PeriodSeconds) * time.Second

	w.m.setResult(w, w.initialValue(), "")

	// Jitter only shortly after the manager started (an agent restart finds
	// many running containers at once).
	if period > clk.Since(w.m.start) {
		if d := time.Duration(w.m.cfg.Rand() * float64(period)); d > 0 {
			select {
			case <-clk.After(d):
			case <-ctx.Done():
				return
			}
		}
	}
	ticker := clk.NewTicker(period)
	defer ticker.Stop()
	for {
		more := w.doProbe(ctx)
		if w.m.probed != nil {
			w.m.probed(w.typ)
		}
		if !more {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
	}
}

// doProbe runs one probe if due and returns whether to keep going.
func (w *worker) doProbe(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	if w.onHold {
		return true
	}
	t := w.target
	if (w.typ == Liveness || w.typ == Startup) && w.m.isTerminating(t.PodUID) {
		// Graceful shutdown: a last Success keeps the pod worker from
		// restarting the container, and probing stops.
		w.m.setResult(w, Success, "")
		return false
	}
	if int32(w.m.clk.Since(t.StartedAt).Seconds()) < w.spec.InitialDelaySeconds {
		return true
	}
	started := w.m.Started(t.ContainerID)
	if started && w.typ == Startup {
		return true
	}
	if !started && w.typ != Startup {
		return true
	}

	var (
		o   outcome
		err error
	)
	for i := 0; i < maxProbeRetries; i++ {
		o, err = runProbe(ctx, &w.spec, t, w.m.cfg.Exec)
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return false
	}
	switch {
	case err != nil:
		w.m.log.Debug("probe errored", "probeType", w.typ.String(), "pod", t.Namespace+"/"+t.PodName,
			"container", t.Container.Name, "err", err)
		w.m.event(t, "Unhealthy", w.typ.String()+" probe errored: "+err.Error())
		// Prober error: the result is thrown away.
		return true
	case o.result != Success:
		w.m.log.Debug("probe failed", "probeType", w.typ.String(), "pod", t.Namespace+"/"+t.PodName,
			"container", t.Container.Name, "output", o.output)
		w.m.event(t, "Unhealthy", w.typ.String()+" probe failed: "+o.output)
		o.result = Failure
	case o.warning:
		w.m.event(t, "ProbeWarning", w.typ.String()+" probe warning: "+o.output)
	}

	if w.lastResult == o.result {
		w.resultRun++
	} else {
		w.lastResult, w.resultRun = o.result, 1
	}
	if (o.result == Failure && w.resultRun < int(w.spec.FailureThreshold)) ||
		(o.result == Success && w.resultRun < int(w.spec.SuccessThreshold)) {
		return true
	}
	w.m.setResult(w, o.result, o.output)
	if (w.typ == Liveness && o.result == Failure) || w.typ == Startup {
		w.onHold, w.resultRun = true, 0
	}
	return true
}
