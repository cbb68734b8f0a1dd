package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %s
spec:
  replicas: 10
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 2, maxUnavailable: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - {name: http, containerPort: 80}
        resources:
          requests: {cpu: 100m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: %s
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http}
`

func upstreamKubectl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("upstream kubectl is not installed")
	}
	return p
}

// TestDeploymentLifecycle drives a Deployment through the life users give
// it — create, rolling update, undo, scale to zero and back — over three
// simulated nodes, with upstream kubectl, and checks the rollout never
// breaks its surge and availability bounds.
func TestDeploymentLifecycle(t *testing.T) {
	kc := upstreamKubectl(t)
	c := startServer(t)
	c.simNodes(3)
	client := c.client()
	ctx := context.Background()
	ns := "shop"
	c.mustKubectl(kc, "", "create", "namespace", ns)
	c.mustKubectl(kc, fmt.Sprintf(webDeployment, ns, ns), "apply", "-f", "-")

	out := c.mustKubectl(kc, "", "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
	if !strings.Contains(out, `deployment "web" successfully rolled out`) {
		t.Fatalf("rollout status: %s", out)
	}
	d, err := client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 10 || d.Status.UpdatedReplicas != 10 {
		t.Fatalf("status after rollout: %+v", d.Status)
	}
	pods := podsOf(t, client, ns, "app=web")
	nodes := map[string]int{}
	for _, p := range pods {
		nodes[p.Spec.NodeName]++
	}
	if len(pods) != 10 || len(nodes) != 3 {
		t.Errorf("want 10 pods spread over 3 nodes, got %d pods on %v", len(pods), nodes)
	}

	// The Service's Endpoints hold exactly the ready pods' IPs, with the
	// named targetPort resolved.
	c.eventually(30*time.Second, "endpoints of web to list the 10 pod IPs", func() bool {
		return sameIPs(endpointIPs(client, ns, "web"), podIPs(podsOf(t, client, ns, "app=web")))
	})
	ep, _ := client.CoreV1().Endpoints(ns).Get(ctx, "web", metav1.GetOptions{})
	if p := ep.Subsets[0].Ports; len(p) != 1 || p[0].Port != 80 {
		t.Errorf("endpoint ports %+v, want 80 (targetPort http)", p)
	}

	// Rolling update to a new image, watching the ReplicaSets: the total
	// never exceeds replicas+maxSurge and availability never drops below
	// replicas-maxUnavailable.
	bounds := watchRolloutBounds(t, client, ns, 10, 2, 1)
	c.mustKubectl(kc, "", "-n", ns, "set", "image", "deployment/web", "web=nginx:1.26")
	c.mustKubectl(kc, "", "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
	if msg := bounds(); msg != "" {
		t.Error(msg)
	}
	for _, p := range podsOf(t, client, ns, "app=web") {
		if p.Spec.Containers[0].Image != "nginx:1.26" {
			t.Errorf("pod %s still runs %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
	hist := c.mustKubectl(kc, "", "-n", ns, "rollout", "history", "deployment/web")
	if !strings.Contains(hist, "REVISION") || !strings.Contains(hist, "1 ") || !strings.Contains(hist, "2 ") {
		t.Errorf("rollout history:\n%s", hist)
	}

	// Undo returns to the first template (a new revision, 3).
	c.mustKubectl(kc, "", "-n", ns, "rollout", "undo", "deployment/web")
	c.mustKubectl(kc, "", "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
	d, _ = client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "nginx:1.25" {
		t.Errorf("after undo the template runs %s", img)
	}
	if rev := d.Annotations["deployment.kubernetes.io/revision"]; rev != "3" {
		t.Errorf("revision after undo = %q, want 3", rev)
	}
	rsList, _ := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if len(rsList.Items) != 2 {
		t.Errorf("undo should reuse the first ReplicaSet: have %d", len(rsList.Items))
	}

	// Scale to zero and back, through the scale subresource.
	c.mustKubectl(kc, "", "-n", ns, "scale", "deployment/web", "--replicas=0")
	c.eventually(30*time.Second, "no web pods left", func() bool { return len(podsOf(t, client, ns, "app=web")) == 0 })
	c.eventually(30*time.Second, "endpoints emptied", func() bool { return len(endpointIPs(client, ns, "web")) == 0 })
	c.mustKubectl(kc, "", "-n", ns, "scale", "deployment/web", "--replicas=4")
	c.mustKubectl(kc, "", "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
	c.eventually(30*time.Second, "endpoints of 4 pods", func() bool {
		return sameIPs(endpointIPs(client, ns, "web"), podIPs(podsOf(t, client, ns, "app=web")))
	})

	// A deleted pod is replaced, and the Endpoints follow.
	victim := podsOf(t, client, ns, "app=web")[0]
	c.mustKubectl(kc, "", "-n", ns, "delete", "pod", victim.Name)
	c.eventually(30*time.Second, "the deleted pod replaced and endpoints updated", func() bool {
		ps := podsOf(t, client, ns, "app=web")
		for _, p := range ps {
			if p.Name == victim.Name {
				return false
			}
		}
		return len(ps) == 4 && sameIPs(endpointIPs(client, ns, "web"), podIPs(ps))
	})

	// kubectl describe reads what the controllers recorded.
	desc := c.mustKubectl(kc, "", "-n", ns, "describe", "deployment", "web")
	for _, want := range []string{"Replicas:", "4 desired | 4 updated | 4 total | 4 available | 0 unavailable", "StrategyType:           RollingUpdate", "NewReplicaSet:", "ScalingReplicaSet"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe deployment lacks %q:\n%s", want, desc)
		}
	}
	desc = c.mustKubectl(kc, "", "-n", ns, "describe", "pod", podsOf(t, client, ns, "app=web")[0].Name)
	for _, want := range []string{"Status:           Running", "Controlled By:  ReplicaSet/web-", "Scheduled", "Successfully assigned " + ns + "/web-"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe pod lacks %q:\n%s", want, desc)
		}
	}

	// Deleting the Deployment removes its ReplicaSets and pods (background
	// cascade by the garbage collector).
	c.mustKubectl(kc, "", "-n", ns, "delete", "deployment", "web")
	c.eventually(30*time.Second, "ReplicaSets and pods of the deleted Deployment gone", func() bool {
		rs, _ := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		return len(rs.Items) == 0 && len(podsOf(t, client, ns, "app=web")) == 0
	})
}

// TestOrphanCascadeAndNamespaceDeletion: --cascade=orphan leaves the
// ReplicaSet and pods; deleting the namespace then empties and removes it.
func TestOrphanCascadeAndNamespaceDeletion(t *testing.T) {
	kc := upstreamKubectl(t)
	c := startServer(t)
	c.simNodes(2)
	client := c.client()
	ctx := context.Background()
	ns := "scratch"
	c.mustKubectl(kc, "", "create", "namespace", ns)
	c.mustKubectl(kc, fmt.Sprintf(webDeployment, ns, ns), "apply", "-f", "-")
	c.mustKubectl(kc, "", "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")
	c.mustKubectl(kc, "", "-n", ns, "create", "configmap", "settings", "--from-literal=a=b")

	c.mustKubectl(kc, "", "-n", ns, "delete", "deployment", "web", "--cascade=orphan")
	c.eventually(30*time.Second, "deployment gone", func() bool {
		_, err := client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	rs, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(rs.Items) != 1 {
		t.Fatalf("orphaned ReplicaSet: %v %v", err, rs)
	}
	if refs := rs.Items[0].OwnerReferences; len(refs) != 0 {
		t.Errorf("orphaned ReplicaSet still has owners %v", refs)
	}
	time.Sleep(2 * time.Second) // the garbage collector must leave them alone
	if n := len(podsOf(t, client, ns, "app=web")); n != 10 {
		t.Errorf("%d pods left after orphaning, want 10", n)
	}
	sa, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Errorf("namespace %s has no default ServiceAccount: %v", ns, err)
	} else if sa.Name != "default" {
		t.Errorf("got %v", sa)
	}

	c.mustKubectl(kc, "", "delete", "namespace", ns, "--wait=false")
	nsObj, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err == nil && nsObj.Status.Phase != corev1.NamespaceTerminating {
		t.Errorf("deleted namespace phase %q", nsObj.Status.Phase)
	}
	c.eventually(60*time.Second, "namespace emptied and removed", func() bool {
		_, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	for _, check := range []func() (int, error){
		func() (int, error) {
			l, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
		func() (int, error) {
			l, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
			return len(l.Items), err
		},
	} {
		if n, err := check(); err != nil || n != 0 {
			t.Errorf("left in the deleted namespace: %d (%v)", n, err)
		}
	}
}

// TestUnschedulableMessage: pods that fit nowhere say why, in the
// scheduler's words, and start once a node fits.
func TestUnschedulableMessage(t *testing.T) {
	kc := upstreamKubectl(t)
	c := startServer(t)
	c.simNodes(3, "--cpu", "2")
	client := c.client()
	ctx := context.Background()
	c.mustKubectl(kc, `apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - {name: c, image: busybox, resources: {requests: {cpu: "3"}}}
