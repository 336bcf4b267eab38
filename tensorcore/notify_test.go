package tensorcore

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBackwardNotifyReportsFinalGradients records a net with a weight used
// twice, a parameter no op reads and layers after a branch, and checks that
// every parameter is reported exactly once, that what a report shows is
// already the gradient Backward ends with, and that the gradients equal
// plain Backward's bit for bit.
func TestBackwardNotifyReportsFinalGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randT := func(shape ...int) *Tensor {
		x := New(shape...)
		for i := range x.Data {
			x.Data[i] = float32(rng.NormFloat64())
		}
		return x
	}
	x := randT(4, 5)
	w1, b1, w2, unused := randT(6, 5), randT(6), randT(6, 6), randT(3)
	labels := []int{0, 1, 2, 5}
	run := func(notify bool) (grads [][]float32, order []int, snaps map[int][]float32) {
		gs := []*Tensor{New(6, 5), New(6), New(6, 6), New(3)}
		tp := NewTape(nil)
		for step := range 2 { // the second step reuses the tape's buffers
			for _, g := range gs {
				clear(g.Data)
			}
			tp.Reset()
			xv := tp.Const(x)
			pw1, pb1, pw2 := tp.Param(w1, gs[0]), tp.Param(b1, gs[1]), tp.Param(w2, gs[2])
			tp.Param(unused, gs[3])
			h := tp.ReLU(tp.Linear(xv, pw1, pb1))
			h2 := tp.Tanh(tp.Linear(h, pw2, nil))
			h3 := tp.Linear(h2, tp.Param(w2, gs[2]), nil) // w2 again
			loss := tp.CrossEntropy(tp.Add(h3, h), labels)
			if !notify {
				tp.Backward(loss)
				continue
			}
			order, snaps = nil, map[int][]float32{}
			tp.BackwardNotify(loss, func(g *Tensor) {
				k := slices.IndexFunc(gs, func(t *Tensor) bool { return &t.Data[0] == &g.Data[0] })
				if k < 0 {
					t.Fatalf("step %d: reported a gradient that is no parameter's", step)
				}
				order = append(order, k)
				snaps[k] = slices.Clone(g.Data)
			})
		}
		for _, g := range gs {
			grads = append(grads, slices.Clone(g.Data))
		}
		return grads, order, snaps
	}
	want, _, _ := run(false)
	got, order, snaps := run(true)
	for k := range want {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("parameter %d: gradient with notification %v, plain Backward %v", k, got[k], want[k])
		}
	}
	sorted := slices.Sorted(slices.Values(order))
	if !slices.Equal(sorted, []int{0, 1, 2, 3}) {
		t.Fatalf("reported %v, want each of the 4 parameters once", order)
	}
	for k, s := range snaps {
		if !slices.Equal(s, want[k]) {
			t.Errorf("parameter %d was reported before its gradient was final", k)
		}
	}
	// w2 is read by the second and third Linear, both after the first:
	// it is final before w1; the parameter no op reads comes last.
	if order[len(order)-1] != 3 {
		t.Errorf("order %v: the parameter no op reads should come last", order)
	}
	if slices.Index(order, 2) > slices.Index(order, 0) {
		t.Errorf("order %v: w2 (used after w1) should be final before w1", order)
	}
}
