package kubectl

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"bytes"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// rolloutOptions holds the flags of every rollout subcommand; each uses
// the ones upstream gives it.
type rolloutOptions struct {
	filenames    []string
	recursive    bool
	selector     string
	watch        bool
	revision     int64
	toRevision   int64
	timeout      time.Duration
	dryRun       string
	output       string
	fieldManager string
	fs           *pflag.FlagSet
}

// rolloutFlags lists the flags each subcommand has upstream besides
// -f, -R, -l and the global ones.
var rolloutFlags = map[string][]string{
	"history": {"revision", "output"},
	"pause":   {"output", "field-manager"},
	"resume":  {"output", "field-manager"},
	"restart": {"output", "field-manager"},
	"status":  {"revision", "timeout", "watch"},
	"undo":    {"to-revision", "dry-run", "output"},
}

var rolloutSubcommands = []string{"history", "pause", "restart", "resume", "status", "undo"}

func init() {
	register(command{
		name:  "rollout",
		short: "Manage the rollout of a resource",
		flags: func(fs *pflag.FlagSet) any {
			o := &rolloutOptions{fs: fs}
			fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "Filename, directory, or URL to files identifying the resource to get from a server.")
			fs.BoolVarP(&o.recursive, "recursive", "R", false, "Process the directory used in -f, --filename recursively.")
			fs.StringVarP(&o.selector, "selector", "l", "", "Selector (label query) to filter on.")
			fs.BoolVarP(&o.watch, "watch", "w", true, "Watch the status of the rollout until it's done.")
			fs.Int64Var(&o.revision, "revision", 0, "See the details, including podTemplate of the revision specified (history); pin to a specific revision for showing its status (status).")
			fs.Int64Var(&o.toRevision, "to-revision", 0, "The revision to rollback to. Default to 0 (last revision).")
			fs.DurationVar(&o.timeout, "timeout", 0, "The length of time to wait before ending watch, zero means never.")
			fs.StringVar(&o.dryRun, "dry-run", "none", `Must be "none", "server", or "client".`)
			fs.Lookup("dry-run").NoOptDefVal = "unchanged"
			fs.StringVarP(&o.output, "output", "o", "", "Output format: name.")
			fs.StringVar(&o.fieldManager, "field-manager", "kubectl-rollout", "Name of the manager used to track field ownership.")
			return o
		},
		run: func(e *env, opts any, args []string) error { return runRollout(e, opts.(*rolloutOptions), args) },
	})
}

func runRollout(e *env, o *rolloutOptions, args []string) error {
	if len(args) == 0 {
		// Upstream prints the command's help and fails.
		fmt.Fprintf(e.out, "Manage the rollout of one or many resources.\n\nAvailable Commands:\n")
		for _, c := range rolloutSubcommands {
			fmt.Fprintf(e.out, "  %s\n", c)
		}
		fmt.Fprintf(e.out, "\nUsage:\n  kubectl rollout SUBCOMMAND [options]\n")
		return errPrinted
	}
	sub, args := args[0], args[1:]
	allowed, ok := rolloutFlags[sub]
	if !ok {
		return fmt.Errorf("unknown command %q\nSee 'kubectl rollout -h' for help and examples", strings.Join(append([]string{sub}, args...), " "))
	}
	var bad error
	e.fs.Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "filename", "recursive", "selector", "kubeconfig", "context", "cluster", "user", "namespace", "server", "token",
			"insecure-skip-tls-verify", "v", "request-timeout":
			return
		}
		for _, a := range allowed {
			if a == f.Name {
				return
			}
		}
		if bad == nil {
			bad = fmt.Errorf("unknown flag: --%s", f.Name)
		}
	})
	if bad != nil {
		// cobra reports unknown flags of subcommands itself, capitalised.
		fmt.Fprintf(e.errOut, "Error: %v\nSee 'kubectl rollout %s --help' for usage.\n", bad, sub)
		return errPrinted
	}
	if len(args) == 0 && len(o.filenames) == 0 {
		return fmt.Errorf("required resource not specified")
	}
	infos, errs, err := e.infosFromArgs(args, o.filenames, o.recursive, o.selector, false, true)
	if err != nil {
		return err
	}
	switch sub {
	case "status":
		if len(errs) > 0 {
			return errs[0]
		}
		for _, in := range infos {
			if err := e.rolloutStatus(in, o); err != nil {
				return err
			}
		}
		return nil
	case "history":
		for _, in := range infos {
			if err := e.rolloutHistory(in, o); err != nil {
				errs = append(errs, err)
			}
		}
	case "undo":
		dry, err := parseDryRun(o.dryRun)
		if err != nil {
			return err
		}
		for _, in := range infos {
			if err := e.rolloutUndo(in, o, dry); err != nil {
				errs = append(errs, err)
			}
		}
	case "pause", "resume", "restart":
		for _, in := range infos {
			if err := e.rolloutMutate(sub, in, o); err != nil {
				errs = append(errs, err)
			}
		}
	default:
		return fmt.Errorf("unknown command %q for \"kubectl rollout\"", sub)
	}
	return utilerrors.NewAggregate(errs)
}

