package models

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/tensorcore"
)

func closeTo(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

func TestLinearForward(t *testing.T) {
	b := NewBuilder(rand.New(rand.NewPCG(1, 1)))
	l := NewLinear(b, "fc", 3, 2, LayerInit{})
	if _, err := b.Build(); err != nil {
		t.Fatal(err)
	}
	copy(l.W.Data, []float32{1, 2, 3, -1, 0, 1}) // (2, 3)
	copy(l.B.Data, []float32{0.5, -0.5})
	tp := tensorcore.NewTape(nil)
	x := tp.Const(tensorcore.FromSlice([]float32{1, 1, 1, 2, 0, -1}, 2, 3))
	y := l.Forward(Ctx{Tape: tp}, x)
	want := []float32{6.5, -0.5, -0.5, -3.5}
	for i, w := range want {
		if !closeTo(float64(y.Value.Data[i]), float64(w), 1e-6) {
			t.Fatalf("y = %v, want %v", y.Value.Data, want)
		}
	}
}

// Layer constructors name their parameters with dotted paths and PyTorch
// shapes, and LayerInit.NoBias drops the bias.
func TestLayerParamNames(t *testing.T) {
	b := NewBuilder(rand.New(rand.NewPCG(1, 1)))
	NewConv2d(b, "enc.c", 4, 6, 3, convGroups(2), LayerInit{})
	NewConvTranspose2d(b, "dec.t", 6, 4, 4, convGroups(2), 1, LayerInit{})
	NewLinear(b, "head", 10, 5, LayerInit{NoBias: true})
	NewBatchNorm(b, "bn", 7)
	NewBasicBlock(b, "block", 8, 16, 2, BlockOptions{})
	a, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := []ParamInfo{
		{Name: "enc.c.weight", Shape: []int{6, 2, 3, 3}},
		{Name: "enc.c.bias", Shape: []int{6}},
		{Name: "dec.t.weight", Shape: []int{6, 2, 4, 4}},
		{Name: "dec.t.bias", Shape: []int{4}},
		{Name: "head.weight", Shape: []int{5, 10}},
		{Name: "bn.weight", Shape: []int{7}},
		{Name: "bn.bias", Shape: []int{7}},
		{Name: "block.conv1.weight", Shape: []int{16, 8, 3, 3}},
		{Name: "block.bn1.weight", Shape: []int{16}},
		{Name: "block.bn1.bias", Shape: []int{16}},
		{Name: "block.conv2.weight", Shape: []int{16, 16, 3, 3}},
		{Name: "block.bn2.weight", Shape: []int{16}},
		{Name: "block.bn2.bias", Shape: []int{16}},
		{Name: "block.downsample.0.weight", Shape: []int{16, 8, 1, 1}},
		{Name: "block.downsample.1.weight", Shape: []int{16}},
		{Name: "block.downsample.1.bias", Shape: []int{16}},
	}
	if len(a.Params) != len(want) {
		t.Fatalf("%d params, want %d: %v", len(a.Params), len(want), a.Params)
	}
	for i, p := range a.Params {
		if p.Name != want[i].Name || !slices.Equal(p.Shape, want[i].Shape) {
			t.Errorf("param %d = %s %v, want %s %v", i, p.Name, p.Shape, want[i].Name, want[i].Shape)
		}
	}
	bufs := []string{"bn.running_mean", "bn.running_var", "block.bn1.running_mean"}
	for i, n := range bufs {
		if a.BufferInfo[i].Name != n {
			t.Errorf("buffer %d = %s, want %s", i, a.BufferInfo[i].Name, n)
		}
	}
	// BatchNorm starts as the identity with unit running variance.
	if g := a.Value("bn.weight"); g.Data[0] != 1 || a.Value("bn.bias").Data[0] != 0 || a.Buffer("bn.running_var").Data[3] != 1 {
		t.Error("BatchNorm initial values wrong")
	}
}

func TestActivations(t *testing.T) {
	tp := tensorcore.NewTape(nil)
	c := Ctx{Tape: tp}
	xs := []float32{-2, -0.5, 0, 1, 3}
	x := tp.Const(tensorcore.FromSlice(xs, 5))
	cases := []struct {
		name string
		m    Module
		f    func(float64) float64
	}{
		{"relu", ReLU{}, func(v float64) float64 { return math.Max(v, 0) }},
		{"tanh", Tanh{}, math.Tanh},
		{"sigmoid", Sigmoid{}, func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }},
		{"leaky", LeakyReLU{Slope: 0.1}, func(v float64) float64 {
			if v > 0 {
				return v
			}
			return 0.1 * v
		}},
		{"scaled tanh", ScaledTanh{}, func(v float64) float64 { return 1.7159 * math.Tanh(2*v/3) }},
	}
	for _, cs := range cases {
		y := cs.m.Forward(c, x).Value.Data
		for i, v := range xs {
			if !closeTo(float64(y[i]), cs.f(float64(v)), 1e-6) {
				t.Errorf("%s(%v) = %v, want %v", cs.name, v, y[i], cs.f(float64(v)))
			}
		}
	}
	// ScaledTanh maps ±1 to about ±1, its design point.
	if y := (ScaledTanh{}).Forward(c, tp.Const(tensorcore.FromSlice([]float32{1}, 1))).Value.Data[0]; math.Abs(float64(y)-1) > 1e-3 {
		t.Errorf("ScaledTanh(1) = %v", y)
	}
}

