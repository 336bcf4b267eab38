package tensorcore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The forward values of the ops, against plain float64 references written
// from the definitions (gradients are checked in gradcheck_test.go, PyTorch
// agreement in golden_test.go).

func randTensor(rng *rand.Rand, shape ...int) *Tensor {
	t := New(shape...)
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

// unravel turns a flat index into a multi-index of shape.
func unravel(i int, shape []int) []int {
	idx := make([]int, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = i % shape[d]
		i /= shape[d]
	}
	return idx
}

// at reads t at a multi-index aligned to the right, with broadcasting.
func at(t *Tensor, idx []int) float64 {
	off, st := 0, 1
	for d := len(t.Shape) - 1; d >= 0; d-- {
		k := idx[len(idx)-len(t.Shape)+d]
		if t.Shape[d] == 1 {
			k = 0
		}
		off += k * st
		st *= t.Shape[d]
	}
	return float64(t.Data[off])
}

func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		g := float64(got[i])
		if math.IsNaN(w) != math.IsNaN(g) || math.Abs(g-w) > tol*math.Max(1, math.Abs(w)) {
			t.Fatalf("%s: [%d] = %v, want %v", what, i, g, w)
		}
	}
}

func TestBinaryBroadcastForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	ops := []struct {
		name string
		f    func(tp *Tape, a, b *Var) *Var
		ref  func(a, b float64) float64
	}{
		{"add", (*Tape).Add, func(a, b float64) float64 { return a + b }},
		{"sub", (*Tape).Sub, func(a, b float64) float64 { return a - b }},
		{"mul", (*Tape).Mul, func(a, b float64) float64 { return a * b }},
		{"div", (*Tape).Div, func(a, b float64) float64 { return a / b }},
	}
	shapes := [][3][]int{
		{{3, 5}, {3, 5}, {3, 5}},
		{{2, 3, 4}, {3, 1}, {2, 3, 4}},
		{{5}, {3, 5}, {3, 5}},
		{{2, 1, 4}, {3, 1}, {2, 3, 4}},
		{{1, 3, 1, 1}, {2, 3, 5, 7}, {2, 3, 5, 7}},
		{{4, 1}, {1, 6}, {4, 6}},
		{{1}, {1}, {1}},
	}
	for _, op := range ops {
		for _, s := range shapes {
			a, b := randTensor(rng, s[0]...), randTensor(rng, s[1]...)
			tp := NewTape(nil)
			y := op.f(tp, tp.Const(a), tp.Const(b))
			if !slices.Equal(y.Value.Shape, s[2]) {
				t.Fatalf("%s %v %v: shape %v, want %v", op.name, s[0], s[1], y.Value.Shape, s[2])
			}
			want := make([]float64, y.Value.Len())
			for i := range want {
				idx := unravel(i, s[2])
				want[i] = op.ref(at(a, idx), at(b, idx))
			}
			closeTo(t, fmt.Sprintf("%s %v %v", op.name, s[0], s[1]), y.Value.Data, want, 1e-6)
		}
	}
	tp := NewTape(nil)
	mustPanic(t, func() { tp.Add(tp.Const(New(2, 3)), tp.Const(New(3, 2))) }, "[2 3]", "[3 2]")
}

func TestUnaryForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 1))
	x := randTensor(rng, 3, 7)
	x.Data[0], x.Data[1] = 0, float32(math.NaN())
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	cases := []struct {
		name string
		f    func(tp *Tape, x *Var) *Var
		ref  func(v float64) float64
	}{
		{"addscalar", func(tp *Tape, x *Var) *Var { return tp.AddScalar(x, 2.5) }, func(v float64) float64 { return v + 2.5 }},
		{"mulscalar", func(tp *Tape, x *Var) *Var { return tp.MulScalar(x, -3) }, func(v float64) float64 { return -3 * v }},
		{"relu", (*Tape).ReLU, func(v float64) float64 {
			if v > 0 || math.IsNaN(v) {
				return v
			}
			return 0
		}},
		{"leakyrelu", func(tp *Tape, x *Var) *Var { return tp.LeakyReLU(x, 0.1) }, func(v float64) float64 {
			if v > 0 || math.IsNaN(v) {
				return v
			}
			return 0.1 * v
		}},
		{"tanh", (*Tape).Tanh, math.Tanh},
		{"sigmoid", (*Tape).Sigmoid, sig},
		{"softplus", (*Tape).Softplus, func(v float64) float64 { return math.Log(1 + math.Exp(v)) }},
		{"exp", (*Tape).Exp, math.Exp},
		{"log", (*Tape).Log, math.Log},
		{"neg", (*Tape).Neg, func(v float64) float64 { return -v }},
		{"square", (*Tape).Square, func(v float64) float64 { return v * v }},
		{"sqrt", (*Tape).Sqrt, math.Sqrt},
		{"abs", (*Tape).Abs, math.Abs},
	}
	for _, c := range cases {
		tp := NewTape(nil)
		y := c.f(tp, tp.Const(x))
		want := make([]float64, x.Len())
		for i, v := range x.Data {
			want[i] = c.ref(float64(v))
		}
		closeTo(t, c.name, y.Value.Data, want, 1e-6)
	}
	// Extreme inputs stay finite where the function is.
	big := FromSlice([]float32{-100, 100, -1e30, 1e30}, 4)
	tp := NewTape(nil)
	closeTo(t, "sigmoid extremes", tp.Sigmoid(tp.Const(big)).Value.Data, []float64{0, 1, 0, 1}, 1e-6)
	closeTo(t, "softplus extremes", tp.Softplus(tp.Const(big)).Value.Data, []float64{0, 100, 0, 1e30}, 1e-6)
}

func naiveMatMul(a, b []float32, m, n, k int, tA, tB bool) []float64 {
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				av, bv := a[i*k+p], b[p*n+j]
				if tA {
					av = a[p*m+i]
				}
				if tB {
					bv = b[j*k+p]
				}
				s += float64(av) * float64(bv)
			}
			c[i*n+j] = s
		}
	}
	return c
}

func TestMatMulAndLinearForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 1))
	m, n, k := 4, 3, 5
	for _, tA := range []bool{false, true} {
		for _, tB := range []bool{false, true} {
			as, bs := []int{2, m, k}, []int{2, k, n}
			if tA {
				as = []int{2, k, m}
			}
			if tB {
				bs = []int{2, n, k}
			}
			a, b := randTensor(rng, as...), randTensor(rng, bs...)
			tp := NewTape(nil)
			y := tp.MatMul(tp.Const(a), tp.Const(b), tA, tB)
			if !slices.Equal(y.Value.Shape, []int{2, m, n}) {
				t.Fatalf("shape %v", y.Value.Shape)
			}
			var want []float64
			for p := 0; p < 2; p++ {
				want = append(want, naiveMatMul(a.Data[p*m*k:], b.Data[p*k*n:], m, n, k, tA, tB)...)
			}
			closeTo(t, fmt.Sprintf("matmul tA=%v tB=%v", tA, tB), y.Value.Data, want, 1e-5)
		}
	}
	x, w, bias := randTensor(rng, 3, 5), randTensor(rng, 4, 5), randTensor(rng, 4)
	tp := NewTape(nil)
	y := tp.Linear(tp.Const(x), tp.Const(w), tp.Const(bias))
	want := naiveMatMul(x.Data, w.Data, 3, 4, 5, false, true)
	for i := range want {
		want[i] += float64(bias.Data[i%4])
	}
	closeTo(t, "linear", y.Value.Data, want, 1e-5)
	mustPanic(t, func() { tp.MatMul(tp.Const(New(2, 3)), tp.Const(New(2, 3)), false, false) }, "[2 3]")
	mustPanic(t, func() { tp.Linear(tp.Const(New(2, 3)), tp.Const(New(4, 2)), nil) }, "[2 3]", "[4 2]")
}