---
apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  nodeSelector: {disk: ssd}
  containers:
  - {name: c, image: busybox}
`, "apply", "-f", "-")
	want := map[string]string{
		"big":   "0/3 nodes are available: 3 Insufficient cpu.",
		"picky": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
	}
	for name, msg := range want {
		c.eventually(30*time.Second, name+" reported unschedulable", func() bool {
			p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == "Unschedulable" {
					if cond.Message != msg {
						t.Fatalf("%s: message %q, want %q", name, cond.Message, msg)
					}
					return true
				}
			}
			return false
		})
		desc := c.mustKubectl(kc, "", "describe", "pod", name)
		if !strings.Contains(desc, "FailedScheduling") || !strings.Contains(desc, msg) {
			t.Errorf("describe pod %s lacks the FailedScheduling event:\n%s", name, desc)
		}
	}
	// Labelling a node lets the picky pod schedule, without waiting for a
	// long backoff.
	c.mustKubectl(kc, "", "label", "node", "sim-2", "disk=ssd")
	c.eventually(20*time.Second, "picky pod bound to sim-2 and running", func() bool {
		p, err := client.CoreV1().Pods("default").Get(ctx, "picky", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName == "sim-2" && p.Status.Phase == corev1.PodRunning
	})
	if p, _ := client.CoreV1().Pods("default").Get(ctx, "big", metav1.GetOptions{}); p.Spec.NodeName != "" {
		t.Errorf("big pod bound to %s though no node has 3 cpus", p.Spec.NodeName)
	}
}

// TestNodeFailureEviction: a simulated node stops heartbeating; it goes
// NotReady (Unknown) and tainted, and its pods are recreated on the live
// nodes within the toleration plus a few seconds.
func TestNodeFailureEviction(t *testing.T) {
	kc := upstreamKubectl(t)
	c := startServer(t, "--node-monitor-grace-period", "4s", "--node-monitor-period", "1s",
		"--default-not-ready-toleration-seconds", "2", "--default-unreachable-toleration-seconds", "2")
	// Leases renewed every second, so a 4s grace period tells the failed
	// node from the live ones.
	c.simNodes(3, "--fail", "sim-1", "--after", "8s", "--lease-renew-interval", "1s")
	failedAt := time.Now().Add(8 * time.Second) // about when sim-1 stops
	client := c.client()
	ctx := context.Background()
	c.mustKubectl(kc, fmt.Sprintf(webDeployment, "default", "default"), "apply", "-f", "-")
	c.mustKubectl(kc, "", "rollout", "status", "deployment/web", "--timeout=60s")
	onFailed := 0
	for _, p := range podsOf(t, client, "default", "app=web") {
		if p.Spec.NodeName == "sim-1" {
			onFailed++
		}
	}
	if onFailed == 0 {
		t.Fatal("no pods landed on sim-1; the spread is broken")
	}
	c.eventually(40*time.Second, "sim-1 Unknown and tainted unreachable", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "sim-1", metav1.GetOptions{})
		if err != nil {
			return false
		}
		tainted := false
		for _, tn := range n.Spec.Taints {
			if tn.Key == corev1.TaintNodeUnreachable && tn.Effect == corev1.TaintEffectNoExecute {
				tainted = true
			}
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionUnknown && tainted
			}
		}
		return false
	})
	// Grace 4s, then the taint one monitor period later, then the 2s
	// toleration: about 8s after the last heartbeat; allow a few seconds.
	c.eventually(30*time.Second, "10 available pods again, none on sim-1", func() bool {
		live := 0
		for _, p := range podsOf(t, client, "default", "app=web") {
			if p.Spec.NodeName == "sim-1" {
				continue
			}
			if p.Status.Phase == corev1.PodRunning {
				live++
			}
		}
		d, err := client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && live == 10 && d.Status.AvailableReplicas == 10
	})
	took := time.Since(failedAt)
	t.Logf("pods of the failed node replaced about %.1fs after it stopped heartbeating", took.Seconds())
	if took > 20*time.Second {
		t.Errorf("replacement took %s; grace 4s + period 1s + toleration 2s should need about 8s", took)
	}
	out := c.mustKubectl(kc, "", "get", "nodes")
	if !strings.Contains(out, "sim-1   NotReady") {
		t.Errorf("kubectl get nodes:\n%s", out)
	}
}

// podsOf lists the live (not terminating) pods matching selector.
func podsOf(t *testing.T, client kubernetes.Interface, ns, selector string) []corev1.Pod {
	t.Helper()
	list, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	return live
}

func podIPs(pods []corev1.Pod) []string {
	var ips []string
	for _, p := range pods {
		if p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
	}
	return ips
}

func endpointIPs(client kubernetes.Interface, ns, name string) []string {
	ep, err := client.CoreV1().Endpoints(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	var ips []string
	for _, s := range ep.Subsets {
		for _, a := range s.Addresses {
			ips = append(ips, a.IP)
		}
	}
	return ips
}

func sameIPs(a, b []string) bool {
	if len(a) != len(b) || len(a) == 0 {
		return len(a) == len(b)
	}
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// watchRolloutBounds watches the namespace's ReplicaSets until the returned
// function is called and reports any moment where their desired replicas
// summed over replicas+maxSurge or their available replicas under
// replicas-maxUnavailable.
func watchRolloutBounds(t *testing.T, client kubernetes.Interface, ns string, replicas, maxSurge, maxUnavailable int32) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := client.AppsV1().ReplicaSets(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var violation string
	done := make(chan struct{})
	go func() {
		defer close(done)
		state := map[string]*appsv1.ReplicaSet{}
		for ev := range w.ResultChan() {
			rs, ok := ev.Object.(*appsv1.ReplicaSet)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(state, rs.Name)
			} else {
				state[rs.Name] = rs
			}
			var desired, available int32
			for _, r := range state {
				if r.Spec.Replicas != nil {
					desired += *r.Spec.Replicas
				}
				available += r.Status.AvailableReplicas
			}
			mu.Lock()
			if violation == "" && desired > replicas+maxSurge {
				violation = fmt.Sprintf("ReplicaSets wanted %d pods, more than %d+%d", desired, replicas, maxSurge)
			}
			// Availability is judged once the rollout has started from a
			// complete state (every RS seen so far is settled).
			if violation == "" && len(state) > 1 && available < replicas-maxUnavailable {
				violation = fmt.Sprintf("only %d pods available, fewer than %d-%d", available, replicas, maxUnavailable)
			}
			mu.Unlock()
		}
	}()
	return func() string {
		cancel()
		w.Stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return violation
	}
}