func TestPoolsFlattenShapes(t *testing.T) {
	tp := tensorcore.NewTape(nil)
	c := Ctx{Tape: tp}
	x := tp.Const(tensorcore.New(2, 3, 8, 6))
	for i := range x.Value.Data {
		x.Value.Data[i] = float32(i)
	}
	if s := (MaxPool2d{K: 2}).Forward(c, x).Value.Shape; !slices.Equal(s, []int{2, 3, 4, 3}) {
		t.Errorf("MaxPool2d shape %v", s)
	}
	if s := (MaxPool2d{K: 3, Stride: 2, Pad: 1}).Forward(c, x).Value.Shape; !slices.Equal(s, []int{2, 3, 4, 3}) {
		t.Errorf("MaxPool2d k3 s2 p1 shape %v", s)
	}
	avg := (AvgPool2d{K: 2}).Forward(c, x)
	if s := avg.Value.Shape; !slices.Equal(s, []int{2, 3, 4, 3}) {
		t.Errorf("AvgPool2d shape %v", s)
	}
	if v := avg.Value.Data[0]; v != (0+1+6+7)/4.0 {
		t.Errorf("AvgPool2d first = %v", v)
	}
	f := (Flatten{}).Forward(c, x)
	if s := f.Value.Shape; !slices.Equal(s, []int{2, 144}) || &f.Value.Data[0] != &x.Value.Data[0] {
		t.Errorf("Flatten shape %v (or copied)", s)
	}
}

func TestDropoutLayer(t *testing.T) {
	tp := tensorcore.NewTape(nil)
	xt := tensorcore.New(1000)
	for i := range xt.Data {
		xt.Data[i] = 1
	}
	d := Dropout{P: 0.25}
	if x := tp.Const(xt); d.Forward(Ctx{Tape: tp}, x) != x {
		t.Error("Dropout in evaluation is not the identity")
	}
	run := func() []float32 {
		tp.Reset()
		y := d.Forward(Ctx{Tape: tp, Training: true, RNG: rand.New(rand.NewPCG(1, 2))}, tp.Const(xt))
		return append([]float32(nil), y.Value.Data...)
	}
	y1, y2 := run(), run()
	zeros := 0
	for i, v := range y1 {
		if v != y2[i] {
			t.Fatal("same rng, different masks")
		}
		switch {
		case v == 0:
			zeros++
		case !closeTo(float64(v), 1/0.75, 1e-6):
			t.Fatalf("kept element %v, want %v", v, 1/0.75)
		}
	}
	if zeros < 200 || zeros > 300 {
		t.Errorf("%d of 1000 dropped, want about 250", zeros)
	}
}

