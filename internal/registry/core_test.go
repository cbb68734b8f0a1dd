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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// Tests of the core/v1 strategies other than pods.

var coreTestNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func coreCreate(s Strategy, obj runtime.Object) []string {
	s.Default(obj)
	s.PrepareForCreate(context.Background(), obj)
	return coreErrStrings(s.Validate(context.Background(), obj))
}

func coreUpdate(s Strategy, obj, old runtime.Object) []string {
	s.Default(obj)
	s.PrepareForUpdate(context.Background(), obj, old)
	return coreErrStrings(s.ValidateUpdate(context.Background(), obj, old))
}

func coreCheckErrs(t *testing.T, got, want []string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNamespaceCreate(t *testing.T) {
	s := namespaces().Strategy
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}
	ns.Status.Phase = corev1.NamespaceTerminating // clients cannot set status
	coreCheckErrs(t, coreCreate(s, ns), nil)
	if ns.Labels[corev1.LabelMetadataName] != "team-a" {
		t.Errorf("labels = %v", ns.Labels)
	}
	if !reflect.DeepEqual(ns.Spec.Finalizers, []corev1.FinalizerName{corev1.FinalizerKubernetes}) {
		t.Errorf("finalizers = %v", ns.Spec.Finalizers)
	}
	if ns.Status.Phase != corev1.NamespaceActive {
		t.Errorf("phase = %s", ns.Status.Phase)
	}

	bad := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "Team.A"}, Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"custom"}}}
	coreCheckErrs(t, coreCreate(s, bad), []string{
		`metadata.name: Invalid value: "Team.A": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
		`spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified`,
	})
}

func TestNamespaceUpdateKeepsFinalizersAndLabel(t *testing.T) {
	s := namespaces().Strategy
	old := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", ResourceVersion: "3"}}
	coreCreate(s, old)
	ns := old.DeepCopy()
	ns.Spec.Finalizers = nil
	ns.Labels = map[string]string{"env": "dev"}
	ns.Status.Phase = corev1.NamespaceTerminating
	coreCheckErrs(t, coreUpdate(s, ns, old), nil)
	if len(ns.Spec.Finalizers) != 1 || ns.Status.Phase != corev1.NamespaceActive {
		t.Errorf("update changed finalizers or status: %+v %+v", ns.Spec, ns.Status)
	}
	if ns.Labels[corev1.LabelMetadataName] != "team-a" || ns.Labels["env"] != "dev" {
		t.Errorf("labels = %v", ns.Labels)
	}

	// /finalize changes spec.finalizers only.
	fs := s.(FinalizeStrategy)
	fin := old.DeepCopy()
	fin.Spec.Finalizers = nil
	fin.Status.Phase = "Bogus"
	fs.PrepareForFinalize(context.Background(), fin, old)
	coreCheckErrs(t, coreErrStrings(fs.ValidateFinalize(context.Background(), fin, old)), nil)
	if len(fin.Spec.Finalizers) != 0 || fin.Status.Phase != corev1.NamespaceActive {
		t.Errorf("finalize: %+v %+v", fin.Spec, fin.Status)
	}
	fin.Spec.Finalizers = []corev1.FinalizerName{"bad"}
	coreCheckErrs(t, coreErrStrings(fs.ValidateFinalize(context.Background(), fin, old)), []string{
		`spec.finalizers[0]: Invalid value: "bad": name is neither a standard finalizer name nor is it fully qualified`,
	})
}

func TestNamespaceStatusUpdate(t *testing.T) {
	s := namespaces().Strategy
	old := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", ResourceVersion: "3"}}
	coreCreate(s, old)
	ns := old.DeepCopy()
	ns.Status.Phase = corev1.NamespaceTerminating
	s.PrepareForStatusUpdate(context.Background(), ns, old)
	coreCheckErrs(t, coreErrStrings(s.ValidateStatusUpdate(context.Background(), ns, old)), []string{
		`status.Phase: Invalid value: "Terminating": may only be 'Active' if ` + "`deletionTimestamp`" + ` is empty`,
	})
}

func TestNamespaceTableAndFields(t *testing.T) {
	s := namespaces().Strategy
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", CreationTimestamp: metav1.NewTime(coreTestNow.Add(-49 * time.Hour))},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	if got, want := s.TableRow(ns, coreTestNow), []interface{}{"default", "Active", "2d1h"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row = %q, want %q", got, want)
	}
	if n := len(s.TableColumns()); n != 3 {
		t.Errorf("%d columns", n)
	}
	if f := s.SelectableFields(ns); f["status.phase"] != "Active" {
		t.Errorf("fields = %v", f)
	}
}

func coreTestNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", CreationTimestamp: metav1.NewTime(coreTestNow.Add(-3 * time.Hour)),
			Labels: map[string]string{"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.42.0.0/24"},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}, {Type: corev1.NodeHostName, Address: "node-1"}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.32.0+skiff", OSImage: "Debian GNU/Linux 13", KernelVersion: "6.12.0", ContainerRuntimeVersion: "containerd://2.0.0"},
			Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
		},
	}
}

func TestNodeCreateKeepsStatus(t *testing.T) {
	s := nodes().Strategy
	n := coreTestNode()
	coreCheckErrs(t, coreCreate(s, n), nil)
	if len(n.Status.Conditions) != 1 {
		t.Errorf("node status dropped on create")
	}
	if !reflect.DeepEqual(n.Spec.PodCIDRs, []string{"10.42.0.0/24"}) {
		t.Errorf("podCIDRs = %v", n.Spec.PodCIDRs)
	}
	if _, ok := n.Status.Allocatable[corev1.ResourceCPU]; !ok {
		t.Errorf("allocatable not defaulted from capacity")
	}
}

func TestNodeValidation(t *testing.T) {
	s := nodes().Strategy
	n := coreTestNode()
	n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: "Sometimes"}, {Key: "a", Effect: corev1.TaintEffectNoSchedule}, {Key: "a", Effect: corev1.TaintEffectNoSchedule}}
	coreCheckErrs(t, coreCreate(s, n), []string{
		`metadata.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"`,
		`metadata.taints[2]: Duplicate value: {"key":"a","effect":"NoSchedule"}: taints must be unique by key and effect pair`,
	})

	old := coreTestNode()
	old.ResourceVersion = "1"
	coreCreate(s, old)
	up := old.DeepCopy()
	up.Spec.PodCIDR, up.Spec.PodCIDRs = "10.42.9.0/24", nil
	up.Spec.Unschedulable = true
	coreCheckErrs(t, coreUpdate(s, up, old), []string{
		`spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid`,
	})
}

