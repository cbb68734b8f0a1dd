package serviceaccount

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/skiff-dev/skiff/internal/controller"
)

// fakeTokens signs "token-for-<ns>/<sa>/<uid>/<secret>".
type fakeTokens struct{ fail bool }

func (f fakeTokens) LegacyToken(sa *corev1.ServiceAccount, secret *corev1.Secret) (string, error) {
	if f.fail {
		return "", errors.New("no key")
	}
	return fmt.Sprintf("token-for-%s/%s/%s/%s", sa.Namespace, sa.Name, sa.UID, secret.Name), nil
}

func ns(name string, phase corev1.NamespacePhase) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NamespaceStatus{Phase: phase}}
}

func sa(namespace, name, uid string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(uid), ResourceVersion: "1"}}
}

func tokenSecret(namespace, name, uid, saName, saUID string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(uid), ResourceVersion: "1",
		Annotations: map[string]string{corev1.ServiceAccountNameKey: saName}}, Type: corev1.SecretTypeServiceAccountToken}
	if saUID != "" {
		s.Annotations[corev1.ServiceAccountUIDKey] = saUID
	}
	return s
}

// newFake builds the controller over a fake clientset holding objs, with
// synced informers; the test drives the sync functions itself.
func newFake(t *testing.T, opts Options, objs ...runtime.Object) (*Controller, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	c, err := New(controller.Context{Client: client, Informers: f}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); f.Shutdown() })
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("informer %v did not sync", typ)
		}
	}
	return c, client
}

func creates(client *fake.Clientset, resource string) []string {
	var out []string
	for _, a := range client.Actions() {
		if ca, ok := a.(clienttesting.CreateAction); ok && a.GetVerb() == "create" && a.GetResource().Resource == resource {
			m, _ := ca.GetObject().(metav1.Object)
			out = append(out, a.GetNamespace()+"/"+m.GetName())
		}
	}
	return out
}