// BatchNorm updates its running statistics, which live in the arena's
// Buffers, in training and uses them in evaluation.
func TestBatchNormBuffers(t *testing.T) {
	b := NewBuilder(rand.New(rand.NewPCG(1, 1)))
	bn := NewBatchNorm(b, "bn", 2)
	a, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	tp := tensorcore.NewTape(nil)
	// Channel 0 holds 1..4 (mean 2.5, unbiased var 5/3), channel 1 all 10.
	xt := tensorcore.FromSlice([]float32{1, 2, 10, 10, 3, 4, 10, 10}, 2, 2, 2, 1)
	bn.Forward(Ctx{Tape: tp, Training: true}, tp.Const(xt))
	rm, rv := a.Buffer("bn.running_mean").Data, a.Buffer("bn.running_var").Data
	if !closeTo(float64(rm[0]), 0.25, 1e-6) || !closeTo(float64(rm[1]), 1, 1e-6) ||
		!closeTo(float64(rv[0]), 0.9+0.1*5.0/3, 1e-6) || !closeTo(float64(rv[1]), 0.9, 1e-6) {
		t.Errorf("running mean %v var %v", rm, rv)
	}
	tp.Reset() // Vars recorded before Reset are recycled: record the input again
	y := bn.Forward(Ctx{Tape: tp}, tp.Const(xt)).Value.Data
	want := (1 - 0.25) / math.Sqrt(float64(rv[0])+1e-5)
	if !closeTo(float64(y[0]), want, 1e-5) {
		t.Errorf("evaluation output %v, want %v", y[0], want)
	}
}

// gradNet is a small network using every parametrized layer kind, for the
// finite-difference check of the arena gradients.
func gradNet(b *Builder) Module {
	return Sequential{
		NewConv2d(b, "c1", 2, 4, 3, tensorcore.ConvParams{PadH: 1, PadW: 1, StrideH: 2, StrideW: 2}, LayerInit{}), // (N,4,3,3)
		NewBatchNorm(b, "bn", 4),
		Tanh{},
		NewBasicBlock(b, "res", 4, 6, 1, BlockOptions{}),
		NewConvTranspose2d(b, "up", 6, 3, 2, tensorcore.ConvParams{StrideH: 2, StrideW: 2}, 1, LayerInit{}), // (N,3,7,7)
		AvgPool2d{K: 2}, // (N,3,3,3)
		ScaledTanh{},
		Flatten{},
		NewLinear(b, "fc", 27, 5, LayerInit{Weight: GlorotUniform(1)}),
		Sigmoid{},
	}
}

// The gradients the layers leave in Arena.Grad match central differences of
// the loss with respect to Arena.Data.
func TestLayerGradientsFiniteDifference(t *testing.T) {
	b := NewBuilder(rand.New(rand.NewPCG(11, 12)))
	net := gradNet(b)
	a, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	x := tensorcore.New(3, 2, 6, 6)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	target := tensorcore.New(3, 5)
	for i := range target.Data {
		target.Data[i] = float32(rng.Float64())
	}
	tp := tensorcore.NewTape(nil)
	saved := append([]float32(nil), a.Buffers...)
	loss := func() float64 {
		copy(a.Buffers, saved) // training passes move the running statistics
		tp.Reset()
		out := net.Forward(Ctx{Tape: tp, Training: true}, tp.Const(x))
		l := MSE(tp, out, tp.Const(target))
		return float64(l.Value.Data[0])
	}
	copy(a.Buffers, saved)
	tp.Reset()
	a.ZeroGrad()
	tp.Backward(MSE(tp, net.Forward(Ctx{Tape: tp, Training: true}, tp.Const(x)), tp.Const(target)))
	grad := append([]float32(nil), a.Grad...)

	// Central differences on every parameter. Where a ReLU inside the
	// residual block crosses 0 under the perturbation the loss has a kink
	// there: the one-sided differences disagree, and the element is skipped
	// (a handful are). Elsewhere each element must agree.
	const eps = 1e-3
	base := loss()
	checked, skipped := 0, 0
	for _, p := range a.Params {
		for k := 0; k < p.Len(); k++ {
			i := p.Offset + k
			orig := a.Data[i]
			a.Data[i] = orig + eps
			up := loss()
			a.Data[i] = orig - eps
			down := loss()
			a.Data[i] = orig
			num := (up - down) / (2 * eps)
			if fwd, bwd := (up-base)/eps, (base-down)/eps; math.Abs(fwd-bwd) > 0.02*math.Abs(num)+5e-5 {
				skipped++
				continue
			}
			checked++
			if ana := float64(grad[i]); math.Abs(num-ana) > 0.02*math.Abs(num)+5e-5 {
				t.Errorf("%s[%d]: analytic %.6g, numeric %.6g", p.Name, k, ana, num)
			}
		}
	}
	t.Logf("%d elements checked, %d skipped at kinks", checked, skipped)
	if skipped > checked/10 {
		t.Errorf("%d of %d elements skipped at kinks", skipped, checked+skipped)
	}
}

