package registry

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// coreTestPod is a valid pod as a client sends it (not defaulted).
func coreTestPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
	}
}

// coreCreatePod runs the create pipeline (Default, PrepareForCreate) and
// returns the pod with its validation errors.
func coreCreatePod(p *corev1.Pod) (*corev1.Pod, field.ErrorList) {
	s := pods().Strategy
	s.Default(p)
	s.PrepareForCreate(context.Background(), p)
	return p, s.Validate(context.Background(), p)
}

func coreErrStrings(errs field.ErrorList) []string {
	out := []string{}
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestPodDefaults(t *testing.T) {
	p, errs := coreCreatePod(coreTestPod())
	if len(errs) != 0 {
		t.Fatalf("valid pod rejected: %v", errs)
	}
	want := corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "nginx", Image: "nginx:1.27", ImagePullPolicy: corev1.PullIfNotPresent,
			TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		}},
		RestartPolicy:                 corev1.RestartPolicyAlways,
		TerminationGracePeriodSeconds: ptr.To[int64](30),
		DNSPolicy:                     corev1.DNSClusterFirst,
		ServiceAccountName:            "default",
		DeprecatedServiceAccount:      "default",
		SecurityContext:               &corev1.PodSecurityContext{},
		SchedulerName:                 "default-scheduler",
		Tolerations: []corev1.Toleration{
			{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		},
		Priority:           ptr.To[int32](0),
		EnableServiceLinks: ptr.To(true),
		PreemptionPolicy:   ptr.To(corev1.PreemptLowerPriority),
	}
	if !reflect.DeepEqual(p.Spec, want) {
		t.Errorf("spec =\n%+v\nwant\n%+v", p.Spec, want)
	}
	if p.Status.Phase != corev1.PodPending || p.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("status = %+v, want Pending/BestEffort", p.Status)
	}
	if p.Generation != 1 {
		t.Errorf("generation = %d, want 1", p.Generation)
	}
}

func TestPodNestedDefaults(t *testing.T) {
	p := coreTestPod()
	c := &p.Spec.Containers[0]
	c.Ports = []corev1.ContainerPort{{ContainerPort: 80}}
	c.Env = []corev1.EnvVar{{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}}
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1.5Mi")}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "empty"},
		{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp"}}},
	}
	p, errs := coreCreatePod(p)
	if len(errs) != 0 {
		t.Fatalf("valid pod rejected: %v", coreErrStrings(errs))
	}
	c = &p.Spec.Containers[0]
	if c.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("port protocol = %q", c.Ports[0].Protocol)
	}
	if v := c.Env[0].ValueFrom.FieldRef.APIVersion; v != "v1" {
		t.Errorf("fieldRef apiVersion = %q", v)
	}
	wantProbe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80), Scheme: corev1.URISchemeHTTP}},
		TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
	if !reflect.DeepEqual(c.ReadinessProbe, wantProbe) {
		t.Errorf("probe = %+v", c.ReadinessProbe)
	}
	// Requests default to limits (pods only), quantities round up to milli.
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.String() != "500m" {
		t.Errorf("requests.cpu = %s", q.String())
	}
	if p.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Errorf("qos = %s, want Guaranteed", p.Status.QOSClass)
	}
	vs := p.Spec.Volumes
	if vs[0].EmptyDir == nil {
		t.Errorf("volume without source: want emptyDir, got %+v", vs[0].VolumeSource)
	}
	if *vs[1].ConfigMap.DefaultMode != 0644 || *vs[2].Secret.DefaultMode != 0644 {
		t.Errorf("defaultMode not 0644: %v %v", *vs[1].ConfigMap.DefaultMode, *vs[2].Secret.DefaultMode)
	}
	if vs[3].HostPath.Type == nil || *vs[3].HostPath.Type != "" {
		t.Errorf("hostPath type = %v, want \"\"", vs[3].HostPath.Type)
	}
}

func TestPodTemplateDefaultsAreNotPodDefaults(t *testing.T) {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
	defaultPodSpec(&spec)
	if spec.EnableServiceLinks != nil || spec.ServiceAccountName != "" || spec.Tolerations != nil || spec.Priority != nil {
		t.Errorf("pod-only defaults leaked into a template: %+v", spec)
	}
	if spec.RestartPolicy != corev1.RestartPolicyAlways || spec.Containers[0].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("template not defaulted: %+v", spec)
	}
}

