package kubectl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation"
)

// metaOptions configures label and annotate, which differ only in the
// map they edit and their messages.
type metaOptions struct {
	annotate        bool
	overwrite       bool
	selector        string
	fieldSelector   string
	all             bool
	allNamespaces   bool
	filenames       []string
	recursive       bool
	dryRun          string
	output          string
	resourceVersion string
}

func init() {
	for _, annotate := range []bool{false, true} {
		annotate := annotate
		name, short := "label", "Update the labels on a resource"
		if annotate {
			name, short = "annotate", "Update the annotations on a resource"
		}
		register(command{
			name:  name,
			short: short,
			flags: func(fs *pflag.FlagSet) any {
				o := &metaOptions{annotate: annotate}
				fs.BoolVar(&o.overwrite, "overwrite", false, "If true, allow existing values to be overwritten.")
				fs.StringVarP(&o.selector, "selector", "l", "", "Selector (label query) to filter on.")
				fs.StringVar(&o.fieldSelector, "field-selector", "", "Selector (field query) to filter on.")
				fs.BoolVar(&o.all, "all", false, "Select all resources, in the namespace of the specified resource types")
				fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "If true, check the specified action in all namespaces.")
				fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "Filename identifying the resource to update.")
				fs.BoolVarP(&o.recursive, "recursive", "R", false, "Process the directory used in -f, --filename recursively.")
				fs.StringVar(&o.dryRun, "dry-run", "none", `Must be "none", "server", or "client".`)
				fs.Lookup("dry-run").NoOptDefVal = "unchanged"
				fs.StringVarP(&o.output, "output", "o", "", "Output format: name.")
				fs.StringVar(&o.resourceVersion, "resource-version", "", "If non-empty, the update will only succeed if this is the current resource-version for the object.")
				return o
			},
			run: func(e *env, opts any, args []string) error { return runLabel(e, opts.(*metaOptions), args) },
		})
	}
}

func (o *metaOptions) what() string {
	if o.annotate {
		return "annotation"
	}
	return "label"
}

// parseMetaArgs splits the trailing key=value / key- arguments from the
// resource arguments.
func parseMetaArgs(args []string, annotate bool) (resources []string, set map[string]string, remove []string, err error) {
	var specs []string
	foundPair := false
	for _, a := range args {
		nonResource := (strings.Contains(a, "=") && a[0] != '=') || (strings.HasSuffix(a, "-") && a != "-")
		switch {
		case nonResource:
			foundPair = true
			specs = append(specs, a)
		case !foundPair:
			resources = append(resources, a)
		default:
			kind := "label"
			if annotate {
				kind = "annotate"
			}
			return nil, nil, nil, fmt.Errorf("all resources must be specified before %s changes: %s", kind, a)
		}
	}
	set = map[string]string{}
	for _, s := range specs {
		switch {
		case strings.Contains(s, "="):
			parts := strings.SplitN(s, "=", 2)
			if !annotate {
				if strings.Count(s, "=") != 1 {
					return nil, nil, nil, fmt.Errorf("invalid label spec: %v", s)
				}
				if errs := validation.IsValidLabelValue(parts[1]); len(errs) != 0 {
					return nil, nil, nil, fmt.Errorf("invalid label value: %q: %s", s, strings.Join(errs, ";"))
				}
			}
			if parts[0] == "" {
				return nil, nil, nil, fmt.Errorf("invalid %s spec: %v", map[bool]string{false: "label", true: "annotation"}[annotate], s)
			}
			set[parts[0]] = parts[1]
		case strings.HasSuffix(s, "-"):
			remove = append(remove, s[:len(s)-1])
		default:
			return nil, nil, nil, fmt.Errorf("unknown label spec: %v", s)
		}
	}
	for _, r := range remove {
		if _, ok := set[r]; ok {
			if annotate {
				return nil, nil, nil, fmt.Errorf("can not both modify and remove the following annotation(s) in the same command: %s", r)
			}
			return nil, nil, nil, errors.New("can not both modify and remove a label in the same command")
		}
	}
	return resources, set, remove, nil
}

