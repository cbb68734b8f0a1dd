package replicaset

import (
	"context"
	"errors"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-dev/skiff/internal/controller"
)

// slowStartInitialBatchSize is upstream's SlowStartInitialBatchSize.
const slowStartInitialBatchSize = 1

// manageReplicas creates or deletes pods so that active (the pods the
// ReplicaSet controls, not terminating) reaches spec.replicas, at most
// burst at a time. It does not modify active.
func (c *Controller) manageReplicas(ctx context.Context, active []*corev1.Pod, rs *appsv1.ReplicaSet) error {
	key, ok := controller.KeyOf(rs)
	if !ok {
		return nil
	}
	diff := len(active) - int(desired(rs))
	switch {
	case diff < 0:
		n := min(-diff, c.burst)
		// Expect before creating: the watch may report a pod before
		// Create returns.
		c.exp.expectCreations(key, n)
		c.log.Debug("too few replicas", "replicaset", key, "need", desired(rs), "creating", n)
		ref := metav1.NewControllerRef(rs, rsKind)
		// Batches of 1, 2, 4, …: a ReplicaSet whose pods all fail (quota,
		// validation) does not flood the API and the event stream.
		created, err := slowStartBatch(n, slowStartInitialBatchSize, func() error {
			err := c.createPod(ctx, rs, ref)
			if err != nil && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				// Every create will fail until the namespace is gone;
				// nothing to report.
				return nil
			}
			return err
		})
		// Pods never created will never be observed.
		for range n - created {
			c.exp.creationObserved(key)
		}
		return err

	case diff > 0:
		n := min(diff, c.burst)
		c.log.Debug("too many replicas", "replicaset", key, "need", desired(rs), "deleting", n)
		victims := podsToDelete(active, c.relatedPods(rs), n, metav1.NewTime(c.clock.Now()))
		keys := make([]string, len(victims))
		for i, p := range victims {
			keys[i] = podKey(p)
		}
		// Expect the deletions by key, so the deletionTimestamp update
		// and the final delete event count once.
		c.exp.expectDeletions(key, keys)
		errs := make(chan error, len(victims))
		var wg sync.WaitGroup
		for _, p := range victims {
			wg.Go(func() {
				if err := c.deletePodOf(ctx, rs, p); err != nil {
					// Never going to be observed.
					c.exp.deletionObserved(key, podKey(p))
					if !apierrors.IsNotFound(err) {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		// They are likely all the same; report the first.
		return <-errs
	}
	return nil
}

// slowStartBatch calls fn count times in batches that start at
// initialBatchSize and double after every batch that fully succeeded; the
// calls of a batch run concurrently. It stops after the first batch with
// a failure and returns the number of successful calls and one error.
func slowStartBatch(count, initialBatchSize int, fn func() error) (int, error) {
	remaining, successes := count, 0
	for batch := min(remaining, initialBatchSize); batch > 0; batch = min(2*batch, remaining) {
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Go(func() {
				if err := fn(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		successes += batch - len(errs)
		if len(errs) > 0 {
			return successes, <-errs
		}
		remaining -= batch
	}
	return successes, nil
}

// podFromTemplate is the pod the ReplicaSet creates (upstream's
// GetPodFromTemplate): the template's labels, annotations, finalizers and
// spec, generateName "<rs>-", and the controller reference.
func podFromTemplate(rs *appsv1.ReplicaSet, ref *metav1.OwnerReference) *corev1.Pod {
	t := &rs.Spec.Template
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    rs.Namespace,
			GenerateName: podPrefix(rs.Name),
			Labels:       copyMap(t.Labels),
			Annotations:  copyMap(t.Annotations),
			Finalizers:   append([]string(nil), t.Finalizers...),
		},
		Spec: *t.Spec.DeepCopy(),
	}
	if ref != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*ref}
	}
	return pod
}

// podPrefix is "<name>-" unless that would not make valid pod names.
func podPrefix(name string) string {
	prefix := name + "-"
	if len(apivalidation.NameIsDNSSubdomain(prefix, true)) != 0 {
		return name
	}
	return prefix
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// createPod creates one pod for rs and records the upstream events.
func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet, ref *metav1.OwnerReference) error {
	pod := podFromTemplate(rs, ref)
	if len(pod.Labels) == 0 {
		return errors.New("unable to create pods, no labels")
	}
	created, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		// Shutting down, or the namespace is going away: nothing for
		// the user to see.
		if ctx.Err() == nil && !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			c.recorder.Eventf(rs, corev1.EventTypeWarning, reasonFailedCreate, "Error creating: %v", err)
		}
		return err
	}
	c.log.Debug("created pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", created.Name)
	c.recorder.Eventf(rs, corev1.EventTypeNormal, reasonSuccessfulCreate, "Created pod: %v", created.Name)
	return nil
}

// deletePodOf deletes one of rs's pods and records the upstream events.
// NotFound is returned as is (the caller ignores it).
func (c *Controller) deletePodOf(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error {
	err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			return err
		}
		c.recorder.Eventf(rs, corev1.EventTypeWarning, reasonFailedDelete, "Error deleting: %v", err)
		return fmt.Errorf("unable to delete pods: %w", err)
	}
	c.log.Debug("deleted pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", pod.Name)
	c.recorder.Eventf(rs, corev1.EventTypeNormal, reasonSuccessfulDelete, "Deleted pod: %v", pod.Name)
	return nil
}

// relatedPods returns the pods of every ReplicaSet that has the same
// controller as rs (a Deployment's ReplicaSets), for ranking pods by how
// crowded their node is. Like upstream, a ReplicaSet without a controller
// has none.
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet) []*corev1.Pod {
	ref := metav1.GetControllerOfNoCopy(rs)
	if ref == nil {
		return nil
	}
	siblings, err := c.rsIndex.ByIndex(rsOwnerIndex, string(ref.UID))
	if err != nil {
		return nil
	}
	seen := map[types.UID]bool{}
	var pods []*corev1.Pod
	for _, obj := range siblings {
		sib, ok := obj.(*appsv1.ReplicaSet)
		if !ok || sib.Namespace != rs.Namespace {
			continue
		}
		owned, err := c.podIndex.ByIndex(podOwnerIndex, string(sib.UID))
		if err != nil {
			continue
		}
		for _, o := range owned {
			if p, ok := o.(*corev1.Pod); ok && !seen[p.UID] {
				seen[p.UID] = true
				pods = append(pods, p)
			}
		}
	}
	return pods
}