func TestSyncNamespace(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		opts Options
		key  string
		want []string
	}{
		{name: "active namespace gets default", objs: []runtime.Object{ns("app", corev1.NamespaceActive)}, key: "app", want: []string{"app/default"}},
		{name: "existing default kept", objs: []runtime.Object{ns("app", corev1.NamespaceActive), sa("app", "default", "u1")}, key: "app"},
		{name: "terminating namespace left alone", objs: []runtime.Object{ns("app", corev1.NamespaceTerminating)}, key: "app"},
		{name: "missing namespace", key: "gone"},
		{name: "several accounts", objs: []runtime.Object{ns("app", corev1.NamespaceActive), sa("app", "default", "u1")},
			opts: Options{ServiceAccounts: []string{"default", "builder"}}, key: "app", want: []string{"app/builder"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, client := newFake(t, tc.opts, tc.objs...)
			if err := c.syncNamespace(context.Background(), tc.key); err != nil {
				t.Fatal(err)
			}
			if got := creates(client, "serviceaccounts"); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("created %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSyncNamespaceTerminatingRace(t *testing.T) {
	c, client := newFake(t, Options{}, ns("app", corev1.NamespaceActive))
	client.PrependReactor("create", "serviceaccounts", func(clienttesting.Action) (bool, runtime.Object, error) {
		err := apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts"}, "default", errors.New("being terminated"))
		err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}
		return true, nil, err
	})
	if err := c.syncNamespace(context.Background(), "app"); err != nil {
		t.Fatalf("a namespace that started terminating is not an error: %v", err)
	}
}

func TestSyncSecretPopulates(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	acct := sa("app", "deployer", "sa-1")
	sec := tokenSecret("app", "deployer-token", "sec-1", "deployer", "")
	c, client := newFake(t, Options{RootCA: ca, TokenGenerator: fakeTokens{}}, acct, sec)
	if err := c.syncSecret(context.Background(), secretKey(sec)); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoreV1().Secrets("app").Get(context.Background(), "deployer-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data["token"]) != "token-for-app/deployer/sa-1/deployer-token" || string(got.Data["ca.crt"]) != string(ca) ||
		string(got.Data["namespace"]) != "app" {
		t.Errorf("data = %q", got.Data)
	}
	if got.Annotations[corev1.ServiceAccountUIDKey] != "sa-1" {
		t.Errorf("annotations = %v", got.Annotations)
	}
}

func TestSyncSecretAlreadyComplete(t *testing.T) {
	acct := sa("app", "deployer", "sa-1")
	sec := tokenSecret("app", "t", "sec-1", "deployer", "sa-1")
	sec.Data = map[string][]byte{"token": []byte("x"), "namespace": []byte("app")}
	c, client := newFake(t, Options{TokenGenerator: fakeTokens{fail: true}}, acct, sec)
	client.ClearActions()
	if err := c.syncSecret(context.Background(), secretKey(sec)); err != nil {
		t.Fatal(err)
	}
	if n := len(client.Actions()); n != 0 {
		t.Errorf("a complete secret caused %d API calls: %v", n, client.Actions())
	}
}

func TestSyncSecretWithoutServiceAccountIsDeleted(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []runtime.Object
	}{
		{name: "no service account"},
		{name: "service account recreated with another UID", objs: []runtime.Object{sa("app", "deployer", "sa-2")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec := tokenSecret("app", "t", "sec-1", "deployer", "sa-1")
			c, client := newFake(t, Options{TokenGenerator: fakeTokens{}}, append(tc.objs, sec)...)
			if err := c.syncSecret(context.Background(), secretKey(sec)); err != nil {
				t.Fatal(err)
			}
			if _, err := client.CoreV1().Secrets("app").Get(context.Background(), "t", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("secret still there: %v", err)
			}
		})
	}
}

func TestSyncServiceAccountDeletesItsTokens(t *testing.T) {
	mine := tokenSecret("app", "mine", "s1", "deployer", "sa-1")
	unpinned := tokenSecret("app", "unpinned", "s2", "deployer", "")
	othersUID := tokenSecret("app", "other-uid", "s3", "deployer", "sa-0")
	othersName := tokenSecret("app", "other-sa", "s4", "builder", "")
	opaque := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "opaque",
		Annotations: map[string]string{corev1.ServiceAccountNameKey: "deployer"}}}
	c, client := newFake(t, Options{TokenGenerator: fakeTokens{}}, mine, unpinned, othersUID, othersName, opaque)
	if err := c.syncServiceAccount(context.Background(), "app/deployer/sa-1"); err != nil {
		t.Fatal(err)
	}
	left, _ := client.CoreV1().Secrets("app").List(context.Background(), metav1.ListOptions{})
	var names []string
	for _, s := range left.Items {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "opaque,other-sa,other-uid" {
		t.Errorf("secrets left = %v", names)
	}
}

func TestSyncServiceAccountThatExists(t *testing.T) {
	acct := sa("app", "deployer", "sa-1")
	c, client := newFake(t, Options{TokenGenerator: fakeTokens{}}, acct, tokenSecret("app", "mine", "s1", "deployer", "sa-1"))
	client.ClearActions()
	if err := c.syncServiceAccount(context.Background(), "app/deployer/sa-1"); err != nil {
		t.Fatal(err)
	}
	if len(client.Actions()) != 0 {
		t.Errorf("actions = %v", client.Actions())
	}
}

func TestDeletedSecretReferenceRemoved(t *testing.T) {
	acct := sa("app", "deployer", "sa-1")
	acct.Secrets = []corev1.ObjectReference{{Name: "gone"}, {Name: "kept"}}
	c, client := newFake(t, Options{TokenGenerator: fakeTokens{}}, acct)
	sec := tokenSecret("app", "gone", "s1", "deployer", "sa-1")
	if err := c.syncSecret(context.Background(), secretKey(sec)); err != nil {
		t.Fatal(err)
	}
	got, _ := client.CoreV1().ServiceAccounts("app").Get(context.Background(), "deployer", metav1.GetOptions{})
	if len(got.Secrets) != 1 || got.Secrets[0].Name != "kept" {
		t.Errorf("secrets = %v", got.Secrets)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(controller.Context{}, Options{}); err == nil {
		t.Error("New without clients succeeded")
	}
}

func TestSyncRootCA(t *testing.T) {
	ca := []byte("CA-PEM")
	stale := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: RootCACertConfigMapName},
		Data: map[string]string{"ca.crt": "OLD"}}
	current := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: RootCACertConfigMapName,
		Annotations: map[string]string{descriptionAnnotation: rootCADescription}}, Data: map[string]string{"ca.crt": "CA-PEM"}}
	for _, tc := range []struct {
		name  string
		objs  []runtime.Object
		verbs string
	}{
		{name: "created", objs: []runtime.Object{ns("app", corev1.NamespaceActive)}, verbs: "create"},
		{name: "stale data replaced", objs: []runtime.Object{ns("app", corev1.NamespaceActive), stale}, verbs: "update"},
		{name: "current left alone", objs: []runtime.Object{ns("app", corev1.NamespaceActive), current}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, client := newFake(t, Options{RootCA: ca}, tc.objs...)
			client.ClearActions()
			if err := c.syncRootCA(context.Background(), "app"); err != nil {
				t.Fatal(err)
			}
			var verbs []string
			for _, a := range client.Actions() {
				verbs = append(verbs, a.GetVerb())
			}
			if strings.Join(verbs, ",") != tc.verbs {
				t.Errorf("actions = %v, want %s", verbs, tc.verbs)
			}
			got, err := client.CoreV1().ConfigMaps("app").Get(context.Background(), RootCACertConfigMapName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Data["ca.crt"] != "CA-PEM" || got.Annotations[descriptionAnnotation] != rootCADescription {
				t.Errorf("configmap = %+v", got)
			}
		})
	}
	t.Run("disabled without a CA", func(t *testing.T) {
		c, _ := newFake(t, Options{}, ns("app", corev1.NamespaceActive))
		if c.caQueue != nil {
			t.Error("publisher runs without a CA")
		}
	})
}
