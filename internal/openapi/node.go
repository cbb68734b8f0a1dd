package openapi

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/google/gnostic-models/compiler"
	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	yaml "go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
)

// pre is a value encoded once: the JSON encoder splices in enc, the
// protobuf conversion walks val.
type pre struct {
	val any
	enc []byte
}

// toNode builds the YAML node tree that parsing v's JSON encoding would
// give. gnostic converts documents from such trees; building the tree
// directly skips its YAML parser, most of the cost of the conversion.
func toNode(v any) (*yaml.Node, error) {
	switch v := v.(type) {
	case *pre:
		return toNode(v.val)
	case obj:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle, Content: make([]*yaml.Node, 0, 2*len(keys))}
		for _, k := range keys {
			val, err := toNode(v[k])
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, strNode(k), val)
		}
		return n, nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle, Content: make([]*yaml.Node, 0, len(v))}
		for _, e := range v {
			en, err := toNode(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, en)
		}
		return n, nil
	case []string:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle, Content: make([]*yaml.Node, 0, len(v))}
		for _, s := range v {
			n.Content = append(n.Content, strNode(s))
		}
		return n, nil
	case string:
		return strNode(v), nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}, nil
	case int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(v)}, nil
	}
	return nil, fmt.Errorf("openapi: cannot convert %T", v)
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
}

// protoV2Tree converts a v2 document tree to gnostic's protobuf encoding.
func protoV2Tree(tree any) ([]byte, error) {
	root, err := toNode(tree)
	if err != nil {
		return nil, err
	}
	doc, err := openapi_v2.NewDocument(root, compiler.NewContextWithExtensions("$root", root, nil, nil))
	if err != nil {
		return nil, fmt.Errorf("openapi: v2 to protobuf: %w", err)
	}
	return proto.Marshal(doc)
}
