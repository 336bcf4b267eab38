package models

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestArenaLayout(t *testing.T) {
	b := NewBuilder(rand.New(rand.NewPCG(1, 2)))
	w, gw := b.Param("l1.weight", []int{3, 4}, Constant(2))
	bias, gb := b.Param("l1.bias", []int{3}, Constant(-1))
	rm := b.Buffer("bn.running_mean", []int{5}, 0)
	rv := b.Buffer("bn.running_var", []int{5}, 1)
	w2, _ := b.Param("l2.weight", []int{2, 3}, nil)
	a, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	wantInfos := []ParamInfo{
		{"l1.weight", []int{3, 4}, 0},
		{"l1.bias", []int{3}, 12},
		{"l2.weight", []int{2, 3}, 15},
	}
	if len(a.Params) != len(wantInfos) {
		t.Fatalf("Params = %v", a.Params)
	}
	for i, p := range a.Params {
		if p.Name != wantInfos[i].Name || p.Offset != wantInfos[i].Offset || !slices.Equal(p.Shape, wantInfos[i].Shape) {
			t.Errorf("Params[%d] = %+v, want %+v", i, p, wantInfos[i])
		}
	}
	if len(a.Data) != 21 || len(a.Grad) != 21 || a.NumParams() != 21 {
		t.Fatalf("len(Data) = %d, len(Grad) = %d", len(a.Data), len(a.Grad))
	}
	if len(a.Buffers) != 10 || a.BufferInfo[1].Offset != 5 || a.BufferInfo[1].Name != "bn.running_var" {
		t.Fatalf("buffers %v %+v", a.Buffers, a.BufferInfo)
	}
	// Initial values were moved into the arena.
	for i := 0; i < 12; i++ {
		if a.Data[i] != 2 {
			t.Fatalf("Data[%d] = %v, want 2", i, a.Data[i])
		}
	}
	for i := 12; i < 15; i++ {
		if a.Data[i] != -1 {
			t.Fatalf("Data[%d] = %v, want -1", i, a.Data[i])
		}
	}
	if a.Buffers[0] != 0 || a.Buffers[5] != 1 {
		t.Fatalf("Buffers = %v", a.Buffers)
	}
	// The layer's tensors, the named views and the flat slices share memory.
	a.Data[13] = 7
	a.Grad[1] = 3
	a.Buffers[6] = 9
	a.Data[20] = 5
	if bias.Data[1] != 7 || gw.Data[1] != 3 || rv.Data[1] != 9 || w2.Data[5] != 5 {
		t.Error("layer tensors are not views of the arena")
	}
	if v := a.Value("l1.bias"); v.Data[1] != 7 || !slices.Equal(v.Shape, []int{3}) {
		t.Errorf("Value(l1.bias) = %v", v)
	}
	if g := a.Gradient("l1.weight"); g.Data[1] != 3 || !slices.Equal(g.Shape, []int{3, 4}) {
		t.Errorf("Gradient(l1.weight) = %v", g)
	}
	if v := a.Buffer("bn.running_var"); v.Data[1] != 9 {
		t.Errorf("Buffer = %v", v)
	}
	if a.Value("nope") != nil || a.Gradient("nope") != nil || a.Buffer("nope") != nil {
		t.Error("unknown name gave a view")
	}
	// Views cannot grow into the neighbour.
	if v := a.Value("l1.weight"); cap(v.Data) != 12 {
		t.Errorf("cap of view = %d, want 12", cap(v.Data))
	}
	gb.Data[0] = 1
	a.ZeroGrad()
	for i, g := range a.Grad {
		if g != 0 {
			t.Fatalf("Grad[%d] = %v after ZeroGrad", i, g)
		}
	}
	_ = w
	_ = rm
}

func TestBuilderErrors(t *testing.T) {
	cases := []struct {
		name string
		add  func(b *Builder)
		want string
	}{
		{"dup", func(b *Builder) { b.Param("a", []int{1}, nil); b.Param("a", []int{2}, nil) }, `"a" used twice`},
		{"dup buffer", func(b *Builder) { b.Param("a", []int{1}, nil); b.Buffer("a", []int{2}, 0) }, `"a" used twice`},
		{"empty", func(b *Builder) { b.Param("", []int{1}, nil) }, "bad parameter name"},
		{"dots", func(b *Builder) { b.Param("a..b", []int{1}, nil) }, "bad parameter name"},
		{"shape", func(b *Builder) { b.Param("a", []int{2, 0}, nil) }, "bad shape"},
		{"negative", func(b *Builder) { b.Buffer("a", []int{-1}, 0) }, "bad shape"},
		{"groups", func(b *Builder) { NewConv2d(b, "c", 3, 4, 3, convGroups(2), LayerInit{}) }, "do not divide"},
	}
	for _, c := range cases {
		b := NewBuilder(rand.New(rand.NewPCG(1, 1)))
		c.add(b)
		_, err := b.Build()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "models: ") {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	b := NewBuilder(rand.New(rand.NewPCG(1, 1)))
	if _, err := b.Build(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(); err == nil {
		t.Error("second Build succeeded")
	}
	b.Param("late", []int{1}, nil)
	if b.Err() == nil {
		t.Error("Param after Build not reported")
	}
}

func TestArenaCopyFrom(t *testing.T) {
	mk := func(seed uint64, extra bool) *Arena {
		b := NewBuilder(rand.New(rand.NewPCG(seed, 0)))
		b.Param("w", []int{4}, Normal(0, 1))
		b.Buffer("m", []int{2}, float32(seed))
		if extra {
			b.Param("x", []int{1}, nil)
		}
		a, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a, src := mk(1, false), mk(2, false)
	if err := a.CopyFrom(src); err != nil {
		t.Fatal(err)
	}
	for i := range a.Data {
		if a.Data[i] != src.Data[i] {
			t.Fatal("Data not copied")
		}
	}
	if a.Buffers[0] != 2 {
		t.Fatal("Buffers not copied")
	}
	if err := a.CopyFrom(mk(3, true)); err == nil {
		t.Error("CopyFrom accepted a different layout")
	}
}
