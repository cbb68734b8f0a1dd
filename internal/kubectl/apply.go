package kubectl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/jsonmergepatch"
	"k8s.io/apimachinery/pkg/util/mergepatch"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes/scheme"
)

// fieldManagerClientSideApply is the field manager kubectl apply uses.
const fieldManagerClientSideApply = "kubectl-client-side-apply"

type applyOptions struct {
	filenames []string
	recursive bool
	dryRun    string
	output    string
	create    bool // `create -f` rather than `apply -f`
	saveCfg   bool
	validate  string
}

func init() {
	register(command{
		name:  "apply",
		short: "Apply a configuration to a resource by file name or stdin",
		flags: func(fs *pflag.FlagSet) any { return applyFlags(fs, false) },
		run:   func(e *env, opts any, args []string) error { return runApply(e, opts.(*applyOptions), args) },
	})
	register(command{
		name:  "create",
		short: "Create a resource from a file or from stdin",
		flags: func(fs *pflag.FlagSet) any { return applyFlags(fs, true) },
		run:   func(e *env, opts any, args []string) error { return runApply(e, opts.(*applyOptions), args) },
	})
}

func applyFlags(fs *pflag.FlagSet, create bool) *applyOptions {
	o := &applyOptions{create: create}
	fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "The files that contain the configurations.")
	fs.BoolVarP(&o.recursive, "recursive", "R", false, "Process the directory used in -f, --filename recursively.")
	fs.StringVar(&o.dryRun, "dry-run", "none", `Must be "none", "server", or "client".`)
	fs.Lookup("dry-run").NoOptDefVal = "unchanged"
	fs.StringVarP(&o.output, "output", "o", "", "Output format: name.")
	fs.StringVar(&o.validate, "validate", "strict", `Must be one of: strict (or true), warn, ignore (or false).`)
	fs.Lookup("validate").NoOptDefVal = "strict"
	if create {
		fs.BoolVar(&o.saveCfg, "save-config", false, "If true, the configuration of current object will be saved in its annotation.")
	}
	return o
}

func parseDryRun(v string) (string, error) {
	switch v {
	case "", "none", "false":
		return "", nil
	case "client", "unchanged", "true":
		return "client", nil
	case "server":
		return "server", nil
	}
	return "", fmt.Errorf(`Invalid dry-run value (%v). Must be "none", "server", or "client".`, v)
}

func dryRunSuffix(mode string) string {
	switch mode {
	case "client":
		return " (dry run)"
	case "server":
		return " (server dry run)"
	}
	return ""
}

