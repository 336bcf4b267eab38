package tensorcore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// gcInput describes one input of a gradient-check case.
type gcInput struct {
	shape []int
	kind  gcGen // how its values are drawn
	cnst  bool  // recorded as a Const (no gradient)
}

type gcGen int

const (
	genNormal   gcGen = iota // N(0, 1)
	genAway                  // |x| in [0.2, 1.5], random sign: away from kinks at 0
	genPositive              // [0.5, 1.5]
	genDistinct              // a shuffled ladder with steps of 0.1: no near-ties (max, pooling)
	genUnit                  // [0, 1] (targets)
)

type gcCase struct {
	name   string
	in     []gcInput
	build  func(tp *Tape, v []*Var) *Var
	eps    float64 // 0 means 1e-2
	allocs bool    // build itself allocates (exempt from the zero-allocation check)
}

func gcValues(rng *rand.Rand, shape []int, kind gcGen) *Tensor {
	t := New(shape...)
	for i := range t.Data {
		switch kind {
		case genNormal:
			t.Data[i] = float32(rng.NormFloat64())
		case genAway:
			v := 0.2 + 1.3*rng.Float64()
			if rng.IntN(2) == 0 {
				v = -v
			}
			t.Data[i] = float32(v)
		case genPositive:
			t.Data[i] = float32(0.5 + rng.Float64())
		case genUnit:
			t.Data[i] = float32(rng.Float64())
		}
	}
	if kind == genDistinct {
		for i, p := range rng.Perm(len(t.Data)) {
			t.Data[i] = float32(p)*0.1 - float32(len(t.Data))*0.05
		}
	}
	return t
}

// runGradCheck checks the tape's gradient of L = sum(out * R), R random,
// against central differences of the float32 forward with the loss summed
// in float64.
func runGradCheck(t *testing.T, c gcCase) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, uint64(len(c.name))))
	eps := c.eps
	if eps == 0 {
		eps = 1e-2
	}
	vals := make([]*Tensor, len(c.in))
	grads := make([]*Tensor, len(c.in))
	for i, in := range c.in {
		vals[i] = gcValues(rng, in.shape, in.kind)
		grads[i] = New(in.shape...)
	}
	// A one-worker pool owns its kernel scratch, so the allocation check
	// below does not depend on the process-wide scratch of a nil pool.
	pool := NewPool(1)
	defer pool.Close()
	tp := NewTape(pool)
	vs := make([]*Var, len(vals))
	record := func() *Var {
		tp.Reset()
		for i, in := range c.in {
			if in.cnst {
				vs[i] = tp.Const(vals[i])
			} else {
				vs[i] = tp.Param(vals[i], grads[i])
			}
		}
		return c.build(tp, vs)
	}
	out := record()
	r := gcValues(rng, out.Value.Shape, genNormal)
	lossOf := func(o *Var) float64 {
		var s float64
		for i, v := range o.Value.Data {
			s += float64(v) * float64(r.Data[i])
		}
		return s
	}
	// Analytic gradient, computed twice over a reused tape: the second run
	// must give the same bits (buffer reuse must not leak state).
	var first [][]float32
	for pass := 0; pass < 2; pass++ {
		for _, g := range grads {
			clear(g.Data)
		}
		out = record()
		loss := tp.SumAll(tp.Mul(out, tp.Const(r)))
		tp.Backward(loss)
		if pass == 0 {
			for _, g := range grads {
				first = append(first, append([]float32(nil), g.Data...))
			}
			continue
		}
		for i, g := range grads {
			for j := range g.Data {
				if math.Float32bits(g.Data[j]) != math.Float32bits(first[i][j]) {
					t.Fatalf("%s: input %d: gradient differs on a reused tape at %d: %v then %v", c.name, i, j, first[i][j], g.Data[j])
				}
			}
		}
	}
	// A warm tape records and runs the same step without allocating.
	if a := testing.AllocsPerRun(3, func() {
		out := record()
		tp.Backward(tp.SumAll(tp.Mul(out, tp.Const(r))))
	}); a != 0 && !c.allocs {
		t.Errorf("%s: a warm step allocates %v times", c.name, a)
	}
	for i, g := range grads {
		copy(g.Data, first[i]) // the allocation runs accumulated into them
	}
	for i, in := range c.in {
		if in.cnst {
			continue
		}
		x := vals[i].Data
		idx := rng.Perm(len(x))
		if len(idx) > 48 {
			idx = idx[:48]
		}
		var dn, nn float64
		for _, j := range idx {
			orig := x[j]
			x[j] = orig + float32(eps)
			lp := lossOf(record())
			x[j] = orig - float32(eps)
			lm := lossOf(record())
			x[j] = orig
			h := float64(orig+float32(eps)) - float64(orig-float32(eps))
			num := (lp - lm) / h
			an := float64(grads[i].Data[j])
			dn += (an - num) * (an - num)
			nn += num * num
			if d := math.Abs(an - num); d > 2e-2*math.Max(1, math.Abs(num)) {
				t.Errorf("%s: input %d %v at %d: tape %.6g, finite difference %.6g", c.name, i, in.shape, j, an, num)
			}
		}
		if rel := math.Sqrt(dn) / math.Max(math.Sqrt(nn), 1e-3); rel > 1e-2 {
			t.Errorf("%s: input %d %v: relative gradient error %.3g", c.name, i, in.shape, rel)
		}
	}
}

