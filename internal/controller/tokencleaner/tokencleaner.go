// Package tokencleaner deletes expired bootstrap tokens: the Secrets of
// type bootstrap.kubernetes.io/token in kube-system whose "expiration" has
// passed, as kube-controller-manager's tokencleaner (which kubeadm turns
// on). The join endpoint already refuses an expired token; this only keeps
// `skiff token list` and the store tidy. It sweeps periodically, like
// eventttl, rather than timing each token: a token is deleted at most one
// Interval after it expires.
package tokencleaner

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/controller"
	"github.com/skiff-dev/skiff/internal/pki"
)

// Options tune the sweep.
type Options struct {
	Interval time.Duration // default 1m
	Now      func() time.Time
}

// Controller deletes expired bootstrap tokens.
type Controller struct {
	client kubernetes.Interface
	opts   Options
	log    *slog.Logger
}

// New fills option defaults; it starts nothing.
func New(cc controller.Context, opts Options) (*Controller, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Controller{client: cc.Client, opts: opts, log: cc.Logger("token-cleaner")}, nil
}

// Run sweeps every Interval until ctx ends. workers is unused.
func (c *Controller) Run(ctx context.Context, _ int) error {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if _, err := c.Sweep(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("deleting expired bootstrap tokens", "err", err)
		}
	}, c.opts.Interval)
	return nil
}

// Sweep deletes every expired bootstrap token once and returns how many.
// Secrets that are not well-formed tokens are left alone.
func (c *Controller) Sweep(ctx context.Context) (int, error) {
	list, err := c.client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("type", string(corev1.SecretTypeBootstrapToken)).String(),
	})
	if err != nil {
		return 0, err
	}
	now, deleted := c.opts.Now(), 0
	for i := range list.Items {
		sec := &list.Items[i]
		tok, err := pki.BootstrapTokenFromSecret(sec)
		if err != nil || !tok.Expired(now) || sec.DeletionTimestamp != nil {
			continue
		}
		// The UID precondition spares a token recreated under the same name.
		err = c.client.CoreV1().Secrets(sec.Namespace).Delete(ctx, sec.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &sec.UID},
		})
		switch {
		case err == nil:
			deleted++
			c.log.Info("deleted expired bootstrap token", "id", tok.ID, "expired", tok.Expires)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		default:
			return deleted, err
		}
	}
	return deleted, nil
}
