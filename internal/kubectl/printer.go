package kubectl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/util/jsonpath"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/liggitt/tabwriter"
)

// tableAccept asks the server for a meta.k8s.io Table, as kubectl does.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

// newTabWriter matches kubectl's printers.GetNewTabWriter.
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, 3, ' ', tabwriter.RememberWidths)
}

// printOptions are the subset of kubectl's printers.PrintOptions we use.
type printOptions struct {
	noHeaders     bool
	wide          bool
	withNamespace bool
	withKind      bool
	kind          schema.GroupKind
	showLabels    bool
	columnLabels  []string
}

// tablePrinter is kubectl's HumanReadablePrinter restricted to server-side
// tables: headers are printed once per distinct column set.
type tablePrinter struct {
	opts           printOptions
	lastColumns    []metav1.TableColumnDefinition
	printedHeaders bool
}

// tableRow is a decoded Table row with the row object's metadata.
type tableRow struct {
	cells []any
	meta  *metav1.ObjectMeta // nil if the row carried no object
}

type table struct {
	columns []metav1.TableColumnDefinition
	rows    []tableRow
	rv      string
	cont    string
}

// decodeTable parses a Table response. If the server answered with a plain
// object or list instead (no Table support), it builds kubectl's fallback
// NAME/AGE table from the metadata.
func decodeTable(body []byte) (*table, error) {
	var probe struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, err
	}
	if probe.Kind != "Table" {
		return fallbackTable(body)
	}
	var raw metav1.Table
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &raw); err != nil {
		return nil, err
	}
	t := &table{columns: raw.ColumnDefinitions, rv: raw.ResourceVersion, cont: raw.Continue}
	for _, r := range raw.Rows {
		row := tableRow{cells: r.Cells}
		if len(r.Object.Raw) > 0 {
			var obj struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			if err := json.Unmarshal(r.Object.Raw, &obj); err == nil {
				row.meta = &obj.Metadata
			}
		}
		t.rows = append(t.rows, row)
	}
	return t, nil
}

var objectMetaColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name"},
	{Name: "Age", Type: "string"},
}

func fallbackTable(body []byte) (*table, error) {
	obj, err := decodeAny(body)
	if err != nil {
		return nil, err
	}
	t := &table{columns: objectMetaColumns}
	add := func(u *unstructured.Unstructured) {
		m := &metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), Labels: u.GetLabels()}
		t.rows = append(t.rows, tableRow{cells: []any{u.GetName(), translateTimestampSince(u.GetCreationTimestamp())}, meta: m})
	}
	switch o := obj.(type) {
	case *unstructured.UnstructuredList:
		t.rv = o.GetResourceVersion()
		t.cont = o.GetContinue()
		for i := range o.Items {
			add(&o.Items[i])
		}
	case *unstructured.Unstructured:
		add(o)
	}
	return t, nil
}

func translateTimestampSince(ts metav1.Time) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(ts.Time))
}

// print writes one table; eventType is set for --output-watch-events.
func (p *tablePrinter) print(t *table, w io.Writer, eventType string) {
	opts := p.opts
	if p.printedHeaders && (len(t.columns) == 0 || reflect.DeepEqual(t.columns, p.lastColumns)) {
		opts.noHeaders = true
	}
	if len(t.columns) == 0 {
		t.columns = p.lastColumns
	} else if !reflect.DeepEqual(t.columns, p.lastColumns) {
		p.lastColumns = t.columns
		p.printedHeaders = false
	}
	if len(t.rows) > 0 {
		p.printedHeaders = true
	}
	cols, rows := decorate(t, opts)
	if eventType != "" {
		cols = append([]metav1.TableColumnDefinition{{Name: "Event", Type: "string"}}, cols...)
		for i := range rows {
			rows[i] = append([]any{formatEventType(eventType)}, rows[i]...)
		}
	}
	printTable(cols, rows, w, opts)
}

func formatEventType(t string) string {
	switch t {
	case "ADDED":
		return "ADDED   "
	case "MODIFIED":
		return "MODIFIED"
	case "DELETED":
		return "DELETED "
	case "ERROR":
		return "ERROR   "
	}
	return t
}

// decorate adds the NAMESPACE and LABELS columns and the kind prefix of
// the name column (kubectl's decorateTable).
func decorate(t *table, opts printOptions) ([]metav1.TableColumnDefinition, [][]any) {
	nameColumn := -1
	if opts.withKind && !opts.kind.Empty() {
		for i, c := range t.columns {
			if c.Format == "name" && c.Type == "string" {
				nameColumn = i
				break
			}
		}
	}
	var cols []metav1.TableColumnDefinition
	if opts.withNamespace {
		cols = append(cols, metav1.TableColumnDefinition{Name: "Namespace", Type: "string"})
	}
	cols = append(cols, t.columns...)
	for _, l := range opts.columnLabels {
		p := strings.Split(l, "/")
		cols = append(cols, metav1.TableColumnDefinition{Name: strings.ToUpper(p[len(p)-1]), Type: "string"})
	}
	if opts.showLabels {
		cols = append(cols, metav1.TableColumnDefinition{Name: "Labels", Type: "string"})
	}
	rows := make([][]any, 0, len(t.rows))
	for _, r := range t.rows {
		cells := append([]any(nil), r.cells...)
		if nameColumn >= 0 && nameColumn < len(cells) {
			cells[nameColumn] = fmt.Sprintf("%s/%s", strings.ToLower(opts.kind.String()), cells[nameColumn])
		}
		if r.meta == nil {
			if opts.withNamespace {
				cells = append([]any{nil}, cells...)
			}
			for len(cells) < len(cols) {
				cells = append(cells, nil)
			}
			rows = append(rows, cells)
			continue
		}
		if opts.withNamespace {
			cells = append([]any{r.meta.Namespace}, cells...)
		}
		for _, key := range opts.columnLabels {
			cells = append(cells, r.meta.Labels[key])
		}
		if opts.showLabels {
			cells = append(cells, labels.FormatLabels(r.meta.Labels))
		}
		rows = append(rows, cells)
	}
	return cols, rows
}

