package tensorcore

import (
	"slices"
	"testing"
)

// A profiled step computes what an unprofiled one does, and the profile
// holds each op once per step with the arithmetic of its GEMMs.
func TestProfile(t *testing.T) {
	x := New(2, 3, 8, 8)
	for i := range x.Data {
		x.Data[i] = float32(i%11) * 0.1
	}
	w, gw := New(4, 3, 3, 3), New(4, 3, 3, 3)
	for i := range w.Data {
		w.Data[i] = float32(i%5)*0.1 - 0.2
	}
	lw, glw := New(5, 4*8*8), New(5, 4*8*8)
	for i := range lw.Data {
		lw.Data[i] = float32(i%7)*0.01 - 0.03
	}
	step := func(tp *Tape) []float32 {
		tp.Reset()
		clear(gw.Data)
		clear(glw.Data)
		h := tp.ReLU(tp.Conv2D(tp.Const(x), tp.Param(w, gw), nil, ConvParams{PadH: 1, PadW: 1}))
		logits := tp.Linear(tp.Reshape(h, 2, 4*8*8), tp.Param(lw, glw), nil)
		tp.Backward(tp.CrossEntropy(logits, []int{1, 3}))
		return append(slices.Clone(gw.Data), glw.Data...)
	}
	want := step(NewTape(nil))
	tp := NewTape(nil)
	var p Profile
	tp.SetProfile(&p)
	for range 2 {
		if got := step(tp); !slices.Equal(got, want) {
			t.Fatal("a profiled step computes other gradients")
		}
	}
	var names []string
	for _, op := range p.Ops {
		names = append(names, op.Op)
		if op.Steps != 2 {
			t.Errorf("%s: %d steps, want 2", op.Op, op.Steps)
		}
	}
	if !slices.Equal(names, []string{"Conv2D", "ReLU", "Reshape", "Linear", "CrossEntropy"}) {
		t.Fatalf("ops %v", names)
	}
	conv, lin := p.Ops[0], p.Ops[3]
	if f := 2.0 * 2 * 4 * 8 * 8 * 3 * 3 * 3; conv.FwdFLOP != f || conv.BwdFLOP != f {
		t.Errorf("conv FLOP %v forward, %v backward; want %v and %v (the input needs no gradient)", conv.FwdFLOP, conv.BwdFLOP, f, f)
	}
	if f := 2.0 * 2 * 256 * 5; lin.FwdFLOP != f || lin.BwdFLOP != 2*f {
		t.Errorf("linear FLOP %v forward, %v backward; want %v and %v", lin.FwdFLOP, lin.BwdFLOP, f, 2*f)
	}
	if conv.Detail != "3x3/1 3→4 @8×8, batch 2" {
		t.Errorf("conv detail %q", conv.Detail)
	}
	if conv.Forward <= 0 || conv.Backward <= 0 || lin.Backward <= 0 {
		t.Errorf("times: conv %v / %v, linear backward %v", conv.Forward, conv.Backward, lin.Backward)
	}
}
