package kubectl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

type scaleOptions struct {
	replicas        int
	currentReplicas int
	resourceVersion string
	selector        string
	all             bool
	filenames       []string
	recursive       bool
	dryRun          string
	output          string
	timeout         time.Duration
}

func init() {
	register(command{
		name:  "scale",
		short: "Set a new size for a deployment, replica set, replication controller, or stateful set",
		flags: func(fs *pflag.FlagSet) any {
			o := &scaleOptions{}
			fs.IntVar(&o.replicas, "replicas", -1, "The new desired number of replicas. Required.")
			fs.IntVar(&o.currentReplicas, "current-replicas", -1, "Precondition for current size. Requires that the current size of the resource match this value in order to scale. -1 (default) for no condition.")
			fs.StringVar(&o.resourceVersion, "resource-version", "", "Precondition for resource version. Requires that the current resource version match this value in order to scale.")
			fs.StringVarP(&o.selector, "selector", "l", "", "Selector (label query) to filter on.")
			fs.BoolVar(&o.all, "all", false, "Select all resources in the namespace of the specified resource types")
			fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "Filename, directory, or URL to files identifying the resource to set a new size")
			fs.BoolVarP(&o.recursive, "recursive", "R", false, "Process the directory used in -f, --filename recursively.")
			fs.StringVar(&o.dryRun, "dry-run", "none", `Must be "none", "server", or "client".`)
			fs.Lookup("dry-run").NoOptDefVal = "unchanged"
			fs.StringVarP(&o.output, "output", "o", "", "Output format: name.")
			fs.DurationVar(&o.timeout, "timeout", 0, "The length of time to wait before giving up on a scale operation, zero means don't wait.")
			return o
		},
		run: func(e *env, opts any, args []string) error { return runScale(e, opts.(*scaleOptions), args) },
	})
}

