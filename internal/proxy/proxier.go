package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// Defaults of ProxierConfig.
const (
	// DefaultMinSyncPeriod is the least time between the starts of two syncs.
	// kube-proxy defaults to 1 s because its iptables mode rewrites every
	// rule on each sync; here a sync is one incremental batch (event to
	// flush ~2.5 ms at 100 services, ~15-20 ms at 1,000 on a busy 2-core
	// machine: BenchmarkProxierEndpointUpdate), so a short period keeps an
	// endpoint change about one sync away from the kernel while a burst of
	// events (a rollout) still coalesces: events arriving during a sync or
	// within the period are applied together by the next one. An isolated
	// change is never delayed by it; back-to-back changes wait up to the
	// period (10 instead of 2.5 ms event to flush at 100 services).
	DefaultMinSyncPeriod = 10 * time.Millisecond
	// DefaultCheckPeriod is how often the kernel's table is compared with
	// what was applied last (drift → full sync).
	DefaultCheckPeriod = 30 * time.Second

	retryFirst = 100 * time.Millisecond
	retryMax   = 10 * time.Second

	latencyRecord = 128 // SyncLatencies keeps this many
)

// ProxierConfig configures a Proxier.
type ProxierConfig struct {
	Client  kubernetes.Interface
	Options Options // node name, cluster CIDR (Run sets NetNS)
	// NetNS is the path of the network namespace to program ("" = the
	// current one).
	NetNS string
	// MinSyncPeriod is the least time between the starts of two syncs
	// (0 = DefaultMinSyncPeriod; negative = none).
	MinSyncPeriod time.Duration
	// CheckPeriod is how often drift is looked for (0 = DefaultCheckPeriod);
	// stretched to 20 times a check's duration on large tables.
	CheckPeriod time.Duration
	Logger      *slog.Logger
}

// Proxier keeps the node's nftables table in step with the Services and
// EndpointSlices of the API: it watches both (as kube-proxy does, without
// services that name another service proxy and without headless ones),
// rebuilds the table on start, then applies the difference after each burst
// of changes. Every CheckPeriod it looks for drift and rebuilds the table if
// the kernel no longer holds what was applied. Errors are retried with a
// fresh netlink connection and a full sync, with backoff.
//
// When Run ends the table stays: an agent restart must not drop traffic, and
// the next Proxier replaces the table in one atomic batch. Cleanup removes it.
type Proxier struct {
	cfg    ProxierConfig
	log    *slog.Logger
	syncer *Syncer // made and used by Run's goroutine

	trigger chan struct{} // buffered 1: something changed
	// dial opens an nftables connection in the namespace (nsFd -1: the
	// current one); tests wrap it to inject faults.
	dial func(nsFd int) (Conn, error)

	mu        sync.Mutex
	pending   []time.Time // receipt of EndpointSlice events not yet in the kernel
	synced    bool
	lastAt    time.Time
	lastTook  time.Duration
	lastErr   error
	latencies []time.Duration // ring
	latNext   int
}

// NewProxier checks cfg and fills in defaults; it starts nothing.
func NewProxier(cfg ProxierConfig) (*Proxier, error) {
	if cfg.Client == nil {
		return nil, errors.New("proxy: no API client")
	}
	if cfg.NetNS != "" {
		if _, err := os.Stat(cfg.NetNS); err != nil {
			return nil, fmt.Errorf("proxy: network namespace: %w", err)
		}
	}
	if cfg.MinSyncPeriod == 0 {
		cfg.MinSyncPeriod = DefaultMinSyncPeriod
	} else if cfg.MinSyncPeriod < 0 {
		cfg.MinSyncPeriod = 0
	}
	if cfg.CheckPeriod <= 0 {
		cfg.CheckPeriod = DefaultCheckPeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Proxier{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "proxy"),
		trigger: make(chan struct{}, 1),
		dial:    dialLasting,
	}, nil
}

// dialLasting opens a lasting nftables connection: one netlink socket for
// all operations. Opening and closing a socket for each operation (the
// library's default) made a one-endpoint Apply at 100 services take ~16 ms
// instead of ~0.7 ms, and a drift check of 1,000 services twice as long.
func dialLasting(nsFd int) (Conn, error) {
	var nl *netlink.Conn
	opts := []nftables.ConnOption{
		nftables.AsLasting(),
		nftables.WithSockOptions(func(c *netlink.Conn) error { nl = c; return nil }),
	}
	if nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	c, err := NewConn(opts...)
	if err != nil {
		return nil, err
	}
	return &lastingConn{Conn: c, nl: nl}, nil
}