func in(kind gcGen, shape ...int) gcInput     { return gcInput{shape: shape, kind: kind} }
func cnstIn(kind gcGen, shape ...int) gcInput { return gcInput{shape: shape, kind: kind, cnst: true} }

func gradCheckCases() []gcCase {
	var cs []gcCase
	add := func(name string, build func(tp *Tape, v []*Var) *Var, ins ...gcInput) {
		cs = append(cs, gcCase{name: name, in: ins, build: build})
	}
	// MatMul, every transpose combination, 2-D and batched.
	for _, tA := range []bool{false, true} {
		for _, tB := range []bool{false, true} {
			m, k, n := 3, 5, 7
			as, bs := []int{m, k}, []int{k, n}
			if tA {
				as = []int{k, m}
			}
			if tB {
				bs = []int{n, k}
			}
			tA, tB := tA, tB
			add(fmt.Sprintf("matmul/tA=%v/tB=%v", tA, tB), func(tp *Tape, v []*Var) *Var { return tp.MatMul(v[0], v[1], tA, tB) },
				in(genNormal, as...), in(genNormal, bs...))
			add(fmt.Sprintf("matmul3d/tA=%v/tB=%v", tA, tB), func(tp *Tape, v []*Var) *Var { return tp.MatMul(v[0], v[1], tA, tB) },
				in(genNormal, append([]int{2}, as...)...), in(genNormal, append([]int{2}, bs...)...))
		}
	}
	add("matmul/1x1", func(tp *Tape, v []*Var) *Var { return tp.MatMul(v[0], v[1], false, false) }, in(genNormal, 1, 1), in(genNormal, 1, 1))
	add("linear", func(tp *Tape, v []*Var) *Var { return tp.Linear(v[0], v[1], v[2]) },
		in(genNormal, 3, 5), in(genNormal, 7, 5), in(genNormal, 7))
	add("linear/nobias", func(tp *Tape, v []*Var) *Var { return tp.Linear(v[0], v[1], nil) },
		in(genNormal, 1, 3), in(genNormal, 5, 3))
	conv := func(name string, cp ConvParams, x, w []int, bias bool) {
		ins := []gcInput{in(genNormal, x...), in(genNormal, w...)}
		if bias {
			ins = append(ins, in(genNormal, w[0]))
		}
		add("conv2d/"+name, func(tp *Tape, v []*Var) *Var {
			var b *Var
			if bias {
				b = v[2]
			}
			return tp.Conv2D(v[0], v[1], b, cp)
		}, ins...)
	}
	conv("basic", ConvParams{}, []int{2, 3, 7, 5}, []int{4, 3, 3, 3}, true)
	conv("s2p1", ConvParams{StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}, []int{1, 3, 7, 6}, []int{5, 3, 3, 3}, true)
	conv("dil2", ConvParams{PadH: 2, PadW: 1, DilH: 2, DilW: 2}, []int{1, 2, 7, 7}, []int{3, 2, 3, 3}, false)
	conv("groups3-rect", ConvParams{PadH: 1, StrideW: 2, Groups: 3}, []int{2, 3, 5, 7}, []int{6, 1, 3, 2}, true)
	conv("1x1", ConvParams{}, []int{3, 5, 1, 1}, []int{1, 5, 1, 1}, true)
	convT := func(name string, cp ConvParams, oph, opw int, x, w []int, bias bool) {
		ins := []gcInput{in(genNormal, x...), in(genNormal, w...)}
		if bias {
			ins = append(ins, in(genNormal, w[1]*max(cp.Groups, 1)))
		}
		add("convT2d/"+name, func(tp *Tape, v []*Var) *Var {
			var b *Var
			if bias {
				b = v[2]
			}
			return tp.ConvTranspose2D(v[0], v[1], b, cp, oph, opw)
		}, ins...)
	}
	convT("s2p1op1", ConvParams{StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}, 1, 1, []int{2, 3, 3, 5}, []int{3, 2, 4, 3}, true)
	convT("groups2-dil", ConvParams{DilH: 2, DilW: 1, Groups: 2, StrideH: 2, StrideW: 3}, 1, 2, []int{1, 4, 3, 3}, []int{4, 3, 2, 3}, true)
	convT("plain", ConvParams{}, 0, 0, []int{1, 1, 1, 1}, []int{1, 3, 3, 3}, false)
	pool := func(name string, max bool, k, s, p int, x ...int) {
		add("pool/"+name, func(tp *Tape, v []*Var) *Var {
			if max {
				return tp.MaxPool2D(v[0], k, s, p)
			}
			return tp.AvgPool2D(v[0], k, s, p)
		}, in(genDistinct, x...))
	}
	pool("max2", true, 2, 2, 0, 2, 3, 6, 5)
	pool("max2even", true, 2, 2, 0, 1, 2, 4, 6)
	pool("max3s2p1", true, 3, 2, 1, 1, 2, 7, 9)
	pool("max3s1p1", true, 3, 1, 1, 1, 1, 5, 3)
	pool("avg2", false, 2, 2, 0, 2, 3, 5, 7)
	pool("avg3s2p1", false, 3, 2, 1, 1, 2, 7, 5)
	pool("max3s2p1-simd", true, 3, 2, 1, 1, 2, 9, 37) // wide enough for the 8-wide row kernel
	pool("max2-simd", true, 2, 2, 0, 1, 2, 4, 36)
	pool("max3s2", true, 3, 2, 0, 1, 1, 5, 39)
	bin := func(name string, f func(tp *Tape, a, b *Var) *Var, ga, gb gcGen, as, bs []int) {
		add(name, func(tp *Tape, v []*Var) *Var { return f(tp, v[0], v[1]) }, in(ga, as...), in(gb, bs...))
	}
	shapes := [][2][]int{
		{{3, 5}, {3, 5}},
		{{2, 3, 4}, {3, 1}},
		{{5}, {3, 5}},
		{{2, 1, 4}, {3, 1}},
		{{1, 3, 1, 1}, {2, 3, 5, 7}},
		{{1}, {3, 5}},
	}
	for _, s := range shapes {
		tag := fmt.Sprintf("%v%v", s[0], s[1])
		bin("add"+tag, (*Tape).Add, genNormal, genNormal, s[0], s[1])
		bin("sub"+tag, (*Tape).Sub, genNormal, genNormal, s[0], s[1])
		bin("mul"+tag, (*Tape).Mul, genNormal, genNormal, s[0], s[1])
		bin("div"+tag, (*Tape).Div, genNormal, genPositive, s[0], s[1])
	}
	un := func(name string, f func(tp *Tape, x *Var) *Var, g gcGen, shape ...int) {
		add(name, func(tp *Tape, v []*Var) *Var { return f(tp, v[0]) }, in(g, shape...))
	}
	un("addscalar", func(tp *Tape, x *Var) *Var { return tp.AddScalar(x, 1.5) }, genNormal, 3, 5)
	un("mulscalar", func(tp *Tape, x *Var) *Var { return tp.MulScalar(x, -0.7) }, genNormal, 7)
	un("relu", (*Tape).ReLU, genAway, 3, 7)
	un("leakyrelu", func(tp *Tape, x *Var) *Var { return tp.LeakyReLU(x, 0.2) }, genAway, 5, 3)
	un("tanh", (*Tape).Tanh, genNormal, 3, 5)
	un("sigmoid", (*Tape).Sigmoid, genNormal, 3, 5)
	un("softplus", (*Tape).Softplus, genNormal, 3, 5)
	un("exp", (*Tape).Exp, genNormal, 1, 5)
	un("log", (*Tape).Log, genPositive, 5, 1)
	un("neg", (*Tape).Neg, genNormal, 3)
	un("square", (*Tape).Square, genNormal, 3, 3)
	un("sqrt", (*Tape).Sqrt, genPositive, 7)
	un("abs", (*Tape).Abs, genAway, 3, 5)
	for _, d := range []int{0, 1, -1} {
		un(fmt.Sprintf("softmax/%d", d), func(tp *Tape, x *Var) *Var { return tp.Softmax(x, d) }, genNormal, 3, 4, 5)
		un(fmt.Sprintf("logsoftmax/%d", d), func(tp *Tape, x *Var) *Var { return tp.LogSoftmax(x, d) }, genNormal, 3, 4, 5)
	}
	for _, dims := range [][]int{{1}, {0, 2}, {-1}, {0, 1, 2}, nil} {
		for _, keep := range []bool{false, true} {
			un(fmt.Sprintf("sum/%v/%v", dims, keep), func(tp *Tape, x *Var) *Var { return tp.Sum(x, dims, keep) }, genNormal, 3, 4, 5)
			un(fmt.Sprintf("mean/%v/%v", dims, keep), func(tp *Tape, x *Var) *Var { return tp.Mean(x, dims, keep) }, genNormal, 3, 1, 5)
		}
	}
	un("sumall", (*Tape).SumAll, genNormal, 3, 5)
	un("globalavgpool", (*Tape).GlobalAvgPool, genNormal, 2, 3, 4, 5)
	un("globalavgpool/1x1", (*Tape).GlobalAvgPool, genNormal, 3, 2, 1, 1)
	un("meanall", (*Tape).MeanAll, genNormal, 7)
	un("max/1", func(tp *Tape, x *Var) *Var { return tp.Max(x, 1, false) }, genDistinct, 3, 4, 5)
	un("max/0keep", func(tp *Tape, x *Var) *Var { return tp.Max(x, 0, true) }, genDistinct, 3, 5)
	un("reshape", func(tp *Tape, x *Var) *Var { return tp.Reshape(x, 5, -1) }, genNormal, 3, 5)
	un("transpose/201", func(tp *Tape, x *Var) *Var { return tp.Transpose(x, 2, 0, 1) }, genNormal, 2, 3, 5)
	un("transpose/10", func(tp *Tape, x *Var) *Var { return tp.Transpose(x, 1, 0) }, genNormal, 3, 7)
	add("concat/1", func(tp *Tape, v []*Var) *Var { return tp.Concat(1, v[0], v[1], v[2]) },
		in(genNormal, 2, 1, 3), in(genNormal, 2, 3, 3), cnstIn(genNormal, 2, 2, 3))
	add("concat/0", func(tp *Tape, v []*Var) *Var { return tp.Concat(0, v[0], v[1]) },
		in(genNormal, 1, 3), in(genNormal, 2, 3))
	un("slice", func(tp *Tape, x *Var) *Var { return tp.Slice(x, 1, 1, 4) }, genNormal, 3, 5, 2)
	un("pad2d", func(tp *Tape, x *Var) *Var { return tp.Pad2D(x, 1, 0, 2, 3) }, genNormal, 2, 3, 3, 5)
	gidx, sidx := []int{0, 4, 2, 4, 1, 1}, []int{2, 0, 2}
	un("gather", func(tp *Tape, x *Var) *Var { return tp.Gather(x, 1, gidx) }, genNormal, 3, 5, 2)
	un("indexselect", func(tp *Tape, x *Var) *Var { return tp.IndexSelect(x, 0, sidx) }, genNormal, 3, 5)
	bn := func(name string, training, affine bool, shape ...int) {
		c := shape[1]
		ins := []gcInput{in(genNormal, shape...)}
		if affine {
			ins = append(ins, in(genNormal, c), in(genNormal, c))
		}
		rm, rv := New(c), New(c)
		add("batchnorm/"+name, func(tp *Tape, v []*Var) *Var {
			for i := range rv.Data {
				rm.Data[i], rv.Data[i] = 0.1*float32(i), 1+0.5*float32(i)
			}
			var g, b *Var
			if affine {
				g, b = v[1], v[2]
			}
			return tp.BatchNorm(v[0], g, b, rm, rv, 0.1, 1e-5, training)
		}, ins...)
	}
	bn("train4d", true, true, 3, 2, 3, 5)
	bn("train2d", true, true, 5, 3)
	bn("train-noaffine", true, false, 2, 3, 1, 3)
	bn("eval", false, true, 3, 2, 3, 1)
	// BatchNormReLU: a smaller step keeps the finite differences off the
	// kink at 0 of the rectified outputs.
	bnr := func(name string, training, affine bool, shape ...int) {
		c := shape[1]
		ins := []gcInput{in(genNormal, shape...)}
		if affine {
			ins = append(ins, in(genAway, c), in(genNormal, c))
		}
		rm, rv := New(c), New(c)
		cs = append(cs, gcCase{name: "batchnormrelu/" + name, in: ins, eps: 1e-3, build: func(tp *Tape, v []*Var) *Var {
			for i := range rv.Data {
				rm.Data[i], rv.Data[i] = 0.1*float32(i), 1+0.5*float32(i)
			}
			var g, b *Var
			if affine {
				g, b = v[1], v[2]
			}
			return tp.BatchNormReLU(v[0], g, b, rm, rv, 0.1, 1e-5, training)
		}})
	}
	bnr("train4d", true, true, 3, 2, 3, 5)
	bnr("train2d", true, true, 5, 3)
	bnr("train-noaffine", true, false, 2, 3, 1, 3)
	bnr("eval", false, true, 3, 2, 3, 1)
	pcg := rand.NewPCG(1, 2)
	drng := rand.New(pcg)
	un("dropout", func(tp *Tape, x *Var) *Var {
		pcg.Seed(1, 2) // the same mask on every forward
		return tp.Dropout(x, 0.4, drng, true)
	}, genNormal, 5, 7)
	labels := []int{3, 0, 6, 6, 2}
	add("crossentropy", func(tp *Tape, v []*Var) *Var { return tp.CrossEntropy(v[0], labels) }, in(genNormal, 5, 7))
	add("crossentropy/smooth0.1", func(tp *Tape, v []*Var) *Var { return tp.CrossEntropySmoothed(v[0], labels, 0.1) }, in(genNormal, 5, 7))
	add("crossentropy/smooth1", func(tp *Tape, v []*Var) *Var { return tp.CrossEntropySmoothed(v[0], labels, 1) }, in(genNormal, 5, 7))
	add("mse", func(tp *Tape, v []*Var) *Var { return tp.MSE(v[0], v[1]) }, in(genNormal, 3, 5), in(genNormal, 3, 5))
	add("bcewithlogits", func(tp *Tape, v []*Var) *Var { return tp.BCEWithLogits(v[0], v[1]) }, in(genNormal, 3, 5), in(genUnit, 3, 5))
	// A composite that reuses one Var in several consumers.
	add("composite/fanout", func(tp *Tape, v []*Var) *Var {
		h := tp.Tanh(tp.Linear(v[0], v[1], nil))
		return tp.Add(tp.Mul(h, h), tp.Sigmoid(h))
	}, in(genNormal, 3, 4), in(genNormal, 5, 4))
	// Every op whose input is an intermediate used twice: the first rule to
	// run writes a fresh gradient, the second accumulates into it.
	twice := func(name string, f func(tp *Tape, h *Var) *Var, shape ...int) {
		add("fanout/"+name, func(tp *Tape, v []*Var) *Var {
			h := tp.Tanh(v[0])
			return tp.Add(f(tp, h), tp.MulScalar(f(tp, h), 0.5))
		}, in(genNormal, shape...))
	}
	w33 := gcValues(rand.New(rand.NewPCG(3, 3)), []int{2, 2, 3, 3}, genNormal)
	twice("conv2d", func(tp *Tape, h *Var) *Var { return tp.Conv2D(h, tp.Const(w33), nil, ConvParams{PadH: 1, PadW: 1}) }, 1, 2, 4, 5)
	twice("convT2d", func(tp *Tape, h *Var) *Var {
		return tp.ConvTranspose2D(h, tp.Const(w33), nil, ConvParams{StrideH: 2, StrideW: 2}, 1, 0)
	}, 1, 2, 3, 2)
	twice("matmul", func(tp *Tape, h *Var) *Var { return tp.MatMul(h, h, false, true) }, 3, 4)
	twice("linear", func(tp *Tape, h *Var) *Var { return tp.Linear(h, h, nil) }, 3, 4)
	twice("relu", (*Tape).ReLU, 3, 5)
	twice("maxpool2", func(tp *Tape, h *Var) *Var { return tp.MaxPool2D(h, 2, 2, 0) }, 1, 2, 4, 6)
	twice("maxpool3s2p1", func(tp *Tape, h *Var) *Var { return tp.MaxPool2D(h, 3, 2, 1) }, 1, 2, 5, 20)
	twice("globalavgpool", (*Tape).GlobalAvgPool, 2, 3, 2, 2)
	twice("reshape", func(tp *Tape, h *Var) *Var { return tp.Reshape(h, -1) }, 3, 5)
	twice("addscalar", func(tp *Tape, h *Var) *Var { return tp.AddScalar(h, 1) }, 3, 5)
	return cs
}

func TestGradCheck(t *testing.T) {
	for _, c := range gradCheckCases() {
		t.Run(c.name, func(t *testing.T) { runGradCheck(t, c) })
	}
}