func TestNodeTable(t *testing.T) {
	s := nodes().Strategy
	n := coreTestNode()
	want := []interface{}{"node-1", "Ready", "control-plane,master", "3h", "v1.32.0+skiff",
		"192.168.1.10", "<none>", "Debian GNU/Linux 13", "6.12.0", "containerd://2.0.0"}
	if got := s.TableRow(n, coreTestNow); !reflect.DeepEqual(got, want) {
		t.Errorf("row = %q\nwant %q", got, want)
	}
	n.Spec.Unschedulable = true
	n.Labels = nil
	n.Status.Conditions[0].Status = corev1.ConditionFalse
	n.Status.NodeInfo = corev1.NodeSystemInfo{}
	want = []interface{}{"node-1", "NotReady,SchedulingDisabled", "<none>", "3h", "",
		"192.168.1.10", "<none>", "<unknown>", "<unknown>", "<unknown>"}
	if got := s.TableRow(n, coreTestNow); !reflect.DeepEqual(got, want) {
		t.Errorf("row = %q\nwant %q", got, want)
	}
	n.Status.Conditions = nil
	if got := s.TableRow(n, coreTestNow)[1]; got != "Unknown,SchedulingDisabled" {
		t.Errorf("status = %q", got)
	}
	if f := s.SelectableFields(n); f["spec.unschedulable"] != "true" {
		t.Errorf("fields = %v", f)
	}
	if len(s.TableColumns()) != 10 {
		t.Errorf("columns = %d", len(s.TableColumns()))
	}
}

func coreTestEvent() *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web.17f0a1b2c3d4e5f6", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web", FieldPath: "spec.containers{nginx}"},
		Reason:         "Pulled", Message: "Successfully pulled image \"nginx\"\n", Type: corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "kubelet", Host: "node-1"},
		FirstTimestamp: metav1.NewTime(coreTestNow.Add(-90 * time.Second)), LastTimestamp: metav1.NewTime(coreTestNow.Add(-30 * time.Second)),
		Count: 2,
	}
}