// lastingConn is a lasting *nftables.Conn whose socket can be given a
// deadline: the library waits for an acknowledgement of every message of a
// batch without one, so a lost reply would stop the proxier for good.
type lastingConn struct {
	*nftables.Conn
	nl *netlink.Conn
}

func (c *lastingConn) SetDeadline(t time.Time) error {
	if c.nl == nil {
		return nil
	}
	return c.nl.SetDeadline(t)
}

// opTimeout bounds one sync or drift check on the socket. The kernel
// processes a batch inside sendmsg (which a deadline does not interrupt) and
// has queued every reply when it returns, so only a reply that never comes
// runs into it.
const opTimeout = time.Minute

func dialNetNS(nsFd int) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	return NewConn(opts...)
}

// Synced reports whether the first full sync has been done (readiness).
func (p *Proxier) Synced() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.synced
}

// LastSync returns when the last sync (or drift check that failed) ended,
// how long the sync took and its error.
func (p *Proxier) LastSync() (at time.Time, took time.Duration, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastAt, p.lastTook, p.lastErr
}

// SyncLatencies returns the latest latencies (up to 128, oldest first) from
// the receipt of an EndpointSlice event to the flush of the batch that put
// the change into the kernel.
func (p *Proxier) SyncLatencies() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.latencies) < latencyRecord {
		return append([]time.Duration(nil), p.latencies...)
	}
	return append(append([]time.Duration(nil), p.latencies[p.latNext:]...), p.latencies[:p.latNext]...)
}

// proxyNameLabel on a Service (and its EndpointSlices) hands it to another
// service proxy: skiff leaves it alone, as kube-proxy does.
const proxyNameLabel = "service.kubernetes.io/service-proxy-name"

// ListSelector is the label selector of the Services and EndpointSlices the
// proxier watches: not headless, no service-proxy-name (kube-proxy's).
func ListSelector() labels.Selector {
	noProxyName, err := labels.NewRequirement(proxyNameLabel, selection.DoesNotExist, nil)
	if err != nil {
		panic(err)
	}
	noHeadless, err := labels.NewRequirement(corev1.IsHeadlessService, selection.DoesNotExist, nil)
	if err != nil {
		panic(err)
	}
	return labels.NewSelector().Add(*noProxyName, *noHeadless)
}

// Run watches the API and programs the kernel until ctx ends; it returns nil
// then and leaves the table in place. Transient errors (API, netlink) are
// retried, never returned.
func (p *Proxier) Run(ctx context.Context) error {
	// A descriptor of the namespace, also for the current one: the drift
	// check dumps all rules in one request through it (Options.NetNS).
	path := p.cfg.NetNS
	if path == "" {
		path = "/proc/self/ns/net"
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("proxy: network namespace: %w", err)
	}
	defer f.Close()
	nsFd := int(f.Fd())
	opts := p.cfg.Options
	opts.NetNS = nsFd
	p.syncer = NewSyncer(opts)

	sel := ListSelector().String()
	factory := informers.NewSharedInformerFactoryWithOptions(p.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	defer factory.Shutdown()
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.changed(false) },
		UpdateFunc: func(o, n any) { p.serviceUpdated(o, n) },
		DeleteFunc: func(any) { p.changed(false) },
	}); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if _, err := sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.changed(true) },
		UpdateFunc: func(any, any) { p.changed(true) },
		DeleteFunc: func(any) { p.changed(true) },
	}); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	svcs, slices := svcInf.Lister(), sliceInf.Lister()
	factory.Start(ctx.Done())
	p.log.Info("waiting for services and endpoint slices", "netns", p.cfg.NetNS)
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced) {
		return nil // ctx ended
	}

	r := &runner{p: p, nsFd: nsFd, svcs: svcs, slices: slices}
	defer r.dropConn()
	r.sync(true)

	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var due time.Time // zero: no sync planned
	plan := func(at time.Time) {
		if !due.IsZero() && !at.Before(due) {
			return
		}
		due = at
		timer.Reset(time.Until(at))
	}
	if r.failing {
		plan(time.Now().Add(r.backoff))
	}
	check := time.NewTicker(p.cfg.CheckPeriod)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			p.log.Info("stopped; the table stays in place")
			return nil
		case <-p.trigger:
			if r.failing {
				continue // the planned retry lists everything anyway
			}
			at := r.lastStart.Add(p.cfg.MinSyncPeriod)
			if !due.IsZero() || time.Now().Before(at) {
				plan(at)
				continue
			}
			r.sync(false) // at once: no timer round trip
			if r.failing {
				plan(time.Now().Add(r.backoff))
			}
		case <-timer.C:
			due = time.Time{}
			r.sync(r.failing)
			if r.failing {
				plan(time.Now().Add(r.backoff))
			}
		case <-check.C:
			if r.failing {
				continue
			}
			start := time.Now()
			r.check()
			// A check holds up syncs while it runs and costs kernel time
			// that grows with the table (~0.1 s at 1,000 services, 10 s
			// and more at 10,000): keep it under 5% of the time.
			check.Reset(max(p.cfg.CheckPeriod, 20*time.Since(start)))
			if r.failing {
				plan(time.Now().Add(r.backoff))
			}
		}
	}
}

