package registry

import (
	"testing"
	"time"
)

// Every served resource's rows have one cell per column, whatever the
// object; per-resource table tests compare only the cells they name.
func TestTableRowsMatchColumns(t *testing.T) {
	rs, err := Resources(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) < 15 {
		t.Fatalf("%d resources", len(rs))
	}
	for _, r := range rs {
		cols := r.Strategy.TableColumns()
		named := false
		for _, c := range cols {
			named = named || (c.Name == "Name" && c.Format == "name")
		}
		if !named {
			t.Errorf("%s: no Name column in %+v", r.Resource, cols)
		}
		obj := r.New()
		r.Strategy.Default(obj)
		if cells := r.Strategy.TableRow(obj, time.Now()); len(cells) != len(cols) {
			t.Errorf("%s: %d cells for %d columns: %q", r.Resource, len(cells), len(cols), cells)
		}
	}
}
