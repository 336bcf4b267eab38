package models

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/tensorcore"
)

func randTensor(rng *rand.Rand, shape ...int) *tensorcore.Tensor {
	t := tensorcore.New(shape...)
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

// A partial convolution is the full convolution with the missing kernels
// zero: same outputs, and the gradient of each connected kernel is the
// full weight's gradient there.
func TestPartialConvIsMaskedConv(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name  string
		in    int
		table [][]int
		cp    tensorcore.ConvParams
		hw    int
	}{
		{"lenet5 C3", 6, lenet5C3, tensorcore.ConvParams{}, 14},
		{"zip H2", 12, zipH2, tensorcore.ConvParams{StrideH: 2, StrideW: 2, PadH: 2, PadW: 2}, 8},
	} {
		b := NewBuilder(rand.New(rand.NewPCG(1, 2)))
		pc := NewPartialConv2d(b, "p", tc.in, 5, tc.table, tc.cp, false)
		if _, err := b.Build(); err != nil {
			t.Fatal(err)
		}
		out := len(tc.table)
		for i := range pc.B.Data {
			pc.B.Data[i] = float32(rng.NormFloat64())
		}
		x := randTensor(rng, 3, tc.in, tc.hw, tc.hw)
		tp := tensorcore.NewTape(nil)
		y := pc.Forward(Ctx{Tape: tp}, tp.Const(x))
		gy := randTensor(rng, y.Value.Shape...)
		tp.Backward(tp.SumAll(tp.Mul(y, tp.Const(gy))))

		full := tensorcore.New(out, tc.in, 5, 5)
		row := 0
		for o, ins := range tc.table {
			for _, i := range ins {
				copy(full.Data[(o*tc.in+i)*25:][:25], pc.W.Data[row*25:][:25])
				row++
			}
		}
		gfull, gb := tensorcore.New(out, tc.in, 5, 5), tensorcore.New(out)
		tp2 := tensorcore.NewTape(nil)
		y2 := tp2.Conv2D(tp2.Const(x), tp2.Param(full, gfull), tp2.Param(pc.B, gb), tc.cp)
		tp2.Backward(tp2.SumAll(tp2.Mul(y2, tp2.Const(gy))))
		for i, v := range y2.Value.Data {
			if !near(float64(y.Value.Data[i]), float64(v), 1e-5) {
				t.Fatalf("%s: y[%d] = %v, want %v", tc.name, i, y.Value.Data[i], v)
			}
		}
		row = 0
		for o, ins := range tc.table {
			for _, i := range ins {
				for j := range 25 {
					if g, w := pc.GW.Data[row*25+j], gfull.Data[(o*tc.in+i)*25+j]; !near(float64(g), float64(w), 1e-4) {
						t.Fatalf("%s: grad of map %d input %d [%d] = %v, want %v", tc.name, o, i, j, g, w)
					}
				}
				row++
			}
		}
		for i, v := range gb.Data {
			if !near(float64(pc.GB.Data[i]), float64(v), 1e-4) {
				t.Fatalf("%s: bias grad %d = %v, want %v", tc.name, i, pc.GB.Data[i], v)
			}
		}
	}
}

func TestConnectionTables(t *testing.T) {
	count := func(table [][]int, in int) (conns int, uses []int) {
		uses = make([]int, in)
		for _, ins := range table {
			conns += len(ins)
			for _, i := range ins {
				uses[i]++
			}
		}
		return conns, uses
	}
	if c, uses := count(lenet5C3, 6); c != 60 || len(lenet5C3) != 16 {
		t.Errorf("C3: %d connections over %d maps, want 60 over 16", c, len(lenet5C3))
	} else {
		for i, u := range uses {
			if u != 10 {
				t.Errorf("C3: S2 map %d feeds %d maps, want 10", i, u)
			}
		}
	}
	if c, uses := count(zipH2, 12); c != 96 {
		t.Errorf("H2: %d connections, want 96", c)
	} else {
		for i, u := range uses {
			if u != 8 {
				t.Errorf("H2: H1 map %d feeds %d maps, want 8", i, u)
			}
		}
	}
	b := NewBuilder(rand.New(rand.NewPCG(1, 2)))
	NewPartialConv2d(b, "bad", 3, 5, [][]int{{0, 0}}, tensorcore.ConvParams{}, false)
	if _, err := b.Build(); err == nil {
		t.Error("a table naming an input twice built")
	}
	b = NewBuilder(rand.New(rand.NewPCG(1, 2)))
	NewPartialConv2d(b, "bad", 3, 5, [][]int{{3}}, tensorcore.ConvParams{}, false)
	if _, err := b.Build(); err == nil {
		t.Error("a table naming a missing input built")
	}
}

