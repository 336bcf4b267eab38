package tensorcore

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// resBlock records relu(bn(conv(relu(bn(conv x)))) + x), ResNet's basic
// block: the BatchNorm and Add outputs are read only by the ReLU and Add
// after them, never by a backward rule.
type resBlock struct {
	w1, w2, g1, b1, g2, b2       *Tensor
	gw1, gw2, gg1, gb1, gg2, gb2 *Tensor
	rm1, rv1, rm2, rv2           *Tensor
}

func newResBlock(rng *rand.Rand, c int) *resBlock {
	r := &resBlock{w1: randTensor(rng, c, c, 3, 3), w2: randTensor(rng, c, c, 3, 3),
		g1: randTensor(rng, c), b1: randTensor(rng, c), g2: randTensor(rng, c), b2: randTensor(rng, c),
		rm1: New(c), rv1: New(c), rm2: New(c), rv2: New(c)}
	r.gw1, r.gw2, r.gg1, r.gb1, r.gg2, r.gb2 = New(r.w1.Shape...), New(r.w2.Shape...), New(c), New(c), New(c), New(c)
	return r
}

func (r *resBlock) forward(tp *Tape, x *Var) *Var {
	cp := ConvParams{PadH: 1, PadW: 1}
	h := tp.Conv2D(x, tp.Param(r.w1, r.gw1), nil, cp)
	h = tp.ReLU(tp.BatchNorm(h, tp.Param(r.g1, r.gg1), tp.Param(r.b1, r.gb1), r.rm1, r.rv1, 0.1, 1e-5, true))
	h = tp.Conv2D(h, tp.Param(r.w2, r.gw2), nil, cp)
	h = tp.BatchNorm(h, tp.Param(r.g2, r.gg2), tp.Param(r.b2, r.gb2), r.rm2, r.rv2, 0.1, 1e-5, true)
	return tp.ReLU(tp.Add(h, x))
}

var spatialDims, testLabels = []int{2, 3}, []int{1, 2}

func (r *resBlock) grads() [][]float32 {
	return [][]float32{r.gw1.Data, r.gw2.Data, r.gg1.Data, r.gb1.Data, r.gg2.Data, r.gb2.Data}
}

func (r *resBlock) zeroGrad() {
	for _, g := range r.grads() {
		clear(g)
	}
}

// TestSealSameResults: with Seal, every step's logits, loss, gradients and
// running statistics are bit-identical to a tape without it, the values
// the plan lends are given back, and a warm step allocates nothing.
func TestSealSameResults(t *testing.T) {
	const steps = 4
	run := func(seal bool) (outs [][]float32, grads [][][]float32, tp *Tape, step func()) {
		rng := rand.New(rand.NewPCG(7, 8))
		x := randTensor(rng, 2, 4, 8, 8)
		gx := New(x.Shape...)
		blocks := []*resBlock{newResBlock(rng, 4), newResBlock(rng, 4)}
		w := randTensor(rng, 3, 4)
		gw := New(w.Shape...)
		tp = NewTape(nil)
		rec := true
		step = func() {
			tp.Reset()
			for _, b := range blocks {
				b.zeroGrad()
			}
			clear(gw.Data)
			xv := tp.Param(x, gx)
			var m Mark
			if seal {
				m = tp.Mark()
			}
			h := xv
			for _, b := range blocks {
				h = b.forward(tp, h)
			}
			logits := tp.Linear(tp.Reshape(tp.Mean(h, spatialDims, false), 2, 4), tp.Param(w, gw), nil)
			if seal {
				logits = tp.Seal(m, logits)
			}
			tp.Backward(tp.CrossEntropy(logits, testLabels))
			if !rec {
				return
			}
			outs = append(outs, slices.Clone(logits.Value.Data))
			var g [][]float32
			for _, b := range blocks {
				for _, s := range b.grads() {
					g = append(g, slices.Clone(s))
				}
				g = append(g, slices.Clone(b.rm2.Data), slices.Clone(b.rv2.Data))
			}
			grads = append(grads, append(g, slices.Clone(gx.Data), slices.Clone(gw.Data)))
			clear(gx.Data)
		}
		for range steps {
			step()
		}
		rec = false
		return outs, grads, tp, step
	}
	wantOut, wantGrad, plain, plainStep := run(false)
	gotOut, gotGrad, sealed, step := run(true)
	for s := range steps {
		if !slices.Equal(wantOut[s], gotOut[s]) {
			t.Fatalf("step %d: logits %v with Seal, %v without", s, gotOut[s], wantOut[s])
		}
		for i := range wantGrad[s] {
			if !slices.Equal(wantGrad[s][i], gotGrad[s][i]) {
				t.Fatalf("step %d: gradient %d differs with Seal", s, i)
			}
		}
	}
	mp, ms := plain.Memory(), sealed.Memory()
	// Per block, 2 of the 7 values (the BatchNorm and Add outputs) are lent.
	if ms.Values >= mp.Values {
		t.Fatalf("values held: %d bytes with Seal, %d without", ms.Values, mp.Values)
	}
	lent := 0
	for _, nd := range sealed.nodes[:sealed.n] {
		if nd.lent {
			lent++
			if nd.out.Value.Data != nil {
				t.Fatalf("a lent %v value was not given back", nd.kind)
			}
		}
	}
	if lent != 6 {
		t.Fatalf("%d values lent, want 6 (2 BatchNorm and 1 Add per block)", lent)
	}
	if a, b := testing.AllocsPerRun(3, step), testing.AllocsPerRun(3, plainStep); a != 0 || b != 0 {
		t.Fatalf("%v allocs per warm step with Seal, %v without", a, b)
	}
}