func TestLosses(t *testing.T) {
	tp := tensorcore.NewTape(nil)
	mk := func(data []float32, shape ...int) (*tensorcore.Var, *tensorcore.Tensor) {
		v, g := tensorcore.FromSlice(data, shape...), tensorcore.New(shape...)
		return tp.Param(v, g), g
	}

	// L1: |1-0| + |2-4| + |3-3| over 3 = 1; gradient sign(a-b)/3.
	a, ga := mk([]float32{1, 2, 3}, 3)
	l := L1(tp, a, tp.Const(tensorcore.FromSlice([]float32{0, 4, 3}, 3)))
	tp.Backward(l)
	if l.Value.Data[0] != 1 || !closeTo(float64(ga.Data[0]), 1.0/3, 1e-6) || !closeTo(float64(ga.Data[1]), -1.0/3, 1e-6) || ga.Data[2] != 0 {
		t.Errorf("L1 = %v, grad %v", l.Value.Data, ga.Data)
	}

	// MultiMargin (margin 1), by hand:
	//   row 0, y=3: 0.3 + 0.4 + 0.6 = 1.3 → /4 = 0.325
	//   row 1, y=0: 0.6 + 0 + 1.4 = 2.0 → /4 = 0.5; mean 0.4125.
	// Gradient: 1/(4·2) = 0.125 per active term, minus that for the label.
	tp.Reset()
	x, gx := mk([]float32{0.1, 0.2, 0.4, 0.8, 0.5, 0.1, -2, 0.9}, 2, 4)
	l = MultiMargin(tp, x, []int{3, 0}, 1)
	tp.Backward(l)
	if !closeTo(float64(l.Value.Data[0]), 0.4125, 1e-6) {
		t.Errorf("MultiMargin = %v, want 0.4125", l.Value.Data[0])
	}
	wantG := []float64{0.125, 0.125, 0.125, -0.375, -0.25, 0.125, 0, 0.125}
	for i, w := range wantG {
		if math.Abs(float64(gx.Data[i])-w) > 1e-6 {
			t.Fatalf("MultiMargin grad %v, want %v", gx.Data, wantG)
		}
	}

	// NLL of LogSoftmax equals CrossEntropy, value and gradient.
	logits := []float32{0.3, -1, 2, 0.5, 0.5, 0.5, -3, 1, 0}
	labels := []int{2, 0, 1}
	tp.Reset()
	x1, g1 := mk(append([]float32(nil), logits...), 3, 3)
	ce := CrossEntropy(tp, x1, labels)
	tp.Backward(ce)
	tp.Reset()
	x2, g2 := mk(append([]float32(nil), logits...), 3, 3)
	nll := NLL(tp, tp.LogSoftmax(x2, 1), labels)
	tp.Backward(nll)
	if !closeTo(float64(ce.Value.Data[0]), float64(nll.Value.Data[0]), 1e-6) {
		t.Errorf("CE %v vs NLL %v", ce.Value.Data[0], nll.Value.Data[0])
	}
	for i := range g1.Data {
		if math.Abs(float64(g1.Data[i]-g2.Data[i])) > 1e-6 {
			t.Fatalf("CE grad %v vs NLL grad %v", g1.Data, g2.Data)
		}
	}

	// MSE and BCEWithLogits by hand.
	tp.Reset()
	m := MSE(tp, tp.Const(tensorcore.FromSlice([]float32{1, 3}, 2)), tp.Const(tensorcore.FromSlice([]float32{0, 1}, 2)))
	if m.Value.Data[0] != 2.5 {
		t.Errorf("MSE = %v, want 2.5", m.Value.Data[0])
	}
	bce := BCEWithLogits(tp, tp.Const(tensorcore.FromSlice([]float32{0, 2}, 2)), tp.Const(tensorcore.FromSlice([]float32{1, 0}, 2)))
	want := (math.Log(2) + math.Log(1+math.Exp(2))) / 2
	if !closeTo(float64(bce.Value.Data[0]), want, 1e-6) {
		t.Errorf("BCEWithLogits = %v, want %v", bce.Value.Data[0], want)
	}

	if n := CountCorrect(tensorcore.FromSlice(logits, 3, 3), []int{2, 1, 1}); n != 2 {
		t.Errorf("CountCorrect = %d, want 2", n) // row 1 ties: the first maximum (0) wins, not 1
	}
}
