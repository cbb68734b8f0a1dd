package server

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/controller/deployment"
	"github.com/skiff-dev/skiff/internal/controller/endpoints"
	"github.com/skiff-dev/skiff/internal/controller/endpointslice"
	"github.com/skiff-dev/skiff/internal/controller/eventttl"
	"github.com/skiff-dev/skiff/internal/controller/garbagecollector"
	"github.com/skiff-dev/skiff/internal/controller/namespace"
	"github.com/skiff-dev/skiff/internal/controller/nodeipam"
	"github.com/skiff-dev/skiff/internal/controller/nodelifecycle"
	"github.com/skiff-dev/skiff/internal/controller/podgc"
	"github.com/skiff-dev/skiff/internal/controller/replicaset"
	"github.com/skiff-dev/skiff/internal/controller/serviceaccount"
	"github.com/skiff-dev/skiff/internal/controller/servicelb"
	"github.com/skiff-dev/skiff/internal/controller/tainteviction"
	"github.com/skiff-dev/skiff/internal/controller/tokencleaner"
	"github.com/skiff-dev/skiff/internal/pki"
	"github.com/skiff-dev/skiff/internal/scheduler"
)

// runner is a built controller (or the scheduler).
type runner interface {
	Run(ctx context.Context, workers int) error
}

type component struct {
	name    string
	workers int
	run     runner
}