// changed is called by the informers' handlers.
func (p *Proxier) changed(slice bool) {
	if slice {
		p.mu.Lock()
		if len(p.pending) < latencyRecord {
			p.pending = append(p.pending, time.Now())
		}
		p.mu.Unlock()
	}
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

func (p *Proxier) serviceUpdated(o, n any) {
	before, ok1 := o.(*corev1.Service)
	after, ok2 := n.(*corev1.Service)
	if ok1 && ok2 && before.ResourceVersion == after.ResourceVersion {
		return // a resync, nothing new
	}
	p.changed(false)
}

// runner is the state of Run's goroutine.
type runner struct {
	p         *Proxier
	nsFd      int
	svcs      corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	conn      Conn // nil after an error
	failing   bool
	backoff   time.Duration
	lastStart time.Time
	built     *buildCache
}

func (r *runner) connect() (Conn, error) {
	if r.conn != nil {
		return r.conn, nil
	}
	c, err := r.p.dial(r.nsFd)
	if err != nil {
		return nil, fmt.Errorf("proxy: nftables: %w", err)
	}
	r.conn = c
	return c, nil
}

// dropConn closes the connection's socket (a lasting one) and forgets it.
func (r *runner) dropConn() {
	if c, ok := r.conn.(interface{ CloseLasting() error }); ok {
		c.CloseLasting()
	}
	r.conn = nil
}

// begin readies the connection for one operation (sync or check).
func (r *runner) begin() (Conn, error) {
	conn, err := r.connect()
	if err != nil {
		return nil, err
	}
	if d, ok := conn.(interface{ SetDeadline(time.Time) error }); ok {
		if err := d.SetDeadline(time.Now().Add(opTimeout)); err != nil {
			return nil, fmt.Errorf("proxy: netlink deadline: %w", err)
		}
	}
	return conn, nil
}

// sync builds the desired ruleset from the caches and applies it (full:
// rebuild the table).
func (r *runner) sync(full bool) {
	p := r.p
	start := time.Now()
	r.lastStart = start
	p.mu.Lock()
	events := p.pending
	p.pending = nil
	p.mu.Unlock()

	err := r.apply(full)
	end := time.Now()
	took := end.Sub(start)

	p.mu.Lock()
	p.lastAt, p.lastTook, p.lastErr = end, took, err
	if err != nil {
		// Their changes are not in the kernel yet: keep them for the retry.
		p.pending = append(events, p.pending...)
		if len(p.pending) > latencyRecord {
			p.pending = p.pending[:latencyRecord]
		}
	} else {
		p.synced = true
		for _, t := range events {
			r.recordLocked(end.Sub(t))
		}
	}
	p.mu.Unlock()

	if err != nil {
		r.fail(err)
		return
	}
	if r.failing {
		p.log.Info("sync recovered", "took", took)
	}
	r.failing, r.backoff = false, 0
	attrs := []any{"took", took, "full", full}
	if len(events) > 0 {
		attrs = append(attrs, "sliceEvents", len(events), "latency", end.Sub(events[0]))
	}
	p.log.Debug("synced", attrs...)
}

func (r *runner) recordLocked(d time.Duration) {
	p := r.p
	if len(p.latencies) < latencyRecord {
		p.latencies = append(p.latencies, d)
		return
	}
	p.latencies[p.latNext] = d
	p.latNext = (p.latNext + 1) % latencyRecord
}

func (r *runner) apply(full bool) error {
	svcs, err := r.svcs.List(labels.Everything())
	if err != nil {
		return err
	}
	slices, err := r.slices.List(labels.Everything())
	if err != nil {
		return err
	}
	if r.built == nil {
		r.built = newBuildCache(r.p.cfg.Options)
	}
	rs := r.built.build(svcs, slices)
	conn, err := r.begin()
	if err != nil {
		return err
	}
	if full {
		return r.p.syncer.FullSync(conn, rs)
	}
	return r.p.syncer.Apply(conn, rs)
}

// check looks for drift and repairs it with a full sync.
func (r *runner) check() {
	conn, err := r.begin()
	if err == nil {
		var ok bool
		if ok, err = r.p.syncer.Check(conn); err == nil && !ok {
			r.p.log.Warn("the table differs from what was applied; rebuilding it")
			r.sync(true)
			return
		}
	}
	if err != nil {
		r.p.mu.Lock()
		r.p.lastAt, r.p.lastTook, r.p.lastErr = time.Now(), 0, err
		r.p.mu.Unlock()
		r.fail(err)
	}
}

// fail drops the connection (messages may be left queued on it) and plans a
// full sync after a growing delay.
func (r *runner) fail(err error) {
	r.dropConn()
	r.failing = true
	if r.backoff == 0 {
		r.backoff = retryFirst
	} else {
		r.backoff = min(2*r.backoff, retryMax)
	}
	r.p.log.Error("sync failed; retrying with a full sync", "err", err, "retryIn", r.backoff)
}

// Cleanup deletes skiff's table in the network namespace at netns ("" = the
// current one): uninstall. It is not an error if there is no table.
func Cleanup(netns string) error {
	nsFd := -1
	if netns != "" {
		f, err := os.Open(netns)
		if err != nil {
			return fmt.Errorf("proxy: network namespace: %w", err)
		}
		defer f.Close()
		nsFd = int(f.Fd())
	}
	conn, err := dialNetNS(nsFd)
	if err != nil {
		return fmt.Errorf("proxy: nftables: %w", err)
	}
	if err := NewSyncer(Options{}).Delete(conn); err != nil {
		return fmt.Errorf("proxy: delete table: %w", err)
	}
	return nil
}

// buildCache builds a Ruleset service by service and keeps each service's
// part until the service or one of its EndpointSlices changes
// (resourceVersions): at 1,000 services, Build of everything took most of a
// sync (~40 ms on a busy 2-core machine), rebuilding one service and merging
// the parts takes about a millisecond. Build's output is a union of
// independent per-service parts, so the result is Build's (a test checks).
type buildCache struct {
	opts  Options
	parts map[string]*builtService // namespace/name
}

type builtService struct {
	version string // service and slice resourceVersions
	rs      *Ruleset
}

func newBuildCache(opts Options) *buildCache {
	return &buildCache{opts: opts, parts: map[string]*builtService{}}
}

func (c *buildCache) build(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) *Ruleset {
	bySvc := make(map[string][]*discoveryv1.EndpointSlice, len(svcs))
	for _, s := range slices {
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := s.Namespace + "/" + name
			bySvc[k] = append(bySvc[k], s)
		}
	}
	keys := make([]string, 0, len(svcs))
	byKey := make(map[string]*corev1.Service, len(svcs))
	for _, svc := range svcs {
		k := svc.Namespace + "/" + svc.Name
		keys = append(keys, k)
		byKey[k] = svc
	}
	sort.Strings(keys) // a deterministic result should two services claim one key
	var v []byte
	seen := make(map[string]bool, len(keys))
	parts := make([]*Ruleset, 0, len(keys))
	nChains, nElems := 0, map[string]int{}
	for _, k := range keys {
		seen[k] = true
		svc, sls := byKey[k], bySvc[k]
		sort.Slice(sls, func(i, j int) bool { return sls[i].Name < sls[j].Name })
		v = append(append(append(v[:0], svc.UID...), '/'), svc.ResourceVersion...)
		for _, s := range sls {
			v = append(append(append(append(v, ','), s.UID...), '/'), s.ResourceVersion...)
		}
		part := c.parts[k]
		if part == nil || part.version != string(v) {
			part = &builtService{version: string(v), rs: Build([]*corev1.Service{svc}, sls, c.opts)}
			c.parts[k] = part
		}
		parts = append(parts, part.rs)
		nChains += len(part.rs.Chains)
		for m, e := range part.rs.Maps {
			nElems[m] += len(e)
		}
	}
	for k := range c.parts {
		if !seen[k] {
			delete(c.parts, k)
		}
	}
	out := newRuleset()
	out.Chains = make(map[string]Chain, nChains) // sized once: merging is mostly map inserts
	for m, n := range nElems {
		out.Maps[m] = make(map[MapKey]string, n)
	}
	for _, part := range parts {
		mergeRuleset(out, part)
	}
	return out
}

func mergeRuleset(dst, src *Ruleset) {
	for m, elems := range src.Maps {
		if dst.Maps[m] == nil {
			dst.Maps[m] = make(map[MapKey]string, len(elems))
		}
		maps.Copy(dst.Maps[m], elems)
	}
	maps.Copy(dst.Chains, src.Chains)
	maps.Copy(dst.Sets, src.Sets)
}