// TestSealSecondReader: a value given back after its first reader is
// recomputed for a second, and results are bit-identical to a tape without
// Seal, step after step.
func TestSealSecondReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	x := randTensor(rng, 2, 3, 4, 4)
	g, b, z := randTensor(rng, 3), randTensor(rng, 3), randTensor(rng, 2, 3, 4, 4)
	run := func(seal bool) (loss []float32, grads [][]float32) {
		tp := NewTape(nil)
		gx, gg, gb := New(x.Shape...), New(3), New(3)
		for range 3 {
			tp.Reset()
			var m Mark
			if seal {
				m = tp.Mark()
			}
			bn := tp.BatchNorm(tp.Param(x, gx), tp.Param(g, gg), tp.Param(b, gb), nil, nil, 0.1, 1e-5, true)
			s := tp.Add(tp.ReLU(bn), tp.Const(z)) // bn given back after the ReLU, s after the Sub
			d := tp.Sub(s, bn)                    // bn recomputed; given back after
			out := tp.Mul(tp.ReLU(d), s)          // s recomputed, and kept: Mul's rule reads it
			out = tp.SumAll(tp.Add(out, bn))      // bn recomputed again
			if seal {
				out = tp.Seal(m, out)
				if bn.Value.Data != nil || s.Value.Data == nil {
					t.Fatal("Seal kept a value no rule reads, or gave back one Mul reads")
				}
			}
			tp.Backward(out)
			loss = append(loss, out.Value.Data[0])
		}
		return loss, [][]float32{gx.Data, gg.Data, gb.Data}
	}
	wl, wg := run(false)
	gl, gg := run(true)
	if !slices.Equal(wl, gl) {
		t.Fatalf("losses %v with Seal, %v without", gl, wl)
	}
	for i := range wg {
		if !slices.Equal(wg[i], gg[i]) {
			t.Fatalf("gradient %d differs with Seal", i)
		}
	}
}

// TestSealLateReshape: an op that checks its input's size before recording
// (Reshape) reads a given-back value like any other.
func TestSealLateReshape(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	x, z := randTensor(rng, 2, 6), randTensor(rng, 2, 6)
	tp := NewTape(nil)
	gx := New(x.Shape...)
	var want []float32
	for step := range 2 {
		tp.Reset()
		m := tp.Mark()
		s := tp.Add(tp.Param(x, gx), tp.Const(z))
		r := tp.Square(tp.ReLU(s)) // s given back after the ReLU
		if s.Value.Data != nil {
			t.Fatal("s was not given back")
		}
		out := tp.Add(tp.Reshape(s, 3, 4), tp.Reshape(r, 3, 4)) // s recomputed
		loss := tp.Seal(m, tp.SumAll(tp.Square(out)))
		tp.Backward(loss)
		if step == 0 {
			want = slices.Clone(gx.Data)
		} else {
			for i := range want {
				want[i] *= 2 // the second step adds the same gradient again
			}
			if !slices.Equal(gx.Data, want) {
				t.Fatalf("gradient %v, want %v", gx.Data, want)
			}
		}
	}
}
