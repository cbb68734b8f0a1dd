//go:build !skiff_no_apiserver

package kubectl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

// realKubeconfig writes a kubeconfig for a controllertest API server.
func realKubeconfig(t *testing.T, api *controllertest.API) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n", api.Config.Host)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture builds the state controllers and a kubelet would have written:
// a node with its lease, a deployment with two revisions of ReplicaSets,
// their pods, a service with endpoints, and events.
type fixture struct {
	t   *testing.T
	ctx context.Context
	cs  kubernetes.Interface
}

func (f *fixture) must(_ any, err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

var fixtureTime = metav1.NewTime(time.Now().Add(-30 * time.Hour).Truncate(time.Second))

func webTemplate(image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: image,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
			Env:   []corev1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
			},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}},
		}},
			Volumes: []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

func buildFixture(t *testing.T, cs kubernetes.Interface) {
	f := &fixture{t: t, ctx: context.Background(), cs: cs}
	ctx := f.ctx
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1",
		Labels: map[string]string{"kubernetes.io/hostname": "node-1", "node-role.kubernetes.io/worker": ""}},
		Spec: corev1.NodeSpec{PodCIDR: "10.42.1.0/24", PodCIDRs: []string{"10.42.1.0/24"},
			Taints: []corev1.Taint{{Key: "dedicated", Value: "web", Effect: corev1.TaintEffectPreferNoSchedule}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status = corev1.NodeStatus{
		Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status",
			LastHeartbeatTime: fixtureTime, LastTransitionTime: fixtureTime}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.11"}, {Type: corev1.NodeHostName, Address: "node-1"}},
		NodeInfo:  corev1.NodeSystemInfo{MachineID: "m1", SystemUUID: "u1", BootID: "b1", KernelVersion: "6.1.0", OSImage: "skiff", OperatingSystem: "linux", Architecture: "amd64", ContainerRuntimeVersion: "skiff://1", KubeletVersion: "v1.32.0-skiff"},
	}
	f.must(cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}))
	f.must(cs.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1"), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &metav1.MicroTime{Time: fixtureTime.Time}}}, metav1.CreateOptions{}))

	dep, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{revisionAnnotation: "2"}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: webTemplate("nginx:1.27")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3,
		Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", Message: "Deployment has minimum availability.", LastUpdateTime: fixtureTime, LastTransitionTime: fixtureTime},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", Message: `ReplicaSet "web-7c5d8bcb9f" has successfully progressed.`, LastUpdateTime: fixtureTime, LastTransitionTime: fixtureTime},
		}}
	f.must(cs.AppsV1().Deployments("default").UpdateStatus(ctx, dep, metav1.UpdateOptions{}))
	owner := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: dep.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	var newRS *appsv1.ReplicaSet
	for i, rsv := range []struct{ hash, image, rev string }{{"5d4f7b9c8", "nginx:1.26", "1"}, {"7c5d8bcb9f", "nginx:1.27", "2"}} {
		tmpl := webTemplate(rsv.image)
		tmpl.Labels["pod-template-hash"] = rsv.hash
		replicas := int32(0)
		if i == 1 {
			replicas = 3
		}
		rs, err := cs.AppsV1().ReplicaSets("default").Create(ctx, &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + rsv.hash, Labels: map[string]string{"app": "web", "pod-template-hash": rsv.hash},
				Annotations:     map[string]string{revisionAnnotation: rsv.rev, desiredReplicasAnnotation: "3", maxReplicasAnnotation: "4"},
				OwnerReferences: owner},
			Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "pod-template-hash": rsv.hash}}, Template: tmpl},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rs.Status = appsv1.ReplicaSetStatus{Replicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas, FullyLabeledReplicas: replicas, ObservedGeneration: rs.Generation}
		f.must(cs.AppsV1().ReplicaSets("default").UpdateStatus(ctx, rs, metav1.UpdateOptions{}))
		newRS = rs
	}
	rsOwner := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: newRS.Name, UID: newRS.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	for i, suffix := range []string{"abcde", "fghij", "klmno"} {
		tmpl := webTemplate("nginx:1.27")
		tmpl.Labels["pod-template-hash"] = "7c5d8bcb9f"
		pod, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-7c5d8bcb9f-" + suffix, Labels: tmpl.Labels, OwnerReferences: rsOwner},
			Spec:       *tmpl.Spec.DeepCopy(),
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Spec.NodeName = "node-1"
		pod, err = cs.CoreV1().Pods("default").Update(ctx, pod, metav1.UpdateOptions{})
		if err != nil {
			// Some servers refuse to set nodeName by update; bind instead.
			f.must(nil, cs.CoreV1().Pods("default").Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "web-7c5d8bcb9f-" + suffix},
				Target: corev1.ObjectReference{Kind: "Node", Name: "node-1"}}, metav1.CreateOptions{}))
			pod, err = cs.CoreV1().Pods("default").Get(ctx, "web-7c5d8bcb9f-"+suffix, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
		}
		ip := fmt.Sprintf("10.42.1.%d", 10+i)
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "192.168.0.11", HostIPs: []corev1.HostIP{{IP: "192.168.0.11"}}, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			StartTime: &fixtureTime, QOSClass: corev1.PodQOSBurstable,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: fixtureTime},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: fixtureTime},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: fixtureTime},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: fixtureTime},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: fixtureTime},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Image: "nginx:1.27", ImageID: "sha256:abc", ContainerID: "skiff://web-" + suffix, Ready: true, Started: ptr.To(true),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: fixtureTime}}}},
		}
		f.must(cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}))
	}
	// A pod nobody could schedule, with a long annotation and a toleration.
	f.must(cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pending", Annotations: map[string]string{"note": strings.Repeat("x", 150)}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "sleep 1d"}}},
			NodeSelector: map[string]string{"disk": "ssd"},
			Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "web", Effect: corev1.TaintEffectNoSchedule}}},
	}, metav1.CreateOptions{}))

	f.must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, ClusterIP: "10.43.0.20",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}, {Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9090)}}},
	}, metav1.CreateOptions{}))
	var addrs []corev1.EndpointAddress
	for i, suffix := range []string{"abcde", "fghij", "klmno"} {
		addrs = append(addrs, corev1.EndpointAddress{IP: fmt.Sprintf("10.42.1.%d", 10+i), NodeName: ptr.To("node-1"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-7c5d8bcb9f-" + suffix}})
	}
	addrs = append(addrs, corev1.EndpointAddress{IP: "10.42.1.40"})
	f.must(cs.CoreV1().Endpoints("default").Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Subsets: []corev1.EndpointSubset{{Addresses: addrs, NotReadyAddresses: []corev1.EndpointAddress{{IP: "10.42.1.99"}},
			Ports: []corev1.EndpointPort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "metrics", Port: 9090, Protocol: corev1.ProtocolTCP}}}}}, metav1.CreateOptions{}))

	var eps []discoveryv1.Endpoint
	for i := 0; i < 5; i++ {
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.42.1.%d", 10+i)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(i != 1)}})
	}
	f.must(cs.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-x1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), Protocol: ptr.To(corev1.ProtocolTCP)}, {Name: ptr.To("metrics"), Port: ptr.To[int32](9090), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{}))
	f.must(cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "db"}, ClusterIP: "10.43.0.21",
			Ports: []corev1.ServicePort{{Port: 5432, NodePort: 30432}}},
	}, metav1.CreateOptions{}))

	f.must(cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Labels: map[string]string{"app": "web"}},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"password": []byte("hunter2")}}, metav1.CreateOptions{}))
	f.must(cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "creds"}, {Name: "more"}}, Secrets: []corev1.ObjectReference{{Name: "creds"}}}, metav1.CreateOptions{}))

	event := func(name string, obj corev1.ObjectReference, typ, reason, msg, component string, count int32, ago time.Duration) {
		first := metav1.NewTime(time.Now().Add(-ago).Truncate(time.Second))
		last := metav1.NewTime(time.Now().Add(-ago / 2).Truncate(time.Second))
		if count == 1 {
			last = first
		}
		f.must(cs.CoreV1().Events("default").Create(ctx, &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name}, InvolvedObject: obj, Type: typ, Reason: reason, Message: msg,
			Source: corev1.EventSource{Component: component}, Count: count, FirstTimestamp: first, LastTimestamp: last,
		}, metav1.CreateOptions{}))
	}
	depRef := corev1.ObjectReference{Kind: "Deployment", Namespace: "default", Name: "web", UID: dep.UID, APIVersion: "apps/v1"}
	event("web.1", depRef, "Normal", "ScalingReplicaSet", "Scaled up replica set web-5d4f7b9c8 to 3", "deployment-controller", 1, 30*time.Hour)
	event("web.2", depRef, "Normal", "ScalingReplicaSet", "Scaled up replica set web-7c5d8bcb9f to 3 from 0", "deployment-controller", 1, 29*time.Hour)
	event("web.3", depRef, "Normal", "ScalingReplicaSet", "Scaled down replica set web-5d4f7b9c8 to 0 from 3", "deployment-controller", 3, 28*time.Hour)
	pod, err := cs.CoreV1().Pods("default").Get(ctx, "web-7c5d8bcb9f-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podRef := corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: pod.Name, UID: pod.UID, APIVersion: "v1"}
	event("pod.1", podRef, "Normal", "Scheduled", "Successfully assigned default/web-7c5d8bcb9f-abcde to node-1", "default-scheduler", 1, 29*time.Hour)
	podRef.FieldPath = "spec.containers{web}"
	event("pod.2", podRef, "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", "kubelet", 5, 28*time.Hour)
	pend, err := cs.CoreV1().Pods("default").Get(ctx, "pending", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	event("pending.1", corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "pending", UID: pend.UID, APIVersion: "v1"}, "Warning", "FailedScheduling",
		"0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.", "default-scheduler", 1, 29*time.Hour)
	nodeObj, err := cs.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	event("node.1", corev1.ObjectReference{Kind: "Node", Name: "node-1", UID: nodeObj.UID}, "Normal", "RegisteredNode", "Node node-1 event: Registered Node node-1 in Controller", "node-controller", 1, 30*time.Hour)
	event("node.2", corev1.ObjectReference{Kind: "Node", Name: "node-1", UID: "node-1"}, "Normal", "Starting", "Starting kubelet.", "kubelet", 1, 30*time.Hour)
}

