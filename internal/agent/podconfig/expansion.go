package podconfig

import "strings"

// This file follows upstream's third_party/forked/golang/expansion/expand.go
// (MappingFuncFor, Expand, tryReadVariableName): $(VAR) is replaced by VAR's
// value, $$ is an escaped $, and a reference to an unknown variable is left
// as written.

const (
	operator        = '$'
	referenceOpener = '('
	referenceCloser = ')'
)

func syntaxWrap(input string) string {
	return string(operator) + string(referenceOpener) + input + string(referenceCloser)
}

// mappingFuncFor returns a mapping that looks a name up in each map in
// order and leaves unknown references as $(name) (upstream MappingFuncFor).
func mappingFuncFor(context ...map[string]string) func(string) string {
	return func(input string) string {
		for _, vars := range context {
			if val, ok := vars[input]; ok {
				return val
			}
		}
		return syntaxWrap(input)
	}
}

// Expand replaces $(VAR) references in input through mapping, as upstream's
// expansion.Expand does for command, args, env values and subPathExpr.
func Expand(input string, mapping func(string) string) string {
	var buf strings.Builder
	checkpoint := 0
	for cursor := 0; cursor < len(input); cursor++ {
		if input[cursor] == operator && cursor+1 < len(input) {
			buf.WriteString(input[checkpoint:cursor])
			read, isVar, advance := tryReadVariableName(input[cursor+1:])
			if isVar {
				buf.WriteString(mapping(read))
			} else {
				buf.WriteString(read)
			}
			cursor += advance
			checkpoint = cursor + 1
		}
	}
	return buf.String() + input[checkpoint:]
}

func tryReadVariableName(input string) (string, bool, int) {
	switch input[0] {
	case operator:
		// Escaped operator; return it.
		return input[0:1], false, 1
	case referenceOpener:
		for i := 1; i < len(input); i++ {
			if input[i] == referenceCloser {
				return input[1:i], true, i + 1
			}
		}
		// Incomplete reference; return it.
		return string(operator) + string(referenceOpener), false, 1
	default:
		// An operator that does not begin an expression.
		return string(operator) + string(input[0]), false, 1
	}
}
