package registry

import (
	"context"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
)

func appsTestReplicaSet() *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f7c", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "pod-template-hash": "5d8f7c"}},
			Template: appsTestTemplate(map[string]string{"app": "web", "pod-template-hash": "5d8f7c"}),
		},
	}
}

func TestReplicaSetDefaults(t *testing.T) {
	s := replicaSets().Strategy
	rs := appsTestReplicaSet()
	s.Default(rs)
	if rs.Spec.Replicas == nil || *rs.Spec.Replicas != 1 {
		t.Errorf("replicas = %v, want 1", rs.Spec.Replicas)
	}
	if rs.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways ||
		rs.Spec.Template.Spec.Containers[1].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("template not defaulted: %+v", rs.Spec.Template.Spec)
	}
	rs = appsTestReplicaSet()
	rs.Spec.Replicas = ptr.To[int32](0)
	s.Default(rs)
	if *rs.Spec.Replicas != 0 {
		t.Errorf("explicit replicas 0 overwritten with %d", *rs.Spec.Replicas)
	}
}

func TestReplicaSetValidate(t *testing.T) {
	s := replicaSets().Strategy
	tests := []struct {
		name  string
		tweak func(*appsv1.ReplicaSet)
		want  []string
	}{
		{"valid", func(*appsv1.ReplicaSet) {}, []string{}},
		{"missing selector", func(rs *appsv1.ReplicaSet) { rs.Spec.Selector = nil }, []string{
			"spec.selector: Required value",
			"spec.template.metadata.labels: Invalid value: {\"app\":\"web\",\"pod-template-hash\":\"5d8f7c\"}: `selector` does not match template `labels`",
		}},
		{"empty selector (Kubernetes says deployment)", func(rs *appsv1.ReplicaSet) {
			rs.Spec.Selector = &metav1.LabelSelector{}
		}, []string{
			"spec.selector: Invalid value: {}: empty selector is invalid for deployment",
		}},
		{"selector does not match", func(rs *appsv1.ReplicaSet) {
			rs.Spec.Selector.MatchLabels["app"] = "api"
		}, []string{
			"spec.template.metadata.labels: Invalid value: {\"app\":\"web\",\"pod-template-hash\":\"5d8f7c\"}: `selector` does not match template `labels`",
		}},
		{"negative replicas and minReadySeconds", func(rs *appsv1.ReplicaSet) {
			rs.Spec.Replicas = ptr.To[int32](-1)
			rs.Spec.MinReadySeconds = -1
		}, []string{
			"spec.replicas: Invalid value: -1: must be greater than or equal to 0",
			"spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0",
		}},
		{"restartPolicy OnFailure", func(rs *appsv1.ReplicaSet) {
			rs.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		}, []string{
			"spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := appsTestReplicaSet()
			tc.tweak(rs)
			s.Default(rs)
			got := appsErrStrings(s.Validate(context.Background(), rs))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestReplicaSetValidateUpdate(t *testing.T) {
	s := replicaSets().Strategy
	old := appsTestReplicaSet()
	s.Default(old)
	old.ResourceVersion = "3"
	tests := []struct {
		name  string
		tweak func(*appsv1.ReplicaSet)
		want  []string
	}{
		{"scale", func(rs *appsv1.ReplicaSet) { rs.Spec.Replicas = ptr.To[int32](5) }, []string{}},
		{"selector is immutable", func(rs *appsv1.ReplicaSet) {
			rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
		}, []string{
			"spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\"}}: field is immutable",
		}},
		// Kubernetes validates the spec both as a create and as an update.
		{"spec errors are reported twice, as Kubernetes does", func(rs *appsv1.ReplicaSet) {
			rs.Spec.Replicas = ptr.To[int32](-1)
		}, []string{
			"spec.replicas: Invalid value: -1: must be greater than or equal to 0",
			"spec.replicas: Invalid value: -1: must be greater than or equal to 0",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := old.DeepCopy()
			tc.tweak(rs)
			got := appsErrStrings(s.ValidateUpdate(context.Background(), rs, old))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestReplicaSetGenerationAndStatus(t *testing.T) {
	s := replicaSets().Strategy
	ctx := context.Background()
	created := appsTestReplicaSet()
	created.Status.Replicas = 3
	s.Default(created)
	s.PrepareForCreate(ctx, created)
	if created.Generation != 1 || created.Status.Replicas != 0 {
		t.Fatalf("after create: generation %d, status %+v", created.Generation, created.Status)
	}
	created.ResourceVersion = "3"
	created.Status = appsv1.ReplicaSetStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}

	tests := []struct {
		name    string
		tweak   func(*appsv1.ReplicaSet)
		wantGen int64
	}{
		{"no change", func(*appsv1.ReplicaSet) {}, 1},
		{"replicas change", func(rs *appsv1.ReplicaSet) { rs.Spec.Replicas = ptr.To[int32](0) }, 2},
		// Only deployments count annotations as desired state.
		{"annotation change", func(rs *appsv1.ReplicaSet) {
			rs.Annotations = map[string]string{"deployment.kubernetes.io/revision": "2"}
		}, 1},
		{"status in body is ignored", func(rs *appsv1.ReplicaSet) { rs.Status.Replicas = 8 }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := created.DeepCopy()
			tc.tweak(rs)
			s.Default(rs)
			s.PrepareForUpdate(ctx, rs, created)
			if rs.Generation != tc.wantGen {
				t.Errorf("generation = %d, want %d", rs.Generation, tc.wantGen)
			}
			if !reflect.DeepEqual(rs.Status, created.Status) {
				t.Errorf("status = %+v, want the old %+v", rs.Status, created.Status)
			}
		})
	}

	t.Run("status write keeps spec, may change labels", func(t *testing.T) {
		rs := created.DeepCopy()
		rs.Spec.Replicas = ptr.To[int32](9)
		rs.Labels = map[string]string{"x": "y"}
		rs.Status = appsv1.ReplicaSetStatus{Replicas: 2, FullyLabeledReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 1}
		s.PrepareForStatusUpdate(ctx, rs, created)
		if *rs.Spec.Replicas != 1 || rs.Labels["x"] != "y" || rs.Status.Replicas != 2 {
			t.Errorf("after status write: spec %+v labels %v status %+v", rs.Spec, rs.Labels, rs.Status)
		}
		if errs := s.ValidateStatusUpdate(ctx, rs, created); len(errs) != 0 {
			t.Errorf("valid status rejected: %v", errs)
		}
	})

	t.Run("status validation", func(t *testing.T) {
		rs := created.DeepCopy()
		rs.Status = appsv1.ReplicaSetStatus{Replicas: 1, FullyLabeledReplicas: 2, ReadyReplicas: -1,
			AvailableReplicas: 1, ObservedGeneration: -1}
		got := appsErrStrings(s.ValidateStatusUpdate(ctx, rs, created))
		want := []string{
			"status.readyReplicas: Invalid value: -1: must be greater than or equal to 0",
			"status.observedGeneration: Invalid value: -1: must be greater than or equal to 0",
			"status.fullyLabeledReplicas: Invalid value: 2: cannot be greater than status.replicas",
			"status.availableReplicas: Invalid value: 1: cannot be greater than readyReplicas",
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("errors:\n got %q\nwant %q", got, want)
		}
	})
}

func TestReplicaSetTableScaleFields(t *testing.T) {
	r := replicaSets()
	s := r.Strategy
	var names []string
	for _, c := range s.TableColumns() {
		if c.Priority == 1 {
			names = append(names, "wide:"+c.Name)
		} else {
			names = append(names, c.Name)
		}
	}
	want := []string{"Name", "Desired", "Current", "Ready", "Age", "wide:Containers", "wide:Images", "wide:Selector"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("columns = %v, want %v", names, want)
	}

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rs := appsTestReplicaSet()
	s.Default(rs)
	rs.Spec.Replicas = ptr.To[int32](3)
	rs.CreationTimestamp = metav1.NewTime(now.Add(-50 * time.Hour))
	rs.Status = appsv1.ReplicaSetStatus{Replicas: 2, ReadyReplicas: 1}
	row := s.TableRow(rs, now)
	wantRow := []interface{}{"web-5d8f7c", int64(3), int64(2), int64(1), "2d2h", "nginx,sidecar", "nginx:1.27,busybox",
		"app=web,pod-template-hash=5d8f7c"}
	if !reflect.DeepEqual(row, wantRow) {
		t.Errorf("row = %#v\nwant %#v", row, wantRow)
	}
	rs.Spec.Selector = &metav1.LabelSelector{}
	if got := s.TableRow(rs, now)[7]; got != "<none>" {
		t.Errorf("empty selector cell = %v, want <none>", got)
	}

	rs = appsTestReplicaSet()
	s.Default(rs)
	rs.Status.Replicas = 2
	sa := s.(ScaleAccessor)
	spec, status, sel := sa.Scale(rs)
	if spec != 1 || status != 2 || sel != "app=web,pod-template-hash=5d8f7c" {
		t.Errorf("Scale = %d, %d, %q", spec, status, sel)
	}
	sa.SetReplicas(rs, 0)
	if *rs.Spec.Replicas != 0 {
		t.Errorf("SetReplicas(0): spec.replicas = %d", *rs.Spec.Replicas)
	}

	if got := s.SelectableFields(rs); !reflect.DeepEqual(got, fields.Set{"status.replicas": "2"}) {
		t.Errorf("selectable fields = %v", got)
	}
}