var describeCases = []struct {
	name string
	args []string
}{
	{"describe-pod", []string{"describe", "pod", "web-7c5d8bcb9f-abcde"}},
	{"describe-pod-pending", []string{"describe", "pods/pending"}},
	{"describe-pod-prefix", []string{"describe", "pod", "web-7c5d8bcb9f"}},
	{"describe-pods-selector", []string{"describe", "pods", "-l", "app=web"}},
	{"describe-deploy", []string{"describe", "deploy", "web"}},
	{"describe-rs", []string{"describe", "rs"}},
	{"describe-svc", []string{"describe", "svc", "web"}},
	{"describe-svc-all", []string{"describe", "services"}},
	{"describe-ep", []string{"describe", "endpoints", "web"}},
	{"describe-node", []string{"describe", "node", "node-1"}},
	{"describe-node-no-events", []string{"describe", "nodes", "--show-events=false"}},
	{"describe-ns", []string{"describe", "ns", "default"}},
	{"describe-missing", []string{"describe", "pod", "nope"}},
	{"describe-missing-two", []string{"describe", "pods", "nope", "pending"}},
	{"describe-empty", []string{"describe", "pods", "-n", "kube-system"}},
	{"describe-all-namespaces", []string{"describe", "deployments", "-A"}},
	{"describe-all", []string{"describe", "all"}},
	{"describe-multi-type", []string{"describe", "svc,ep", "web"}},
	{"describe-no-args", []string{"describe"}},
	{"describe-unknown-type", []string{"describe", "frobs"}},
	{"describe-filename", []string{"describe", "-f", "{dir}/describe-web.yaml"}},
	{"describe-secret", []string{"describe", "secret", "creds"}},
	{"describe-serviceaccount", []string{"describe", "sa", "builder"}},
	{"describe-endpointslice", []string{"describe", "endpointslices"}},
	{"describe-lease", []string{"describe", "lease", "-n", "kube-node-lease"}},
}