// convRef64 is a float64 convolution from the definition.
func convRef64(x, w *Tensor, cp ConvParams) ([]float64, [4]int) {
	cp = cp.norm()
	n, c, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	o, cg, kh, kw := w.Shape[0], w.Shape[1], w.Shape[2], w.Shape[3]
	oh := (h+2*cp.PadH-cp.DilH*(kh-1)-1)/cp.StrideH + 1
	ow := (wd+2*cp.PadW-cp.DilW*(kw-1)-1)/cp.StrideW + 1
	og := o / cp.Groups
	y := make([]float64, n*o*oh*ow)
	for b := 0; b < n; b++ {
		for oc := 0; oc < o; oc++ {
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					var s float64
					for ic := 0; ic < cg; ic++ {
						xc := oc/og*cg + ic
						for p := 0; p < kh; p++ {
							for q := 0; q < kw; q++ {
								r, cc := i*cp.StrideH-cp.PadH+p*cp.DilH, j*cp.StrideW-cp.PadW+q*cp.DilW
								if r < 0 || r >= h || cc < 0 || cc >= wd {
									continue
								}
								s += float64(x.Data[((b*c+xc)*h+r)*wd+cc]) * float64(w.Data[((oc*cg+ic)*kh+p)*kw+q])
							}
						}
					}
					y[((b*o+oc)*oh+i)*ow+j] = s
				}
			}
		}
	}
	return y, [4]int{n, o, oh, ow}
}

func TestConvTranspose2DIsAdjointOfConv2D(t *testing.T) {
	// <convT(x), z> = <x, conv(z)> for the conv whose weight layout convT shares.
	rng := rand.New(rand.NewPCG(4, 1))
	cp := ConvParams{StrideH: 2, StrideW: 3, PadH: 1, PadW: 0, DilH: 1, DilW: 2, Groups: 2}
	x, w := randTensor(rng, 2, 4, 3, 4), randTensor(rng, 4, 3, 3, 2)
	tp := NewTape(nil)
	y := tp.ConvTranspose2D(tp.Const(x), tp.Const(w), nil, cp, 1, 2)
	z := randTensor(rng, y.Value.Shape...)
	cz, cs := convRef64(z, w, cp)
	if cs != [4]int(x.Shape) {
		t.Fatalf("conv of the transposed output has shape %v, input %v", cs, x.Shape)
	}
	var lhs, rhs float64
	for i, v := range y.Value.Data {
		lhs += float64(v) * float64(z.Data[i])
	}
	for i, v := range x.Data {
		rhs += float64(v) * cz[i]
	}
	if math.Abs(lhs-rhs) > 1e-4*math.Max(1, math.Abs(rhs)) {
		t.Fatalf("<convT(x), z> = %v, <x, conv(z)> = %v", lhs, rhs)
	}
	// Conv2D itself against the float64 definition, with groups and dilation.
	y2 := tp.Conv2D(tp.Const(z), tp.Const(w), nil, cp)
	closeTo(t, "conv2d", y2.Value.Data, cz, 1e-5)
	mustPanic(t, func() { tp.ConvTranspose2D(tp.Const(x), tp.Const(w), nil, cp, 2, 0) }, "output padding")
}

