package registry

import (
	"context"
	"net/http"
	"reflect"
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// saGetter is a fake store of service accounts (unit test).
type saGetter map[string]*corev1.ServiceAccount

func (g saGetter) GetObject(_ context.Context, gr schema.GroupResource, ns, name string) (runtime.Object, error) {
	if gr.Resource != "serviceaccounts" {
		return nil, apierrors.NewNotFound(gr, name)
	}
	sa, ok := g[ns+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(gr, name)
	}
	return sa.DeepCopy(), nil
}

func saAdmit(t *testing.T, g saGetter, p *corev1.Pod, name string) (*corev1.Pod, error) {
	t.Helper()
	s := podsWith(Config{Objects: g}).Strategy
	s.Default(p)
	if err := s.(Admitter).Admit(context.Background(), p, name); err != nil {
		return p, err
	}
	s.PrepareForCreate(context.Background(), p)
	if errs := s.Validate(context.Background(), p); len(errs) > 0 {
		t.Fatalf("admitted pod is invalid: %v", errs)
	}
	return p, nil
}

func TestServiceAccountAdmissionMountsToken(t *testing.T) {
	g := saGetter{"default/default": {ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}}}}
	p := coreTestPod()
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "own", Image: "busybox",
		VolumeMounts: []corev1.VolumeMount{{Name: "mine", MountPath: DefaultAPITokenMountPath}}})
	p.Spec.Volumes = []corev1.Volume{{Name: "mine", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p, err := saAdmit(t, g, p, "web")
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.ServiceAccountName != "default" || p.Spec.DeprecatedServiceAccount != "default" {
		t.Errorf("serviceAccountName %q / serviceAccount %q", p.Spec.ServiceAccountName, p.Spec.DeprecatedServiceAccount)
	}
	if len(p.Spec.Volumes) != 2 {
		t.Fatalf("volumes: %+v", p.Spec.Volumes)
	}
	v := p.Spec.Volumes[1]
	if !regexp.MustCompile(`^kube-api-access-[a-z0-9]{5}$`).MatchString(v.Name) {
		t.Errorf("volume name %q", v.Name)
	}
	exp := int64(3607)
	mode := int32(420)
	want := &corev1.ProjectedVolumeSource{DefaultMode: &mode, Sources: []corev1.VolumeProjection{
		{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}},
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
			Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
		{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
	}}
	if !reflect.DeepEqual(v.Projected, want) {
		t.Errorf("projected source:\n got %+v\nwant %+v", v.Projected, want)
	}
	mount := corev1.VolumeMount{Name: v.Name, ReadOnly: true, MountPath: DefaultAPITokenMountPath}
	for _, c := range []corev1.Container{p.Spec.InitContainers[0], p.Spec.Containers[0]} {
		if len(c.VolumeMounts) != 1 || !reflect.DeepEqual(c.VolumeMounts[0], mount) {
			t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
		}
	}
	if own := p.Spec.Containers[1].VolumeMounts; len(own) != 1 || own[0].Name != "mine" {
		t.Errorf("container with its own mount at the path got %+v", own)
	}
	if !reflect.DeepEqual(p.Spec.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}}) {
		t.Errorf("imagePullSecrets %+v", p.Spec.ImagePullSecrets)
	}
}

func TestServiceAccountAdmissionAutomount(t *testing.T) {
	g := saGetter{
		"default/off": {ObjectMeta: metav1.ObjectMeta{Name: "off", Namespace: "default"}, AutomountServiceAccountToken: ptr.To(false)},
		"default/on":  {ObjectMeta: metav1.ObjectMeta{Name: "on", Namespace: "default"}},
	}
	for _, tc := range []struct {
		sa     string
		pod    *bool
		mounts bool
	}{
		{"on", nil, true}, {"on", ptr.To(false), false}, {"off", nil, false}, {"off", ptr.To(true), true},
	} {
		p := coreTestPod()
		p.Spec.ServiceAccountName = tc.sa
		p.Spec.AutomountServiceAccountToken = tc.pod
		p, err := saAdmit(t, g, p, "web")
		if err != nil {
			t.Fatal(err)
		}
		if got := len(p.Spec.Volumes) == 1 && len(p.Spec.Containers[0].VolumeMounts) == 1; got != tc.mounts {
			t.Errorf("sa %s pod automount %v: mounted %v, want %v", tc.sa, tc.pod, got, tc.mounts)
		}
	}
}

func TestServiceAccountAdmissionNotFound(t *testing.T) {
	p := coreTestPod()
	p.Namespace = "ns"
	p.Spec.ServiceAccountName = "sa"
	_, err := saAdmit(t, saGetter{}, p, "x")
	const want = `pods "x" is forbidden: error looking up service account ns/sa: serviceaccount "sa" not found`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if code := apierrors.ReasonForError(err); code != metav1.StatusReasonForbidden {
		t.Errorf("reason %s", code)
	}
	if se, ok := err.(apierrors.APIStatus); !ok || se.Status().Code != http.StatusForbidden {
		t.Errorf("status %+v", err)
	}
	// A generated name is named by its prefix, as upstream admission sees it.
	p = coreTestPod()
	p.Name, p.GenerateName = "", "web-"
	p.Spec.ServiceAccountName = "sa"
	_, err = saAdmit(t, saGetter{}, p, "web-")
	if want := `pods "web-" is forbidden: error looking up service account default/sa: serviceaccount "sa" not found`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestServiceAccountAdmissionMountableSecrets(t *testing.T) {
	g := saGetter{"default/strict": {ObjectMeta: metav1.ObjectMeta{Name: "strict", Namespace: "default",
		Annotations: map[string]string{EnforceMountableSecretsAnnotation: "true"}},
		Secrets: []corev1.ObjectReference{{Name: "ok"}}}}
	p := coreTestPod()
	p.Spec.ServiceAccountName = "strict"
	p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "ok"}}}}
	if _, err := saAdmit(t, g, p, "web"); err != nil {
		t.Fatal(err)
	}
	p = coreTestPod()
	p.Spec.ServiceAccountName = "strict"
	p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "other"}}}}
	_, err := saAdmit(t, g, p, "web")
	const want = `pods "web" is forbidden: container nginx with envFrom referencing secret.secretName="other" is not allowed because service account strict does not reference that secret`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestServiceAccountAdmissionMirrorPod(t *testing.T) {
	p := coreTestPod()
	p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"}
	p.Spec.NodeName = "n1"
	p, err := saAdmit(t, saGetter{}, p, "web")
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.ServiceAccountName != "" || len(p.Spec.Volumes) != 0 {
		t.Errorf("mirror pod changed: %+v", p.Spec)
	}
	p = coreTestPod()
	p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"}
	p.Spec.NodeName = "n1"
	p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}}}
	if _, err := saAdmit(t, saGetter{}, p, "web"); err == nil || err.Error() != `pods "web" is forbidden: a mirror pod may not reference secrets` {
		t.Fatalf("got %v", err)
	}
}

// Without Config.Objects the plugin is off: no lookup, no volume.
func TestServiceAccountAdmissionOff(t *testing.T) {
	p, errs := coreCreatePod(coreTestPod())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := pods().Strategy.(Admitter).Admit(context.Background(), p, "web"); err != nil || len(p.Spec.Volumes) != 0 {
		t.Fatalf("err %v volumes %+v", err, p.Spec.Volumes)
	}
}