func isDeployment(m *meta.RESTMapping) bool {
	gk := m.GroupVersionKind.GroupKind()
	return gk == schema.GroupKind{Group: "apps", Kind: "Deployment"}
}

func (e *env) deployment(in *info) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	if err := fromUnstructured(in.obj, d); err != nil {
		return nil, err
	}
	return d, nil
}

// printRolloutResult is the name printer with an operation: "deployment.apps/x paused".
func (e *env) printRolloutResult(in *info, o *rolloutOptions, operation string) {
	gk := in.mapping.GroupVersionKind.GroupKind()
	if o.output == "name" {
		fmt.Fprintln(e.out, kindName(gk, in.name))
		return
	}
	fmt.Fprintf(e.out, "%s %s\n", kindName(gk, in.name), operation)
}

// resourceString is "deployments.apps", as rollout's patch errors name it.
func resourceString(m *meta.RESTMapping) string {
	if m.Resource.Group != "" {
		return m.Resource.Resource + "." + m.Resource.Group
	}
	return m.Resource.Resource
}

// rolloutMutate is pause, resume and restart: change the object, send the
// two-way strategic merge patch between before and after, as kubectl's
// set.CalculatePatches does.
func (e *env) rolloutMutate(sub string, in *info, o *rolloutOptions) error {
	verb := map[string]string{"pause": "pausing", "resume": "resuming", "restart": "restarting"}[sub]
	if !isDeployment(in.mapping) {
		return fmt.Errorf("error: %s %q %s is not supported", resourceString(in.mapping), in.name, verb)
	}
	d, err := e.deployment(in)
	if err != nil {
		return err
	}
	before, err := json.Marshal(d)
	if err != nil {
		return err
	}
	switch sub {
	case "pause":
		if d.Spec.Paused {
			return fmt.Errorf("error: %s %q is already paused", resourceString(in.mapping), in.name)
		}
		d.Spec.Paused = true
	case "resume":
		if !d.Spec.Paused {
			return fmt.Errorf("error: %s %q is not paused", resourceString(in.mapping), in.name)
		}
		d.Spec.Paused = false
	case "restart":
		if d.Spec.Paused {
			return fmt.Errorf("error: %s %q can't restart paused deployment (run rollout resume first)", resourceString(in.mapping), in.name)
		}
		if d.Spec.Template.Annotations == nil {
			d.Spec.Template.Annotations = map[string]string{}
		}
		d.Spec.Template.Annotations[restartedAtAnnotation] = time.Now().Format(time.RFC3339)
	}
	after, err := json.Marshal(d)
	if err != nil {
		return err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(before, after, &appsv1.Deployment{})
	if err != nil {
		return err
	}
	if string(patch) == "{}" || len(patch) == 0 {
		if sub == "restart" {
			return fmt.Errorf("failed to create patch for %v: if restart has already been triggered within the past second, please wait before attempting to trigger another", in.name)
		}
		e.printRolloutResult(in, o, "already "+map[string]string{"pause": "paused", "resume": "resumed"}[sub])
		return nil
	}
	if _, err := e.patchObject(in.mapping, in.namespace, in.name, types.StrategicMergePatchType, patch,
		map[string]string{"fieldManager": o.fieldManager}); err != nil {
		return err
	}
	e.printRolloutResult(in, o, map[string]string{"pause": "paused", "resume": "resumed", "restart": "restarted"}[sub])
	return nil
}

// rolloutHistory prints the revisions recorded on the deployment's
// ReplicaSets, or one revision's pod template.
func (e *env) rolloutHistory(in *info, o *rolloutOptions) error {
	if o.revision < 0 {
		return fmt.Errorf("revision must be a positive integer: %v", o.revision)
	}
	if !isDeployment(in.mapping) {
		return fmt.Errorf("no history viewer has been implemented for %q", in.mapping.GroupVersionKind.GroupKind().String())
	}
	cs, err := e.clientset()
	if err != nil {
		return err
	}
	d, err := cs.AppsV1().Deployments(in.namespace).Get(e.ctx, in.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to retrieve deployment %s: %v", in.name, err)
	}
	old, newRS, err := deploymentReplicaSets(e.ctx, cs, d, 0)
	if err != nil {
		return fmt.Errorf("failed to retrieve replica sets from deployment %s: %v", in.name, err)
	}
	all := old
	if newRS != nil {
		all = append(all, newRS)
	}
	history := map[int64]*corev1.PodTemplateSpec{}
	for _, rs := range all {
		v, err := revision(rs)
		if err != nil {
			continue
		}
		t := rs.Spec.Template.DeepCopy()
		if t.Annotations == nil {
			t.Annotations = map[string]string{}
		}
		if cause := rs.Annotations[changeCauseAnnotation]; cause != "" {
			t.Annotations[changeCauseAnnotation] = cause
		}
		history[v] = t
	}
	var body string
	switch {
	case len(history) == 0:
		body = "No rollout history found."
	case o.revision > 0:
		t, ok := history[o.revision]
		if !ok {
			return errors.New("unable to find the specified revision")
		}
		body = podTemplateString(t)
	default:
		revs := make([]int64, 0, len(history))
		for r := range history {
			revs = append(revs, r)
		}
		sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
		var buf bytes.Buffer
		tw := new(tabwriter.Writer)
		tw.Init(&buf, 0, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "REVISION\tCHANGE-CAUSE\n")
		for _, r := range revs {
			cause := history[r].Annotations[changeCauseAnnotation]
			if cause == "" {
				cause = "<none>"
			}
			fmt.Fprintf(tw, "%d\t%s\n", r, cause)
		}
		tw.Flush()
		body = buf.String()
	}
	with := ""
	if o.revision > 0 {
		with = fmt.Sprintf("with revision #%d", o.revision)
	}
	e.printRolloutResult(in, o, fmt.Sprintf("%s\n%s", with, body))
	return nil
}

// podTemplateString is rollout's printTemplate: DescribePodTemplate
// written straight to a buffer, without a tabwriter.
func podTemplateString(t *corev1.PodTemplateSpec) string {
	var buf bytes.Buffer
	describePodTemplate(t, &prefixWriter{out: &buf})
	return buf.String()
}

// rolloutUndo patches the deployment's template back to the one of the
// chosen revision's ReplicaSet (the previous revision by default).
func (e *env) rolloutUndo(in *info, o *rolloutOptions, dry string) error {
	if !isDeployment(in.mapping) {
		return fmt.Errorf("no rollbacker has been implemented for %q", in.mapping.GroupVersionKind.GroupKind())
	}
	if o.toRevision < 0 {
		return fmt.Errorf("unable to find specified revision %v in history", o.toRevision)
	}
	cs, err := e.clientset()
	if err != nil {
		return err
	}
	d, err := cs.AppsV1().Deployments(in.namespace).Get(e.ctx, in.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to retrieve Deployment %s: %v", in.name, err)
	}
	rs, err := e.revisionReplicaSet(d, o.toRevision)
	if err != nil {
		return err
	}
	if dry == "client" {
		e.printRolloutResult(in, o, podTemplateString(&rs.Spec.Template)+dryRunSuffix(dry))
		return nil
	}
	if d.Spec.Paused {
		return fmt.Errorf("you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again")
	}
	if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
		e.printRolloutResult(in, o, fmt.Sprintf("skipped rollback (current template already matches revision %d)", o.toRevision))
		return nil
	}
	tmpl := rs.Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	// The deployment keeps its own bookkeeping annotations and takes the
	// rest from the ReplicaSet, as kubectl's DeploymentRollbacker does.
	keep := map[string]bool{corev1.LastAppliedConfigAnnotation: true, revisionAnnotation: true, revisionHistoryAnnotation: true,
		desiredReplicasAnnotation: true, maxReplicasAnnotation: true, appsv1.DeprecatedRollbackTo: true}
	annotations := map[string]string{}
	for k := range keep {
		if v, ok := d.Annotations[k]; ok {
			annotations[k] = v
		}
	}
	for k, v := range rs.Annotations {
		if !keep[k] {
			annotations[k] = v
		}
	}
	patch, err := json.Marshal([]any{
		map[string]any{"op": "replace", "path": "/spec/template", "value": tmpl},
		map[string]any{"op": "replace", "path": "/metadata/annotations", "value": annotations},
	})
	if err != nil {
		return err
	}
	params := map[string]string{}
	if dry == "server" {
		params["dryRun"] = "All"
	}
	if _, err := e.patchObject(in.mapping, in.namespace, in.name, types.JSONPatchType, patch, params); err != nil {
		return fmt.Errorf("failed restoring revision %d: %v", o.toRevision, err)
	}
	e.printRolloutResult(in, o, "rolled back"+dryRunSuffix(dry))
	return nil
}

// revisionReplicaSet finds the ReplicaSet of a revision, or with 0 the
// second newest revision.
func (e *env) revisionReplicaSet(d *appsv1.Deployment, to int64) (*appsv1.ReplicaSet, error) {
	cs, err := e.clientset()
	if err != nil {
		return nil, err
	}
	old, newRS, err := deploymentReplicaSets(e.ctx, cs, d, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to retrieve replica sets from deployment %s: %v", d.Name, err)
	}
	all := old
	if newRS != nil {
		all = append(all, newRS)
	}
	var latest, previous *appsv1.ReplicaSet
	latestRev, previousRev := int64(-1), int64(-1)
	for _, rs := range all {
		v, err := revision(rs)
		if err != nil {
			continue
		}
		if to == 0 {
			if latestRev < v {
				previousRev, previous = latestRev, latest
				latestRev, latest = v, rs
			} else if previousRev < v {
				previousRev, previous = v, rs
			}
		} else if to == v {
			return rs, nil
		}
	}
	if to > 0 {
		return nil, fmt.Errorf("unable to find specified revision %v in history", to)
	}
	if previous == nil {
		return nil, fmt.Errorf("no rollout history found for deployment %q", d.Name)
	}
	return previous, nil
}
