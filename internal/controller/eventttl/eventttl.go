// Package eventttl expires events. Kubernetes stores events in etcd with a
// lease of --event-ttl (1h) refreshed on every write; skiff's store has no
// leases, so this controller deletes events whose last write is older than
// the TTL, sweeping the list periodically in pages.
package eventttl

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Options tune the sweep.
type Options struct {
	TTL      time.Duration // default 1h (kube-apiserver --event-ttl)
	Interval time.Duration // how often to sweep; default TTL/60, at least 1s
	Now      func() time.Time
}

// Controller deletes expired events.
type Controller struct {
	client kubernetes.Interface
	opts   Options
	log    *slog.Logger
}

// New fills option defaults; it starts nothing.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if opts.TTL <= 0 {
		opts.TTL = time.Hour
	}
	if opts.Interval <= 0 {
		opts.Interval = max(opts.TTL/60, time.Second)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Controller{client: cc.Client, opts: opts, log: cc.Logger("event-ttl")}, nil
}

// Run sweeps every Interval until ctx ends. workers is unused.
func (c *Controller) Run(ctx context.Context, _ int) error {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		n, err := c.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("expiring events", "err", err)
		}
		if n > 0 {
			c.log.Debug("expired events", "count", n)
		}
	}, c.opts.Interval)
	return nil
}

// Sweep deletes every expired event once and returns how many it deleted.
func (c *Controller) Sweep(ctx context.Context) (int, error) {
	deadline := c.opts.Now().Add(-c.opts.TTL)
	deleted := 0
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.client.CoreV1().Events("").List(ctx, opts)
		if err != nil {
			return deleted, err
		}
		for i := range list.Items {
			ev := &list.Items[i]
			if !LastWrite(ev).Before(deadline) {
				continue
			}
			// The resourceVersion precondition keeps an event that was
			// just bumped (count+1) from being deleted.
			err := c.client.CoreV1().Events(ev.Namespace).Delete(ctx, ev.Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &ev.UID, ResourceVersion: &ev.ResourceVersion},
			})
			switch {
			case err == nil:
				deleted++
			case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			default:
				return deleted, err
			}
		}
		if list.Continue == "" {
			return deleted, nil
		}
		opts.Continue = list.Continue
	}
}

// LastWrite is the latest time an event was recorded or updated.
func LastWrite(ev *corev1.Event) time.Time {
	t := ev.CreationTimestamp.Time
	for _, c := range []time.Time{ev.LastTimestamp.Time, ev.EventTime.Time, ev.FirstTimestamp.Time} {
		if c.After(t) {
			t = c
		}
	}
	if ev.Series != nil && ev.Series.LastObservedTime.After(t) {
		t = ev.Series.LastObservedTime.Time
	}
	return t
}
