package kubectl

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

type deleteOptions struct {
	filenames      []string
	recursive      bool
	selector       string
	fieldSelector  string
	all            bool
	allNamespaces  bool
	gracePeriod    int
	force          bool
	cascade        string
	ignoreNotFound bool
	wait           bool
	timeout        time.Duration
	output         string
	dryRun         string
	now            bool
	fs             *pflag.FlagSet
}

func init() {
	register(command{
		name:  "delete",
		short: "Delete resources by file names, stdin, resources and names, or by resources and label selector",
		flags: func(fs *pflag.FlagSet) any {
			o := &deleteOptions{fs: fs}
			fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "containing the resource to delete.")
			fs.BoolVarP(&o.recursive, "recursive", "R", false, "Process the directory used in -f, --filename recursively.")
			fs.StringVarP(&o.selector, "selector", "l", "", "Selector (label query) to filter on.")
			fs.StringVar(&o.fieldSelector, "field-selector", "", "Selector (field query) to filter on.")
			fs.BoolVar(&o.all, "all", false, "Delete all resources, in the namespace of the specified resource types.")
			fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "If present, list the requested object(s) across all namespaces.")
			fs.IntVar(&o.gracePeriod, "grace-period", -1, "Period of time in seconds given to the resource to terminate gracefully.")
			fs.BoolVar(&o.force, "force", false, "If true, immediately remove resources from API and bypass graceful deletion.")
			fs.StringVar(&o.cascade, "cascade", "background", `Must be "background", "orphan", or "foreground".`)
			fs.Lookup("cascade").NoOptDefVal = "background"
			fs.BoolVar(&o.ignoreNotFound, "ignore-not-found", false, "Treat \"resource not found\" as a successful delete.")
			fs.BoolVar(&o.wait, "wait", true, "If true, wait for resources to be gone before returning.")
			fs.DurationVar(&o.timeout, "timeout", 0, "The length of time to wait before giving up on a delete, zero means determine a timeout from the size of the object")
			fs.StringVarP(&o.output, "output", "o", "", "Output mode. Use \"-o name\" for shorter output (resource/name).")
			fs.StringVar(&o.dryRun, "dry-run", "none", `Must be "none", "server", or "client".`)
			fs.Lookup("dry-run").NoOptDefVal = "unchanged"
			fs.BoolVar(&o.now, "now", false, "If true, resources are signaled for immediate shutdown (same as --grace-period=1).")
			return o
		},
		run: func(e *env, opts any, args []string) error { return runDelete(e, opts.(*deleteOptions), args) },
	})
}

