package openapi

// Markers Kubernetes keeps in Go comments (+optional, +listType, +enum …)
// are invisible to reflection; zz_generated_markers.go carries the ones the
// documents need, extracted from the k8s.io/api and apimachinery sources by
// gen_markers.go (go generate).

//go:generate go run gen_markers.go

// enumValue is one constant of an enum type, with its doc comment.
type enumValue struct {
	value string
	doc   string
}

// fieldMarker holds the comment markers of one struct field.
type fieldMarker struct {
	optional    bool // +optional: not required despite no omitempty
	required    bool // +required: required despite omitempty
	listType    string
	listMapKeys []string
	mapType     string
}

// structMarker holds the comment markers of one struct type.
type structMarker struct {
	atomic bool // +structType=atomic
}