// printTable is kubectl's printTable: priority>0 columns only when wide,
// no output at all (not even headers) for an empty table.
func printTable(cols []metav1.TableColumnDefinition, rows [][]any, w io.Writer, opts printOptions) {
	if !opts.noHeaders {
		if len(rows) == 0 {
			return
		}
		first := true
		for _, c := range cols {
			if !opts.wide && c.Priority != 0 {
				continue
			}
			if !first {
				io.WriteString(w, "\t")
			}
			first = false
			io.WriteString(w, strings.ToUpper(c.Name))
		}
		io.WriteString(w, "\n")
	}
	var buf bytes.Buffer
	for _, row := range rows {
		buf.Reset()
		first := true
		for i, cell := range row {
			if i >= len(cols) {
				break
			}
			if !opts.wide && cols[i].Priority != 0 {
				continue
			}
			if !first {
				buf.WriteByte('\t')
			}
			first = false
			if cell == nil {
				continue
			}
			s, ok := cell.(string)
			if !ok {
				s = fmt.Sprint(cell)
			}
			if i := strings.IndexAny(s, "\f\n\r"); i >= 0 {
				writeEscaped(&buf, s[:i])
				buf.WriteString("...")
			} else {
				writeEscaped(&buf, s)
			}
		}
		buf.WriteByte('\n')
		w.Write(buf.Bytes())
	}
}

// writeEscaped replaces terminal control characters the way kubectl's
// printers.WriteEscaped does, so server data cannot drive the terminal.
func writeEscaped(buf *bytes.Buffer, s string) {
	if !strings.ContainsAny(s, "\x1b") {
		buf.WriteString(s)
		return
	}
	buf.WriteString(strings.ReplaceAll(s, "\x1b", "^["))
}

// decodeAny decodes an object or list into unstructured form.
func decodeAny(body []byte) (any, error) {
	obj, _, err := unstructured.UnstructuredJSONScheme.Decode(body, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// stripManagedFields mirrors kubectl's default --show-managed-fields=false.
func stripManagedFields(obj map[string]any) {
	if md, ok := obj["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
	}
	if items, ok := obj["items"].([]any); ok {
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				stripManagedFields(m)
			}
		}
	}
}

// genericPrinter prints objects as YAML, JSON or names.
type genericPrinter struct {
	format      string // "yaml", "json", "name", "jsonpath"
	keepManaged bool   // --show-managed-fields
	count       int
	jsonPath    *jsonpath.JSONPath
	template    string
}

// newGenericPrinter parses -o values such as "yaml" or "jsonpath={.x}".
func newGenericPrinter(output string, keepManaged bool) (*genericPrinter, error) {
	p := &genericPrinter{format: output, keepManaged: keepManaged}
	format, tmpl, hasTmpl := strings.Cut(output, "=")
	switch format {
	case "yaml", "json", "name":
		if hasTmpl {
			return nil, fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,name,template,templatefile,wide,yaml", output)
		}
	case "jsonpath":
		if !hasTmpl || tmpl == "" {
			return nil, errors.New("template format specified but no template given")
		}
		p.format, p.template = "jsonpath", tmpl
		p.jsonPath = jsonpath.New("out").AllowMissingKeys(true)
		if err := p.jsonPath.Parse(tmpl); err != nil {
			return nil, fmt.Errorf("error parsing jsonpath %s, %v", tmpl, err)
		}
	case "custom-columns", "custom-columns-file", "go-template", "go-template-file", "jsonpath-as-json", "jsonpath-file", "template", "templatefile":
		return nil, fmt.Errorf("output format %q is not supported by skiff kubectl; use json, jsonpath, name, wide or yaml", format)
	default:
		return nil, fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,name,template,templatefile,wide,yaml", output)
	}
	return p, nil
}

func (p *genericPrinter) print(obj map[string]any, w io.Writer) error {
	p.count++
	switch p.format {
	case "yaml":
		if p.count > 1 {
			io.WriteString(w, "---\n")
		}
		if !p.keepManaged {
			stripManagedFields(obj)
		}
		out, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	case "json":
		if !p.keepManaged {
			stripManagedFields(obj)
		}
		out, err := json.MarshalIndent(obj, "", "    ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(out, '\n'))
		return err
	case "name":
		printNames(obj, w)
		return nil
	case "jsonpath":
		if !p.keepManaged {
			stripManagedFields(obj)
		}
		if err := p.jsonPath.Execute(w, obj); err != nil {
			return fmt.Errorf("error executing jsonpath %q: %v", p.template, err)
		}
		return nil
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q", p.format)
}

func printNames(obj map[string]any, w io.Writer) {
	if items, ok := obj["items"].([]any); ok {
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				printNames(m, w)
			}
		}
		return
	}
	u := unstructured.Unstructured{Object: obj}
	gvk := u.GroupVersionKind()
	fmt.Fprintln(w, kindName(gvk.GroupKind(), u.GetName()))
}

// listWrapper is what kubectl prints for several objects with -o yaml/json.
func listWrapper(items []map[string]any) map[string]any {
	list := make([]any, 0, len(items))
	for _, it := range items {
		list = append(list, it)
	}
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "List",
		"items":      list,
		"metadata":   map[string]any{"resourceVersion": ""},
	}
}
