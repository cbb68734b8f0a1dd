package podconfig

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

// Upstream pkg/kubelet/envvars TestFromServices.
func TestServiceEnv(t *testing.T) {
	services := []*corev1.Service{
		svc("default", "kubernetes", "10.43.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: "TCP"}),
		svc("ns1", "foo-bar", "1.2.3.4", corev1.ServicePort{Port: 8080, Protocol: "TCP"}),
		svc("ns1", "abc-123", "5.6.7.8",
			corev1.ServicePort{Name: "u-d-p", Port: 8081, Protocol: "UDP"},
			corev1.ServicePort{Name: "t-c-p", Port: 8081, Protocol: "TCP"}),
		svc("ns1", "headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 1}),
		svc("ns1", "external", ""),
		svc("ns2", "other", "9.9.9.9", corev1.ServicePort{Port: 1}),
		svc("ns1", "v6", "fd00::5", corev1.ServicePort{Port: 80}),
	}
	got := ServiceEnv("ns1", true, services)
	want := map[string]string{
		"KUBERNETES_SERVICE_HOST":       "10.43.0.1",
		"KUBERNETES_SERVICE_PORT":       "443",
		"KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT":               "tcp://10.43.0.1:443",
		"KUBERNETES_PORT_443_TCP":       "tcp://10.43.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp",
		"KUBERNETES_PORT_443_TCP_PORT":  "443",
		"KUBERNETES_PORT_443_TCP_ADDR":  "10.43.0.1",
		"FOO_BAR_SERVICE_HOST":          "1.2.3.4",
		"FOO_BAR_SERVICE_PORT":          "8080",
		"FOO_BAR_PORT":                  "tcp://1.2.3.4:8080",
		"FOO_BAR_PORT_8080_TCP":         "tcp://1.2.3.4:8080",
		"FOO_BAR_PORT_8080_TCP_PROTO":   "tcp",
		"FOO_BAR_PORT_8080_TCP_PORT":    "8080",
		"FOO_BAR_PORT_8080_TCP_ADDR":    "1.2.3.4",
		"ABC_123_SERVICE_HOST":          "5.6.7.8",
		"ABC_123_SERVICE_PORT":          "8081",
		"ABC_123_SERVICE_PORT_U_D_P":    "8081",
		"ABC_123_SERVICE_PORT_T_C_P":    "8081",
		"ABC_123_PORT":                  "udp://5.6.7.8:8081",
		"ABC_123_PORT_8081_UDP":         "udp://5.6.7.8:8081",
		"ABC_123_PORT_8081_UDP_PROTO":   "udp",
		"ABC_123_PORT_8081_UDP_PORT":    "8081",
		"ABC_123_PORT_8081_UDP_ADDR":    "5.6.7.8",
		"ABC_123_PORT_8081_TCP":         "tcp://5.6.7.8:8081",
		"ABC_123_PORT_8081_TCP_PROTO":   "tcp",
		"ABC_123_PORT_8081_TCP_PORT":    "8081",
		"ABC_123_PORT_8081_TCP_ADDR":    "5.6.7.8",
		"V6_SERVICE_HOST":               "fd00::5",
		"V6_SERVICE_PORT":               "80",
		"V6_PORT":                       "tcp://[fd00::5]:80",
		"V6_PORT_80_TCP":                "tcp://[fd00::5]:80",
		"V6_PORT_80_TCP_PROTO":          "tcp",
		"V6_PORT_80_TCP_PORT":           "80",
		"V6_PORT_80_TCP_ADDR":           "fd00::5",
	}
	if !reflect.DeepEqual(got, want) {
		for k, v := range got {
			if want[k] != v {
				t.Errorf("%s = %q, want %q", k, v, want[k])
			}
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				t.Errorf("missing %s", k)
			}
		}
	}
	// enableServiceLinks=false: only the master service (getServiceEnvVarMap).
	got = ServiceEnv("ns1", false, services)
	if len(got) != 8 || got["KUBERNETES_SERVICE_HOST"] != "10.43.0.1" {
		t.Errorf("links disabled: %v", got)
	}
}

func TestEnvOrderExpansionAndSources(t *testing.T) {
	c := corev1.Container{
		Name: "c",
		EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}}},
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "missing"}, Optional: ptr(true)}},
		},
		Env: []corev1.EnvVar{
			{Name: "B", Value: "b-$(A)-$(FOO_SERVICE_HOST)-$(NOPE)-$$(A)"},
			{Name: "A", Value: "override"}, // replaces envFrom's A in place
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
			{Name: "LBL", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "ANN", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['note']"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
			{Name: "PIP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "PIPS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIPs"}}},
			{Name: "HIP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "HIPS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIPs"}}},
			{Name: "LABELS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
			{Name: "CMK", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "A"}}},
			{Name: "SK", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "pw"}}},
			{Name: "OPT", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "none", Optional: ptr(true)}}},
			{Name: "EMPTY"},
			{Name: "FOO_SERVICE_HOST", Value: "mine"}, // shadows the service var
		},
	}
	pod := testPod(c)
	src := cmSources(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "cfg"},
		Data: map[string]string{"A": "from-cm", "Z": "z", "bad=key": "x", "1OK": "y", "tab\tkey": "t"}}).
		withSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "sec"},
			Data: map[string][]byte{"pw": []byte("s3cret")}})
	opts := Options{
		PodIPs: []string{"10.42.0.5", "fd00::5"}, HostIPs: []string{"192.168.1.10"},
		Services: []*corev1.Service{svc("ns1", "foo", "10.43.0.9", corev1.ServicePort{Port: 80})},
	}
	img := ImageConfig{Env: []string{"PATH=/usr/bin:/bin", "A=image", "HOME=/root"}, Cmd: []string{"sh"}}
	spec, err := Build(pod, &pod.Spec.Containers[0], img, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, kv := range spec.Env {
		names = append(names, strings.SplitN(kv, "=", 2)[0])
	}
	wantOrder := "PATH A HOME 1OK Z S_pw B POD NS UID LBL ANN NODE SA PIP PIPS HIP HIPS LABELS CMK SK EMPTY FOO_SERVICE_HOST FOO_PORT FOO_PORT_80_TCP FOO_PORT_80_TCP_ADDR FOO_PORT_80_TCP_PORT FOO_PORT_80_TCP_PROTO FOO_SERVICE_PORT"
	if got := strings.Join(names, " "); got != wantOrder {
		t.Errorf("env order\n got %s\nwant %s", got, wantOrder)
	}
	m := envMap(spec.Env)
	for k, v := range map[string]string{
		"A":   "override",
		"B":   "b-from-cm-10.43.0.9-$(NOPE)-$(A)", // expansion sees envFrom's A (defined before B)
		"POD": "web-0", "NS": "ns1", "UID": "1234-abcd", "LBL": "web", "ANN": "hello",
		"NODE": "node1", "SA": "sa1", "PIP": "10.42.0.5", "PIPS": "10.42.0.5,fd00::5",
		"HIP": "192.168.1.10", "HIPS": "192.168.1.10",
		"LABELS": "app=\"web\"\ntier=\"front\"",
		"CMK":    "from-cm", "SK": "s3cret", "S_pw": "s3cret", "EMPTY": "", "FOO_SERVICE_HOST": "mine",
		"PATH": "/usr/bin:/bin",
	} {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	if _, ok := m["OPT"]; ok {
		t.Error("optional missing key should be skipped")
	}
	if len(spec.Warnings) != 1 || spec.Warnings[0] != "Keys [bad=key, tab\tkey] from the EnvFrom configMap ns1/cfg were skipped since they are considered invalid environment variable names." {
		t.Errorf("warnings %q", spec.Warnings)
	}
}

// Error texts of upstream's makeEnvironmentVariables.
func TestEnvErrors(t *testing.T) {
	src := cmSources(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "cfg"}, Data: map[string]string{"k": "v"}}).
		withSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "sec"}})
	for _, tc := range []struct {
		name string
		env  []corev1.EnvVar
		from []corev1.EnvFromSource
		want string
	}{
		{"cm missing", []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}, Key: "y"}}}}, nil,
			`configmap "x" not found`},
		{"cm key missing", []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "y"}}}}, nil,
			`couldn't find key y in ConfigMap ns1/cfg`},
		{"secret missing", []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "y"}}}}, nil,
			`secret "nope" not found`},
		{"secret key missing", []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "y"}}}}, nil,
			`couldn't find key y in Secret ns1/sec`},
		{"envFrom cm missing", nil, []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}}},
			`configmap "gone" not found`},
		{"envFrom secret missing", nil, []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}}}},
			`secret "gone" not found`},
		{"bad fieldPath", []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.bogus"}}}}, nil,
			`unsupported fieldPath: spec.bogus`},
		{"bad resource", []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.gpu"}}}}, nil,
			`unsupported container resource : limits.gpu`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod(corev1.Container{Name: "c", Command: []string{"sh"}, Env: tc.env, EnvFrom: tc.from})
			_, err := Build(pod, &pod.Spec.Containers[0], ImageConfig{}, src, Options{})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// Upstream pkg/api/v1/resource TestExtractResourceValue and the kubelet's
// defaultPodLimitsForDownwardAPI (unset limits → node allocatable).
func TestResourceFieldRef(t *testing.T) {
	alloc := rl("cpu", "4", "memory", "8Gi", "ephemeral-storage", "100Gi")
	c := corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{
		Requests: rl("cpu", "250m", "memory", "64Mi"),
		Limits:   rl("memory", "128Mi"),
	}}
	for _, tc := range []struct {
		res, divisor, want string
	}{
		{"limits.cpu", "", "4"}, // defaulted from allocatable
		{"limits.cpu", "1m", "4000"},
		{"limits.memory", "", "134217728"},
		{"limits.memory", "1Mi", "128"},
		{"limits.ephemeral-storage", "1Gi", "100"},
		{"requests.cpu", "", "1"}, // ceil(250m / 1)
		{"requests.cpu", "1m", "250"},
		{"requests.cpu", "100m", "3"},
		{"requests.memory", "1Mi", "64"},
		{"requests.memory", "1M", "68"}, // ceil(67108864/1e6)
	} {
		fs := &corev1.ResourceFieldSelector{Resource: tc.res}
		if tc.divisor != "" {
			fs.Divisor = resource.MustParse(tc.divisor)
		}
		got, err := containerResourceValue(fs, &c, alloc)
		if err != nil || got != tc.want {
			t.Errorf("%s/%s = %q, %v; want %q", tc.res, tc.divisor, got, err, tc.want)
		}
	}
}
