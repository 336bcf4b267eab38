package tensorcore

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// mustPanic runs f and fails unless it panics with a message containing
// every one of want.
func mustPanic(t *testing.T, f func(), want ...string) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic, want one mentioning %q", want)
		}
		msg, _ := r.(string)
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Fatalf("panic %q does not mention %q", msg, w)
			}
		}
	}()
	f()
}

func TestNewAndFromSlice(t *testing.T) {
	x := New(2, 3)
	if x.Len() != 6 || !slices.Equal(x.Shape, []int{2, 3}) {
		t.Fatalf("New(2, 3): shape %v len %d", x.Shape, x.Len())
	}
	shape := []int{3, 2}
	y := FromSlice([]float32{1, 2, 3, 4, 5, 6}, shape...)
	shape[0] = 7 // the tensor keeps its own copy of the shape
	if y.Shape[0] != 3 || y.Data[5] != 6 {
		t.Fatalf("FromSlice: %v %v", y.Shape, y.Data)
	}
	if s := New(); s.Len() != 1 {
		t.Fatalf("a scalar tensor has %d elements", s.Len())
	}
	mustPanic(t, func() { FromSlice(make([]float32, 5), 2, 3) }, "[2 3]", "5")
	mustPanic(t, func() { New(2, -1) }, "[2 -1]")
}

func TestReshapeAndClone(t *testing.T) {
	x := FromSlice([]float32{0, 1, 2, 3, 4, 5}, 2, 3)
	v := x.Reshape(-1, 2)
	if !slices.Equal(v.Shape, []int{3, 2}) {
		t.Fatalf("Reshape(-1, 2): shape %v", v.Shape)
	}
	v.Data[0] = 9
	if x.Data[0] != 9 {
		t.Fatal("Reshape does not share data")
	}
	c := x.Clone()
	c.Data[1] = 7
	c.Shape[0] = 5
	if x.Data[1] != 1 || x.Shape[0] != 2 {
		t.Fatal("Clone shares data or shape")
	}
	mustPanic(t, func() { x.Reshape(4, -1) }, "[2 3]", "[4 -1]")
	mustPanic(t, func() { x.Reshape(-1, -1) }, "[2 3]")
	mustPanic(t, func() { x.Reshape(5) }, "[2 3]", "[5]")
}

func TestHasNaNOrInf(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	for _, c := range []struct {
		xs   []float32
		want bool
	}{
		{nil, false},
		{[]float32{0, -1, 3e38, -3e38}, false},
		{[]float32{1, nan, 2}, true},
		{[]float32{1, 2, inf}, true},
		{[]float32{-inf}, true},
	} {
		if got := HasNaNOrInf(c.xs); got != c.want {
			t.Errorf("HasNaNOrInf(%v) = %v", c.xs, got)
		}
	}
}
