package openapi

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/kube-openapi/pkg/common"
)

// obj is one JSON object of a document under construction. Documents are
// plain maps so that encoding/json writes them with sorted keys, which keeps
// the bytes (and so the hashes clients cache by) stable across restarts.
type obj = map[string]any

// Extension names Kubernetes uses in its documents.
const (
	extGVK           = "x-kubernetes-group-version-kind"
	extAction        = "x-kubernetes-action"
	extPatchStrategy = "x-kubernetes-patch-strategy"
	extPatchMergeKey = "x-kubernetes-patch-merge-key"
	extListType      = "x-kubernetes-list-type"
	extListMapKeys   = "x-kubernetes-list-map-keys"
	extMapType       = "x-kubernetes-map-type"
	extIntOrString   = "x-kubernetes-int-or-string"
)

// version selects the dialect a schema is rendered in.
type version int

const (
	v2 version = iota
	v3
)

func (v version) refPrefix() string {
	if v == v3 {
		return "#/components/schemas/"
	}
	return "#/definitions/"
}

// Types whose JSON form is not their Go shape. Kubernetes gives them
// hand-written OpenAPI definitions (OpenAPISchemaType and friends, or
// openapi-gen special cases); we do the same.
var (
	typeTime         = reflect.TypeFor[metav1.Time]()
	typeMicroTime    = reflect.TypeFor[metav1.MicroTime]()
	typeDuration     = reflect.TypeFor[metav1.Duration]()
	typeQuantity     = reflect.TypeFor[resource.Quantity]()
	typeIntOrString  = reflect.TypeFor[intstr.IntOrString]()
	typeRawExtension = reflect.TypeFor[runtime.RawExtension]()
	typeFieldsV1     = reflect.TypeFor[metav1.FieldsV1]()
)

// Descriptions for the special types, whose Go packages carry no SwaggerDoc.
var specialDocs = map[reflect.Type]string{
	typeTime:         "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON. Wrappers are provided for many of the factory methods that the time package offers.",
	typeMicroTime:    "MicroTime is version of Time with microsecond level precision.",
	typeDuration:     "Duration is a wrapper around time.Duration which supports correct marshaling to YAML and JSON. In particular, it marshals into strings, which can be used as map keys in json.",
	typeQuantity:     "Quantity is a fixed-point representation of a number. It provides convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.\n\nThe serialization format is:\n\n``` <quantity>        ::= <signedNumber><suffix>\n\n\t(Note that <suffix> may be empty, from the \"\" case in <decimalSI>.)\n\n<digit>           ::= 0 | 1 | ... | 9 <digits>          ::= <digit> | <digit><digits> <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits> <sign>            ::= \"+\" | \"-\" <signedNumber>    ::= <number> | <sign><number> <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI> <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei\n\n\t(International System of units; See: http://physics.nist.gov/cuu/Units/binary.html)\n\n<decimalSI>       ::= m | \"\" | k | M | G | T | P | E\n\n\t(Note that 1024 = 1Ki but 1000 = 1k; I didn't choose the capitalization.)\n\n<decimalExponent> ::= \"e\" <signedNumber> | \"E\" <signedNumber> ```\n\nNo matter which of the three exponent forms is used, no quantity may represent a number greater than 2^63-1 in magnitude, nor may it have more than 3 decimal places. Numbers larger or more precise will be capped or rounded up. (E.g.: 0.1m will rounded up to 1m.) This may be extended in the future if we require larger or smaller quantities.",
	typeIntOrString:  "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON field that can accept a name or number.",
	typeRawExtension: "RawExtension is used to hold extensions in external versions. It may hold any JSON object, with an apiVersion and kind that tell how to decode it.",
	typeFieldsV1:     "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format.\n\nEach key is either a '.' representing the field itself, and will always map to an empty set, or a string representing a sub-field or item. The string will follow one of these four formats: 'f:<name>', where <name> is the name of a field in a struct, or key in a map 'v:<value>', where <value> is the exact json formatted value of a list item 'i:<index>', where <index> is position of a item in a list 'k:<keys>', where <keys> is a map of  a list item's key fields to their unique values If a key maps to an empty Fields value, the field that key represents is part of the set.\n\nThe exact format is defined in sigs.k8s.io/structured-merge-diff",
}