func TestPodImagePullPolicy(t *testing.T) {
	for image, want := range map[string]corev1.PullPolicy{
		"nginx":                             corev1.PullAlways,
		"nginx:latest":                      corev1.PullAlways,
		"nginx:1.27":                        corev1.PullIfNotPresent,
		"registry.local:5000/nginx":         corev1.PullAlways,
		"registry.local:5000/team/nginx:v1": corev1.PullIfNotPresent,
		"nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": corev1.PullIfNotPresent,
	} {
		if got := coreDefaultPullPolicy(image); got != want {
			t.Errorf("%s: %s, want %s", image, got, want)
		}
	}
}

func TestPodAdmissionKeepsUserChoices(t *testing.T) {
	p := coreTestPod()
	p.Spec.ServiceAccountName = "builder"
	p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	p.Spec.PriorityClassName = "system-node-critical"
	p, errs := coreCreatePod(p)
	if len(errs) != 0 {
		t.Fatal(coreErrStrings(errs))
	}
	if p.Spec.ServiceAccountName != "builder" || p.Spec.DeprecatedServiceAccount != "builder" {
		t.Errorf("service account = %q/%q", p.Spec.ServiceAccountName, p.Spec.DeprecatedServiceAccount)
	}
	if len(p.Spec.Tolerations) != 1 {
		t.Errorf("a pod tolerating everything got tolerations added: %+v", p.Spec.Tolerations)
	}
	if *p.Spec.Priority != 2000001000 {
		t.Errorf("priority = %d", *p.Spec.Priority)
	}
}

