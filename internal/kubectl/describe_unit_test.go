package kubectl

import (
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/podqos"
)

func TestDeploymentStatus(t *testing.T) {
	dep := func(gen, observed int64, spec, replicas, updated, available int32, reason, rev string) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "x", Generation: gen, Annotations: map[string]string{revisionAnnotation: rev}},
			Spec:   appsv1.DeploymentSpec{Replicas: ptr.To(spec)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated, AvailableReplicas: available}}
		if reason != "" {
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: reason}}
		}
		return d
	}
	for _, tc := range []struct {
		name    string
		d       *appsv1.Deployment
		rev     int64
		msg     string
		done    bool
		wantErr string
	}{
		{"not observed", dep(2, 1, 3, 3, 3, 3, "", "1"), 0, "Waiting for deployment spec update to be observed...\n", false, ""},
		{"updating", dep(2, 2, 3, 3, 1, 1, "", "1"), 0, "Waiting for deployment \"x\" rollout to finish: 1 out of 3 new replicas have been updated...\n", false, ""},
		{"old pending", dep(2, 2, 3, 5, 3, 3, "", "1"), 0, "Waiting for deployment \"x\" rollout to finish: 2 old replicas are pending termination...\n", false, ""},
		{"unavailable", dep(2, 2, 3, 3, 3, 1, "", "1"), 0, "Waiting for deployment \"x\" rollout to finish: 1 of 3 updated replicas are available...\n", false, ""},
		{"done", dep(2, 2, 3, 3, 3, 3, "NewReplicaSetAvailable", "1"), 0, "deployment \"x\" successfully rolled out\n", true, ""},
		{"deadline", dep(2, 2, 3, 3, 1, 1, timedOutReason, "1"), 0, "", false, "deployment \"x\" exceeded its progress deadline"},
		{"deadline not yet observed", dep(3, 2, 3, 3, 1, 1, timedOutReason, "1"), 0, "Waiting for deployment spec update to be observed...\n", false, ""},
		{"revision pinned", dep(2, 2, 3, 3, 3, 3, "", "2"), 1, "", false, "desired revision (1) is different from the running revision (2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, done, err := deploymentStatus(tc.d, tc.rev)
			if fmt.Sprint(err) != map[bool]string{true: "<nil>", false: tc.wantErr}[tc.wantErr == ""] {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if msg != tc.msg || done != tc.done {
				t.Errorf("got %q %v, want %q %v", msg, done, tc.msg, tc.done)
			}
		})
	}
}

func TestFormatEndpointSlices(t *testing.T) {
	slice := func(ready ...bool) discoveryv1.EndpointSlice {
		s := discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}}}
		for i, r := range ready {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.0.0.%d", i+1)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)}})
		}
		return s
	}
	for _, tc := range []struct {
		slices []discoveryv1.EndpointSlice
		want   string
	}{
		{nil, "<none>"},
		{[]discoveryv1.EndpointSlice{slice(true, false)}, "10.0.0.1:80"},
		{[]discoveryv1.EndpointSlice{slice(true, true, true, true, true)}, "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."},
	} {
		if got := formatEndpointSlices(tc.slices, map[string]bool{"http": true}); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestSmartLabelFor(t *testing.T) {
	for in, want := range map[string]string{
		"apiVersion": "API Version", "holderIdentity": "Holder Identity", "uid": "UID",
		"leaseDurationSeconds": "Lease Duration Seconds", "x-y": "X - Y", "a.b": "a.b", "podCIDR": "Pod CIDR",
	} {
		if got := smartLabelFor(in); got != want {
			t.Errorf("smartLabelFor(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPodQOS(t *testing.T) {
	res := func(req, lim string) corev1.ResourceRequirements {
		r := corev1.ResourceRequirements{}
		if req != "" {
			r.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req), corev1.ResourceMemory: resource.MustParse(req + "Mi")}
		}
		if lim != "" {
			r.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(lim), corev1.ResourceMemory: resource.MustParse(lim + "Mi")}
		}
		return r
	}
	for _, tc := range []struct {
		r    corev1.ResourceRequirements
		want corev1.PodQOSClass
	}{
		{res("", ""), corev1.PodQOSBestEffort},
		{res("1", "1"), corev1.PodQOSGuaranteed},
		{res("1", "2"), corev1.PodQOSBurstable},
		{res("1", ""), corev1.PodQOSBurstable},
	} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: tc.r}}}}
		if got := podqos.Of(pod); got != tc.want {
			t.Errorf("%+v: got %s, want %s", tc.r, got, tc.want)
		}
	}
}
