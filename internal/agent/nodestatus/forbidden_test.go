package nodestatus

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"
)

// TestRegisterForbiddenCreate: an API server that lets the node read and
// patch its Node but not create it (a node authorizer): the existing Node
// is adopted; without one, the Forbidden error is returned.
func TestRegisterForbiddenCreate(t *testing.T) {
	forbidden := func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, nodeName, nil)
	}
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC))
	ctx := context.Background()

	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, UID: "uid-1"}})
	client.PrependReactor("create", "nodes", forbidden)
	a, _ := testAgent(t, client, clk, nil)
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["node.kubernetes.io/instance-type"] != "skiff" || condition(n, corev1.NodeReady).Status != corev1.ConditionTrue {
		t.Fatalf("adopted node %+v", n)
	}

	empty := fake.NewClientset()
	empty.PrependReactor("create", "nodes", forbidden)
	a, _ = testAgent(t, empty, clk, nil)
	if err := a.register(ctx); !apierrors.IsForbidden(err) {
		t.Fatalf("register = %v, want the Forbidden error", err)
	}
}
