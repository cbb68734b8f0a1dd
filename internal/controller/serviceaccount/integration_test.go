package serviceaccount_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
	"github.com/skiff-dev/skiff/internal/controller/serviceaccount"
	"github.com/skiff-dev/skiff/internal/satoken"
)

// clientLookup resolves token claims through the API (the server itself
// uses apiserver.Server.GetObject).
func clientLookup(c kubernetes.Interface) satoken.Lookup {
	return satoken.LookupFunc(func(ctx context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
		switch gr.Resource {
		case "serviceaccounts":
			return c.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
		case "secrets":
			return c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		case "pods":
			return c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		case "nodes":
			return c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		}
		return nil, apierrors.NewNotFound(gr, name)
	})
}

func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestControllerAgainstAPIServer(t *testing.T) {
	api := controllertest.Start(t)
	cc := api.Context(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := satoken.New(satoken.Options{Key: key, Lookup: clientLookup(api.Client)})
	if err != nil {
		t.Fatal(err)
	}
	ca := []byte("-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n")
	c, err := serviceaccount.New(cc, serviceaccount.Options{RootCA: ca, TokenGenerator: tokens})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// One cleanup, in order: the informers stop only once ctx is done.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		cc.Informers.Shutdown()
	})
	cc.Informers.Start(ctx.Done())
	go func() { done <- c.Run(ctx, 2) }()

	sas := func(ns string) interface {
		Get(context.Context, string, metav1.GetOptions) (*corev1.ServiceAccount, error)
	} {
		return api.Client.CoreV1().ServiceAccounts(ns)
	}
	exists := func(ns string) func() (bool, error) {
		return func() (bool, error) {
			_, err := sas(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, err
		}
	}

	// The namespaces that existed before the controller, and a new one.
	for _, ns := range []string{"default", "kube-system", "kube-node-lease"} {
		poll(t, "default service account in "+ns, exists(ns))
	}
	if _, err := api.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "default service account in team-a", exists("team-a"))
	cms := api.Client.CoreV1().ConfigMaps("team-a")
	rootCA := func() (bool, error) {
		cm, err := cms.Get(ctx, serviceaccount.RootCACertConfigMapName, metav1.GetOptions{})
		return err == nil && cm.Data["ca.crt"] == string(ca), err
	}
	poll(t, "kube-root-ca.crt in team-a", rootCA)
	if err := cms.Delete(ctx, serviceaccount.RootCACertConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "kube-root-ca.crt recreated", rootCA)

	// Deleted, it comes back (as a new object).
	old, _ := sas("team-a").Get(ctx, "default", metav1.GetOptions{})
	if err := api.Client.CoreV1().ServiceAccounts("team-a").Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "default service account recreated", func() (bool, error) {
		sa, err := sas("team-a").Get(ctx, "default", metav1.GetOptions{})
		return err == nil && sa.UID != old.UID, err
	})

	// A token Secret is filled in, and its token authenticates.
	deployer, err := api.Client.CoreV1().ServiceAccounts("team-a").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secrets := api.Client.CoreV1().Secrets("team-a")
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "deployer-token",
		Annotations: map[string]string{corev1.ServiceAccountNameKey: "deployer"}}, Type: corev1.SecretTypeServiceAccountToken}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var sec *corev1.Secret
	poll(t, "token secret populated", func() (bool, error) {
		s, err := secrets.Get(ctx, "deployer-token", metav1.GetOptions{})
		sec = s
		return err == nil && len(s.Data[corev1.ServiceAccountTokenKey]) > 0, err
	})
	if string(sec.Data[corev1.ServiceAccountRootCAKey]) != string(ca) || string(sec.Data[corev1.ServiceAccountNamespaceKey]) != "team-a" ||
		sec.Annotations[corev1.ServiceAccountUIDKey] != string(deployer.UID) {
		t.Errorf("secret = data %q annotations %v", sec.Data, sec.Annotations)
	}
	id, err := tokens.Verify(ctx, string(sec.Data[corev1.ServiceAccountTokenKey]))
	if err != nil || id.Name != "system:serviceaccount:team-a:deployer" {
		t.Fatalf("Verify = %+v, %v", id, err)
	}

	// Deleting the service account deletes its token Secret.
	if err := api.Client.CoreV1().ServiceAccounts("team-a").Delete(ctx, "deployer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "token secret deleted with its service account", func() (bool, error) {
		_, err := secrets.Get(ctx, "deployer-token", metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})

	// A token Secret for a service account that does not exist is removed.
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "orphan-token",
		Annotations: map[string]string{corev1.ServiceAccountNameKey: "nobody"}}, Type: corev1.SecretTypeServiceAccountToken}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "orphan token secret deleted", func() (bool, error) {
		_, err := secrets.Get(ctx, "orphan-token", metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
}