func TestPoolingForward(t *testing.T) {
	x := FromSlice([]float32{
		1, 2, 3, 4, 5,
		6, 7, 8, 9, 10,
		11, 12, 13, 14, 15,
		16, 17, 18, 19, float32(math.NaN()),
	}, 1, 1, 4, 5)
	tp := NewTape(nil)
	y := tp.MaxPool2D(tp.Const(x), 2, 2, 0)
	closeTo(t, "maxpool 2", y.Value.Data, []float64{7, 9, 17, 19}, 0)
	y = tp.MaxPool2D(tp.Const(x), 3, 2, 1)
	closeTo(t, "maxpool 3s2p1", y.Value.Data, []float64{7, 9, 10, 17, 19, math.NaN()}, 0)
	y = tp.AvgPool2D(tp.Const(x), 2, 2, 0)
	closeTo(t, "avgpool 2", y.Value.Data, []float64{4, 6, 14, 16}, 1e-6)
	y = tp.AvgPool2D(tp.Const(x), 3, 2, 1)
	closeTo(t, "avgpool 3s2p1 (padding counted)", y.Value.Data, []float64{16.0 / 9, 33.0 / 9, 28.0 / 9, 69.0 / 9, 117.0 / 9, math.NaN()}, 1e-6)
	x.Data[8] = float32(math.NaN())
	y = tp.MaxPool2D(tp.Const(x), 2, 2, 0)
	closeTo(t, "maxpool 2 with NaN", y.Value.Data, []float64{7, math.NaN(), 17, 19}, 0)
	mustPanic(t, func() { tp.MaxPool2D(tp.Const(New(1, 1, 4)), 2, 2, 0) }, "[1 1 4]")
	mustPanic(t, func() { tp.MaxPool2D(tp.Const(New(1, 1, 1, 1)), 3, 1, 0) }, "[1 1 1 1]")
}

func TestReductionsForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 1))
	x := randTensor(rng, 3, 4, 5)
	for _, c := range []struct {
		dims  []int
		keep  bool
		shape []int
	}{
		{[]int{1}, false, []int{3, 5}},
		{[]int{1}, true, []int{3, 1, 5}},
		{[]int{0, -1}, false, []int{4}},
		{[]int{2, 0}, true, []int{1, 4, 1}},
		{nil, false, []int{1}},
		{nil, true, []int{1, 1, 1}},
	} {
		tp := NewTape(nil)
		s := tp.Sum(tp.Const(x), c.dims, c.keep)
		m := tp.Mean(tp.Const(x), c.dims, c.keep)
		if !slices.Equal(s.Value.Shape, c.shape) || !slices.Equal(m.Value.Shape, c.shape) {
			t.Fatalf("Sum %v keep %v: shape %v, want %v", c.dims, c.keep, s.Value.Shape, c.shape)
		}
		red := [3]bool{}
		if len(c.dims) == 0 {
			red = [3]bool{true, true, true}
		}
		for _, d := range c.dims {
			red[(d+3)%3] = true
		}
		want := make([]float64, s.Value.Len())
		cnt := 1
		for d := range 3 {
			if red[d] {
				cnt *= x.Shape[d]
			}
		}
		for i, v := range x.Data {
			idx := unravel(i, x.Shape)
			o := 0
			for d := range 3 {
				if !red[d] {
					o = o*x.Shape[d] + idx[d]
				}
			}
			want[o] += float64(v)
		}
		closeTo(t, fmt.Sprintf("sum %v", c.dims), s.Value.Data, want, 1e-5)
		for i := range want {
			want[i] /= float64(cnt)
		}
		closeTo(t, fmt.Sprintf("mean %v", c.dims), m.Value.Data, want, 1e-5)
	}
	tp := NewTape(nil)
	mx := tp.Max(tp.Const(x), 1, false)
	want := make([]float64, 15)
	for i := range want {
		want[i] = math.Inf(-1)
	}
	for i, v := range x.Data {
		idx := unravel(i, x.Shape)
		want[idx[0]*5+idx[2]] = math.Max(want[idx[0]*5+idx[2]], float64(v))
	}
	closeTo(t, "max", mx.Value.Data, want, 0)
	x.Data[7] = float32(math.NaN())
	if v := tp.Max(tp.Const(x), 1, false).Value.Data[2]; !math.IsNaN(float64(v)) {
		t.Fatalf("Max over a NaN gives %v", v)
	}
	if v := tp.SumAll(tp.Const(x)).Value.Data[0]; !math.IsNaN(float64(v)) {
		t.Fatalf("SumAll over a NaN gives %v", v)
	}
	mustPanic(t, func() { tp.Sum(tp.Const(x), []int{3}, false) }, "3", "[3 4 5]")
}

func TestSoftmaxForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 1))
	x := randTensor(rng, 2, 3, 4)
	x.Data[0] = 80 // large values must not overflow
	for _, dim := range []int{0, 1, 2} {
		tp := NewTape(nil)
		s := tp.Softmax(tp.Const(x), dim)
		ls := tp.LogSoftmax(tp.Const(x), dim)
		want := make([]float64, x.Len())
		lwant := make([]float64, x.Len())
		for i := range x.Data {
			idx := unravel(i, x.Shape)
			var z float64
			for k := 0; k < x.Shape[dim]; k++ {
				j := slices.Clone(idx)
				j[dim] = k
				z += math.Exp(at(x, j) - 80)
			}
			want[i] = math.Exp(float64(x.Data[i])-80) / z
			lwant[i] = float64(x.Data[i]) - 80 - math.Log(z)
		}
		closeTo(t, fmt.Sprintf("softmax %d", dim), s.Value.Data, want, 1e-6)
		closeTo(t, fmt.Sprintf("logsoftmax %d", dim), ls.Value.Data, lwant, 1e-5)
	}
}

func TestShapeOpsForward(t *testing.T) {
	x := FromSlice([]float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 2, 3, 2)
	tp := NewTape(nil)
	xv := tp.Const(x)
	tr := tp.Transpose(xv, 2, 0, 1)
	if !slices.Equal(tr.Value.Shape, []int{2, 2, 3}) {
		t.Fatalf("transpose shape %v", tr.Value.Shape)
	}
	closeTo(t, "transpose", tr.Value.Data, []float64{0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11}, 0)
	r := tp.Reshape(xv, 3, -1)
	if !slices.Equal(r.Value.Shape, []int{3, 4}) || &r.Value.Data[0] != &x.Data[0] {
		t.Fatalf("reshape %v does not view the input", r.Value.Shape)
	}
	sl := tp.Slice(xv, 1, 1, 3)
	closeTo(t, "slice", sl.Value.Data, []float64{2, 3, 4, 5, 8, 9, 10, 11}, 0)
	cc := tp.Concat(1, sl, xv)
	if !slices.Equal(cc.Value.Shape, []int{2, 5, 2}) {
		t.Fatalf("concat shape %v", cc.Value.Shape)
	}
	closeTo(t, "concat", cc.Value.Data, []float64{2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 6, 7, 8, 9, 10, 11}, 0)
	p := tp.Pad2D(tp.Const(FromSlice([]float32{1, 2, 3, 4}, 1, 2, 2)), 1, 0, 0, 1)
	closeTo(t, "pad2d", p.Value.Data, []float64{0, 0, 0, 1, 2, 0, 3, 4, 0}, 0)
	g := tp.Gather(xv, 1, []int{2, 0, 1, 1})
	closeTo(t, "gather", g.Value.Data, []float64{4, 1, 8, 9}, 0)
	is := tp.IndexSelect(xv, 0, []int{1, 1, 0})
	closeTo(t, "indexselect", is.Value.Data, []float64{6, 7, 8, 9, 10, 11, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5}, 0)
	mustPanic(t, func() { tp.Transpose(xv, 0, 0, 1) }, "[0 0 1]", "[2 3 2]")
	mustPanic(t, func() { tp.Concat(0, xv, sl) }, "[2 3 2]", "[2 2 2]")
	mustPanic(t, func() { tp.Slice(xv, 1, 2, 4) }, "[2 3 2]")
	mustPanic(t, func() { tp.Gather(xv, 1, []int{3, 0, 0, 0}) }, "3")
	mustPanic(t, func() { tp.Reshape(xv, 5, -1) }, "[2 3 2]")
}

func TestBatchNormForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 1))
	x := randTensor(rng, 4, 3, 2, 5)
	gamma, beta := randTensor(rng, 3), randTensor(rng, 3)
	rm, rv := New(3), FromSlice([]float32{1, 1, 1}, 3)
	tp := NewTape(nil)
	y := tp.BatchNorm(tp.Const(x), tp.Const(gamma), tp.Const(beta), rm, rv, 0.1, 1e-5, true)
	m := 4 * 2 * 5
	want := make([]float64, x.Len())
	for c := 0; c < 3; c++ {
		var s, q float64
		for i, v := range x.Data {
			if unravel(i, x.Shape)[1] == c {
				s += float64(v)
			}
		}
		mu := s / float64(m)
		for i, v := range x.Data {
			if unravel(i, x.Shape)[1] == c {
				q += (float64(v) - mu) * (float64(v) - mu)
			}
		}
		for i, v := range x.Data {
			if unravel(i, x.Shape)[1] == c {
				want[i] = (float64(v)-mu)/math.Sqrt(q/float64(m)+1e-5)*float64(gamma.Data[c]) + float64(beta.Data[c])
			}
		}
		if got, w := float64(rm.Data[c]), 0.1*mu; math.Abs(got-w) > 1e-6 {
			t.Errorf("running mean[%d] = %v, want %v", c, got, w)
		}
		if got, w := float64(rv.Data[c]), 0.9+0.1*q/float64(m-1); math.Abs(got-w) > 1e-6 {
			t.Errorf("running var[%d] = %v, want %v (unbiased)", c, got, w)
		}
	}
	closeTo(t, "batchnorm train", y.Value.Data, want, 1e-5)
	ev := tp.BatchNorm(tp.Const(x), nil, nil, rm, rv, 0.1, 1e-5, false)
	for i, v := range x.Data {
		c := unravel(i, x.Shape)[1]
		want[i] = (float64(v) - float64(rm.Data[c])) / math.Sqrt(float64(rv.Data[c])+1e-5)
	}
	closeTo(t, "batchnorm eval", ev.Value.Data, want, 1e-5)
	mustPanic(t, func() { tp.BatchNorm(tp.Const(x), tp.Const(New(4)), nil, nil, nil, 0.1, 1e-5, true) }, "[4 3 2 5]", "[4]")
}

func TestDropoutForward(t *testing.T) {
	x := New(10000)
	for i := range x.Data {
		x.Data[i] = 1
	}
	tp := NewTape(nil)
	xv := tp.Const(x)
	if y := tp.Dropout(xv, 0.3, nil, false); y != xv {
		t.Fatal("Dropout in evaluation is not the identity")
	}
	y := tp.Dropout(xv, 0.3, rand.New(rand.NewPCG(1, 1)), true)
	zeros := 0
	for _, v := range y.Value.Data {
		switch v {
		case 0:
			zeros++
		case 1 / float32(0.7):
		default:
			t.Fatalf("dropout output %v", v)
		}
	}
	if zeros < 2800 || zeros > 3200 {
		t.Fatalf("dropout zeroed %d of 10000 at p=0.3", zeros)
	}
	y2 := tp.Dropout(xv, 0.3, rand.New(rand.NewPCG(1, 1)), true)
	if !slices.Equal(y.Value.Data, y2.Value.Data) {
		t.Fatal("dropout with the same seed differs")
	}
}

func TestLossesForward(t *testing.T) {
	logits := FromSlice([]float32{1, 2, 3, -1, 0, 1000}, 2, 3)
	tp := NewTape(nil)
	ce := tp.CrossEntropy(tp.Const(logits), []int{2, 0})
	l0 := math.Log(math.Exp(1)+math.Exp(2)+math.Exp(3)) - 3
	l1 := 1000.0 + 1 // log-sum-exp of (-1, 0, 1000) is 1000, minus -1
	closeTo(t, "cross-entropy", ce.Value.Data, []float64{(l0 + l1) / 2}, 1e-6)
	mustPanic(t, func() { tp.CrossEntropy(tp.Const(logits), []int{3, 0}) }, "label 3")
	a, b := FromSlice([]float32{1, 2, 3}, 3), FromSlice([]float32{0, 2, 5}, 3)
	closeTo(t, "mse", tp.MSE(tp.Const(a), tp.Const(b)).Value.Data, []float64{5.0 / 3}, 1e-6)
	x, z := FromSlice([]float32{0, 2, -50}, 3), FromSlice([]float32{1, 0, 0.5}, 3)
	var want float64
	for i, v := range x.Data {
		p := 1 / (1 + math.Exp(-float64(v)))
		yv := float64(z.Data[i])
		want -= yv*math.Log(p) + (1-yv)*math.Log(1-p)
	}
	closeTo(t, "bce", tp.BCEWithLogits(tp.Const(x), tp.Const(z)).Value.Data, []float64{want / 3}, 1e-5)
	mustPanic(t, func() { tp.MSE(tp.Const(a), tp.Const(New(4))) }, "[3]", "[4]")
}

