package kubectl

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/meta"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
)

type getOptions struct {
	output         string
	selector       string
	fieldSelector  string
	allNamespaces  bool
	watch          bool
	watchOnly      bool
	showLabels     bool
	noHeaders      bool
	ignoreNotFound bool
	labelColumns   []string
	watchEvents    bool
	chunkSize      int64
	showManaged    bool
	filenames      []string
	recursive      bool
}

func init() {
	register(command{
		name:  "get",
		short: "Display one or many resources",
		flags: func(fs *pflag.FlagSet) any {
			o := &getOptions{}
			fs.StringVarP(&o.output, "output", "o", "", "Output format: json, yaml, name, wide.")
			fs.StringVarP(&o.selector, "selector", "l", "", "Selector (label query) to filter on")
			fs.StringVar(&o.fieldSelector, "field-selector", "", "Selector (field query) to filter on")
			fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "List the requested object(s) across all namespaces")
			fs.BoolVarP(&o.watch, "watch", "w", false, "After listing/getting the requested object, watch for changes.")
			fs.BoolVar(&o.watchOnly, "watch-only", false, "Watch for changes to the requested object(s), without listing/getting first.")
			fs.BoolVar(&o.showLabels, "show-labels", false, "When printing, show all labels as the last column")
			fs.BoolVar(&o.noHeaders, "no-headers", false, "When using the default or custom-column output format, don't print headers")
			fs.BoolVar(&o.ignoreNotFound, "ignore-not-found", false, "If the requested object does not exist the command will return exit code 0.")
			fs.StringSliceVarP(&o.labelColumns, "label-columns", "L", nil, "Accepts a comma separated list of labels that are going to be presented as columns.")
			fs.BoolVar(&o.watchEvents, "output-watch-events", false, "Output watch event objects when --watch or --watch-only is used.")
			fs.Int64Var(&o.chunkSize, "chunk-size", 500, "Return large lists in chunks rather than all at once.")
			fs.BoolVar(&o.showManaged, "show-managed-fields", false, "If true, keep the managedFields when printing objects in JSON or YAML format.")
			fs.StringSliceVarP(&o.filenames, "filename", "f", nil, "Filename, directory, or URL to files identifying the resource to get from a server.")
			fs.BoolVarP(&o.recursive, "recursive", "R", false, "Process the directory used in -f, --filename recursively.")
			return o
		},
		run: func(e *env, opts any, args []string) error { return runGet(e, opts.(*getOptions), args) },
	})
}

func runGet(e *env, o *getOptions, args []string) error {
	if o.output != "" && o.output != "wide" {
		if _, err := newGenericPrinter(o.output, o.showManaged); err != nil {
			return err
		}
	}
	if len(o.filenames) > 0 {
		if len(args) > 0 {
			return errors.New("resource(s) were provided, but no name was specified")
		}
		infos, err := e.readManifests(o.filenames, o.recursive)
		if err != nil {
			return err
		}
		var targets []target
		for _, in := range infos {
			targets = append(targets, target{mapping: in.mapping, namespace: in.namespace, name: in.name})
		}
		if o.watch || o.watchOnly {
			return runWatch(e, o, targets)
		}
		if o.output == "" || o.output == "wide" {
			return getTables(e, o, targets)
		}
		return getGeneric(e, o, targets)
	}
	if len(args) == 0 {
		fmt.Fprintf(e.errOut, "You must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list of supported resources.\n\n")
		return errors.New("Required resource not specified.\nUse \"kubectl explain <resource>\" for a detailed description of that resource (e.g. kubectl explain pods).\nSee 'kubectl get -h' for help and examples")
	}
	targets, err := e.targetsFromArgs(args, o.allNamespaces)
	if err != nil {
		return err
	}
	if o.watch || o.watchOnly {
		return runWatch(e, o, targets)
	}
	if o.output == "" || o.output == "wide" {
		return getTables(e, o, targets)
	}
	return getGeneric(e, o, targets)
}

type tableResult struct {
	t      target
	tables []*table
}

