package podconfig

import "testing"

// Cases from upstream third_party/forked/golang/expansion/expand_test.go
// (TestMapReference, doExpansionTest).
func TestExpand(t *testing.T) {
	ctx := map[string]string{"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}
	mapping := mappingFuncFor(ctx)
	for _, tc := range []struct{ in, want string }{
		{"$(VAR_A)", "A"},
		{"___$(VAR_B)___", "___B___"},
		{"$(VAR_C)$(VAR_A)", "CA"},
		{"$(VAR_A)-$(VAR_B)", "A-B"},
		{"$(VAR_REF)", "$(VAR_A)"}, // no recursion
		{"$(VAR_EMPTY)", ""},
		{"$(UNKNOWN)", "$(UNKNOWN)"},
		{"$$(VAR_A)", "$(VAR_A)"}, // escaped
		{"$$$(VAR_A)", "$A"},
		{"$$$$(VAR_A)", "$$(VAR_A)"},
		{"$$", "$"},
		{"$", "$"},
		{"foo$", "foo$"},
		{"$(VAR_A", "$(VAR_A"}, // incomplete
		{"$()", "$()"},         // empty name: unknown, left as written
		{"$VAR_A", "$VAR_A"},
		{"f000-$$VAR_A", "f000-$VAR_A"},
		{"$(VAR_A)$(", "A$("},
		{"\n$(VAR_B)\n", "\nB\n"},
	} {
		got := Expand(tc.in, mapping)
		if got != tc.want {
			t.Errorf("Expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
