package registry

import (
	"context"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// appsTestDeployment is a valid deployment as a client sends it (not
// defaulted).
func appsTestDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: appsTestTemplate(map[string]string{"app": "web"}),
		},
	}
}

func appsTestTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "nginx", Image: "nginx:1.27"},
			{Name: "sidecar", Image: "busybox"},
		}},
	}
}

// appsErrStrings renders errors as kubectl shows them, one per cause.
func appsErrStrings(errs field.ErrorList) []string {
	out := []string{}
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestDeploymentDefaults(t *testing.T) {
	s := deployments().Strategy
	tests := []struct {
		name  string
		tweak func(*appsv1.Deployment)
		check func(*testing.T, *appsv1.Deployment)
	}{
		{"empty spec gets apps/v1 defaults", nil, func(t *testing.T, d *appsv1.Deployment) {
			want := appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Strategy: appsv1.DeploymentStrategy{
					Type: appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{
						MaxUnavailable: ptr.To(intstr.FromString("25%")),
						MaxSurge:       ptr.To(intstr.FromString("25%")),
					},
				},
				RevisionHistoryLimit:    ptr.To[int32](10),
				ProgressDeadlineSeconds: ptr.To[int32](600),
			}
			got := d.Spec
			got.Selector, got.Template = nil, corev1.PodTemplateSpec{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("spec = %+v, want %+v", got, want)
			}
			ps := d.Spec.Template.Spec
			if ps.RestartPolicy != corev1.RestartPolicyAlways || ps.DNSPolicy != corev1.DNSClusterFirst ||
				ps.SchedulerName != corev1.DefaultSchedulerName || ptr.Deref(ps.TerminationGracePeriodSeconds, 0) != 30 {
				t.Errorf("template pod spec not defaulted: %+v", ps)
			}
			if c := ps.Containers[0]; c.ImagePullPolicy != corev1.PullIfNotPresent || c.TerminationMessagePath == "" {
				t.Errorf("template container not defaulted: %+v", c)
			}
			if ps.EnableServiceLinks != nil {
				t.Errorf("enableServiceLinks is a pod-only default, got %v", *ps.EnableServiceLinks)
			}
			if d.Spec.Template.Labels["app"] != "web" || len(d.Labels) != 0 {
				t.Errorf("labels changed: template %v, object %v", d.Spec.Template.Labels, d.Labels)
			}
		}},
		{"set values are kept", func(d *appsv1.Deployment) {
			d.Spec.Replicas = ptr.To[int32](0)
			d.Spec.RevisionHistoryLimit = ptr.To[int32](0)
			d.Spec.ProgressDeadlineSeconds = ptr.To[int32](30)
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptr.To(intstr.FromInt32(1))}
		}, func(t *testing.T, d *appsv1.Deployment) {
			if *d.Spec.Replicas != 0 || *d.Spec.RevisionHistoryLimit != 0 || *d.Spec.ProgressDeadlineSeconds != 30 {
				t.Errorf("explicit values overwritten: %+v", d.Spec)
			}
			ru := d.Spec.Strategy.RollingUpdate
			if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
				*ru.MaxSurge != intstr.FromInt32(1) || *ru.MaxUnavailable != intstr.FromString("25%") {
				t.Errorf("strategy = %+v / %+v", d.Spec.Strategy, ru)
			}
		}},
		{"Recreate gets no rollingUpdate", func(d *appsv1.Deployment) {
			d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
		}, func(t *testing.T, d *appsv1.Deployment) {
			if d.Spec.Strategy.RollingUpdate != nil {
				t.Errorf("rollingUpdate = %+v, want nil", d.Spec.Strategy.RollingUpdate)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := appsTestDeployment()
			if tc.tweak != nil {
				tc.tweak(d)
			}
			s.Default(d)
			tc.check(t, d)
		})
	}
}

