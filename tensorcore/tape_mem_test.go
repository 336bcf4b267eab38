package tensorcore

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIntermediateGradContract: an op output's gradient is taken back once
// its producer's rule has run, unless KeepGrad asked for it, and the kept
// gradient is the one a fresh tape computes.
func TestIntermediateGradContract(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := randTensor(rng, 2, 3, 6, 6)
	w := randTensor(rng, 4, 3, 3, 3)
	tp := NewTape(nil)
	gx, gw := New(x.Shape...), New(w.Shape...)
	var kept []float32
	for step := 0; step < 3; step++ {
		tp.Reset()
		h := tp.Conv2D(tp.Param(x, gx), tp.Param(w, gw), nil, ConvParams{PadH: 1, PadW: 1})
		r := tp.ReLU(h)
		loss := tp.SumAll(tp.Square(tp.Add(r, h)))
		if step != 1 {
			tp.KeepGrad(h)
		}
		tp.Backward(loss)
		if r.Grad != nil {
			t.Fatalf("step %d: an intermediate gradient outlived Backward", step)
		}
		if step == 1 {
			if h.Grad != nil {
				t.Fatal("KeepGrad lasted past the Backward it was asked for")
			}
			continue
		}
		if h.Grad == nil || !slices.Equal(h.Grad.Shape, h.Value.Shape) {
			t.Fatalf("step %d: kept gradient %v for value %v", step, h.Grad, h.Value.Shape)
		}
		if kept == nil {
			kept = slices.Clone(h.Grad.Data)
		} else if !slices.Equal(kept, h.Grad.Data) {
			t.Fatal("kept gradient differs between steps")
		}
	}
	// dL/dh = 2(r+h)(1 + [h > 0]).
	tp.Reset()
	h := tp.Conv2D(tp.Const(x), tp.Param(w, gw), nil, ConvParams{PadH: 1, PadW: 1})
	for i, v := range h.Value.Data {
		r := max(v, 0)
		d := 2 * (r + v)
		if v > 0 {
			d *= 2
		}
		if kept[i] != d {
			t.Fatalf("kept gradient[%d] = %v, want %v", i, kept[i], d)
		}
	}
}

// TestBackwardReusesGradients: a chain of same-sized ops holds a few
// gradient buffers, not one per op, and a warm step allocates nothing.
func TestBackwardReusesGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := randTensor(rng, 64, 64)
	g := New(x.Shape...)
	tp := NewTape(nil)
	step := func() {
		tp.Reset()
		h := tp.Param(x, g)
		for range 20 {
			h = tp.Tanh(tp.Add(h, tp.ReLU(h)))
		}
		tp.Backward(tp.SumAll(h))
	}
	step()
	m := tp.Memory()
	if per := int64(4 * len(x.Data)); m.Free > 4*per || m.Grads != 0 {
		t.Fatalf("after Backward: %d bytes of gradients held, %d spare; one gradient is %d", m.Grads, m.Free, per)
	}
	if a := testing.AllocsPerRun(3, step); a != 0 {
		t.Fatalf("%v allocs per warm step", a)
	}
}