// A convolution whose kernel covers its input runs as a linear layer; it
// must agree with the convolution in values and gradients.
func TestConvCoveringInputIsLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	b := NewBuilder(rand.New(rand.NewPCG(1, 2)))
	c := NewConv2d(b, "c5", 16, 120, 5, tensorcore.ConvParams{}, LayerInit{})
	if _, err := b.Build(); err != nil {
		t.Fatal(err)
	}
	x := randTensor(rng, 4, 16, 5, 5)
	if !c.coversInput(x.Shape) {
		t.Fatal("5×5 kernel on 5×5 input not taken as a linear layer")
	}
	tp := tensorcore.NewTape(nil)
	y := c.Forward(Ctx{Tape: tp}, tp.Const(x))
	gy := randTensor(rng, y.Value.Shape...)
	tp.Backward(tp.SumAll(tp.Mul(y, tp.Const(gy))))
	gw, gb := tensorcore.New(c.W.Shape...), tensorcore.New(120)
	tp2 := tensorcore.NewTape(nil)
	y2 := tp2.Conv2D(tp2.Const(x), tp2.Param(c.W, gw), tp2.Param(c.B, gb), tensorcore.ConvParams{})
	tp2.Backward(tp2.SumAll(tp2.Mul(y2, tp2.Const(gy))))
	if len(y.Value.Shape) != 4 || y.Value.Shape[2] != 1 || y.Value.Shape[3] != 1 {
		t.Fatalf("shape %v", y.Value.Shape)
	}
	for i, v := range y2.Value.Data {
		if !near(float64(y.Value.Data[i]), float64(v), 1e-5) {
			t.Fatalf("y[%d] = %v, want %v", i, y.Value.Data[i], v)
		}
	}
	for i, v := range gw.Data {
		if !near(float64(c.GW.Data[i]), float64(v), 1e-4) {
			t.Fatalf("gw[%d] = %v, want %v", i, c.GW.Data[i], v)
		}
	}
	for i, v := range gb.Data {
		if !near(float64(c.GB.Data[i]), float64(v), 1e-4) {
			t.Fatalf("gb[%d] = %v, want %v", i, c.GB.Data[i], v)
		}
	}
	if c.coversInput([]int{4, 16, 6, 6}) || c.coversInput([]int{4, 8, 5, 5}) {
		t.Error("a kernel smaller than the input taken as a linear layer")
	}
}

// MSETargets against the sum written out, and its gradient 2(out−t)/(N·C).
func TestMSETargets(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	n, c := 5, 10
	out := randTensor(rng, n, c)
	labels := []int{3, 0, 9, 3, 7}
	tp := tensorcore.NewTape(nil)
	g := tensorcore.New(n, c)
	lv := MSETargets(tp, tp.Param(out, g), labels)
	tp.Backward(lv)
	var want float64
	for i := range n {
		for j := range c {
			tg := -1.0
			if j == labels[i] {
				tg = 1
			}
			d := float64(out.Data[i*c+j]) - tg
			want += d * d
			if gw := 2 * d / float64(n*c); !near(float64(g.Data[i*c+j]), gw, 1e-5) {
				t.Errorf("grad [%d,%d] = %v, want %v", i, j, g.Data[i*c+j], gw)
			}
		}
	}
	want /= float64(n * c)
	if got := float64(lv.Value.Data[0]); !near(got, want, 1e-5) {
		t.Errorf("loss %v, want %v", got, want)
	}
	if _, err := NewLoss("mse", 0.1); err == nil {
		t.Error("mse with label smoothing accepted")
	}
	if _, err := NewLoss("hinge", 0); err == nil {
		t.Error("unknown loss accepted")
	}
}