func TestBackwardContract(t *testing.T) {
	tp := NewTape(nil)
	w := FromSlice([]float32{1, 2}, 2)
	gw := FromSlice([]float32{10, 20}, 2)
	wv := tp.Param(w, gw)
	loss := tp.SumAll(tp.Square(wv))
	tp.Backward(loss)
	// Gradients accumulate into the caller's buffer.
	closeTo(t, "accumulated grad", gw.Data, []float64{12, 24}, 0)
	mustPanic(t, func() { tp.Backward(tp.Square(wv)) }, "[2]")
	// A loss that no Param reaches leaves gradients alone.
	c := tp.Const(w)
	tp.Backward(tp.SumAll(c))
	closeTo(t, "untouched grad", gw.Data, []float64{12, 24}, 0)
	if c.Grad != nil {
		t.Fatal("a Const got a gradient")
	}
	// NaN in the forward pass reaches the gradient.
	w.Data[0] = float32(math.NaN())
	clear(gw.Data)
	tp.Reset()
	wv = tp.Param(w, gw)
	tp.Backward(tp.SumAll(tp.Square(wv)))
	if !HasNaNOrInf(gw.Data) {
		t.Fatal("NaN did not propagate to the gradient")
	}
}

// TestParallelMatchesSerial runs the ops that split their work over the
// pool on tensors big enough to split, and checks every value and gradient
// is bit-identical to a one-worker run.
func TestParallelMatchesSerial(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 1))
	x := randTensor(rng, 4, 6, 40, 40)
	r := randTensor(rng, 4, 6, 20, 20)
	run := func(workers int) ([]float32, []float32) {
		pool := NewPool(workers)
		defer pool.Close()
		tp := NewTape(pool)
		g := New(x.Shape...)
		xv := tp.Param(x, g)
		h := tp.Add(tp.Tanh(xv), tp.Sigmoid(tp.LeakyReLU(xv, 0.1)))
		h = tp.Add(tp.ReLU(h), tp.MulScalar(tp.Square(h), 0.5))
		gamma, beta := New(6), New(6)
		for i := range gamma.Data {
			gamma.Data[i], beta.Data[i] = 1+0.1*float32(i), 0.2*float32(i)
		}
		h = tp.BatchNorm(h, tp.Param(gamma, nil), tp.Param(beta, nil), New(6), New(6), 0.1, 1e-5, true)
		h = tp.Mul(tp.Add(h, tp.Param(beta.Reshape(6, 1, 1), nil)), tp.Param(gamma.Reshape(1, 6, 1, 1), nil))
		h = tp.Div(tp.Sub(h, tp.Const(beta.Reshape(1, 6, 1, 1))), tp.AddScalar(tp.Abs(h), 1))
		y := tp.MaxPool2D(tp.Softplus(tp.Abs(tp.Neg(h))), 2, 2, 0)
		loss := tp.SumAll(tp.Mul(y, tp.Const(r)))
		tp.Backward(loss)
		return append([]float32(nil), y.Value.Data...), g.Data
	}
	y1, g1 := run(1)
	y2, g2 := run(2)
	if !slices.Equal(y1, y2) || !slices.Equal(g1, g2) {
		t.Fatal("two workers give different results from one")
	}
}