// fetchTables performs one request (more with chunking) per target.
func fetchTables(e *env, o *getOptions, t target) ([]*table, error) {
	rc, err := e.client()
	if err != nil {
		return nil, err
	}
	var out []*table
	cont := ""
	for {
		req := request(rc, "GET", t.mapping, t.namespace, t.name).SetHeader("Accept", tableAccept)
		if t.name == "" {
			if o.selector != "" {
				req = req.Param("labelSelector", o.selector)
			}
			if o.fieldSelector != "" {
				req = req.Param("fieldSelector", o.fieldSelector)
			}
			if o.chunkSize > 0 {
				req = req.Param("limit", fmt.Sprint(o.chunkSize))
			}
			if cont != "" {
				req = req.Param("continue", cont)
			}
		}
		body, err := doRaw(req.Do(e.ctx))
		if err != nil {
			return nil, err
		}
		tb, err := decodeTable(body)
		if err != nil {
			return nil, err
		}
		out = append(out, tb)
		if t.name != "" || tb.cont == "" {
			return out, nil
		}
		cont = tb.cont
	}
}

// getTables prints human-readable output the way kubectl's GetOptions.Run
// does: one printer per resource type, blank line between types.
func getTables(e *env, o *getOptions, targets []target) error {
	var results []tableResult
	var errs []error
	for _, t := range targets {
		tables, err := fetchTables(e, o, t)
		if err != nil {
			if o.ignoreNotFound && isNotFound(err) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		results = append(results, tableResult{t: t, tables: tables})
	}
	printWithKind := false
	for _, r := range results {
		if r.t.mapping.GroupVersionKind != results[0].t.mapping.GroupVersionKind {
			printWithKind = true
		}
	}

	tracking := &trackingWriter{w: e.out}
	sep := &separatorWriter{w: tracking}
	w := newTabWriter(sep)
	allNamespaced := !o.allNamespaces
	var printer *tablePrinter
	var last *meta.RESTMapping
	for _, r := range results {
		m := r.t.mapping
		allNamespaced = allNamespaced && namespaced(m)
		if printer == nil || last == nil || m.Resource != last.Resource {
			w.Flush()
			w.SetRememberedWidths(nil)
			if last != nil && !o.noHeaders && tracking.n > 0 {
				sep.ready = true
			}
			printer = &tablePrinter{opts: printOptions{
				noHeaders:     o.noHeaders,
				wide:          o.output == "wide",
				withNamespace: o.allNamespaces && namespaced(m),
				withKind:      printWithKind,
				kind:          m.GroupVersionKind.GroupKind(),
				showLabels:    o.showLabels,
				columnLabels:  o.labelColumns,
			}}
			last = m
		}
		for _, tb := range r.tables {
			printer.print(tb, w, "")
		}
	}
	w.Flush()
	if tracking.n == 0 && !o.ignoreNotFound && len(errs) == 0 {
		if allNamespaced {
			ns, _ := e.ns()
			fmt.Fprintf(e.errOut, "No resources found in %s namespace.\n", ns)
		} else {
			fmt.Fprintln(e.errOut, "No resources found")
		}
	}
	return utilerrors.NewAggregate(errs)
}

type trackingWriter struct {
	w io.Writer
	n int
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	t.n += len(p)
	return t.w.Write(p)
}

type separatorWriter struct {
	w     io.Writer
	ready bool
}

func (s *separatorWriter) Write(p []byte) (int, error) {
	if len(p) != 0 && s.ready {
		fmt.Fprintln(s.w)
		s.ready = false
	}
	return s.w.Write(p)
}

// getGeneric prints -o yaml|json|name: one object alone when a single item
// was implied (one TYPE NAME or TYPE/NAME), otherwise a List.
func getGeneric(e *env, o *getOptions, targets []target) error {
	singleItemImplied := len(targets) == 1 && targets[0].name != ""
	var items []map[string]any
	var errs []error
	for _, t := range targets {
		if t.name != "" {
			u, err := e.getObject(t.mapping, t.namespace, t.name)
			if err != nil {
				if singleItemImplied {
					if o.ignoreNotFound && isNotFound(err) {
						return nil
					}
					return err
				}
				if !(o.ignoreNotFound && isNotFound(err)) {
					errs = append(errs, err)
				}
				continue
			}
			items = append(items, u.Object)
			continue
		}
		list, _, err := e.listObjects(t, o.selector, o.fieldSelector)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range list {
			items = append(items, list[i].Object)
		}
	}
	if len(items) == 0 && o.ignoreNotFound {
		return utilerrors.NewAggregate(errs)
	}
	p, err := newGenericPrinter(o.output, o.showManaged)
	if err != nil {
		return err
	}
	var obj map[string]any
	if singleItemImplied && len(items) == 1 {
		obj = items[0]
	} else {
		obj = listWrapper(items)
	}
	if err := p.print(obj, e.out); err != nil {
		errs = append(errs, err)
	}
	return utilerrors.NewAggregate(errs)
}
