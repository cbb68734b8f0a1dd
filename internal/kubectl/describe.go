package kubectl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/kubernetes"
)

type describeOptions struct {
	selector      string
	allNamespaces bool
	showEvents    bool
	chunkSize     int64
	filenames     []string
	recursive     bool
}

func init() {
	register(command{
		name:  "describe",
		short: "Show details of a specific resource or group of resources",
		flags: func(fs *pflag.FlagSet) any {
			o := &describeOptions{}
			fs.StringVarP(&o.selector, "selector", "l", "", "Selector (label query) to filter on")
			fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "If present, list the requested object(s) across all namespaces.")
			fs.BoolVar(&o.showEvents, "show-events", true, "If true, display events related to the described object.")
			fs.Int64Var(&o.chunkSize, "chunk-size", 500, "Return large lists in chunks rather than all at once.")
			fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "Filename, directory, or URL to files containing the resource to describe")
			fs.BoolVarP(&o.recursive, "recursive", "R", false, "Process the directory used in -f, --filename recursively.")
			return o
		},
		run: func(e *env, opts any, args []string) error { return runDescribe(e, opts.(*describeOptions), args) },
	})
}

// describeItem is one object the command line resolved to.
type describeItem struct {
	mapping *meta.RESTMapping
	obj     *unstructured.Unstructured
}

// runDescribe follows kubectl's DescribeOptions.Run: resolve the objects
// (continuing past errors), describe each with "\n\n" between them, and
// when "TYPE NAME" finds nothing, describe every object whose name starts
// with NAME instead.
func runDescribe(e *env, o *describeOptions, args []string) error {
	if len(args) == 0 && len(o.filenames) == 0 {
		return errors.New("You must specify the type of resource to describe. Use \"kubectl api-resources\" for a complete list of supported resources.")
	}
	var items []describeItem
	var errs []error
	if len(o.filenames) > 0 {
		infos, err := e.readManifests(o.filenames, o.recursive)
		if err != nil {
			return err
		}
		for _, in := range infos {
			u, err := e.getObject(in.mapping, in.namespace, in.name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			items = append(items, describeItem{in.mapping, u})
		}
	} else {
		targets, err := e.targetsFromArgs(args, o.allNamespaces)
		if err != nil {
			return err
		}
		notFound := false
		for _, t := range targets {
			if t.name != "" {
				if o.selector != "" {
					return errors.New("name cannot be provided when a selector is specified")
				}
				u, err := e.getObject(t.mapping, t.namespace, t.name)
				if err != nil {
					notFound = notFound || isNotFound(err)
					errs = append(errs, err)
					continue
				}
				items = append(items, describeItem{t.mapping, u})
				continue
			}
			list, _, err := e.listObjects(t, o.selector, "")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for i := range list {
				items = append(items, describeItem{t.mapping, &list[i]})
			}
		}
		if notFound && len(args) == 2 && !strings.Contains(args[0], "/") {
			return describeMatching(e, o, errs[0], args[0], args[1])
		}
	}

	seen := map[string]bool{}
	first := true
	for _, it := range items {
		s, err := e.describeObject(it, o)
		if err != nil {
			if !seen[err.Error()] {
				seen[err.Error()] = true
				errs = append(errs, err)
			}
			continue
		}
		if first {
			first = false
			fmt.Fprint(e.out, s)
		} else {
			fmt.Fprintf(e.out, "\n\n%s", s)
		}
	}
	if len(items) == 0 && len(errs) == 0 {
		if o.allNamespaces {
			fmt.Fprintln(e.errOut, "No resources found")
		} else {
			ns, _ := e.ns()
			fmt.Fprintf(e.errOut, "No resources found in %s namespace.\n", ns)
		}
	}
	return utilerrors.NewAggregate(errs)
}

// describeMatching is kubectl's DescribeMatchingResources: every object of
// the type (in the namespace) whose name has the prefix, each followed by
// a blank line; the original NotFound when none matches.
func describeMatching(e *env, o *describeOptions, original error, resource, prefix string) error {
	m, err := e.mappingFor(resource)
	if err != nil {
		return err
	}
	ns, err := e.ns()
	if err != nil {
		return err
	}
	list, _, err := e.listObjects(target{mapping: m, namespace: scopedNS(m, ns)}, "", "")
	if err != nil {
		return err
	}
	found := false
	for i := range list {
		if !strings.HasPrefix(list[i].GetName(), prefix) {
			continue
		}
		found = true
		s, err := e.describeObject(describeItem{m, &list[i]}, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.out, "%s\n", s)
	}
	if !found {
		return original
	}
	return nil
}

// describer renders one object; d gives it the API for related objects.
type describer func(d *describeCtx, u *unstructured.Unstructured) (string, error)

var describers = map[string]describer{
	"Pod":             describePodObject,
	"Service":         describeServiceObject,
	"Endpoints":       describeEndpointsObject,
	"Node":            describeNodeObject,
	"Namespace":       describeNamespaceObject,
	"ConfigMap":       describeConfigMapObject,
	"apps/Deployment": describeDeploymentObject,
	"apps/ReplicaSet": describeReplicaSetObject,
}

// describeCtx carries what describers need besides the object.
type describeCtx struct {
	e          *env
	cs         kubernetes.Interface
	showEvents bool
	chunkSize  int64
}

func (e *env) clientset() (kubernetes.Interface, error) {
	if err := e.loadConfig(); err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(e.restConfig)
}

func (e *env) describeObject(it describeItem, o *describeOptions) (string, error) {
	gk := it.mapping.GroupVersionKind.GroupKind()
	key := gk.Kind
	if gk.Group != "" {
		key = gk.Group + "/" + gk.Kind
	}
	cs, err := e.clientset()
	if err != nil {
		return "", err
	}
	d := &describeCtx{e: e, cs: cs, showEvents: o.showEvents, chunkSize: o.chunkSize}
	if fn, ok := describers[key]; ok {
		return fn(d, it.obj)
	}
	return describeGeneric(d, it.obj)
}

// fromUnstructured converts to the typed object a describer works on.
func fromUnstructured(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), into)
}