func runLabel(e *env, o *metaOptions, args []string) error {
	dry, err := parseDryRun(o.dryRun)
	if err != nil {
		return err
	}
	resources, set, remove, err := parseMetaArgs(args, o.annotate)
	if err != nil {
		return err
	}
	if len(resources) == 0 && len(o.filenames) == 0 {
		return errors.New("one or more resources must be specified as <resource> <name> or <resource>/<name>")
	}
	if len(set) == 0 && len(remove) == 0 {
		return fmt.Errorf("at least one %s update is required", o.what())
	}
	var infos []*info
	if len(o.filenames) > 0 {
		infos, err = e.readManifests(o.filenames, o.recursive)
		if err != nil {
			return err
		}
	} else {
		targets, err := e.targetsFromArgs(resources, o.allNamespaces)
		if err != nil {
			return err
		}
		for _, t := range targets {
			if t.name != "" {
				if o.all || o.selector != "" {
					return errors.New("name cannot be provided when a selector is specified")
				}
				infos = append(infos, &info{mapping: t.mapping, namespace: t.namespace, name: t.name})
				continue
			}
			if !o.all && o.selector == "" && o.fieldSelector == "" {
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
	if o.resourceVersion != "" && len(infos) != 1 {
		return errors.New("--resource-version may only be used with a single resource")
	}
	var errs []error
	for _, in := range infos {
		if err := e.labelOne(o, in, set, remove, dry); err != nil {
			errs = append(errs, err)
		}
	}
	return reduceErrs(errs)
}

func (e *env) labelOne(o *metaOptions, in *info, set map[string]string, remove []string, dry string) error {
	obj, err := e.getObject(in.mapping, in.namespace, in.name)
	if err != nil {
		return err
	}
	if o.resourceVersion != "" {
		obj.SetResourceVersion("")
	}
	oldData, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	current := obj.GetLabels()
	if o.annotate {
		current = obj.GetAnnotations()
	}
	if !o.annotate && dry != "client" {
		for _, k := range remove {
			if _, ok := current[k]; !ok {
				fmt.Fprintf(e.out, "label %q not found.\n", k)
			}
		}
	}
	if !o.overwrite {
		if err := validateNoOverwrites(current, set, o.annotate); err != nil {
			return err
		}
	}
	updated := map[string]string{}
	for k, v := range current {
		updated[k] = v
	}
	for k, v := range set {
		updated[k] = v
	}
	for _, k := range remove {
		delete(updated, k)
	}
	if o.annotate {
		obj.SetAnnotations(updated)
	} else {
		obj.SetLabels(updated)
	}
	if o.resourceVersion != "" {
		obj.SetResourceVersion(o.resourceVersion)
	}
	newData, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	msg := "annotated"
	if !o.annotate {
		msg = "not labeled"
		if !bytes.Equal(oldData, newData) {
			msg = "labeled"
			if !o.overwrite && len(newData) < len(oldData) {
				msg = "unlabeled"
			}
		}
	}
	if dry != "client" {
		patch, err := jsonpatch.CreateMergePatch(oldData, newData)
		if err != nil {
			return err
		}
		params := map[string]string{}
		if dry == "server" {
			params["dryRun"] = "All"
		}
		params["fieldManager"] = "kubectl-" + map[bool]string{false: "label", true: "annotate"}[o.annotate]
		if _, err := e.patchObject(in.mapping, in.namespace, in.name, types.MergePatchType, patch, params); err != nil {
			return err
		}
	}
	gk := in.mapping.GroupVersionKind.GroupKind()
	if o.output == "name" {
		fmt.Fprintln(e.out, kindName(gk, in.name))
		return nil
	}
	fmt.Fprintf(e.out, "%s %s%s\n", kindName(gk, in.name), msg, dryRunSuffix(dry))
	return nil
}

// validateNoOverwrites reproduces kubectl's messages for keys that already
// have a value when --overwrite is not given.
func validateNoOverwrites(current, set map[string]string, annotate bool) error {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if annotate {
		var found []string
		for _, k := range keys {
			if cur, ok := current[k]; ok && cur != set[k] {
				found = append(found, fmt.Sprintf("'%s' already has a value (%s)", k, cur))
			}
		}
		if len(found) > 0 {
			return fmt.Errorf("--overwrite is false but found the following declared annotation(s): %s", strings.Join(found, "; "))
		}
		return nil
	}
	var errs []error
	for _, k := range keys {
		if cur, ok := current[k]; ok && cur != set[k] {
			errs = append(errs, fmt.Errorf("'%s' already has a value (%s), and --overwrite is false", k, cur))
		}
	}
	return utilerrors.NewAggregate(errs)
}
