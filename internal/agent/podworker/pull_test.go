package podworker

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/image"
	"github.com/skiff-dev/skiff/internal/image/imagetest"
)

// TestPullWithImagePullSecrets: an image behind registry auth is pulled with
// the pod's imagePullSecrets; without them the registry's UNAUTHORIZED shows
// in ErrImagePull/ImagePullBackOff.
func TestPullWithImagePullSecrets(t *testing.T) {
	requireRoot(t)
	host := imagetest.RegistryWith(t, imagetest.BasicAuth("u", "p"))
	ref := imagetest.Push(t, host, "library/pbox:v1", imagetest.Busybox(t), imagetest.Auth("u", "p"))
	e := newEnvWith(t, image.Options{InsecureRegistries: []string{host}})
	ctx := context.Background()
	if _, err := e.client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: imagetest.DockerConfigJSON(host, "u", "p")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	good := simplePod("pulled", corev1.Container{Name: "c", Image: ref, Command: []string{"sleep", "3600"}})
	good.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
	e.createPod(good)
	// PullAlways: with IfNotPresent the image the other pod pulled would
	// do (as in Kubernetes before KEP-2535).
	bad := simplePod("denied", corev1.Container{Name: "c", Image: ref, Command: []string{"sleep", "3600"}, ImagePullPolicy: corev1.PullAlways})
	e.createPod(bad)

	p := e.waitPod("default", "pulled", 60*time.Second, "Running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if cs := cstatus(p, "c"); cs.Image != ref || !strings.HasPrefix(cs.ImageID, host+"/library/pbox@sha256:") {
		t.Errorf("image %q imageID %q", cs.Image, cs.ImageID)
	}
	e.waitPod("default", "denied", 60*time.Second, "UNAUTHORIZED", func(p *corev1.Pod) bool {
		cs := cstatus(p, "c")
		return cs != nil && cs.State.Waiting != nil && strings.Contains(cs.State.Waiting.Reason, "Image") &&
			strings.Contains(cs.State.Waiting.Message, "UNAUTHORIZED")
	})
	waitFor(t, 10*time.Second, "Pulling and Pulled events", func() bool {
		evs, _ := e.client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		var pulling, pulled bool
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name != "pulled" || ev.InvolvedObject.FieldPath != "spec.containers{c}" {
				continue
			}
			pulling = pulling || ev.Reason == "Pulling" && ev.Message == `Pulling image "`+ref+`"`
			pulled = pulled || ev.Reason == "Pulled" && strings.HasPrefix(ev.Message, `Successfully pulled image "`+ref+`" in `)
		}
		return pulling && pulled
	})
	for _, n := range []string{"pulled", "denied"} {
		e.client.CoreV1().Pods("default").Delete(ctx, n, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
	}
	for _, n := range []string{"pulled", "denied"} {
		e.waitGone("default", n, 30*time.Second)
	}
}