// prefixWriter is kubectl's describe.PrefixWriter: two spaces per level,
// terminal escapes neutralised.
type prefixWriter struct {
	out io.Writer
}

const (
	level0 = iota
	level1
	level2
	level3
)

func (pw *prefixWriter) Write(level int, format string, a ...any) {
	s := fmt.Sprintf(strings.Repeat("  ", level)+format, a...)
	var buf bytes.Buffer
	writeEscaped(&buf, s)
	pw.out.Write(buf.Bytes())
}

func (pw *prefixWriter) WriteLine(a ...any) {
	var buf bytes.Buffer
	writeEscaped(&buf, fmt.Sprintln(a...))
	pw.out.Write(buf.Bytes())
}

// tabbedString runs f over kubectl describe's tabwriter settings.
func tabbedString(f func(w *prefixWriter) error) (string, error) {
	buf := &bytes.Buffer{}
	tw := new(tabwriter.Writer)
	tw.Init(buf, 0, 8, 2, ' ', 0)
	if err := f(&prefixWriter{out: tw}); err != nil {
		return "", err
	}
	tw.Flush()
	return buf.String(), nil
}

func printLabelsMultiline(w *prefixWriter, title string, labels map[string]string) {
	printLabelsMultilineWithIndent(w, "", title, "\t", labels)
}

func printLabelsMultilineWithIndent(w *prefixWriter, initialIndent, title, innerIndent string, labels map[string]string) {
	w.Write(level0, "%s%s:%s", initialIndent, title, innerIndent)
	if len(labels) == 0 {
		w.WriteLine("<none>")
		return
	}
	keys := sortedKeys(labels)
	for i, k := range keys {
		if i != 0 {
			w.Write(level0, "%s", initialIndent)
			w.Write(level0, "%s", innerIndent)
		}
		w.Write(level0, "%s=%s\n", k, labels[k])
	}
}

const maxAnnotationLen = 140

