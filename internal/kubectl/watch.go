package kubectl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// runWatch implements get -w / --watch-only: print the current state, then
// one entry per event from the list's resourceVersion on, until the server
// ends the watch or ctx is cancelled.
func runWatch(e *env, o *getOptions, targets []target) error {
	if len(targets) == 0 {
		return errors.New("no resources found")
	}
	for _, t := range targets[1:] {
		if t.mapping.GroupVersionKind != targets[0].mapping.GroupVersionKind || t.name != targets[0].name {
			return errors.New("watch is only supported on individual resources and resource collections - more than 1 resource was found")
		}
	}
	t := targets[0]
	human := o.output == "" || o.output == "wide"
	w := newTabWriter(e.out)
	tp := &tablePrinter{opts: printOptions{
		noHeaders:     o.noHeaders,
		wide:          o.output == "wide",
		withNamespace: o.allNamespaces && namespaced(t.mapping),
		kind:          t.mapping.GroupVersionKind.GroupKind(),
		showLabels:    o.showLabels,
		columnLabels:  o.labelColumns,
	}}
	var gp *genericPrinter
	if !human {
		var err error
		if gp, err = newGenericPrinter(o.output, o.showManaged); err != nil {
			return err
		}
	}
	eventType := func(t string) string {
		if o.watchEvents {
			return t
		}
		return ""
	}

	// Current state, and the resourceVersion to watch from.
	var rv string
	if human {
		tables, err := fetchTables(e, o, t)
		if err != nil {
			return err
		}
		for _, tb := range tables {
			rv = tb.rv
			if t.name != "" && len(tb.rows) == 1 && tb.rows[0].meta != nil && tb.rows[0].meta.ResourceVersion != "" {
				rv = tb.rows[0].meta.ResourceVersion
			}
			if !o.watchOnly {
				tp.print(tb, w, eventType("ADDED"))
			}
		}
		w.Flush()
	} else {
		var objs []map[string]any
		if t.name != "" {
			u, err := e.getObject(t.mapping, t.namespace, t.name)
			if err != nil {
				return err
			}
			rv = u.GetResourceVersion()
			objs = append(objs, u.Object)
		} else {
			items, listRV, err := e.listObjects(t, o.selector, o.fieldSelector)
			if err != nil {
				return err
			}
			rv = listRV
			for i := range items {
				objs = append(objs, items[i].Object)
			}
		}
		if !o.watchOnly {
			for _, obj := range objs {
				if err := gp.printEvent(obj, eventType("ADDED"), e.out); err != nil {
					return err
				}
			}
		}
	}

	rc, err := e.client()
	if err != nil {
		return err
	}
	req := request(rc, "GET", t.mapping, t.namespace, "").Param("watch", "true")
	if rv != "" {
		req = req.Param("resourceVersion", rv)
	}
	fieldSel := o.fieldSelector
	if t.name != "" {
		fieldSel = fields.OneTermEqualSelector("metadata.name", t.name).String()
	}
	if fieldSel != "" {
		req = req.Param("fieldSelector", fieldSel)
	}
	if o.selector != "" {
		req = req.Param("labelSelector", o.selector)
	}
	if human {
		req = req.SetHeader("Accept", tableAccept)
	} else {
		req = req.SetHeader("Accept", "application/json")
	}
	stream, err := req.Stream(e.ctx)
	if err != nil {
		return err
	}
	defer stream.Close()
	dec := json.NewDecoder(stream)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) || e.ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ev.Type == "BOOKMARK" {
			continue
		}
		if ev.Type == "ERROR" {
			var st metav1.Status
			if err := json.Unmarshal(ev.Object, &st); err == nil {
				return &apierrors.StatusError{ErrStatus: st}
			}
			return fmt.Errorf("watch error: %s", ev.Object)
		}
		if human {
			tb, err := decodeTable(ev.Object)
			if err != nil {
				return err
			}
			tp.print(tb, w, eventType(ev.Type))
			w.Flush()
			continue
		}
		u, err := decodeUnstructured(ev.Object)
		if err != nil {
			return err
		}
		if err := gp.printEvent(u.Object, eventType(ev.Type), e.out); err != nil {
			return err
		}
	}
}

// printEvent prints one watched object, wrapped as a WatchEvent with
// --output-watch-events.
func (p *genericPrinter) printEvent(obj map[string]any, eventType string, w io.Writer) error {
	if eventType == "" || p.format == "name" {
		return p.print(obj, w)
	}
	if !p.keepManaged {
		stripManagedFields(obj)
	}
	return p.print(map[string]any{"type": eventType, "object": obj}, w)
}