// infosFromArgs resolves TYPE NAME…, TYPE/NAME…, TYPE -l SEL, TYPE --all
// and -f the way kubectl's builder does for the mutating commands; with
// bareType a TYPE alone selects all its objects in the namespace (rollout).
func (e *env) infosFromArgs(args []string, filenames []string, recursive bool, selector string, all, bareType bool) ([]*info, []error, error) {
	if len(filenames) > 0 {
		infos, err := e.readManifests(filenames, recursive)
		return infos, nil, err
	}
	if len(args) == 0 {
		return nil, nil, errors.New("required resource not specified")
	}
	targets, err := e.targetsFromArgs(args, false)
	if err != nil {
		return nil, nil, err
	}
	var infos []*info
	var errs []error
	for _, t := range targets {
		if t.name != "" {
			if selector != "" || all {
				return nil, nil, errors.New("name cannot be provided when a selector is specified")
			}
			u, err := e.getObject(t.mapping, t.namespace, t.name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			infos = append(infos, &info{mapping: t.mapping, namespace: t.namespace, name: t.name, obj: u})
			continue
		}
		if selector == "" && !all && !bareType {
			return nil, nil, errors.New("resource(s) were provided, but no name was specified")
		}
		items, _, err := e.listObjects(t, selector, "")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range items {
			infos = append(infos, &info{mapping: t.mapping, namespace: items[i].GetNamespace(), name: items[i].GetName(), obj: &items[i]})
		}
	}
	return infos, errs, nil
}

func runScale(e *env, o *scaleOptions, args []string) error {
	if o.replicas < 0 {
		if !e.fs.Changed("replicas") {
			// Upstream's cobra MarkFlagRequired failure goes to klog only.
			fmt.Fprintf(e.errOut, "E%s %7d run.go:72] \"command failed\" err=\"required flag(s) \\\"replicas\\\" not set\"\n",
				time.Now().Format("0102 15:04:05.000000"), os.Getpid())
			return errPrinted
		}
		return errors.New("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
	}
	if o.currentReplicas < -1 {
		return errors.New("The --current-replicas must specify an integer of -1 or greater")
	}
	if o.output != "" && o.output != "name" {
		return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: name", o.output)
	}
	dry, err := parseDryRun(o.dryRun)
	if err != nil {
		return err
	}
	infos, errs, err := e.infosFromArgs(args, o.filenames, o.recursive, o.selector, o.all, false)
	if err != nil {
		return err
	}
	if o.resourceVersion != "" && len(infos) > 1 {
		return errors.New("cannot use --resource-version with multiple resources")
	}
	if len(infos) == 0 {
		if len(errs) > 0 {
			return fmt.Errorf("no objects passed to scale %v", errs[0])
		}
		return errors.New("no objects passed to scale")
	}
	if len(errs) > 0 {
		return errs[0]
	}
	for _, in := range infos {
		if dry != "client" {
			if err := e.scaleOne(in, o, dry == "server"); err != nil {
				return err
			}
			if o.timeout != 0 && dry == "" {
				if err := e.waitForScale(in, int32(o.replicas), o.timeout); err != nil {
					return err
				}
			}
		}
		gk := in.mapping.GroupVersionKind.GroupKind()
		if o.output == "name" {
			fmt.Fprintln(e.out, kindName(gk, in.name))
			continue
		}
		fmt.Fprintf(e.out, "%s scaled%s\n", kindName(gk, in.name), dryRunSuffix(dry))
	}
	return nil
}

// scaleOne writes the scale subresource: a blind merge patch, or, with
// preconditions, read-check-update; update conflicts are retried.
func (e *env) scaleOne(in *info, o *scaleOptions, serverDry bool) error {
	rc, err := e.client()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var err error
		if o.currentReplicas != -1 || o.resourceVersion != "" {
			err = e.scaleWithPrecondition(in, o, serverDry)
		} else {
			patch := mustJSON(map[string]any{"spec": map[string]any{"replicas": o.replicas}})
			req := request(rc, "PATCH", in.mapping, in.namespace, in.name).SubResource("scale").
				SetHeader("Content-Type", string(types.MergePatchType)).Body(patch)
			if serverDry {
				req = req.Param("dryRun", "All")
			}
			_, err = doRaw(req.Do(e.ctx))
		}
		if !apierrors.IsConflict(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// preconditionError is kubectl's scale.PreconditionError.
type preconditionError struct{ what, want, got string }

func (p preconditionError) Error() string {
	return fmt.Sprintf("Expected %s to be %s, was %s", p.what, p.want, p.got)
}

func (e *env) getScale(in *info) (*autoscalingv1.Scale, error) {
	rc, err := e.client()
	if err != nil {
		return nil, err
	}
	body, err := doRaw(request(rc, "GET", in.mapping, in.namespace, in.name).SubResource("scale").SetHeader("Accept", "application/json").Do(e.ctx))
	if err != nil {
		return nil, err
	}
	sc := &autoscalingv1.Scale{}
	if err := json.Unmarshal(body, sc); err != nil {
		return nil, err
	}
	return sc, nil
}

func (e *env) scaleWithPrecondition(in *info, o *scaleOptions, serverDry bool) error {
	sc, err := e.getScale(in)
	if err != nil {
		return err
	}
	if o.currentReplicas != -1 && int(sc.Spec.Replicas) != o.currentReplicas {
		return preconditionError{"replicas", strconv.Itoa(o.currentReplicas), strconv.Itoa(int(sc.Spec.Replicas))}
	}
	if o.resourceVersion != "" && sc.ResourceVersion != o.resourceVersion {
		return preconditionError{"resource version", o.resourceVersion, sc.ResourceVersion}
	}
	sc.Spec.Replicas = int32(o.replicas)
	sc.APIVersion, sc.Kind = "autoscaling/v1", "Scale"
	rc, err := e.client()
	if err != nil {
		return err
	}
	req := request(rc, "PUT", in.mapping, in.namespace, in.name).SubResource("scale").
		SetHeader("Content-Type", "application/json").Body(mustJSON(sc))
	if serverDry {
		req = req.Param("dryRun", "All")
	}
	_, err = doRaw(req.Do(e.ctx))
	return err
}

// waitForScale is kubectl's --timeout wait: until the status catches up
// with the new size, or someone else changed the size.
func (e *env) waitForScale(in *info, want int32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		sc, err := e.getScale(in)
		if err != nil {
			return err
		}
		if sc.Spec.Replicas != want || (sc.Status.Replicas == want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %q to be synced", in.name)
		}
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
