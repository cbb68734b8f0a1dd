package kubectl

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// describeGeneric is kubectl's genericDescriber, used for kinds without a
// describer of their own: metadata, then every field with a "smart" label.
func describeGeneric(d *describeCtx, u *unstructured.Unstructured) (string, error) {
	events := d.events(eventRef{kind: u.GetKind(), namespace: u.GetNamespace(), name: u.GetName(), uid: u.GetUID()})
	return tabbedString(func(w *prefixWriter) error {
		w.Write(level0, "Name:\t%s\n", u.GetName())
		w.Write(level0, "Namespace:\t%s\n", u.GetNamespace())
		printLabelsMultiline(w, "Labels", u.GetLabels())
		printAnnotationsMultiline(w, "Annotations", u.GetAnnotations())
		printUnstructuredContent(w, level0, u.UnstructuredContent(), "", ".metadata.managedFields", ".metadata.name",
			".metadata.namespace", ".metadata.labels", ".metadata.annotations")
		describeEvents(events, w)
		return nil
	})
}

func printUnstructuredContent(w *prefixWriter, level int, content map[string]any, skipPrefix string, skip ...string) {
	keys := make([]string, 0, len(content))
	for k := range content {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	skipped := func(expr string) bool {
		for _, s := range skip {
			if s == expr {
				return true
			}
		}
		return false
	}
	for _, field := range keys {
		expr := fmt.Sprintf("%s.%s", skipPrefix, field)
		if skipped(expr) {
			continue
		}
		switch v := content[field].(type) {
		case map[string]any:
			w.Write(level, "%s:\n", smartLabelFor(field))
			printUnstructuredContent(w, level+1, v, expr, skip...)
		case []any:
			w.Write(level, "%s:\n", smartLabelFor(field))
			for _, child := range v {
				if m, ok := child.(map[string]any); ok {
					printUnstructuredContent(w, level+1, m, expr, skip...)
				} else {
					w.Write(level+1, "%v\n", child)
				}
			}
		default:
			w.Write(level, "%s:\t%v\n", smartLabelFor(field), v)
		}
	}
}

// smartLabelFor turns "apiVersion" into "API Version", as kubectl 1.32 does.
func smartLabelFor(field string) string {
	if strings.IndexFunc(field, func(r rune) bool { return !unicode.IsLetter(r) && r != '-' }) != -1 {
		return field
	}
	acronyms := map[string]bool{"API": true, "URL": true, "UID": true, "OSB": true, "GUID": true}
	var out []string
	for _, part := range camelSplit(field) {
		if part == "_" {
			continue
		}
		if acronyms[strings.ToUpper(part)] {
			part = strings.ToUpper(part)
		} else {
			part = titleWords(part)
		}
		out = append(out, part)
	}
	return strings.Join(out, " ")
}

// titleWords is the deprecated strings.Title for the letters-and-dashes
// fields smartLabelFor accepts: the first letter and any after '-' upper-cased.
func titleWords(s string) string {
	prev := '-'
	return strings.Map(func(r rune) rune {
		p := prev
		prev = r
		if p == '-' {
			return unicode.ToTitle(r)
		}
		return r
	}, s)
}

// camelSplit is github.com/fatih/camelcase's Split: runs of lower, upper,
// digit and other characters, with the last capital of a run of capitals
// moved to a following lower-case run ("PDFLoader" → "PDF", "Loader").
func camelSplit(src string) []string {
	if !utf8.ValidString(src) {
		return []string{src}
	}
	var runs [][]rune
	last := 0
	for _, r := range src {
		class := 4
		switch {
		case unicode.IsLower(r):
			class = 1
		case unicode.IsUpper(r):
			class = 2
		case unicode.IsDigit(r):
			class = 3
		}
		if class == last {
			runs[len(runs)-1] = append(runs[len(runs)-1], r)
		} else {
			runs = append(runs, []rune{r})
		}
		last = class
	}
	for i := 0; i < len(runs)-1; i++ {
		if unicode.IsUpper(runs[i][0]) && unicode.IsLower(runs[i+1][0]) {
			runs[i+1] = append([]rune{runs[i][len(runs[i])-1]}, runs[i+1]...)
			runs[i] = runs[i][:len(runs[i])-1]
		}
	}
	var out []string
	for _, r := range runs {
		if len(r) > 0 {
			out = append(out, string(r))
		}
	}
	return out
}
