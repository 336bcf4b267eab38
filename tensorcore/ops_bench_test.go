package tensorcore

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkLeNetActivations measures the memory-bound ops of LeNet-5's
// first layer at batch 64 (6×28×28 per image): ReLU then 2×2 max pooling,
// forward and backward, on one worker and on two.
func BenchmarkLeNetActivations(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := randTensor(rng, 64, 6, 28, 28)
	for _, workers := range []int{1, 2} {
		pool := NewPool(workers)
		tp := NewTape(pool)
		g := New(x.Shape...)
		step := func() {
			tp.Reset()
			y := tp.MaxPool2D(tp.ReLU(tp.Param(x, g)), 2, 2, 0)
			tp.Backward(tp.SumAll(y))
		}
		step()
		b.Run(map[int]string{1: "workers=1", 2: "workers=2"}[workers], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "img/s")
		})
		pool.Close()
	}
}
