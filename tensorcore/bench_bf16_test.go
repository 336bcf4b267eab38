package tensorcore

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// benchPrecisions are the settings the bf16 benchmarks compare; BF16 is
// skipped where the CPU lacks it.
var benchPrecisions = []Precision{FP32, BF16}

func benchPool(b *testing.B, workers int, pr Precision) *Pool {
	p := NewPool(workers)
	if err := p.SetPrecision(pr); err != nil {
		p.Close()
		b.Skip(err)
	}
	return p
}

// loopFlops runs fn b.N times and reports GFLOP/s of wall time and, on
// one worker (which runs on the benchmark's locked thread), cpu-GFLOP/s
// of that thread's CPU time: the figure that stays meaningful on a
// machine shared with other work.
func loopFlops(b *testing.B, workers int, flopsPerOp float64, fn func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fn()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := threadCPUTime()
	for b.Loop() {
		fn()
	}
	flop := flopsPerOp * float64(b.N)
	b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu := threadCPUTime() - cpu0; workers == 1 && cpu > 0 {
		b.ReportMetric(flop/cpu.Seconds()/1e9, "cpu-GFLOP/s")
	}
}

// BenchmarkSgemmPrecision times square C = A·B in fp32 and bf16 on the
// same pools and reports GFLOP/s.
func BenchmarkSgemmPrecision(b *testing.B) {
	for _, n := range []int{512, 1024} {
		for _, workers := range []int{1, 2} {
			for _, pr := range benchPrecisions {
				b.Run(fmt.Sprintf("n=%d/threads=%d/%v", n, workers, pr), func(b *testing.B) {
					p := benchPool(b, workers, pr)
					defer p.Close()
					rng := rand.New(rand.NewPCG(1, uint64(n)))
					x, y, z := randSlice(rng, n*n), randSlice(rng, n*n), make([]float32, n*n)
					loopFlops(b, workers, 2*float64(n)*float64(n)*float64(n), func() {
						Sgemm(p, false, false, n, n, n, 1, x, n, y, n, 0, z, n)
					})
				})
			}
		}
	}
}

// resnet18Layers are the kinds of convolution in ResNet-18, at batch 16:
// the stem, the stride-1 3×3 of every stage (83% of the net's
// multiply-adds), a stride-2 3×3 and a 1×1 downsampling.
var resnet18Layers = []struct {
	name string
	x, w [4]int
	cp   ConvParams
}{
	{"stem-7x7s2", [4]int{16, 3, 224, 224}, [4]int{64, 3, 7, 7}, ConvParams{StrideH: 2, StrideW: 2, PadH: 3, PadW: 3}},
	{"3x3-64@56", [4]int{16, 64, 56, 56}, [4]int{64, 64, 3, 3}, ConvParams{PadH: 1, PadW: 1}},
	{"3x3-128@28", [4]int{16, 128, 28, 28}, [4]int{128, 128, 3, 3}, ConvParams{PadH: 1, PadW: 1}},
	{"3x3-256@14", [4]int{16, 256, 14, 14}, [4]int{256, 256, 3, 3}, ConvParams{PadH: 1, PadW: 1}},
	{"3x3-512@7", [4]int{16, 512, 7, 7}, [4]int{512, 512, 3, 3}, ConvParams{PadH: 1, PadW: 1}},
	{"3x3s2-64to128@56", [4]int{16, 64, 56, 56}, [4]int{128, 64, 3, 3}, ConvParams{StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}},
	{"1x1s2-64to128@56", [4]int{16, 64, 56, 56}, [4]int{128, 64, 1, 1}, ConvParams{StrideH: 2, StrideW: 2}},
}

// BenchmarkConvPrecision times forward, backward data and backward weight
// of ResNet-18 layers in fp32 and bf16 on one and two workers.
func BenchmarkConvPrecision(b *testing.B) {
	for _, l := range resnet18Layers {
		g := NewConvGeom(l.x, l.w, l.cp)
		rng := rand.New(rand.NewPCG(9, 9))
		x, w := randSlice(rng, g.N*g.C*g.H*g.W), randSlice(rng, g.O*g.C/g.Groups*g.KH*g.KW)
		y := make([]float32, g.N*g.O*g.OH*g.OW)
		gy, gx, gw := randSlice(rng, len(y)), make([]float32, len(x)), make([]float32, len(w))
		passes := []struct {
			name string
			fn   func(p *Pool)
		}{
			{"fwd", func(p *Pool) { Conv2D(p, g, x, w, nil, y) }},
			{"bwd-data", func(p *Pool) { Conv2DBackwardData(p, g, gy, w, gx) }},
			{"bwd-weight", func(p *Pool) { Conv2DBackwardWeight(p, g, x, gy, gw, nil) }},
		}
		for _, ps := range passes {
			for _, workers := range []int{1, 2} {
				for _, pr := range benchPrecisions {
					b.Run(fmt.Sprintf("%s/%s/threads=%d/%v", l.name, ps.name, workers, pr), func(b *testing.B) {
						p := benchPool(b, workers, pr)
						defer p.Close()
						loopFlops(b, workers, convFlops(g), func() { ps.fn(p) })
					})
				}
			}
		}
	}
}

// BenchmarkBF16MicroKernel times each bf16 micro-kernel alone on
// L1-resident panels (kc = gemmKC, so gemmKC/2 pairs), as
// BenchmarkGemmMicroKernel does for fp32.
func BenchmarkBF16MicroKernel(b *testing.B) {
	for _, ks := range availableBF16Kernels() {
		b.Run(ks.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			kp := gemmKC / 2
			a, bp := make([]uint32, kp*ks.mr), make([]uint32, kp*ks.nr)
			for i := range a {
				a[i] = 0x3f803f80
			}
			for i := range bp {
				bp[i] = 0x3f803f80
			}
			c := make([]float32, ks.mr*ks.nr)
			cpu0 := threadCPUTime()
			for b.Loop() {
				ks.gemm(kp, &a[0], &bp[0], &c[0], ks.nr, ks.mr, 1, 1)
			}
			flop := 2 * float64(gemmKC*ks.mr*ks.nr) * float64(b.N)
			b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			if cpu := threadCPUTime() - cpu0; cpu > 0 {
				b.ReportMetric(flop/cpu.Seconds()/1e9, "cpu-GFLOP/s")
			}
		})
	}
}
