// Package serviceaccount is kube-controller-manager's service account
// controllers in one: every active namespace gets a "default" ServiceAccount
// (recreated if deleted; pkg/controller/serviceaccount/serviceaccounts_controller.go)
// and a kube-root-ca.crt ConfigMap (root-ca-cert-publisher), and the legacy
// token controller (tokens_controller.go) fills
// kubernetes.io/service-account-token Secrets with a token, ca.crt and
// namespace, and deletes them when their ServiceAccount goes away.
package serviceaccount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-dev/skiff/internal/controller"
)

// Name is the controller's component name (events, logs).
const Name = "service-account-controller"

// TokenGenerator signs the legacy token of a service account token Secret
// (satoken.Service implements it).
type TokenGenerator interface {
	LegacyToken(sa *corev1.ServiceAccount, secret *corev1.Secret) (string, error)
}

// Options configure the controller.
type Options struct {
	// ServiceAccounts are ensured in every active namespace. Default ["default"].
	ServiceAccounts []string
	// RootCA (PEM) is the cluster CA: published in every namespace as the
	// kube-root-ca.crt ConfigMap and written to token Secrets as ca.crt.
	// Empty disables both.
	RootCA []byte
	// TokenGenerator signs tokens for token Secrets. Nil disables the token
	// controller (only the default service accounts are kept).
	TokenGenerator TokenGenerator
}

// Controller runs both loops.
type Controller struct {
	cc      controller.Context
	log     *slog.Logger
	opts    Options
	nsQueue workqueue.TypedRateLimitingInterface[string]
	// saQueue keys are "ns/name/uid"; secretQueue keys are
	// "ns/name/uid/saName/saUID" so a deleted object can still be acted on.
	saQueue     workqueue.TypedRateLimitingInterface[string]
	secretQueue workqueue.TypedRateLimitingInterface[string]
	// caQueue keys are namespace names (kube-root-ca.crt publishing).
	caQueue workqueue.TypedRateLimitingInterface[string]

	nsLister     corelisters.NamespaceLister
	saLister     corelisters.ServiceAccountLister
	secretLister corelisters.SecretLister
	cmLister     corelisters.ConfigMapLister
	synced       []cache.InformerSynced
}

