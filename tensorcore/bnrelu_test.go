package tensorcore

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestBatchNormReLUMatchesUnfused checks that BatchNormReLU gives the bits
// of BatchNorm then ReLU: output, running statistics, and the gradients of
// x, gamma and beta, in training and evaluation, on one and two workers.
func TestBatchNormReLUMatchesUnfused(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, shape := range [][]int{{4, 3, 5, 7}, {6, 4}, {2, 5, 1, 9}} {
		for _, training := range []bool{true, false} {
			for _, affine := range []bool{true, false} {
				for _, workers := range []int{1, 2} {
					what := fmt.Sprintf("%v training=%v affine=%v workers=%d", shape, training, affine, workers)
					c := shape[1]
					x := randTensor(rng, shape...)
					gamma, beta := randTensor(rng, c), randTensor(rng, c)
					rm0, rv0 := randTensor(rng, c), randTensor(rng, c)
					for i := range rv0.Data {
						rv0.Data[i] = 0.5 + rv0.Data[i]*rv0.Data[i]
					}
					gyv := randTensor(rng, shape...)
					type result struct{ y, rm, rv, gx, gg, gb *Tensor }
					run := func(fused bool) result {
						pool := NewPool(workers)
						defer pool.Close()
						tp := NewTape(pool)
						r := result{rm: rm0.Clone(), rv: rv0.Clone(), gx: New(shape...), gg: New(c), gb: New(c)}
						var g, b *Var
						if affine {
							g, b = tp.Param(gamma, r.gg), tp.Param(beta, r.gb)
						}
						xv := tp.Param(x, r.gx)
						var y *Var
						if fused {
							y = tp.BatchNormReLU(xv, g, b, r.rm, r.rv, 0.1, 1e-5, training)
						} else {
							y = tp.ReLU(tp.BatchNorm(xv, g, b, r.rm, r.rv, 0.1, 1e-5, training))
						}
						r.y = y.Value.Clone()
						tp.Backward(tp.SumAll(tp.Mul(y, tp.Const(gyv))))
						return r
					}
					want, got := run(false), run(true)
					for _, p := range []struct {
						name string
						g, w *Tensor
					}{{"y", got.y, want.y}, {"runMean", got.rm, want.rm}, {"runVar", got.rv, want.rv},
						{"gx", got.gx, want.gx}, {"gamma grad", got.gg, want.gg}, {"beta grad", got.gb, want.gb}} {
						for i := range p.w.Data {
							if !sameBits(p.g.Data[i], p.w.Data[i]) {
								t.Fatalf("%s: %s[%d] = %g fused, %g unfused", what, p.name, i, p.g.Data[i], p.w.Data[i])
							}
						}
					}
				}
			}
		}
	}
}
