package tensorcore

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkSgemm times square C = A·B at several sizes on pools of 1 and 2
// workers and reports GFLOP/s.
func BenchmarkSgemm(b *testing.B) {
	for _, n := range []int{256, 512, 1024, 2048} {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("n=%d/threads=%d", n, workers), func(b *testing.B) {
				p := NewPool(workers)
				defer p.Close()
				rng := rand.New(rand.NewPCG(1, uint64(n)))
				x, y, z := randSlice(rng, n*n), randSlice(rng, n*n), make([]float32, n*n)
				Sgemm(p, false, false, n, n, n, 1, x, n, y, n, 0, z, n)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					Sgemm(p, false, false, n, n, n, 1, x, n, y, n, 0, z, n)
				}
				b.ReportMetric(2*float64(n)*float64(n)*float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// benchConvLayers are the layers the convolution kernels are tuned for.
var benchConvLayers = []struct {
	name string
	x, w [4]int
	cp   ConvParams
}{
	{"lenet-c1", [4]int{64, 1, 28, 28}, [4]int{6, 1, 5, 5}, ConvParams{PadH: 2, PadW: 2}},
	{"lenet-c3", [4]int{64, 6, 14, 14}, [4]int{16, 6, 5, 5}, ConvParams{}},
	{"resnet-64", [4]int{8, 64, 56, 56}, [4]int{64, 64, 3, 3}, ConvParams{PadH: 1, PadW: 1}},
	{"resnet-128", [4]int{8, 128, 28, 28}, [4]int{128, 128, 3, 3}, ConvParams{PadH: 1, PadW: 1}},
}

// convFlops is the multiply-add count ×2 of one pass (forward, backward
// data or backward weight each cost the same).
func convFlops(g ConvGeom) float64 {
	return 2 * float64(g.N*g.O*g.OH*g.OW) * float64(g.C/g.Groups*g.KH*g.KW)
}

// BenchmarkConv times forward, backward data and backward weight of each
// layer separately and together (fwd+bwd), on pools of 1 and 2 workers.
func BenchmarkConv(b *testing.B) {
	for _, l := range benchConvLayers {
		g := NewConvGeom(l.x, l.w, l.cp)
		rng := rand.New(rand.NewPCG(9, 9))
		x, w := randSlice(rng, g.N*g.C*g.H*g.W), randSlice(rng, g.O*g.C/g.Groups*g.KH*g.KW)
		bias, y := randSlice(rng, g.O), make([]float32, g.N*g.O*g.OH*g.OW)
		gy, gx, gw, gb := randSlice(rng, len(y)), make([]float32, len(x)), make([]float32, len(w)), make([]float32, g.O)
		passes := []struct {
			name string
			n    float64
			fn   func(p *Pool)
		}{
			{"fwd", 1, func(p *Pool) { Conv2D(p, g, x, w, bias, y) }},
			{"bwd-data", 1, func(p *Pool) { Conv2DBackwardData(p, g, gy, w, gx) }},
			{"bwd-weight", 1, func(p *Pool) { Conv2DBackwardWeight(p, g, x, gy, gw, gb) }},
			{"fwd+bwd", 3, func(p *Pool) {
				Conv2D(p, g, x, w, bias, y)
				Conv2DBackwardData(p, g, gy, w, gx)
				Conv2DBackwardWeight(p, g, x, gy, gw, gb)
			}},
		}
		for _, ps := range passes {
			for _, workers := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", l.name, ps.name, workers), func(b *testing.B) {
					p := NewPool(workers)
					defer p.Close()
					ps.fn(p)
					b.ReportAllocs()
					b.ResetTimer()
					for b.Loop() {
						ps.fn(p)
					}
					b.ReportMetric(ps.n*convFlops(g)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkGemmMicroKernel times each micro-kernel alone on L1-resident
// panels (kc = gemmKC): the ceiling the driver can reach. cpu-GFLOP/s
// divides by the thread's CPU time instead of wall time, which keeps the
// figure meaningful on a machine shared with other work.
func BenchmarkGemmMicroKernel(b *testing.B) {
	for _, ks := range availableKernels() {
		b.Run(ks.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			rng := rand.New(rand.NewPCG(1, 1))
			a, bp := randSlice(rng, gemmKC*ks.mr), randSlice(rng, gemmKC*ks.nr)
			c := make([]float32, ks.mr*ks.nr)
			cpu0 := threadCPUTime()
			for b.Loop() {
				ks.gemm(gemmKC, &a[0], &bp[0], &c[0], ks.nr, ks.mr, 1, 1)
			}
			flop := 2 * float64(gemmKC*ks.mr*ks.nr) * float64(b.N)
			b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			if cpu := threadCPUTime() - cpu0; cpu > 0 {
				b.ReportMetric(flop/cpu.Seconds()/1e9, "cpu-GFLOP/s")
			}
		})
	}
}
