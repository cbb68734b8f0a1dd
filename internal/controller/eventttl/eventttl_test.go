package eventttl

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/internal/controller/controllertest"
)

func TestSweep(t *testing.T) {
	api := controllertest.Start(t)
	ctx := context.Background()
	now := time.Now()
	mk := func(name string, last time.Time) {
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "default"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "p"},
			Reason:         "Test", Message: "m", Type: corev1.EventTypeNormal,
			FirstTimestamp: metav1.NewTime(last.Add(-time.Minute)), LastTimestamp: metav1.NewTime(last),
			Source: corev1.EventSource{Component: "test"},
		}
		if _, err := api.Client.CoreV1().Events("default").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("a", now)
	mk("b", now)
	sweep := func(at time.Time) int {
		t.Helper()
		c, err := New(api.Context(t), Options{TTL: time.Hour, Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		n, err := c.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := sweep(now.Add(50 * time.Minute)); n != 0 {
		t.Fatalf("deleted %d events before their TTL", n)
	}
	if n := sweep(now.Add(2 * time.Hour)); n != 2 {
		t.Fatalf("deleted %d expired events, want 2", n)
	}
}

func TestLastWrite(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(base)},
		LastTimestamp: metav1.NewTime(base.Add(time.Minute)),
		Series:        &corev1.EventSeries{LastObservedTime: metav1.NewMicroTime(base.Add(time.Hour))}}
	if got := LastWrite(ev); !got.Equal(base.Add(time.Hour)) {
		t.Errorf("LastWrite = %v", got)
	}
}