func TestEventValidation(t *testing.T) {
	s := events().Strategy
	coreCheckErrs(t, coreCreate(s, coreTestEvent()), nil)
	ev := coreTestEvent()
	ev.InvolvedObject.Namespace = "other"
	coreCheckErrs(t, coreCreate(s, ev), []string{`involvedObject.namespace: Invalid value: "other": does not match event.namespace`})
	ev = coreTestEvent()
	ev.EventTime = metav1.NewMicroTime(coreTestNow)
	coreCheckErrs(t, coreCreate(s, ev), []string{
		"reportingController: Required value",
		`reportingController: Invalid value: "": name part must be non-empty`,
		`reportingController: Invalid value: "": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
		"reportingInstance: Required value",
		"action: Required value",
	})
}

func TestEventTableAndFields(t *testing.T) {
	s := events().Strategy
	ev := coreTestEvent()
	want := []interface{}{"30s", "Normal", "Pulled", "pod/web", "spec.containers{nginx}", "kubelet, node-1",
		`Successfully pulled image "nginx"`, "90s", int64(2), "web.17f0a1b2c3d4e5f6"}
	if got := s.TableRow(ev, coreTestNow); !reflect.DeepEqual(got, want) {
		t.Errorf("row = %q\nwant %q", got, want)
	}
	cols := s.TableColumns()
	var names []string
	for _, c := range cols {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
	}
	if strings.Join(names, ",") != "Last Seen,Type,Reason,Object,Message" {
		t.Errorf("default columns = %v", names)
	}
	// New-style event: no timestamps but eventTime, no count.
	ev = &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e"}, EventTime: metav1.NewMicroTime(coreTestNow.Add(-time.Minute)),
		InvolvedObject: corev1.ObjectReference{Kind: "Node"}, ReportingController: "skiff", ReportingInstance: "n1"}
	got := s.TableRow(ev, coreTestNow)
	if got[0] != "60s" || got[3] != "node" || got[5] != "skiff, n1" || got[8] != int64(1) {
		t.Errorf("row = %q", got)
	}
	f := s.SelectableFields(coreTestEvent())
	for k, v := range map[string]string{"involvedObject.kind": "Pod", "involvedObject.name": "web", "reason": "Pulled",
		"source": "kubelet", "type": "Normal", "involvedObject.fieldPath": "spec.containers{nginx}"} {
		if f[k] != v {
			t.Errorf("field %s = %q, want %q", k, f[k], v)
		}
	}
}

func TestConfigMap(t *testing.T) {
	s := configMaps().Strategy
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default"},
		Data: map[string]string{"ok.key": "v", "bad key": "v"}, BinaryData: map[string][]byte{"ok.key": []byte("x")}}
	coreCheckErrs(t, coreCreate(s, cm), []string{
		`data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`,
		`data[ok.key]: Invalid value: "ok.key": duplicate of key present in binaryData`,
	})
	big := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "default"},
		Data: map[string]string{"a": strings.Repeat("x", 1<<20), "b": "y"}}
	coreCheckErrs(t, coreCreate(s, big), []string{"[]: Too long: may not be more than 1048576 bytes"}) // field.NewPath("") prints as "[]"

	old := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default", ResourceVersion: "2"},
		Data: map[string]string{"a": "1"}, Immutable: ptr.To(true)}
	up := old.DeepCopy()
	up.Data["a"] = "2"
	up.Immutable = nil
	coreCheckErrs(t, coreUpdate(s, up, old), []string{
		"immutable: Forbidden: field is immutable when `immutable` is set",
		"data: Forbidden: field is immutable when `immutable` is set",
	})
	up = old.DeepCopy()
	up.Labels = map[string]string{"x": "y"}
	coreCheckErrs(t, coreUpdate(s, up, old), nil)

	cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", CreationTimestamp: metav1.NewTime(coreTestNow.Add(-5 * time.Second))},
		Data: map[string]string{"a": "1"}, BinaryData: map[string][]byte{"b": nil}}
	if got, want := s.TableRow(cm, coreTestNow), []interface{}{"cfg", int64(2), "5s"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row = %q, want %q", got, want)
	}
}

func TestSecret(t *testing.T) {
	s := secrets().Strategy
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "default"},
		Data: map[string][]byte{"user": []byte("admin")}, StringData: map[string]string{"pass": "hunter2", "user": "root"}}
	coreCheckErrs(t, coreCreate(s, sec), nil)
	if sec.Type != corev1.SecretTypeOpaque || sec.StringData != nil || string(sec.Data["pass"]) != "hunter2" || string(sec.Data["user"]) != "root" {
		t.Errorf("defaulted secret = %+v", sec)
	}

	tests := []struct {
		name string
		sec  *corev1.Secret
		want []string
	}{
		{"tls without keys", &corev1.Secret{Type: corev1.SecretTypeTLS}, []string{
			"data[tls.crt]: Required value", "data[tls.key]: Required value"}},
		{"dockerconfigjson without key", &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson}, []string{
			"data[.dockerconfigjson]: Required value"}},
		{"dockerconfigjson not json", &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte("{")}}, []string{
			`data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": unexpected end of JSON input`}},
		{"service account token", &corev1.Secret{Type: corev1.SecretTypeServiceAccountToken}, []string{
			"metadata.annotations[kubernetes.io/service-account.name]: Required value"}},
		{"too big", &corev1.Secret{Data: map[string][]byte{"a": make([]byte, 1<<20+1)}}, []string{
			"data: Too long: may not be more than 1048576 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.sec.ObjectMeta = metav1.ObjectMeta{Name: "s", Namespace: "default"}
			coreCheckErrs(t, coreCreate(s, tt.sec), tt.want)
		})
	}

	old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "default", ResourceVersion: "4"},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"a": []byte("1")}, Immutable: ptr.To(true)}
	up := old.DeepCopy()
	up.Type = "example.com/custom"
	up.Data["a"] = []byte("2")
	coreCheckErrs(t, coreUpdate(s, up, old), []string{
		`type: Invalid value: "example.com/custom": field is immutable`,
		"data: Forbidden: field is immutable when `immutable` is set",
	})

	row := s.TableRow(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls", CreationTimestamp: metav1.NewTime(coreTestNow.Add(-time.Hour))},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": nil, "tls.key": nil}}, coreTestNow)
	if want := []interface{}{"tls", "kubernetes.io/tls", int64(2), "60m"}; !reflect.DeepEqual(row, want) {
		t.Errorf("row = %q, want %q", row, want)
	}
	if f := s.SelectableFields(old); f["type"] != "Opaque" {
		t.Errorf("fields = %v", f)
	}
}