func TestDeploymentValidate(t *testing.T) {
	s := deployments().Strategy
	tests := []struct {
		name  string
		tweak func(*appsv1.Deployment)
		want  []string
	}{
		{"valid", func(*appsv1.Deployment) {}, []string{}},
		{"missing selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, []string{
			"spec.selector: Required value",
			"spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
		}},
		{"selector does not match", func(d *appsv1.Deployment) {
			d.Spec.Template.Labels = map[string]string{"app": "other"}
		}, []string{
			"spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
		}},
		{"template without labels", func(d *appsv1.Deployment) { d.Spec.Template.Labels = nil }, []string{
			"spec.template.metadata.labels: Invalid value: null: `selector` does not match template `labels`",
		}},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }, []string{
			"spec.selector: Invalid value: {}: empty selector is invalid for deployment",
		}},
		{"bad selector operator", func(d *appsv1.Deployment) {
			d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Foo"}}
		}, []string{
			"spec.selector.matchExpressions[0].operator: Invalid value: \"Foo\": not a valid selector operator",
			"spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":[{\"key\":\"tier\",\"operator\":\"Foo\"}]}: invalid label selector",
		}},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](-1) }, []string{
			"spec.replicas: Invalid value: -1: must be greater than or equal to 0",
		}},
		{"negative minReadySeconds", func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = -5 }, []string{
			"spec.minReadySeconds: Invalid value: -5: must be greater than or equal to 0",
		}},
		{"unknown strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "BlueGreen" }, []string{
			"spec.strategy: Unsupported value: {\"Type\":\"BlueGreen\",\"RollingUpdate\":null}: supported values: \"Recreate\", \"RollingUpdate\"",
		}},
		{"Recreate with rollingUpdate", func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{}}
		}, []string{
			"spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
		}},
		{"maxSurge and maxUnavailable both 0", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intstr.FromInt32(0)), MaxUnavailable: ptr.To(intstr.FromString("0%"))}
		}, []string{
			"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
		}},
		{"maxUnavailable over 100%", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromString("150%"))}
		}, []string{
			"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
		}},
		{"bad percent and negative int", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptr.To(intstr.FromInt32(-1)), MaxSurge: ptr.To(intstr.FromString("abc"))}
		}, []string{
			"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0",
			"spec.strategy.rollingUpdate.maxSurge: Invalid value: \"abc\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
		}},
		{"negative revisionHistoryLimit", func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = ptr.To[int32](-1) }, []string{
			"spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
		}},
		{"progressDeadlineSeconds not above minReadySeconds", func(d *appsv1.Deployment) {
			d.Spec.MinReadySeconds = 30
			d.Spec.ProgressDeadlineSeconds = ptr.To[int32](30)
		}, []string{
			"spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds",
		}},
		{"restartPolicy Never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever }, []string{
			"spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
		}},
		{"activeDeadlineSeconds", func(d *appsv1.Deployment) { d.Spec.Template.Spec.ActiveDeadlineSeconds = ptr.To[int64](10) }, []string{
			"spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
		}},
		{"template pod spec is validated", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers = nil
			d.Spec.Template.Labels["bad key!"] = "x"
		}, []string{
			"spec.template.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
			"spec.template.spec.containers: Required value",
		}},
		{"negative rollback annotation", func(d *appsv1.Deployment) {
			d.Annotations = map[string]string{appsv1.DeprecatedRollbackTo: "-1"}
		}, []string{
			"spec.rollback.version: Invalid value: -1: must be greater than or equal to 0",
		}},
		{"bad name and no namespace", func(d *appsv1.Deployment) { d.Name, d.Namespace = "Web_1", "" }, []string{
			"metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
			"metadata.namespace: Required value",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := appsTestDeployment()
			tc.tweak(d)
			s.Default(d)
			got := appsErrStrings(s.Validate(context.Background(), d))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDeploymentValidateUpdate(t *testing.T) {
	s := deployments().Strategy
	old := appsTestDeployment()
	s.Default(old)
	old.ResourceVersion, old.Generation = "5", 1

	tests := []struct {
		name  string
		tweak func(*appsv1.Deployment)
		want  []string
	}{
		{"scale and new image", func(d *appsv1.Deployment) {
			d.Spec.Replicas = ptr.To[int32](3)
			d.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		}, []string{}},
		{"selector is immutable", func(d *appsv1.Deployment) {
			d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "v": "2"}}
			d.Spec.Template.Labels = map[string]string{"app": "web", "v": "2"}
		}, []string{
			"spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable",
		}},
		{"spec is validated too", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](-2) }, []string{
			"spec.replicas: Invalid value: -2: must be greater than or equal to 0",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := old.DeepCopy()
			tc.tweak(d)
			got := appsErrStrings(s.ValidateUpdate(context.Background(), d, old))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDeploymentGenerationAndStatus(t *testing.T) {
	s := deployments().Strategy
	ctx := context.Background()

	created := appsTestDeployment()
	created.Status.Replicas = 9
	created.Generation = 7
	s.Default(created)
	s.PrepareForCreate(ctx, created)
	if created.Generation != 1 || created.Status.Replicas != 0 {
		t.Fatalf("after create: generation %d, status %+v", created.Generation, created.Status)
	}
	created.Status = appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1}
	created.ResourceVersion = "5"

	tests := []struct {
		name    string
		tweak   func(*appsv1.Deployment)
		wantGen int64
	}{
		{"no change", func(*appsv1.Deployment) {}, 1},
		{"replicas change", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](3) }, 2},
		{"template change", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "nginx:2" }, 2},
		{"label change", func(d *appsv1.Deployment) { d.Labels = map[string]string{"a": "b"} }, 1},
		{"annotation change", func(d *appsv1.Deployment) {
			d.Annotations = map[string]string{"kubernetes.io/change-cause": "x"}
		}, 2},
		{"rollback annotation", func(d *appsv1.Deployment) {
			d.Annotations = map[string]string{appsv1.DeprecatedRollbackTo: "1"}
		}, 2},
		{"status in body is ignored", func(d *appsv1.Deployment) { d.Status.Replicas = 42 }, 1},
		{"client generation is ignored", func(d *appsv1.Deployment) { d.Generation = 99 }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := created.DeepCopy()
			tc.tweak(d)
			s.Default(d)
			s.PrepareForUpdate(ctx, d, created)
			if d.Generation != tc.wantGen {
				t.Errorf("generation = %d, want %d", d.Generation, tc.wantGen)
			}
			if !reflect.DeepEqual(d.Status, created.Status) {
				t.Errorf("status = %+v, want the old %+v", d.Status, created.Status)
			}
		})
	}

	t.Run("status write keeps spec and labels", func(t *testing.T) {
		old := created.DeepCopy()
		old.Labels = map[string]string{"app": "web"}
		d := old.DeepCopy()
		d.Spec.Replicas = ptr.To[int32](50)
		d.Labels = map[string]string{"app": "changed"}
		d.Annotations = map[string]string{"note": "status writers may annotate"}
		d.Status = appsv1.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, AvailableReplicas: 2, ObservedGeneration: 1}
		s.PrepareForStatusUpdate(ctx, d, old)
		if *d.Spec.Replicas != 1 || d.Labels["app"] != "web" || d.Generation != 1 {
			t.Errorf("spec/labels/generation changed by a status write: %+v %v %d", d.Spec, d.Labels, d.Generation)
		}
		if d.Status.Replicas != 3 || d.Annotations["note"] == "" {
			t.Errorf("status write lost status or annotations: %+v %v", d.Status, d.Annotations)
		}
		if errs := s.ValidateStatusUpdate(ctx, d, old); len(errs) != 0 {
			t.Errorf("valid status rejected: %v", errs)
		}
	})
}

