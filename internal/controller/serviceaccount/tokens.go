package serviceaccount

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// The legacy token controller, after tokens_controller.go (without the
// pre-1.24 auto-creation of a token Secret per service account).

func secretKey(s *corev1.Secret) string {
	return strings.Join([]string{s.Namespace, s.Name, string(s.UID),
		s.Annotations[corev1.ServiceAccountNameKey], s.Annotations[corev1.ServiceAccountUIDKey]}, "/")
}

// isServiceAccountToken: secret is a token Secret of sa (the UID
// annotation, when present, must match too).
func isServiceAccountToken(secret *corev1.Secret, sa *corev1.ServiceAccount) bool {
	if secret.Type != corev1.SecretTypeServiceAccountToken || secret.Annotations[corev1.ServiceAccountNameKey] != sa.Name {
		return false
	}
	uid := secret.Annotations[corev1.ServiceAccountUIDKey]
	return uid == "" || uid == string(sa.UID)
}

// syncServiceAccount deletes the token Secrets of a service account that
// no longer exists.
func (c *Controller) syncServiceAccount(ctx context.Context, key string) error {
	parts := strings.Split(key, "/")
	if len(parts) != 3 {
		return nil
	}
	ns, name, uid := parts[0], parts[1], types.UID(parts[2])
	sa, err := c.getServiceAccount(ctx, ns, name, uid, false)
	if err != nil || sa != nil {
		return err
	}
	secrets, err := c.secretLister.Secrets(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	gone := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid}}
	var errs []error
	for _, s := range secrets {
		if isServiceAccountToken(s, gone) {
			if err := c.deleteToken(ctx, s.Namespace, s.Name, s.UID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// syncSecret keeps one token Secret right: deleted with its service
// account, filled in while it lives, and unreferenced once it is gone.
func (c *Controller) syncSecret(ctx context.Context, key string) error {
	parts := strings.Split(key, "/")
	if len(parts) != 5 {
		return nil
	}
	ns, name, uid, saName, saUID := parts[0], parts[1], types.UID(parts[2]), parts[3], types.UID(parts[4])
	secret, err := c.secretLister.Secrets(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if secret == nil || secret.UID != uid {
		// The Secret is gone: drop the service account's reference to it.
		sa, err := c.getServiceAccount(ctx, ns, saName, saUID, false)
		if err != nil || sa == nil {
			return err
		}
		return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			return c.removeSecretReference(ctx, ns, saName, saUID, name)
		})
	}
	sa, err := c.getServiceAccount(ctx, ns, saName, saUID, true)
	if err != nil {
		return err
	}
	if sa == nil {
		c.log.Debug("service account does not exist, deleting token", "namespace", ns, "secret", name, "serviceAccount", saName)
		return c.deleteToken(ctx, ns, name, uid)
	}
	return c.generateTokenIfNeeded(ctx, sa, secret)
}

// getServiceAccount reads the cache, then (live) the API if asked; nil
// when it does not exist with that UID (any UID when uid is empty).
func (c *Controller) getServiceAccount(ctx context.Context, ns, name string, uid types.UID, live bool) (*corev1.ServiceAccount, error) {
	sa, err := c.saLister.ServiceAccounts(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if sa != nil && (uid == "" || uid == sa.UID) {
		return sa, nil
	}
	if !live {
		return nil, nil
	}
	sa, err = c.cc.Client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if uid == "" || uid == sa.UID {
		return sa, nil
	}
	return nil, nil
}

func (c *Controller) deleteToken(ctx context.Context, ns, name string, uid types.UID) error {
	opts := metav1.DeleteOptions{}
	if uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &uid}
	}
	err := c.cc.Client.CoreV1().Secrets(ns).Delete(ctx, name, opts)
	// NotFound: already gone; Conflict: the UID precondition failed (another Secret now).
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// updateNeeded tells what a token Secret lacks.
func (c *Controller) updateNeeded(s *corev1.Secret) (ca, namespace, token bool) {
	ca = len(c.opts.RootCA) > 0 && !bytes.Equal(s.Data[corev1.ServiceAccountRootCAKey], c.opts.RootCA)
	namespace = len(s.Data[corev1.ServiceAccountNamespaceKey]) == 0
	token = len(s.Data[corev1.ServiceAccountTokenKey]) == 0
	return
}

func (c *Controller) generateTokenIfNeeded(ctx context.Context, sa *corev1.ServiceAccount, cached *corev1.Secret) error {
	if ca, ns, tok := c.updateNeeded(cached); !ca && !ns && !tok {
		return nil
	}
	// Fill a fresh copy, never the cache's.
	secrets := c.cc.Client.CoreV1().Secrets(cached.Namespace)
	live, err := secrets.Get(ctx, cached.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if live.ResourceVersion != cached.ResourceVersion {
		return nil // an update event is on its way; look again then
	}
	needsCA, needsNS, needsToken := c.updateNeeded(live)
	if !needsCA && !needsNS && !needsToken {
		return nil
	}
	if live.Annotations == nil {
		live.Annotations = map[string]string{}
	}
	if live.Data == nil {
		live.Data = map[string][]byte{}
	}
	if needsCA {
		live.Data[corev1.ServiceAccountRootCAKey] = c.opts.RootCA
	}
	if needsNS {
		live.Data[corev1.ServiceAccountNamespaceKey] = []byte(live.Namespace)
	}
	if needsToken {
		token, err := c.opts.TokenGenerator.LegacyToken(sa, live)
		if err != nil {
			return fmt.Errorf("generate token for %s/%s: %w", live.Namespace, live.Name, err)
		}
		live.Data[corev1.ServiceAccountTokenKey] = []byte(token)
	}
	live.Annotations[corev1.ServiceAccountNameKey] = sa.Name
	live.Annotations[corev1.ServiceAccountUIDKey] = string(sa.UID)
	_, err = secrets.Update(ctx, live, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // changed or gone meanwhile; its event brings us back
	}
	if err == nil {
		c.log.Debug("populated service account token", "namespace", live.Namespace, "secret", live.Name)
	}
	return err
}

// removeSecretReference drops secretName from the service account's
// secrets list, if it is still the same service account.
func (c *Controller) removeSecretReference(ctx context.Context, ns, saName string, saUID types.UID, secretName string) error {
	sas := c.cc.Client.CoreV1().ServiceAccounts(ns)
	sa, err := sas.Get(ctx, saName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if saUID != "" && saUID != sa.UID {
		return nil
	}
	kept := sa.Secrets[:0:0]
	for _, r := range sa.Secrets {
		if r.Name != secretName {
			kept = append(kept, r)
		}
	}
	if len(kept) == len(sa.Secrets) {
		return nil
	}
	sa.Secrets = kept
	_, err = sas.Update(ctx, sa, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