var (
	rfc1123z = regexp.MustCompile(`[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [-+]\d{4}`)
	ageToken = regexp.MustCompile(`\b(\d+s|\d+m\d+s)\b`)
	rvLine   = regexp.MustCompile(`(Resource Version:\s+)\d+`)
	longUID  = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	rfc3339  = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z`)
)

// normalizeDescribe masks what changes from run to run (times, ages,
// UIDs) for the golden files; the upstream comparison is exact.
func normalizeDescribe(s string) string {
	s = rfc1123z.ReplaceAllString(s, "TIME")
	s = rfc3339.ReplaceAllString(s, "TIME")
	s = longUID.ReplaceAllString(s, "UID")
	s = ageToken.ReplaceAllString(s, "AGE")
	s = rvLine.ReplaceAllString(s, "${1}RV")
	return spaces.ReplaceAllString(s, " ")
}

// TestDescribeMatchesUpstream describes the fixture with upstream kubectl
// and Run against one real skiff API server and compares byte for byte.
func TestDescribeMatchesUpstream(t *testing.T) {
	api := controllertest.Start(t)
	buildFixture(t, api.Client)
	kc := realKubeconfig(t, api)
	bin := kubectlPath(t)
	dir := copyManifests(t)
	for _, tc := range describeCases {
		t.Run(tc.name, func(t *testing.T) {
			tc.args = expand(tc.args, dir)
			ours := runOurs(t, kc, "", tc.args...)
			golden(t, tc.name, normalizeDescribe(ours.stdout+"--- stderr\n"+ours.stderr))
			if bin == "" {
				t.Skip("kubectl not on PATH")
			}
			up := runUpstream(t, bin, kc, "", tc.args...)
			if ours.stdout != up.stdout {
				// Ages tick between the two runs; describe once more.
				ours = runOurs(t, kc, "", tc.args...)
			}
			if ours.stdout != up.stdout {
				t.Errorf("stdout differs from kubectl\n%s", lineDiff(up.stdout, ours.stdout))
			}
			if normalizeStderr(ours.stderr) != normalizeStderr(up.stderr) || ours.code != up.code {
				t.Errorf("stderr/exit differ\n--- kubectl (exit %d)\n%s--- ours (exit %d)\n%s", up.code, up.stderr, ours.code, ours.stderr)
			}
		})
	}
}

// lineDiff shows both outputs with the first differing line marked.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n  kubectl: %q\n  ours:    %q\n", i+1, w, g)
		}
	}
	return b.String()
}

// TestDescribeShowsRecordedEvents records events the way skiff's
// controllers do (client-go's recorder, which aggregates repeats) and
// checks describe finds them and prints the count as upstream does.
func TestDescribeShowsRecordedEvents(t *testing.T) {
	api := controllertest.Start(t)
	buildFixture(t, api.Client)
	kc := realKubeconfig(t, api)
	ctx := context.Background()
	rs, err := api.Client.AppsV1().ReplicaSets("default").Get(ctx, "web-7c5d8bcb9f", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := api.Context(t).EventRecorder("replicaset-controller")
	for i := 0; i < 3; i++ {
		rec.Eventf(rs, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: web-7c5d8bcb9f-abcde")
	}
	rec.Eventf(rs, corev1.EventTypeWarning, "FailedCreate", "Error creating: pods \"web-7c5d8bcb9f-x\" is forbidden")
	var out result
	waitFor(t, func() bool {
		out = runOurs(t, kc, "", "describe", "rs", "web-7c5d8bcb9f")
		return strings.Contains(out.stdout, "(x3 over") && strings.Contains(out.stdout, "FailedCreate")
	})
	if !strings.Contains(out.stdout, "  Normal   SuccessfulCreate  ") || !strings.Contains(out.stdout, "replicaset-controller  Created pod: web-7c5d8bcb9f-abcde") {
		t.Errorf("events table:\n%s", out.stdout)
	}
	bin := kubectlPath(t)
	if bin == "" {
		t.Skip("kubectl not on PATH")
	}
	up := runUpstream(t, bin, kc, "", "describe", "rs", "web-7c5d8bcb9f")
	if up.stdout != out.stdout {
		out = runOurs(t, kc, "", "describe", "rs", "web-7c5d8bcb9f")
	}
	if up.stdout != out.stdout {
		t.Errorf("stdout differs from kubectl\n%s", lineDiff(up.stdout, out.stdout))
	}
}