func TestServiceAccount(t *testing.T) {
	s := serviceAccounts().Strategy
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder", Namespace: "default", CreationTimestamp: metav1.NewTime(coreTestNow.Add(-2 * time.Minute))},
		Secrets: []corev1.ObjectReference{{Name: "tok", Namespace: "default", FieldPath: "x"}}}
	coreCheckErrs(t, coreCreate(s, sa), nil)
	if !reflect.DeepEqual(sa.Secrets, []corev1.ObjectReference{{Name: "tok"}}) {
		t.Errorf("secrets = %+v", sa.Secrets)
	}
	if got, want := s.TableRow(sa, coreTestNow), []interface{}{"builder", int64(1), "2m"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row = %q, want %q", got, want)
	}
	bad := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "Builder", Namespace: "default"}}
	if errs := coreCreate(s, bad); len(errs) != 1 || !strings.HasPrefix(errs[0], `metadata.name: Invalid value: "Builder": a lowercase RFC 1123 subdomain`) {
		t.Errorf("errors = %v", errs)
	}
}

func TestCoreResources(t *testing.T) {
	want := map[string]struct {
		kind       string
		namespaced bool
		short      []string
		subs       []string
	}{
		"namespaces":      {"Namespace", false, []string{"ns"}, []string{"status", "finalize"}},
		"pods":            {"Pod", true, []string{"po"}, []string{"status", "binding"}},
		"nodes":           {"Node", false, []string{"no"}, []string{"status"}},
		"events":          {"Event", true, []string{"ev"}, nil},
		"configmaps":      {"ConfigMap", true, []string{"cm"}, nil},
		"secrets":         {"Secret", true, nil, nil},
		"serviceaccounts": {"ServiceAccount", true, []string{"sa"}, nil},
	}
	for _, r := range []*Resource{namespaces(), pods(), nodes(), events(), configMaps(), secrets(), serviceAccounts()} {
		w := want[r.Resource]
		if r.Kind != w.kind || r.Namespaced != w.namespaced || !reflect.DeepEqual(r.ShortNames, w.short) || !reflect.DeepEqual(r.Subresources, w.subs) {
			t.Errorf("%s: %+v", r.Resource, r)
		}
		if _, ok := r.New().(metav1.Object); !ok {
			t.Errorf("%s: New() has no ObjectMeta", r.Resource)
		}
		if len(r.Strategy.TableColumns()) != len(r.Strategy.TableRow(r.New(), coreTestNow)) {
			t.Errorf("%s: column and cell counts differ", r.Resource)
		}
	}
}