func TestDeploymentValidateStatusUpdate(t *testing.T) {
	s := deployments().Strategy
	old := appsTestDeployment()
	s.Default(old)
	old.Status.CollisionCount = ptr.To[int32](2)
	old.ResourceVersion = "5"
	tests := []struct {
		name   string
		status appsv1.DeploymentStatus
		want   []string
	}{
		{"valid", appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 1, AvailableReplicas: 1,
			CollisionCount: ptr.To[int32](2)}, []string{}},
		{"negative and inconsistent", appsv1.DeploymentStatus{ObservedGeneration: -1, Replicas: 1, UpdatedReplicas: 2,
			ReadyReplicas: 1, AvailableReplicas: 2, UnavailableReplicas: -1, TerminatingReplicas: ptr.To[int32](-1),
			CollisionCount: ptr.To[int32](1)}, []string{
			"status.observedGeneration: Invalid value: -1: must be greater than or equal to 0",
			"status.unavailableReplicas: Invalid value: -1: must be greater than or equal to 0",
			"status.terminatingReplicas: Invalid value: -1: must be greater than or equal to 0",
			"status.updatedReplicas: Invalid value: 2: cannot be greater than status.replicas",
			"status.availableReplicas: Invalid value: 2: cannot be greater than status.replicas",
			"status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas",
			"status.collisionCount: Invalid value: 1: cannot be decremented",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := old.DeepCopy()
			d.Status = tc.status
			got := appsErrStrings(s.ValidateStatusUpdate(context.Background(), d, old))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDeploymentTable(t *testing.T) {
	s := deployments().Strategy
	var names []string
	var wide []bool
	for _, c := range s.TableColumns() {
		names = append(names, c.Name)
		wide = append(wide, c.Priority == 1)
	}
	if want := []string{"Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"}; !reflect.DeepEqual(names, want) {
		t.Errorf("columns = %v, want %v", names, want)
	}
	if want := []bool{false, false, false, false, false, true, true, true}; !reflect.DeepEqual(wide, want) {
		t.Errorf("wide columns = %v, want %v", wide, want)
	}
	if d := s.TableColumns()[2].Description; d == "" {
		t.Errorf("Up-to-date has no description")
	}

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := appsTestDeployment()
	s.Default(d)
	d.Spec.Replicas = ptr.To[int32](3)
	d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{
		{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"b", "a"}}}
	d.CreationTimestamp = metav1.NewTime(now.Add(-90 * time.Minute))
	d.Status = appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 2, AvailableReplicas: 1}
	got := s.TableRow(d, now)
	want := []interface{}{"web", "2/3", int64(3), int64(1), "90m", "nginx,sidecar", "nginx:1.27,busybox", "app=web,tier in (a,b)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("row = %#v\nwant %#v", got, want)
	}
	d.Spec.Selector.MatchExpressions[0].Operator = "Bad"
	if got := s.TableRow(d, now)[7]; got != "<invalid>" {
		t.Errorf("bad selector cell = %v, want <invalid>", got)
	}
}

func TestDeploymentScale(t *testing.T) {
	r := deployments()
	sa, ok := r.Strategy.(ScaleAccessor)
	if !ok {
		t.Fatal("deployment strategy is not a ScaleAccessor")
	}
	d := appsTestDeployment()
	r.Strategy.Default(d)
	d.Spec.Replicas = ptr.To[int32](4)
	d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpExists}}
	d.Status.Replicas = 2
	spec, status, sel := sa.Scale(d)
	if spec != 4 || status != 2 || sel != "app=web,env" {
		t.Errorf("Scale = %d, %d, %q; want 4, 2, \"app=web,env\"", spec, status, sel)
	}
	sa.SetReplicas(d, 7)
	if *d.Spec.Replicas != 7 {
		t.Errorf("SetReplicas: spec.replicas = %d", *d.Spec.Replicas)
	}
}

func TestAppsResources(t *testing.T) {
	for _, tc := range []struct {
		r                    *Resource
		resource, kind, shrt string
	}{
		{deployments(), "deployments", "Deployment", "deploy"},
		{replicaSets(), "replicasets", "ReplicaSet", "rs"},
	} {
		r := tc.r
		if r.GVR().String() != "apps/v1, Resource="+tc.resource || r.Kind != tc.kind || !r.Namespaced ||
			!reflect.DeepEqual(r.ShortNames, []string{tc.shrt}) || !reflect.DeepEqual(r.Categories, []string{"all"}) ||
			!r.HasSubresource("status") || !r.HasSubresource("scale") {
			t.Errorf("%s resource = %+v", tc.resource, r)
		}
		if len(r.Strategy.SelectableFields(r.New())) > 1 {
			t.Errorf("%s selectable fields = %v", tc.resource, r.Strategy.SelectableFields(r.New()))
		}
	}
	if f := deployments().Strategy.SelectableFields(appsTestDeployment()); len(f) != 0 {
		t.Errorf("deployment selectable fields = %v, want none beyond metadata", f)
	}
}
