package tokencleaner

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
	"github.com/skiff-dev/skiff/internal/pki"
)

func TestSweepDeletesOnlyExpiredTokens(t *testing.T) {
	api := controllertest.Start(t)
	ctx := context.Background()
	if _, err := api.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	mk := func(expires time.Time) pki.BootstrapToken {
		tok := pki.NewBootstrapToken()
		tok.Expires = expires
		tok.Usages = []string{pki.UsageAuthentication}
		if _, err := api.Client.CoreV1().Secrets("kube-system").Create(ctx, pki.BootstrapTokenSecret(tok), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expired, live, forever := mk(now.Add(-time.Second)), mk(now.Add(time.Hour)), mk(time.Time{})
	// An Opaque Secret with a past "expiration" is none of its business.
	opaque := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-opaque", Namespace: "kube-system"},
		StringData: map[string]string{"expiration": now.Add(-time.Hour).Format(time.RFC3339)}}
	if _, err := api.Client.CoreV1().Secrets("kube-system").Create(ctx, opaque, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := New(api.Context(t), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	for _, tc := range []struct {
		name string
		gone bool
	}{{expired.SecretName(), true}, {live.SecretName(), false}, {forever.SecretName(), false}, {"bootstrap-token-opaque", false}} {
		_, err := api.Client.CoreV1().Secrets("kube-system").Get(ctx, tc.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) != tc.gone {
			t.Errorf("%s: %v, want gone=%v", tc.name, err, tc.gone)
		}
	}
	if n, err := c.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep: %d %v", n, err)
	}
}
