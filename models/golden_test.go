package models

import (
	"math"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// lenet5Golden is testdata/lenet5.safetensors, written by PyTorch (see
// /testdata and the golden README): LeNet-5's parameters, 8 MNIST digits,
// their logits, loss and gradients, and the parameters after one SGD step.
const lenet5Golden = "../testdata/lenet5.safetensors"

type golden struct {
	t *testing.T
	f *safetensors.File
}

func openGolden(t *testing.T) golden {
	t.Helper()
	f, err := safetensors.ReadFile(lenet5Golden)
	if err != nil {
		t.Fatal(err)
	}
	return golden{t, f}
}

func (g golden) f64(name string) ([]float64, []int) {
	g.t.Helper()
	ts, ok := g.f.Tensor(name)
	if !ok {
		g.t.Fatalf("%s: no tensor %q", lenet5Golden, name)
	}
	v, err := ts.Float64s()
	if err != nil {
		g.t.Fatalf("%s: %v", name, err)
	}
	return v, ts.Shape
}

func (g golden) f32(name string) []float32 {
	g.t.Helper()
	v, _ := g.f64(name)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// loadGoldenParams builds the zoo's lenet5 and copies param.* into it,
// checking that the zoo's names and shapes are PyTorch's.
func loadGoldenParams(t *testing.T, g golden) *Model {
	t.Helper()
	m, err := Build("lenet5", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Arena.Params {
		v, shape := g.f64("param." + p.Name)
		if !slices.Equal(shape, p.Shape) {
			t.Fatalf("%s: golden shape %v, zoo shape %v", p.Name, shape, p.Shape)
		}
		dst := m.Arena.Value(p.Name).Data
		for i, x := range v {
			dst[i] = float32(x)
		}
	}
	return m
}

// relErr returns ‖got-want‖/‖want‖ (‖got-want‖ when want is zero).
func relErr(got []float32, want []float64) float64 {
	var d, w float64
	for i := range want {
		e := float64(got[i]) - want[i]
		d += e * e
		w += want[i] * want[i]
	}
	if w == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / w)
}

// One SGD step (lr 0.05, momentum 0.9) from the golden parameters and
// gradients lands on PyTorch's parameters.
func TestLeNet5GoldenSGDStep(t *testing.T) {
	g := openGolden(t)
	m := loadGoldenParams(t, g)
	for _, p := range m.Arena.Params {
		copy(m.Arena.Gradient(p.Name).Data, g.f32("grad."+p.Name))
	}
	opt, err := NewSGD(m.Arena.Data, m.Arena.Grad, SGDConfig{Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	opt.Step(0.05)
	worst := 0.0
	for _, p := range m.Arena.Params {
		want, _ := g.f64("after_sgd_step." + p.Name)
		got := m.Arena.Value(p.Name).Data
		for i := range want {
			d := math.Abs(float64(got[i]) - want[i])
			worst = math.Max(worst, d/math.Max(math.Abs(want[i]), 1e-3))
			if d > 1e-5*math.Abs(want[i])+1e-8 {
				t.Errorf("%s[%d] = %.9g, want %.9g (|diff| %.3g)", p.Name, i, got[i], want[i], d)
				break
			}
		}
	}
	t.Logf("worst element error %.3g (relative, floored at 1e-3)", worst)
}

// The zoo's lenet5 forward and backward on the golden digits give
// PyTorch's logits, loss and gradients.
func TestLeNet5GoldenForwardBackward(t *testing.T) {
	g := openGolden(t)
	m := loadGoldenParams(t, g)
	in, inShape := g.f64("input")
	x := tensorcore.New(inShape...)
	for i, v := range in {
		x.Data[i] = float32(v)
	}
	lab, _ := g.f64("labels")
	labels := make([]int, len(lab))
	for i, v := range lab {
		labels[i] = int(v)
	}
	tp := tensorcore.NewTape(nil)
	for step := 0; step < 2; step++ { // the second pass runs on reused tape buffers
		tp.Reset()
		m.Arena.ZeroGrad()
		logits := m.Forward(tp, tp.Const(x), true)
		loss := CrossEntropy(tp, logits, labels)
		tp.Backward(loss)

		wantLogits, _ := g.f64("logits")
		worst := relErr(logits.Value.Data, wantLogits)
		if worst > 1e-4 {
			t.Errorf("pass %d: logits rel err %.3g", step, worst)
		}
		wantLoss, _ := g.f64("loss")
		if e := math.Abs(float64(loss.Value.Data[0])-wantLoss[0]) / wantLoss[0]; e > 1e-4 {
			t.Errorf("pass %d: loss %.9g, want %.9g", step, loss.Value.Data[0], wantLoss[0])
		}
		for _, p := range m.Arena.Params {
			want, _ := g.f64("grad." + p.Name)
			e := relErr(m.Arena.Gradient(p.Name).Data, want)
			worst = math.Max(worst, e)
			if e > 1e-4 {
				t.Errorf("pass %d: grad %s rel err %.3g", step, p.Name, e)
			}
		}
		t.Logf("pass %d: loss %.9g (PyTorch %.9g); worst norm-wise rel err of logits and grads %.3g",
			step, loss.Value.Data[0], wantLoss[0], worst)
	}
}