func printAnnotationsMultiline(w *prefixWriter, title string, annotations map[string]string) {
	w.Write(level0, "%s:\t", title)
	var keys []string
	for k := range annotations {
		if k == corev1.LastAppliedConfigAnnotation {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		w.WriteLine("<none>")
		return
	}
	sort.Strings(keys)
	indent := "\t"
	for i, k := range keys {
		if i != 0 {
			w.Write(level0, indent)
		}
		value := strings.TrimSuffix(annotations[k], "\n")
		if len(value)+len(k)+2 > maxAnnotationLen || strings.Contains(value, "\n") {
			w.Write(level0, "%s:\n", k)
			for _, s := range strings.Split(value, "\n") {
				w.Write(level0, "%s  %s\n", indent, shorten(s, maxAnnotationLen-2))
			}
		} else {
			w.Write(level0, "%s: %s\n", k, value)
		}
	}
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func printTaintsMultiline(w *prefixWriter, title string, taints []corev1.Taint) {
	w.Write(level0, "%s:\t", title)
	if len(taints) == 0 {
		w.WriteLine("<none>")
		return
	}
	taints = append([]corev1.Taint(nil), taints...)
	sort.Slice(taints, func(i, j int) bool {
		return string(taints[i].Effect)+","+taints[i].Key < string(taints[j].Effect)+","+taints[j].Key
	})
	for i, t := range taints {
		if i != 0 {
			w.Write(level0, "\t")
		}
		w.Write(level0, "%s\n", t.ToString())
	}
}

func printTolerationsMultiline(w *prefixWriter, initialIndent, title string, tolerations []corev1.Toleration) {
	w.Write(level0, "%s%s:\t", initialIndent, title)
	if len(tolerations) == 0 {
		w.WriteLine("<none>")
		return
	}
	tolerations = append([]corev1.Toleration(nil), tolerations...)
	sort.Slice(tolerations, func(i, j int) bool { return tolerations[i].Key < tolerations[j].Key })
	for i, t := range tolerations {
		if i != 0 {
			w.Write(level0, "%s", initialIndent)
			w.Write(level0, "\t")
		}
		w.Write(level0, "%s", t.Key)
		if t.Value != "" {
			w.Write(level0, "=%s", t.Value)
		}
		if t.Effect != "" {
			w.Write(level0, ":%s", t.Effect)
		}
		if t.Operator == corev1.TolerationOpExists && t.Value == "" {
			if t.Key != "" || t.Effect != "" {
				w.Write(level0, " op=Exists")
			} else {
				w.Write(level0, "op=Exists")
			}
		}
		if t.TolerationSeconds != nil {
			w.Write(level0, " for %ds", *t.TolerationSeconds)
		}
		w.Write(level0, "\n")
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func stringOrNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func printBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func formatTime(t metav1.Time) string { return t.Time.Format(time.RFC1123Z) }

func printController(obj metav1.Object) string {
	if ref := metav1.GetControllerOf(obj); ref != nil {
		return fmt.Sprintf("%s/%s", ref.Kind, ref.Name)
	}
	return ""
}

// eventRef is what searchEvents selects on; kind or uid may be empty.
type eventRef struct {
	kind, namespace, name string
	uid                   types.UID
}

// searchEvents lists the events about an object with the field selector
// kubectl uses (involvedObject name, namespace, and kind/uid when known).
func (d *describeCtx) searchEvents(ref eventRef) (*corev1.EventList, error) {
	ev := d.cs.CoreV1().Events(ref.namespace)
	var kind, uid *string
	if ref.kind != "" {
		kind = &ref.kind
	}
	if ref.uid != "" {
		u := string(ref.uid)
		uid = &u
	}
	sel := ev.GetFieldSelector(&ref.name, &ref.namespace, kind, uid).String()
	out := &corev1.EventList{}
	opts := metav1.ListOptions{FieldSelector: sel, Limit: d.chunkSize}
	for {
		list, err := ev.List(d.e.ctx, opts)
		if err != nil {
			return out, err
		}
		out.Items = append(out.Items, list.Items...)
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// events returns the object's events, or nil with --show-events=false.
func (d *describeCtx) events(ref eventRef) *corev1.EventList {
	if !d.showEvents {
		return nil
	}
	el, _ := d.searchEvents(ref)
	return el
}

// sortableEvents orders events as kubectl's util/event does.
type sortableEvents []corev1.Event

func (l sortableEvents) Len() int           { return len(l) }
func (l sortableEvents) Swap(i, j int)      { l[i], l[j] = l[j], l[i] }
func (l sortableEvents) Less(i, j int) bool { return eventTime(l[i]).Before(eventTime(l[j])) }

func eventTime(e corev1.Event) time.Time {
	if e.Series != nil {
		return e.Series.LastObservedTime.Time
	}
	if !e.LastTimestamp.Time.IsZero() {
		return e.LastTimestamp.Time
	}
	return e.EventTime.Time
}

func translateMicroTimestampSince(ts metav1.MicroTime) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(ts.Time))
}

// describeEvents prints the Events table, "Events: <none>" when empty.
func describeEvents(el *corev1.EventList, w *prefixWriter) {
	if el == nil {
		return
	}
	if len(el.Items) == 0 {
		w.Write(level0, "Events:\t<none>\n")
		return
	}
	// Upstream calls Flush here, which is a no-op on text/tabwriter (its
	// Flush returns an error, so it is not kubectl's flusher): the events
	// table shares its column widths with the lines above.
	sort.Sort(sortableEvents(el.Items))
	w.Write(level0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
	w.Write(level1, "----\t------\t----\t----\t-------\n")
	for _, e := range el.Items {
		first := translateMicroTimestampSince(e.EventTime)
		if e.EventTime.IsZero() {
			first = translateTimestampSince(e.FirstTimestamp)
		}
		interval := first
		if e.Series != nil {
			interval = fmt.Sprintf("%s (x%d over %s)", translateMicroTimestampSince(e.Series.LastObservedTime), e.Series.Count, first)
		} else if e.Count > 1 {
			interval = fmt.Sprintf("%s (x%d over %s)", translateTimestampSince(e.LastTimestamp), e.Count, first)
		}
		source := e.Source.Component
		if source == "" {
			source = e.ReportingController
		}
		msg := strings.TrimSpace(e.Message)
		w.Write(level1, "%v\t%v\t%s\t%v\t%v\n", e.Type, e.Reason, interval, source, msg)
	}
}