func TestPodValidate(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*corev1.Pod)
		want  []string
	}{
		{"valid", func(*corev1.Pod) {}, nil},
		{"bad name", func(p *corev1.Pod) { p.Name = "Foo" }, []string{
			`metadata.name: Invalid value: "Foo": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
		}},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil }, []string{"spec.containers: Required value"}},
		{"container name and image", func(p *corev1.Pod) {
			p.Spec.Containers = []corev1.Container{{Name: "Web_1"}, {Name: "Web_1", Image: "x"}}
		}, []string{
			`spec.containers[0].name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			"spec.containers[0].image: Required value",
			`spec.containers[1].name: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			`spec.containers[1].name: Duplicate value: "Web_1"`,
		}},
		{"ports", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{
				{Name: "http", ContainerPort: 70000},
				{Name: "http", ContainerPort: 81},
				{Name: "this-name-is-too-long", ContainerPort: 82, Protocol: "ICMP"},
			}
		}, []string{
			"spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
			`spec.containers[0].ports[1].name: Duplicate value: "http"`,
			`spec.containers[0].ports[2].name: Invalid value: "this-name-is-too-long": must be no more than 15 characters`,
			`spec.containers[0].ports[2].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"`,
		}},
		{"env", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: ""}, {Name: "A=B"}, {Name: "X", Value: "v", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}}
		}, []string{
			"spec.containers[0].env[0].name: Required value",
			`spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='`,
			"spec.containers[0].env[2].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
		}},
		{"volumes and mounts", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}, HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}},
				{Name: "cfg", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "cfg", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "missing", MountPath: "/a"}, {Name: "cfg", MountPath: "/a"}}
		}, []string{
			"spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
			`spec.volumes[2].name: Duplicate value: "cfg"`,
			`spec.containers[0].volumeMounts[0].name: Not found: "missing"`,
			`spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/a": must be unique`,
		}},
		{"volume without a source", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{}}}
			// Default gives emptyDir; clear it after defaulting below.
		}, nil},
		{"resources", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), "foo": resource.MustParse("1")},
			}
		}, []string{
			`spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1`,
			`spec.containers[0].resources.requests[foo]: Invalid value: "foo": must be a standard resource type or fully qualified`,
			`spec.containers[0].resources.requests[foo]: Invalid value: "foo": must be a standard resource for containers`,
		}},
		{"enums", func(p *corev1.Pod) {
			p.Spec.RestartPolicy = "Sometimes"
			p.Spec.DNSPolicy = "Magic"
			p.Spec.Containers[0].ImagePullPolicy = "Maybe"
		}, []string{
			`spec.containers[0].imagePullPolicy: Unsupported value: "Maybe": supported values: "Always", "IfNotPresent", "Never"`,
			`spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"`,
			`spec.dnsPolicy: Unsupported value: "Magic": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"`,
		}},
		{"probes", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{SuccessThreshold: 2}
			p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				Exec: &corev1.ExecAction{Command: []string{"true"}}, TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}}
		}, []string{
			"spec.containers[0].livenessProbe: Required value: must specify a handler type",
			"spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
			"spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
		}},
		{"tolerations", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "", Operator: corev1.TolerationOpEqual, Value: "x"}, {Key: "k", Effect: "Sometimes"}}
		}, []string{
			"spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
			`spec.tolerations[1].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"`,
		}},
		{"hostNetwork ports", func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
		}, []string{
			"spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true",
		}},
		{"activeDeadlineSeconds", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To[int64](0) }, []string{
			"spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
		}},
		{"ephemeral containers on create", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: "busybox", TerminationMessagePolicy: "File", ImagePullPolicy: "Always"}}}
		}, []string{"spec.ephemeralContainers: Forbidden: cannot be set on create"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := coreTestPod()
			tt.tweak(p)
			_, errs := coreCreatePod(p)
			got := coreErrStrings(errs)
			want := tt.want
			if want == nil {
				want = []string{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestPodValidateMissingVolumeSource(t *testing.T) {
	p, _ := coreCreatePod(coreTestPod())
	p.Spec.Volumes = []corev1.Volume{{Name: "v"}}
	got := coreErrStrings(pods().Strategy.Validate(context.Background(), p))
	want := []string{"spec.volumes[0]: Required value: must specify a volume type"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPodTemplateValidationPaths(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"bad key!": "v"}}}
	defaultPodSpec(&tmpl.Spec)
	got := coreErrStrings(validatePodTemplateSpec(tmpl, field.NewPath("spec", "template")))
	want := []string{
		`spec.template.labels: Invalid value: "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
		"spec.template.spec.containers: Required value",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A template may leave hostPort 0 with hostNetwork; a pod may not.
	tmpl = &corev1.PodTemplateSpec{Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c", Image: "i",
		Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}}
	defaultPodSpec(&tmpl.Spec)
	if errs := validatePodTemplateSpec(tmpl, field.NewPath("spec", "template")); len(errs) != 0 {
		t.Errorf("template with hostNetwork and no hostPort: %v", errs)
	}
}

func coreUpdatePod(t *testing.T, old *corev1.Pod, tweak func(*corev1.Pod)) (*corev1.Pod, field.ErrorList) {
	t.Helper()
	s := pods().Strategy
	p := old.DeepCopy()
	tweak(p)
	s.Default(p)
	p.Generation = old.Generation // the apiserver's BeforeUpdate
	s.PrepareForUpdate(context.Background(), p, old)
	return p, s.ValidateUpdate(context.Background(), p, old)
}

func TestPodValidateUpdate(t *testing.T) {
	old, errs := coreCreatePod(coreTestPod())
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	old.ResourceVersion = "5"
	old.Spec.ActiveDeadlineSeconds = ptr.To[int64](100)

	tests := []struct {
		name    string
		tweak   func(*corev1.Pod)
		wantErr string // prefix of the only error, "" for none
		wantGen int64
	}{
		{"labels only", func(p *corev1.Pod) { p.Labels = map[string]string{"a": "b"} }, "", 1},
		{"image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.28" }, "", 2},
		{"shorter activeDeadlineSeconds", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To[int64](50) }, "", 2},
		{"longer activeDeadlineSeconds", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To[int64](200) },
			"spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value", 2},
		{"added toleration", func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists})
		}, "", 2},
		{"removed toleration", func(p *corev1.Pod) { p.Spec.Tolerations = p.Spec.Tolerations[1:] },
			"spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds", 2},
		{"added container", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "b", Image: "busybox"})
		}, "spec.containers: Forbidden: pod updates may not add or remove containers", 2},
		{"other spec field", func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever },
			"spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, errs := coreUpdatePod(t, old, tt.tweak)
			switch {
			case tt.wantErr == "" && len(errs) != 0:
				t.Errorf("unexpected errors: %v", coreErrStrings(errs))
			case tt.wantErr != "" && (len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.wantErr)):
				t.Errorf("errors %q, want one starting %q", coreErrStrings(errs), tt.wantErr)
			}
			if p.Generation != tt.wantGen {
				t.Errorf("generation = %d, want %d", p.Generation, tt.wantGen)
			}
		})
	}
}

func TestPodUpdateDiffNamesTheChange(t *testing.T) {
	old, _ := coreCreatePod(coreTestPod())
	old.ResourceVersion = "5"
	_, errs := coreUpdatePod(t, old, func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever })
	if len(errs) != 1 || !strings.Contains(errs[0].Detail, `-    "restartPolicy": "Always",`) ||
		!strings.Contains(errs[0].Detail, `+    "restartPolicy": "Never",`) {
		t.Errorf("diff does not show the change: %v", coreErrStrings(errs))
	}
}

func TestPodStatusUpdate(t *testing.T) {
	s := pods().Strategy
	old, _ := coreCreatePod(coreTestPod())
	old.ResourceVersion = "5"
	old.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "u1"}}
	p := old.DeepCopy()
	p.Spec.Containers[0].Image = "changed"
	p.OwnerReferences = nil
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.0.5"}
	s.Default(p)
	s.PrepareForStatusUpdate(context.Background(), p, old)
	if errs := s.ValidateStatusUpdate(context.Background(), p, old); len(errs) != 0 {
		t.Fatalf("status update rejected: %v", coreErrStrings(errs))
	}
	if p.Spec.Containers[0].Image != "nginx:1.27" || len(p.OwnerReferences) != 1 {
		t.Errorf("status write changed spec or ownerReferences: %+v %+v", p.Spec.Containers[0], p.OwnerReferences)
	}
	if p.Status.QOSClass != corev1.PodQOSBestEffort || p.Status.PodIPs[0].IP != "10.42.0.5" {
		t.Errorf("status = %+v", p.Status)
	}
	if p.Generation != 1 {
		t.Errorf("generation = %d", p.Generation)
	}

	p = old.DeepCopy()
	p.Status.QOSClass = corev1.PodQOSGuaranteed
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}
	s.PrepareForStatusUpdate(context.Background(), p, old)
	got := coreErrStrings(s.ValidateStatusUpdate(context.Background(), p, old))
	want := []string{
		`status.qosClass: Invalid value: "Guaranteed": field is immutable`,
		`status.podIPs: Invalid value: ["10.0.0.1","10.0.0.2"]: may specify no more than one IP for each IP family`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPodGracePeriod(t *testing.T) {
	s := pods().Strategy.(GracefulDeleter)
	tests := []struct {
		name     string
		tweak    func(*corev1.Pod)
		opts     *metav1.DeleteOptions
		secs     int64
		graceful bool
	}{
		{"not scheduled", func(*corev1.Pod) {}, &metav1.DeleteOptions{}, 0, false},
		{"scheduled", func(p *corev1.Pod) { p.Spec.NodeName = "n1" }, &metav1.DeleteOptions{}, 30, true},
		{"scheduled, own period", func(p *corev1.Pod) { p.Spec.NodeName = "n1"; p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](5) }, nil, 5, true},
		{"option overrides", func(p *corev1.Pod) { p.Spec.NodeName = "n1" }, &metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](7)}, 7, true},
		{"grace 0", func(p *corev1.Pod) { p.Spec.NodeName = "n1" }, &metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, 0, false},
		{"negative becomes 1", func(p *corev1.Pod) { p.Spec.NodeName = "n1" }, &metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](-5)}, 1, true},
		{"succeeded", func(p *corev1.Pod) { p.Spec.NodeName = "n1"; p.Status.Phase = corev1.PodSucceeded }, nil, 0, false},
		{"failed", func(p *corev1.Pod) { p.Spec.NodeName = "n1"; p.Status.Phase = corev1.PodFailed }, nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := coreCreatePod(coreTestPod())
			tt.tweak(p)
			secs, graceful := s.GracePeriod(p, tt.opts)
			if secs != tt.secs || graceful != tt.graceful {
				t.Errorf("GracePeriod = %d, %v; want %d, %v", secs, graceful, tt.secs, tt.graceful)
			}
		})
	}
}

func TestPodSelectableFields(t *testing.T) {
	p, _ := coreCreatePod(coreTestPod())
	p.Spec.NodeName = "n1"
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.42.0.9"}}
	got := pods().Strategy.SelectableFields(p)
	want := map[string]string{
		"spec.nodeName": "n1", "spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler",
		"spec.serviceAccountName": "default", "spec.hostNetwork": "false", "status.phase": "Pending",
		"status.podIP": "10.42.0.9", "status.nominatedNodeName": "",
	}
	if !reflect.DeepEqual(map[string]string(got), want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPodQOS(t *testing.T) {
	rl := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		return l
	}
	tests := []struct {
		req, lim corev1.ResourceList
		want     corev1.PodQOSClass
	}{
		{nil, nil, corev1.PodQOSBestEffort},
		{rl("100m", ""), nil, corev1.PodQOSBurstable},
		{rl("1", "1Gi"), rl("1", "1Gi"), corev1.PodQOSGuaranteed},
		{rl("500m", "1Gi"), rl("1", "1Gi"), corev1.PodQOSBurstable},
		{nil, rl("1", "1Gi"), corev1.PodQOSGuaranteed}, // requests default to limits
	}
	for i, tt := range tests {
		p := coreTestPod()
		p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: tt.req, Limits: tt.lim}
		p, _ = coreCreatePod(p)
		if p.Status.QOSClass != tt.want {
			t.Errorf("%d: qos %s, want %s", i, p.Status.QOSClass, tt.want)
		}
	}
}

func TestPodTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	created := metav1.NewTime(now.Add(-10 * time.Minute))
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	waiting := func(r string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: r}}
	}
	terminated := func(r string, code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: r, ExitCode: code}}
	}
	tests := []struct {
		name  string
		tweak func(*corev1.Pod)
		want  []interface{}
	}{
		{"pending", func(p *corev1.Pod) {}, []interface{}{"web", "0/2", "Pending", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"running", func(p *corev1.Pod) {
			p.Spec.NodeName = "n1"
			p.Status.Phase = corev1.PodRunning
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.42.0.7"}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", Ready: true, State: running}, {Name: "b", State: running}}
		}, []interface{}{"web", "1/2", "Running", "0", "10m", "10.42.0.7", "n1", "<none>", "<none>"}},
		{"container creating", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", State: waiting("ContainerCreating")}, {Name: "b", State: waiting("ContainerCreating")}}
		}, []interface{}{"web", "0/2", "ContainerCreating", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"crash loop with last restart", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{
				{Name: "a", RestartCount: 3, State: waiting("CrashLoopBackOff"), LastTerminationState: corev1.ContainerState{
					Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: metav1.NewTime(now.Add(-5 * time.Minute))}}},
				{Name: "b", Ready: true, State: running},
			}
		}, []interface{}{"web", "1/2", "CrashLoopBackOff", "3 (5m ago)", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"completed", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", State: terminated("Completed", 0)}, {Name: "b", State: terminated("Completed", 0)}}
		}, []interface{}{"web", "0/2", "Completed", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"exit code without reason", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", State: terminated("", 2)}}
		}, []interface{}{"web", "0/2", "ExitCode:2", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"completed but one still running", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", Ready: true, State: running}, {Name: "b", State: terminated("Completed", 0)}}
		}, []interface{}{"web", "1/2", "NotReady", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"terminating", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.DeletionTimestamp = &metav1.Time{Time: now}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", Ready: true, State: running}, {Name: "b", Ready: true, State: running}}
		}, []interface{}{"web", "2/2", "Terminating", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"init waiting", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: waiting("PodInitializing")}}
		}, []interface{}{"web", "0/2", "Init:0/1", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"init crash loop", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", RestartCount: 2, State: waiting("CrashLoopBackOff")}}
		}, []interface{}{"web", "0/2", "Init:CrashLoopBackOff", "2", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"init error", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: terminated("Error", 1)}}
		}, []interface{}{"web", "0/2", "Init:Error", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"scheduling gated", func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated}}
		}, []interface{}{"web", "0/2", "SchedulingGated", "0", "10m", "<none>", "<none>", "<none>", "<none>"}},
		{"readiness gates", func(p *corev1.Pod) {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/a"}, {ConditionType: "example.com/b"}}
			p.Status.Conditions = []corev1.PodCondition{{Type: "example.com/a", Status: corev1.ConditionTrue}}
			p.Status.NominatedNodeName = "n2"
		}, []interface{}{"web", "0/2", "Pending", "0", "10m", "<none>", "<none>", "n2", "1/2"}},
	}
	s := pods().Strategy
	if n := len(s.TableColumns()); n != 9 {
		t.Fatalf("%d columns, want 9", n)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", CreationTimestamp: created},
				Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
				Status: corev1.PodStatus{Phase: corev1.PodPending}}
			tt.tweak(p)
			if got := s.TableRow(p, now); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("row = %q, want %q", got, tt.want)
			}
		})
	}
}
