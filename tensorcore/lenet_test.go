package tensorcore_test

import (
	"math/rand/v2"
	"testing"

	tc "github.com/ringtrain/ringtrain/tensorcore"
)

// randomLeNet5 returns LeNet-5 with small random parameters, a random batch
// of n images and labels, all from seed.
func randomLeNet5(seed uint64, n int) (*lenet5, *tc.Tensor, []int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := &lenet5{param: map[string]*tc.Tensor{}, grad: map[string]*tc.Tensor{}}
	for _, s := range lenetShapes {
		p := tc.New(s.shape...)
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64() * 0.1)
		}
		m.param[s.name], m.grad[s.name] = p, tc.New(s.shape...)
	}
	x := tc.New(n, 1, 28, 28)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = rng.IntN(10)
	}
	return m, x, labels
}

func (m *lenet5) step(tp *tc.Tape, x *tc.Tensor, labels []int) *tc.Var {
	for _, g := range m.grad {
		clear(g.Data)
	}
	tp.Reset()
	_, loss := m.forward(tp, x, labels)
	tp.Backward(loss)
	return loss
}

// TestTapeStepAllocatesNothing checks the steady-state contract of Reset:
// recording the same step again reuses every buffer.
func TestTapeStepAllocatesNothing(t *testing.T) {
	m, x, labels := randomLeNet5(1, 4)
	for _, workers := range []int{1, 2} {
		pool := tc.NewPool(workers)
		tp := tc.NewTape(pool)
		m.step(tp, x, labels)
		if a := testing.AllocsPerRun(5, func() { m.step(tp, x, labels) }); a != 0 {
			t.Errorf("%d workers: a warm LeNet-5 step allocates %v times, want 0", workers, a)
		}
		pool.Close()
	}
}

// TestTapeReuseAfterShapeChange checks that a step with a new batch size
// after a warm one gives the same result as on a fresh tape.
func TestTapeReuseAfterShapeChange(t *testing.T) {
	m, x, labels := randomLeNet5(2, 5)
	small := tc.FromSlice(x.Data[:3*28*28], 3, 1, 28, 28)
	tp := tc.NewTape(nil)
	m.step(tp, x, labels)
	got := m.step(tp, small, labels[:3]).Value.Data[0]
	gw := append([]float32(nil), m.grad["c1.weight"].Data...)
	want := m.step(tc.NewTape(nil), small, labels[:3]).Value.Data[0]
	if got != want {
		t.Errorf("loss after shape change %v, fresh tape %v", got, want)
	}
	for i, v := range m.grad["c1.weight"].Data {
		if v != gw[i] {
			t.Fatalf("c1.weight grad[%d] after shape change %v, fresh tape %v", i, gw[i], v)
		}
	}
}

// BenchmarkLeNet5Step measures one training step (forward, cross-entropy,
// backward) of LeNet-5 at batch 64.
func BenchmarkLeNet5Step(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(map[int]string{1: "workers=1", 2: "workers=2"}[workers], func(b *testing.B) {
			const batch = 64
			m, x, labels := randomLeNet5(3, batch)
			pool := tc.NewPool(workers)
			defer pool.Close()
			tp := tc.NewTape(pool)
			m.step(tp, x, labels)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				m.step(tp, x, labels)
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "img/s")
		})
	}
}