func runDelete(e *env, o *deleteOptions, args []string) error {
	dry, err := parseDryRun(o.dryRun)
	if err != nil {
		return err
	}
	var policy metav1.DeletionPropagation
	switch o.cascade {
	case "background", "true":
		policy = metav1.DeletePropagationBackground
	case "foreground":
		policy = metav1.DeletePropagationForeground
	case "orphan", "false":
		policy = metav1.DeletePropagationOrphan
	default:
		return fmt.Errorf("invalid cascade value (%v). Must be \"background\", \"foreground\", or \"orphan\"", o.cascade)
	}
	if o.now {
		if o.gracePeriod != -1 {
			return errors.New("--now and --grace-period cannot be specified together")
		}
		o.gracePeriod = 1
	}
	if o.gracePeriod == 0 && !o.force {
		// kubectl turns --grace-period=0 into 1 unless --force is given.
		o.gracePeriod = 1
	}
	if o.force && o.gracePeriod < 0 {
		o.gracePeriod = 0
	}
	if o.force {
		fmt.Fprintln(e.errOut, "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.")
	}

	var infos []*info
	switch {
	case len(o.filenames) > 0:
		if len(args) > 0 {
			return errors.New("resource(s) were provided, but no name was specified")
		}
		infos, err = e.readManifests(o.filenames, o.recursive)
		if err != nil {
			return err
		}
	case len(args) == 0:
		return errors.New("You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'")
	default:
		selecting := o.all || o.selector != "" || o.fieldSelector != ""
		targets, err := e.targetsFromArgs(args, o.allNamespaces)
		if err != nil {
			return err
		}
		for _, t := range targets {
			if t.name != "" {
				if selecting {
					return errors.New("name cannot be provided when a selector is specified")
				}
				infos = append(infos, &info{mapping: t.mapping, namespace: t.namespace, name: t.name})
				continue
			}
			if !selecting {
				return errors.New("resource(s) were provided, but no name was specified")
			}
			items, _, err := e.listObjects(t, o.selector, o.fieldSelector)
			if err != nil {
				return err
			}
			for i := range items {
				infos = append(infos, &info{mapping: t.mapping, namespace: items[i].GetNamespace(), name: items[i].GetName(), obj: &items[i]})
			}
		}
	}

	var errs []error
	found := 0
	type deleted struct {
		in  *info
		uid types.UID
	}
	var waitFor []deleted
	for _, in := range infos {
		found++ // kubectl counts attempts: an ignored NotFound still counts
		uid, err := e.deleteOne(in, policy, o.gracePeriod, dry)
		if err != nil {
			if isNotFound(err) && o.ignoreNotFound {
				continue
			}
			errs = append(errs, addSourceToErr("deleting", in.source, err))
			continue
		}
		gk := in.mapping.GroupVersionKind.GroupKind()
		op := "deleted"
		if o.gracePeriod == 0 {
			op = "force deleted"
		}
		op += dryRunSuffix(dry)
		if o.output == "name" {
			fmt.Fprintf(e.out, "%s/%s\n", kindString(gk), in.name)
		} else {
			fmt.Fprintf(e.out, "%s \"%s\" %s\n", kindString(gk), in.name, op)
		}
		waitFor = append(waitFor, deleted{in, uid})
	}
	if found == 0 && len(errs) == 0 {
		fmt.Fprintln(e.out, "No resources found")
		return nil
	}
	if o.wait && dry == "" && len(errs) == 0 {
		timeout := o.timeout
		if timeout == 0 {
			timeout = 168 * time.Hour
		}
		deadline := time.Now().Add(timeout)
		for _, d := range waitFor {
			if err := e.waitDeleted(d.in, d.uid, deadline); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return reduceErrs(errs)
}

func (e *env) deleteOne(in *info, policy metav1.DeletionPropagation, grace int, dry string) (types.UID, error) {
	rc, err := e.client()
	if err != nil {
		return "", err
	}
	opts := metav1.DeleteOptions{
		TypeMeta:          metav1.TypeMeta{Kind: "DeleteOptions", APIVersion: "v1"},
		PropagationPolicy: &policy,
	}
	if grace >= 0 {
		g := int64(grace)
		opts.GracePeriodSeconds = &g
	}
	if dry == "server" {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if dry == "client" {
		u, err := e.getObject(in.mapping, in.namespace, in.name)
		if err != nil {
			return "", err
		}
		return u.GetUID(), nil
	}
	body, err := doRaw(request(rc, "DELETE", in.mapping, in.namespace, in.name).
		SetHeader("Content-Type", "application/json").Body(mustJSON(opts)).Do(e.ctx))
	if err != nil {
		return "", err
	}
	// The response is the object (being deleted) or a Status.
	if u, err := decodeUnstructured(body); err == nil && u.GetKind() != "Status" {
		return u.GetUID(), nil
	}
	return "", nil
}

// waitDeleted polls until the object is gone or replaced by a new one with
// another UID (kubectl delete --wait).
func (e *env) waitDeleted(in *info, uid types.UID, deadline time.Time) error {
	for {
		u, err := e.getObject(in.mapping, in.namespace, in.name)
		if isNotFound(err) || (err == nil && uid != "" && u.GetUID() != uid) {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for the condition on %s", objectName(in.mapping, in.name))
		}
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