// New registers the event handlers on cc's shared informers (namespaces,
// serviceaccounts, and secrets when a TokenGenerator is set).
func New(cc controller.Context, opts Options) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("serviceaccount: Context needs Client and Informers")
	}
	if len(opts.ServiceAccounts) == 0 {
		opts.ServiceAccounts = []string{"default"}
	}
	opts.ServiceAccounts = slices.Clone(opts.ServiceAccounts)
	c := &Controller{
		cc:      cc,
		log:     cc.Logger(Name),
		opts:    opts,
		nsQueue: controller.NewQueue("serviceaccount"),
	}
	nsInf := cc.Informers.Core().V1().Namespaces()
	saInf := cc.Informers.Core().V1().ServiceAccounts()
	c.nsLister, c.saLister = nsInf.Lister(), saInf.Lister()
	if len(opts.RootCA) > 0 {
		c.caQueue = controller.NewQueue("root_ca_cert_publisher")
		cmInf := cc.Informers.Core().V1().ConfigMaps()
		c.cmLister = cmInf.Lister()
		enqueueCM := func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == RootCACertConfigMapName {
				c.caQueue.Add(cm.Namespace)
			}
		}
		cmReg, err := cmInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj any) { enqueueCM(obj) }, DeleteFunc: enqueueCM,
		})
		if err != nil {
			return nil, err
		}
		c.synced = append(c.synced, cmReg.HasSynced)
	}
	enqueueNS := func(obj any) {
		ns, ok := obj.(*corev1.Namespace)
		if !ok {
			return
		}
		c.nsQueue.Add(ns.Name)
		if c.caQueue != nil && ns.Status.Phase == corev1.NamespaceActive {
			c.caQueue.Add(ns.Name)
		}
	}
	nsReg, err := nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueNS,
		UpdateFunc: func(_, obj any) { enqueueNS(obj) },
	})
	if err != nil {
		return nil, err
	}
	saHandler := cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if sa := serviceAccountOf(obj); sa != nil {
			c.nsQueue.Add(sa.Namespace)
		}
	}}
	if opts.TokenGenerator != nil {
		c.saQueue = controller.NewQueue("serviceaccount_tokens_service")
		c.secretQueue = controller.NewQueue("serviceaccount_tokens_secret")
		enqueueSA := func(obj any) {
			if sa := serviceAccountOf(obj); sa != nil {
				c.saQueue.Add(sa.Namespace + "/" + sa.Name + "/" + string(sa.UID))
			}
		}
		saHandler.AddFunc = enqueueSA
		saHandler.UpdateFunc = func(_, obj any) { enqueueSA(obj) }
		del := saHandler.DeleteFunc
		saHandler.DeleteFunc = func(obj any) { del(obj); enqueueSA(obj) }

		secInf := cc.Informers.Core().V1().Secrets()
		c.secretLister = secInf.Lister()
		enqueueSecret := func(obj any) {
			if s := secretOf(obj); s != nil && s.Type == corev1.SecretTypeServiceAccountToken && s.Annotations[corev1.ServiceAccountNameKey] != "" {
				c.secretQueue.Add(secretKey(s))
			}
		}
		secReg, err := secInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: enqueueSecret, UpdateFunc: func(_, obj any) { enqueueSecret(obj) }, DeleteFunc: enqueueSecret,
		})
		if err != nil {
			return nil, err
		}
		c.synced = append(c.synced, secReg.HasSynced)
	}
	saReg, err := saInf.Informer().AddEventHandler(saHandler)
	if err != nil {
		return nil, err
	}
	c.synced = append(c.synced, nsReg.HasSynced, saReg.HasSynced)
	return c, nil
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	c.log.Info("starting")
	defer c.log.Info("stopped")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return controller.RunWorkers(gctx, Name, c.nsQueue, workers, c.syncNamespace, c.log, c.synced...)
	})
	if c.caQueue != nil {
		g.Go(func() error {
			return controller.RunWorkers(gctx, Name+"-root-ca", c.caQueue, workers, c.syncRootCA, c.log, c.synced...)
		})
	}
	if c.opts.TokenGenerator != nil {
		g.Go(func() error {
			return controller.RunWorkers(gctx, Name+"-tokens", c.saQueue, workers, c.syncServiceAccount, c.log, c.synced...)
		})
		g.Go(func() error {
			return controller.RunWorkers(gctx, Name+"-token-secrets", c.secretQueue, workers, c.syncSecret, c.log, c.synced...)
		})
	}
	return g.Wait()
}

// syncNamespace creates the missing service accounts of an active namespace.
func (c *Controller) syncNamespace(ctx context.Context, name string) error {
	ns, err := c.nsLister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.Status.Phase != corev1.NamespaceActive || ns.DeletionTimestamp != nil {
		return nil // nothing is created in a terminating namespace
	}
	var errs []error
	for _, saName := range c.opts.ServiceAccounts {
		switch _, err := c.saLister.ServiceAccounts(name).Get(saName); {
		case err == nil:
			continue
		case !apierrors.IsNotFound(err):
			return err
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: saName, Namespace: name}}
		_, err := c.cc.Client.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{})
		switch {
		case err == nil:
			c.log.Debug("created service account", "namespace", name, "name", saName)
		case apierrors.IsAlreadyExists(err), apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		default:
			errs = append(errs, fmt.Errorf("create service account %s/%s: %w", name, saName, err))
		}
	}
	return errors.Join(errs...)
}

func serviceAccountOf(obj any) *corev1.ServiceAccount {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	sa, _ := obj.(*corev1.ServiceAccount)
	return sa
}

func secretOf(obj any) *corev1.Secret {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, _ := obj.(*corev1.Secret)
	return s
}
