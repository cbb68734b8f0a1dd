package kubectl

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// errWaitTimeout is wait.ErrWaitTimeout's text, which kubectl prints when
// rollout status --timeout runs out.
var errWaitTimeout = errors.New("timed out waiting for the condition")

// deploymentStatus is kubectl's DeploymentStatusViewer.Status: a message
// and whether the rollout is complete.
func deploymentStatus(d *appsv1.Deployment, rev int64) (string, bool, error) {
	if rev > 0 {
		cur, err := revision(d)
		if err != nil {
			return "", false, fmt.Errorf("cannot get the revision of deployment %q: %v", d.Name, err)
		}
		if rev != cur {
			return "", false, fmt.Errorf("desired revision (%d) is different from the running revision (%d)", rev, cur)
		}
	}
	if d.Generation > d.Status.ObservedGeneration {
		return "Waiting for deployment spec update to be observed...\n", false, nil
	}
	if c := deploymentCondition(d.Status, appsv1.DeploymentProgressing); c != nil && c.Reason == timedOutReason {
		return "", false, fmt.Errorf("deployment %q exceeded its progress deadline", d.Name)
	}
	if d.Spec.Replicas != nil && d.Status.UpdatedReplicas < *d.Spec.Replicas {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...\n", d.Name, d.Status.UpdatedReplicas, *d.Spec.Replicas), false, nil
	}
	if d.Status.Replicas > d.Status.UpdatedReplicas {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...\n", d.Name, d.Status.Replicas-d.Status.UpdatedReplicas), false, nil
	}
	if d.Status.AvailableReplicas < d.Status.UpdatedReplicas {
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...\n", d.Name, d.Status.AvailableReplicas, d.Status.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out\n", d.Name), true, nil
}

// rolloutStatus lists then watches the one deployment (kubectl's
// UntilWithSync), printing the status on every add or change until the
// rollout is done, --watch=false, the object is deleted or --timeout ends.
func (e *env) rolloutStatus(in *info, o *rolloutOptions) error {
	if !isDeployment(in.mapping) {
		return fmt.Errorf("no status viewer has been implemented for %s", in.mapping.GroupVersionKind.GroupKind())
	}
	cs, err := e.clientset()
	if err != nil {
		return err
	}
	ctx := e.ctx
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	client := cs.AppsV1().Deployments(in.namespace)
	sel := fields.OneTermEqualSelector("metadata.name", in.name).String()
	// handle reports whether to stop.
	handle := func(d *appsv1.Deployment) (bool, error) {
		msg, done, err := deploymentStatus(d, o.revision)
		if err != nil {
			return true, err
		}
		fmt.Fprint(e.out, msg)
		return done || !o.watch, nil
	}
	rv := ""
	for {
		if rv == "" {
			list, err := client.List(ctx, metav1.ListOptions{FieldSelector: sel})
			if err != nil {
				if ctx.Err() != nil && e.ctx.Err() == nil {
					return errWaitTimeout
				}
				return err
			}
			for i := range list.Items {
				if stop, err := handle(&list.Items[i]); stop {
					return err
				}
			}
			rv = list.ResourceVersion
		}
		w, err := client.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil && e.ctx.Err() == nil {
				return errWaitTimeout
			}
			return err
		}
		stop, err := func() (bool, error) {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					if e.ctx.Err() == nil {
						return true, errWaitTimeout
					}
					return true, e.ctx.Err()
				case ev, ok := <-w.ResultChan():
					if !ok {
						return false, nil
					}
					switch ev.Type {
					case watch.Added, watch.Modified:
						d, ok := ev.Object.(*appsv1.Deployment)
						if !ok {
							continue
						}
						rv = d.ResourceVersion
						if stop, err := handle(d); stop {
							return true, err
						}
					case watch.Deleted:
						return true, errors.New("object has been deleted")
					case watch.Bookmark:
						if d, ok := ev.Object.(*appsv1.Deployment); ok {
							rv = d.ResourceVersion
						}
					case watch.Error:
						// Expired resource version: list again.
						rv = ""
						return false, nil
					}
				}
			}
		}()
		if stop {
			return err
		}
	}
}
