package xds

import (
	"slices"
	"testing"
)

func TestApplySub(t *testing.T) {
	tests := []struct {
		name            string
		old             []string
		add, drop       []string
		want, wantAdded []string
	}{
		{"from nothing, unsorted with a duplicate", nil, []string{"c", "a", "c"}, nil, []string{"a", "c"}, []string{"a", "c"}},
		{"add one, one held", []string{"a", "c"}, []string{"b", "c"}, nil, []string{"a", "b", "c"}, []string{"b"}},
		{"drop one and an unknown", []string{"a", "b", "c"}, nil, []string{"zz", "b"}, []string{"a", "c"}, nil},
		{"add and drop the same", []string{"a"}, []string{"b"}, []string{"b"}, []string{"a"}, []string{"b"}},
		{"drop all", []string{"a", "b"}, nil, []string{"b", "a"}, []string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old *subSet
			if tt.old != nil {
				old = &subSet{names: tt.old}
			}
			got, added := applySub(old, tt.add, tt.drop)
			if !slices.Equal(got, tt.want) || !slices.Equal(added, tt.wantAdded) {
				t.Errorf("applySub(%v, +%v, -%v) = %v, added %v; want %v, %v", tt.old, tt.add, tt.drop, got, added, tt.want, tt.wantAdded)
			}
		})
	}
}

// TestSubTableShares: equal sets are one; different ones are not.
func TestSubTableShares(t *testing.T) {
	tab := newSubTable()
	a := tab.intern([]string{"x", "y"})
	b := tab.intern([]string{"x", "y"})
	c := tab.intern([]string{"x"})
	if a != b {
		t.Error("equal sets were not shared")
	}
	if a == c || !c.has("x") || c.has("y") || !a.has("y") {
		t.Errorf("sets mixed up: %v %v", a.names, c.names)
	}
	var none *subSet
	if none.has("x") {
		t.Error("a nil set has a name")
	}
}