// defName is the definition name Kubernetes gives a Go type: the package
// path with its domain reversed, then the type name
// (k8s.io/api/core/v1.Pod → io.k8s.api.core.v1.Pod).
func defName(t reflect.Type) string {
	pkg := t.PkgPath()
	host, rest, _ := strings.Cut(pkg, "/")
	labels := strings.Split(host, ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	name := strings.Join(labels, ".")
	if rest != "" {
		name += "." + strings.ReplaceAll(rest, "/", ".")
	}
	return name + "." + t.Name()
}

// definition is one named schema and the definitions it refers to.
type definition struct {
	name string
	typ  reflect.Type
	v2   obj
	v3   obj
	// v2raw and v3raw are v2 and v3 encoded.
	v2raw, v3raw []byte
	deps         []string // names of the definitions v2/v3 refer to
}

// schemaBuilder turns Go types into definitions by reflection.
type schemaBuilder struct {
	defs map[string]*definition
}

func newSchemaBuilder() *schemaBuilder {
	return &schemaBuilder{defs: map[string]*definition{}}
}

// define makes sure t (a named struct) has a definition and returns its name.
func (b *schemaBuilder) define(t reflect.Type) (string, error) {
	name := defName(t)
	if d, ok := b.defs[name]; ok {
		if d.typ != t {
			return "", fmt.Errorf("openapi: %s names both %v and %v", name, d.typ, t)
		}
		return name, nil
	}
	d := &definition{name: name, typ: t}
	b.defs[name] = d // before recursing, so cycles end here
	deps := map[string]bool{}
	var err error
	if d.v2, err = b.typeDef(t, v2, deps); err != nil {
		return "", err
	}
	if d.v3, err = b.typeDef(t, v3, deps); err != nil {
		return "", err
	}
	for dep := range deps {
		d.deps = append(d.deps, dep)
	}
	sort.Strings(d.deps)
	return name, nil
}

// typeDef is the definition body of the named struct t.
func (b *schemaBuilder) typeDef(t reflect.Type, v version, deps map[string]bool) (obj, error) {
	s := obj{}
	if doc := typeDoc(t); doc != "" {
		s["description"] = doc
	}
	switch t {
	case typeTime, typeMicroTime:
		s["type"], s["format"] = "string", "date-time"
		return s, nil
	case typeDuration:
		s["type"] = "string"
		return s, nil
	case typeQuantity:
		if v == v3 {
			s["oneOf"] = []any{obj{"type": "string"}, obj{"type": "number"}}
		} else {
			s["type"] = "string"
		}
		s[extIntOrString] = true
		return s, nil
	case typeIntOrString:
		if v == v3 {
			s["oneOf"] = []any{obj{"type": "integer"}, obj{"type": "string"}}
		} else {
			s["type"] = "string"
		}
		s["format"] = "int-or-string"
		s[extIntOrString] = true
		return s, nil
	case typeRawExtension, typeFieldsV1:
		s["type"] = "object"
		return s, nil
	}
	s["type"] = "object"
	props := obj{}
	var required []string
	if err := b.addFields(t, v, props, &required, deps); err != nil {
		return nil, err
	}
	if len(props) > 0 {
		s["properties"] = props
	}
	if len(required) > 0 {
		sort.Strings(required)
		s["required"] = required
	}
	if m := structMarkers[qualifiedName(t)]; m.atomic {
		s[extMapType] = "atomic"
	}
	return s, nil
}

// addFields adds the JSON fields of struct t to props, flattening embedded
// (inline) structs the way encoding/json does.
func (b *schemaBuilder) addFields(t reflect.Type, v version, props obj, required *[]string, deps map[string]bool) error {
	docs := swaggerDoc(t)
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		omitempty := hasOpt(opts, "omitempty") || hasOpt(opts, "omitzero")
		if (f.Anonymous && name == "") || hasOpt(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if err := b.addFields(ft, v, props, required, deps); err != nil {
					return err
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fm := fieldMarkers[qualifiedName(t)+"."+name]
		s, err := b.fieldSchema(f.Type, v, deps)
		if err != nil {
			return fmt.Errorf("%v.%s: %w", t, f.Name, err)
		}
		if doc := docs[name]; doc != "" {
			s.set("description", doc)
		}
		isRequired := fm.required || (!omitempty && !fm.optional)
		if def, ok := defaultFor(f.Type, !omitempty); ok {
			s.set("default", def)
		}
		if ps := f.Tag.Get("patchStrategy"); ps != "" {
			s.set(extPatchStrategy, ps)
		}
		if pk := f.Tag.Get("patchMergeKey"); pk != "" {
			s.set(extPatchMergeKey, pk)
		}
		if fm.listType != "" {
			s.set(extListType, fm.listType)
		}
		if len(fm.listMapKeys) > 0 {
			s.set(extListMapKeys, fm.listMapKeys)
		}
		if fm.mapType != "" {
			s.set(extMapType, fm.mapType)
		}
		if vals := enumTypes[qualifiedName(enumType(f.Type))]; len(vals) > 0 {
			s.enum(vals)
		}
		props[name] = s.render(v)
		if isRequired {
			*required = append(*required, name)
		}
	}
	return nil
}

func hasOpt(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

// fieldSchema is a schema under construction: either a reference to a
// definition (with sibling keys) or an inline schema. References are
// rendered late because v2 and v3 attach siblings differently.
type fieldSchema struct {
	ref  string // definition name, when a reference
	body obj    // inline schema, or the siblings of ref
}

func (s *fieldSchema) set(k string, v any) { s.body[k] = v }

// enum attaches enum values, and lists them in the description as
// Kubernetes does.
func (s *fieldSchema) enum(values []enumValue) {
	target := s.body
	if items, ok := target["items"].(obj); ok && s.ref == "" && target["type"] == "array" {
		target = items
	}
	vals := make([]any, len(values))
	var desc strings.Builder
	for i, e := range values {
		vals[i] = e.value
		fmt.Fprintf(&desc, "\n - `%q`", e.value)
		if e.doc != "" {
			desc.WriteString(" " + e.doc)
		}
	}
	target["enum"] = vals
	d, _ := s.body["description"].(string)
	s.body["description"] = strings.TrimLeft(d+"\n\nPossible enum values:"+desc.String(), "\n")
}

// render returns the JSON schema in dialect v. v2 puts siblings next to
// $ref (as Kubernetes' v2 document does); v3 wraps the reference in allOf
// so the siblings keep their meaning.
func (s fieldSchema) render(v version) obj {
	if s.ref == "" {
		return s.body
	}
	ref := obj{"$ref": v.refPrefix() + s.ref}
	if len(s.body) == 0 {
		return ref
	}
	out := obj{}
	for k, val := range s.body {
		out[k] = val
	}
	if v == v3 {
		out["allOf"] = []any{ref}
	} else {
		out["$ref"] = ref["$ref"]
	}
	return out
}

// fieldSchema builds the schema of a value of Go type t.
func (b *schemaBuilder) fieldSchema(t reflect.Type, v version, deps map[string]bool) (fieldSchema, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t.Name() != "":
		name, err := b.define(t)
		if err != nil {
			return fieldSchema{}, err
		}
		deps[name] = true
		return fieldSchema{ref: name, body: obj{}}, nil
	}
	switch t.Kind() {
	case reflect.Struct: // anonymous struct: inline object
		props := obj{}
		var required []string
		if err := b.addFields(t, v, props, &required, deps); err != nil {
			return fieldSchema{}, err
		}
		s := obj{"type": "object", "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		return fieldSchema{body: s}, nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return fieldSchema{body: obj{"type": "string", "format": "byte"}}, nil
		}
		items, err := b.elemSchema(t.Elem(), v, deps)
		if err != nil {
			return fieldSchema{}, err
		}
		return fieldSchema{body: obj{"type": "array", "items": items}}, nil
	case reflect.Map:
		// encoding/json writes every key kind it accepts as a string.
		vals, err := b.elemSchema(t.Elem(), v, deps)
		if err != nil {
			return fieldSchema{}, err
		}
		return fieldSchema{body: obj{"type": "object", "additionalProperties": vals}}, nil
	case reflect.Interface:
		return fieldSchema{body: obj{"type": "object"}}, nil
	}
	typ, format := common.OpenAPITypeFormat(t.Kind().String())
	if typ == "" {
		// Nothing in the API types has another kind; should one appear,
		// document it as "any value" rather than refuse to start.
		return fieldSchema{body: obj{}}, nil
	}
	s := fieldSchema{body: obj{"type": typ}}
	if format != "" {
		s.body["format"] = format
	}
	return s, nil
}

// elemSchema is the schema of array items and map values, which default
// to their zero value as in Kubernetes' documents (openapi-gen's
// mustEnforceDefault).
func (b *schemaBuilder) elemSchema(t reflect.Type, v version, deps map[string]bool) (obj, error) {
	s, err := b.fieldSchema(t, v, deps)
	if err != nil {
		return nil, err
	}
	if def, ok := defaultFor(t, true); ok {
		s.set("default", def)
	}
	return s.render(v), nil
}

// enumType is the named string type whose constants enumerate the values
// of a field of type t (itself, or the element of a slice or pointer).
func enumType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t
}

// defaultFor is the default Kubernetes documents for a value of type t:
// {} for a non-pointer struct, the zero value for a scalar that is always
// serialized (no omitempty), nothing for pointers, slices, maps and types
// with their own JSON form.
func defaultFor(t reflect.Type, always bool) (any, bool) {
	switch t {
	case typeTime, typeMicroTime, typeDuration, typeQuantity, typeIntOrString, typeRawExtension, typeFieldsV1:
		return nil, false
	}
	switch t.Kind() {
	case reflect.Struct:
		return obj{}, true
	case reflect.String:
		return "", always
	case reflect.Bool:
		return false, always
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return 0, always
	}
	return nil, false
}

// swaggerDoc returns the field descriptions of t from its generated
// SwaggerDoc method ("" is the type's own description).
func swaggerDoc(t reflect.Type) map[string]string {
	type documented interface{ SwaggerDoc() map[string]string }
	if d, ok := reflect.Zero(t).Interface().(documented); ok {
		return d.SwaggerDoc()
	}
	if d, ok := reflect.New(t).Interface().(documented); ok {
		return d.SwaggerDoc()
	}
	return nil
}

func typeDoc(t reflect.Type) string {
	if doc, ok := specialDocs[t]; ok {
		return doc
	}
	return swaggerDoc(t)[""]
}

// qualifiedName is "<package path>.<type name>", the key of the marker
// tables generated from the Go sources.
func qualifiedName(t reflect.Type) string { return t.PkgPath() + "." + t.Name() }