func runApply(e *env, o *applyOptions, args []string) error {
	verb := "apply"
	if o.create {
		verb = "create"
	}
	dry, err := parseDryRun(o.dryRun)
	if err != nil {
		return err
	}
	switch o.validate {
	case "strict", "true":
		e.fieldValidation = "Strict"
	case "warn":
		e.fieldValidation = "Warn"
	case "ignore", "false":
		e.fieldValidation = "Ignore"
	default:
		return fmt.Errorf(`invalid - validate option %q; must be one of: strict (or true), warn, ignore (or false)`, o.validate)
	}
	if len(args) > 0 {
		return fmt.Errorf("Unexpected args: %v\nSee 'kubectl %s -h' for help and examples", args, verb)
	}
	if len(o.filenames) == 0 {
		if o.create {
			return errors.New("must specify one of -f and -k")
		}
		return errors.New("error: must specify one of -f and -k")
	}
	infos, err := e.readManifests(o.filenames, o.recursive)
	if err != nil {
		return err
	}
	if len(infos) == 0 {
		return fmt.Errorf("no objects passed to %s", verb)
	}
	var errs []error
	for _, in := range infos {
		var op string
		var err error
		if o.create {
			op, err = e.createOne(in, dry, o.saveCfg)
		} else {
			op, err = e.applyOne(in, dry)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o.output == "name" {
			fmt.Fprintln(e.out, kindName(in.mapping.GroupVersionKind.GroupKind(), in.name))
		} else {
			fmt.Fprintf(e.out, "%s %s%s\n", kindName(in.mapping.GroupVersionKind.GroupKind(), in.name), op, dryRunSuffix(dry))
		}
	}
	return reduceErrs(errs)
}

func (e *env) createOne(in *info, dry string, saveConfig bool) (string, error) {
	if saveConfig {
		if err := createApplyAnnotation(in.obj); err != nil {
			return "", err
		}
	}
	if dry == "client" {
		return "created", nil
	}
	if err := e.createObject(in, dry); err != nil {
		return "", addSourceToErr("creating", in.source, err)
	}
	return "created", nil
}

func (e *env) createObject(in *info, dry string) error {
	rc, err := e.client()
	if err != nil {
		return err
	}
	body, err := in.obj.MarshalJSON()
	if err != nil {
		return err
	}
	req := request(rc, "POST", in.mapping, in.namespace, "").
		SetHeader("Content-Type", "application/json").Body(body)
	if dry == "server" {
		req = req.Param("dryRun", "All")
	}
	req = req.Param("fieldManager", fieldManagerForCreate(in))
	if e.fieldValidation != "" {
		req = req.Param("fieldValidation", e.fieldValidation)
	}
	return req.Do(e.ctx).Error()
}

func fieldManagerForCreate(in *info) string {
	if _, ok := in.obj.GetAnnotations()[corev1.LastAppliedConfigAnnotation]; ok {
		return fieldManagerClientSideApply
	}
	return "kubectl-create"
}

// applyOne is kubectl's client-side apply of one object: create with the
// last-applied annotation when absent, else a three-way patch.
func (e *env) applyOne(in *info, dry string) (string, error) {
	live, err := e.getObject(in.mapping, in.namespace, in.name)
	if err != nil {
		if !isNotFound(err) {
			return "", addSourceToErr("retrieving current configuration of:\nResource: \""+in.mapping.Resource.String()+"\", GroupVersionKind: \""+in.mapping.GroupVersionKind.String()+"\"\nName: \""+in.name+"\", Namespace: \""+in.namespace+"\"\nfrom server for:", in.source, err)
		}
		if err := createApplyAnnotation(in.obj); err != nil {
			return "", err
		}
		if dry != "client" {
			if err := e.createObject(in, dry); err != nil {
				return "", addSourceToErr("creating", in.source, err)
			}
		}
		return "created", nil
	}
	modified, err := getModifiedConfiguration(in.obj, true)
	if err != nil {
		return "", err
	}
	if dry == "client" {
		// kubectl neither warns nor computes a patch for client dry-run.
		return "configured", nil
	}
	if _, ok := live.GetAnnotations()[corev1.LastAppliedConfigAnnotation]; !ok {
		fmt.Fprintf(e.errOut, "Warning: resource %[1]s is missing the %[2]s annotation which is required by %[3]s apply. %[3]s apply should only be used on resources created declaratively by either %[3]s create --save-config or %[3]s apply. The missing annotation will be patched automatically.\n",
			objectName(in.mapping, in.name), corev1.LastAppliedConfigAnnotation, "kubectl")
	}
	patch, pt, err := threeWayPatch(in.mapping, live, modified)
	if err != nil {
		return "", fmt.Errorf("error when computing patch for %s: %v", objectName(in.mapping, in.name), err)
	}
	if string(patch) == "{}" {
		return "unchanged", nil
	}
	params := map[string]string{"fieldManager": fieldManagerClientSideApply}
	if e.fieldValidation != "" {
		params["fieldValidation"] = e.fieldValidation
	}
	if dry == "server" {
		params["dryRun"] = "All"
	}
	if _, err := e.patchObject(in.mapping, in.namespace, in.name, pt, patch, params); err != nil {
		return "", addSourceToErr("applying patch:\n"+string(patch)+"\nto:\n"+objectName(in.mapping, in.name)+"\nfor:", in.source, err)
	}
	return "configured", nil
}

// threeWayPatch computes kubectl's patch: strategic merge for types the
// client-go scheme knows, JSON merge patch for everything else.
func threeWayPatch(m *meta.RESTMapping, live *unstructured.Unstructured, modified []byte) ([]byte, types.PatchType, error) {
	current, err := runtime.Encode(unstructured.UnstructuredJSONScheme, live)
	if err != nil {
		return nil, "", err
	}
	original := []byte(live.GetAnnotations()[corev1.LastAppliedConfigAnnotation])
	versioned, err := scheme.Scheme.New(m.GroupVersionKind)
	switch {
	case runtime.IsNotRegisteredError(err):
		preconditions := []mergepatch.PreconditionFunc{
			mergepatch.RequireKeyUnchanged("apiVersion"),
			mergepatch.RequireKeyUnchanged("kind"),
			mergepatch.RequireMetadataKeyUnchanged("name"),
		}
		patch, err := jsonmergepatch.CreateThreeWayJSONMergePatch(original, modified, current, preconditions...)
		if err != nil {
			if mergepatch.IsPreconditionFailed(err) {
				return nil, "", fmt.Errorf("At least one of apiVersion, kind and name was changed")
			}
			return nil, "", err
		}
		return patch, types.MergePatchType, nil
	case err != nil:
		return nil, "", err
	}
	lookup, err := strategicpatch.NewPatchMetaFromStruct(versioned)
	if err != nil {
		return nil, "", err
	}
	patch, err := strategicpatch.CreateThreeWayMergePatch(original, modified, current, lookup, true)
	if err != nil {
		return nil, "", err
	}
	return patch, types.StrategicMergePatchType, nil
}

// getModifiedConfiguration is kubectl's util.GetModifiedConfiguration: the
// object encoded without the last-applied annotation, then, if annotate,
// re-encoded with that encoding stored in the annotation. The object is
// left with its original annotation.
func getModifiedConfiguration(obj *unstructured.Unstructured, annotate bool) ([]byte, error) {
	annots := obj.GetAnnotations()
	if annots == nil {
		annots = map[string]string{}
	}
	original := annots[corev1.LastAppliedConfigAnnotation]
	delete(annots, corev1.LastAppliedConfigAnnotation)
	// An empty, non-nil map is kept: kubectl's last-applied annotation
	// records "annotations":{} for manifests without annotations.
	obj.SetAnnotations(annots)

	modified, err := encodeJSON(obj)
	if err != nil {
		return nil, err
	}
	if annotate {
		annots[corev1.LastAppliedConfigAnnotation] = string(modified)
		obj.SetAnnotations(annots)
		if modified, err = encodeJSON(obj); err != nil {
			return nil, err
		}
	}
	// Like kubectl, restore the original value (empty if there was none).
	annots[corev1.LastAppliedConfigAnnotation] = original
	obj.SetAnnotations(annots)
	return modified, nil
}

// createApplyAnnotation stores the last-applied configuration on obj.
func createApplyAnnotation(obj *unstructured.Unstructured) error {
	modified, err := getModifiedConfiguration(obj, false)
	if err != nil {
		return err
	}
	annots := obj.GetAnnotations()
	if annots == nil {
		annots = map[string]string{}
	}
	annots[corev1.LastAppliedConfigAnnotation] = string(modified)
	obj.SetAnnotations(annots)
	return nil
}

// encodeJSON is UnstructuredJSONScheme's encoding: compact, sorted keys,
// HTML-escaped, with a trailing newline.
func encodeJSON(obj *unstructured.Unstructured) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(obj.Object); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
