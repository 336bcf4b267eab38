package tensorcore

import (
	"fmt"
	"math"
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

// TestBatchNormKernels runs the batch-normalization row kernels of every
// kernel set against the references, with and without the ReLU mask, over
// lengths around the vector width, with NaN, -0 and exactly zero
// normalized values, and guard regions around every buffer. The elementwise kernels must match
// bit for bit; the float64 sums may differ in their order only.
func TestBatchNormKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, ks := range availableKernels() {
		for _, n := range vecSizes {
			for _, relu := range []bool{false, true} {
				what := fmt.Sprintf("%s n=%d relu=%v", ks.name, n, relu)
				x, gy := newGuarded(rng, 1, n), newGuarded(rng, 2, n)
				if n > 4 {
					x.data()[1] = float32(math.NaN())
					x.data()[2] = float32(math.Copysign(0, -1))
				}
				const sc, sh = 1.25, -0.5
				want := make([]float32, n)
				bnScaleShiftRef(want, x.data(), sc, sh, relu)
				y := newGuarded(nil, 3, n)
				ks.bnScaleShift(y.data(), x.data(), sc, sh, relu)
				y.checkGuards(t, what+" scaleShift")
				for i := range want {
					if !sameBits(y.data()[i], want[i]) {
						t.Fatalf("%s: scaleShift[%d] = %g, want %g", what, i, y.data()[i], want[i])
					}
				}
				// The sums and the apply see finite values, and with
				// sc = 2, sh = -1 an x of 0.5 normalizes to exactly 0.
				if n > 4 {
					x.data()[1] = 0.5
				}
				const mu, is, sc2, sh2 = 0.1, 1.7, 2, -1
				ws, wsx := bnGradSumsRef(gy.data(), x.data(), mu, is, sc2, sh2, relu, 1, 2)
				gs, gsx := ks.bnGradSums(gy.data(), x.data(), mu, is, sc2, sh2, relu, 1, 2)
				var mag, mag2 float64
				for i, g := range gy.data() {
					mag += math.Abs(float64(g)) * (1 + math.Abs(float64((x.data()[i]-mu)*is)))
					mag2 += float64(x.data()[i]) * float64(x.data()[i])
				}
				if math.Abs(gs-ws) > 1e-12*(mag+1) || math.Abs(gsx-wsx) > 1e-12*(mag+2) {
					t.Fatalf("%s: sums %g, %g, want %g, %g", what, gs, gsx, ws, wsx)
				}
				if got, want := ks.bnSum(x.data(), 3), bnSumRef(x.data(), 3); math.Abs(got-want) > 1e-12*(math.Sqrt(mag2)*float64(n)+3) {
					t.Fatalf("%s: bnSum %g, want %g", what, got, want)
				}
				if got, want := ks.bnSumSqDev(x.data(), 0.25, 3), bnSumSqDevRef(x.data(), 0.25, 3); math.Abs(got-want) > 1e-12*(4*mag2+3) {
					t.Fatalf("%s: bnSumSqDev %g, want %g", what, got, want)
				}
				wg := make([]float32, n)
				gx := newGuarded(rng, 4, n)
				copy(wg, gx.data())
				bnGradApplyRef(wg, gy.data(), x.data(), 0.9, mu, is, 0.2, -0.3, sc2, sh2, relu)
				ks.bnGradApply(gx.data(), gy.data(), x.data(), 0.9, mu, is, 0.2, -0.3, sc2, sh2, relu)
				gx.checkGuards(t, what+" apply")
				for i := range wg {
					if !sameBits(gx.data()[i], wg[i]) {
						t.Fatalf("%s: apply[%d] = %g, want %g", what, i, gx.data()[i], wg[i])
					}
				}
			}
		}
	}
}