// runControlPlane runs the scheduler and the controllers — the parts
// kube-scheduler and kube-controller-manager are in Kubernetes — as API
// clients with their own identities, until ctx ends.
//
// Unlike Kubernetes' separate processes, they share one informer factory:
// one cache of every pod and node instead of one per component, which
// halves the control plane's memory at scale. Writes still go out under
// each component's own identity.
func (s *Server) runControlPlane(ctx context.Context, ca *pki.CA, server string) error {
	type role struct {
		user  string
		build func(controller.Context) ([]component, error)
	}
	var roles []role
	if !s.cfg.DisableControllerManager {
		roles = append(roles, role{"system:kube-controller-manager", func(cc controller.Context) ([]component, error) { return s.controllers(cc, ca) }})
	}
	if !s.cfg.DisableScheduler {
		roles = append(roles, role{"system:kube-scheduler", s.schedulers})
	}
	if len(roles) == 0 {
		return nil
	}
	var factory informers.SharedInformerFactory
	var comps []component
	for _, r := range roles {
		cc, stop, err := s.componentContext(ctx, ca, server, r.user)
		if err != nil {
			return err
		}
		defer stop()
		if factory == nil {
			factory = informers.NewSharedInformerFactory(cc.Client, 0)
			defer factory.Shutdown()
		}
		cc.Informers = factory
		built, err := r.build(cc)
		if err != nil {
			return err
		}
		comps = append(comps, built...)
	}
	g, ctx := errgroup.WithContext(ctx)
	factory.Start(ctx.Done())
	for _, c := range comps {
		g.Go(func() error {
			// After ctx ends, an error is only the cancellation's echo (e.g.
			// caches that had not synced yet), not a failure.
			if err := c.run.Run(ctx, c.workers); err != nil && ctx.Err() == nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// controllers builds kube-controller-manager's share of the control plane.
func (s *Server) controllers(cc controller.Context, ca *pki.CA) ([]component, error) {
	var comps []component
	add := func(name string, workers int, r runner, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		comps = append(comps, component{name, workers, r})
		return nil
	}
	// Worker counts are kube-controller-manager's defaults (--concurrent-*).
	rs, err := replicaset.New(cc, replicaset.Options{})
	if err := add("replicaset", 5, rs, err); err != nil {
		return nil, err
	}
	dep, err := deployment.New(cc, deployment.Options{})
	if err := add("deployment", 5, dep, err); err != nil {
		return nil, err
	}
	ep, err := endpoints.New(cc, endpoints.Options{})
	if err := add("endpoints", 5, ep, err); err != nil {
		return nil, err
	}
	eps, err := endpointslice.New(cc, endpointslice.Options{})
	if err := add("endpointslice", 5, eps, err); err != nil {
		return nil, err
	}
	ipam, err := nodeipam.New(cc, nodeipam.Options{ClusterCIDR: s.res.clusterCIDR, ServiceCIDR: s.res.serviceCIDR})
	if err := add("nodeipam", 1, ipam, err); err != nil {
		return nil, err
	}
	life, err := nodelifecycle.New(cc, nodelifecycle.Options{
		NodeMonitorGracePeriod: s.cfg.NodeMonitorGracePeriod,
		NodeMonitorPeriod:      s.cfg.NodeMonitorPeriod,
	})
	if err := add("node-lifecycle", 1, life, err); err != nil {
		return nil, err
	}
	pgc, err := podgc.New(cc, podgc.Options{})
	if err := add("pod-garbage-collector", 1, pgc, err); err != nil {
		return nil, err
	}
	evict, err := tainteviction.New(cc, tainteviction.Options{})
	if err := add("taint-eviction", 8, evict, err); err != nil {
		return nil, err
	}
	gc, err := garbagecollector.New(cc, garbagecollector.Options{})
	if err := add("garbage-collector", 20, gc, err); err != nil {
		return nil, err
	}
	nsc, err := namespace.New(cc, namespace.Options{})
	if err := add("namespace", 10, nsc, err); err != nil {
		return nil, err
	}
	sac, err := serviceaccount.New(cc, serviceaccount.Options{RootCA: ca.CertPEM, TokenGenerator: s.tokens})
	if err := add("serviceaccount", 2, sac, err); err != nil {
		return nil, err
	}
	ttl, err := eventttl.New(cc, eventttl.Options{TTL: s.cfg.EventTTL})
	if err := add("event-ttl", 1, ttl, err); err != nil {
		return nil, err
	}
	tc, err := tokencleaner.New(cc, tokencleaner.Options{})
	if err := add("token-cleaner", 1, tc, err); err != nil {
		return nil, err
	}
	// k3s runs ServiceLB in its cloud controller manager; here it is one
	// more controller.
	slb, err := servicelb.New(cc, servicelb.Options{Pool: s.res.lbIPPool})
	if err := add("servicelb", 2, slb, err); err != nil {
		return nil, err
	}
	return comps, nil
}

// schedulers builds kube-scheduler's share.
func (s *Server) schedulers(cc controller.Context) ([]component, error) {
	sched, err := scheduler.New(cc, scheduler.Options{})
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	// Workers bind concurrently; decisions are made one at a time.
	return []component{{"scheduler", 16, sched}}, nil
}

// componentContext builds clients for one control-plane component, with a
// client certificate naming it, and starts its event recorder. The caller
// sets Informers.
func (s *Server) componentContext(ctx context.Context, ca *pki.CA, server, user string) (controller.Context, func(), error) {
	kp, err := ca.IssueClient(user, nil)
	if err != nil {
		return controller.Context{}, nil, err
	}
	cfg := &rest.Config{
		Host:            server,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM, CertData: kp.CertPEM, KeyData: kp.KeyPEM},
		UserAgent:       user + " skiff/" + Version,
		// In-process and trusted: the store's write batching, not a
		// client-side token bucket, is what paces the control plane.
		QPS:   1000,
		Burst: 2000,
		// Protobuf decodes several times faster than JSON; at 30,000 pods
		// JSON decoding in the informers dominated the control plane's CPU.
		ContentConfig: rest.ContentConfig{
			ContentType:        "application/vnd.kubernetes.protobuf",
			AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json",
		},
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return controller.Context{}, nil, err
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return controller.Context{}, nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return controller.Context{}, nil, err
	}
	events := controller.StartEvents(ctx, client)
	cc := controller.Context{
		Client:   client,
		Metadata: md,
		Dynamic:  dyn,
		Recorder: events.Recorder,
		Log:      s.baseLog.With("user", user),
	}
	return cc, events.Shutdown, nil
}
