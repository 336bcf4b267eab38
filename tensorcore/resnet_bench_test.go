package tensorcore

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The benchmarks below time the memory-bound kernels of a 224×224 ResNet-18
// at batch 32 under each kernel set ("go" is the plain-Go reference path),
// on one worker, and report the bytes each pass must move (read once,
// written once) per second.

// benchBackward runs the backward rules of the ops recorded on tp from out,
// whose gradient is gy, without a loss op on top.
func benchBackward(tp *Tape, out *Var, gy *Tensor) {
	tp.gen++
	out.Grad, out.gradGen = gy, tp.gen
	for i := tp.n - 1; i >= 0; i-- {
		if nd := tp.nodes[i]; nd.out.gradGen == tp.gen {
			backward(tp, nd)
		}
	}
}

// benchBytes reports GB/s for a pass that moves bytes per iteration.
func benchBytes(b *testing.B, bytes int) {
	b.SetBytes(int64(bytes))
}

// BenchmarkMaxPoolResNetStem: 3×3 stride 2 pad 1 max pooling of 32×64×112×112
// to 56×56, forward (x read, y and argmax written) and backward into a
// fresh input gradient (argmax and gy read, gx written).
func BenchmarkMaxPoolResNetStem(b *testing.B) {
	benchMaxPool(b, [4]int{32, 64, 112, 112}, 3, 2, 1)
}

// BenchmarkMaxPoolVGG: VGG's 2×2 stride 2 max pooling of 32×64×224×224.
func BenchmarkMaxPoolVGG(b *testing.B) {
	benchMaxPool(b, [4]int{32, 64, 224, 224}, 2, 2, 0)
}

func benchMaxPool(b *testing.B, s [4]int, k, stride, pad int) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := randTensor(rng, s[:]...)
	gx := New(s[:]...)
	oh, ow := (s[2]+2*pad-k)/stride+1, (s[3]+2*pad-k)/stride+1
	nx, ny := len(x.Data), s[0]*s[1]*oh*ow
	pool := NewPool(1)
	defer pool.Close()
	for _, ks := range availableKernels() {
		withKernels(ks, func() {
			tp := NewTape(pool)
			var y *Var
			fwd := func() {
				tp.Reset()
				// An intermediate input, as in a network: backward then
				// writes its gradient afresh rather than adding to it.
				h := tp.Reshape(tp.Param(x, gx), s[:]...)
				y = tp.MaxPool2D(h, k, stride, pad)
			}
			fwd()
			gy := randTensor(rng, y.Value.Shape...)
			b.Run(fmt.Sprintf("%s/fwd", ks.name), func(b *testing.B) {
				benchBytes(b, 4*nx+8*ny)
				for b.Loop() {
					fwd()
				}
			})
			b.Run(fmt.Sprintf("%s/bwd", ks.name), func(b *testing.B) {
				benchBytes(b, 4*nx+8*ny)
				nd := tp.nodes[tp.n-1] // the pooling alone
				for b.Loop() {
					tp.gen++
					y.Grad, y.gradGen = gy, tp.gen
					backward(tp, nd)
				}
			})
		})
	}
}

// BenchmarkBatchNormReLU: training-mode batch normalization then ReLU of
// 32×64×56×56 (ResNet-18's first stage), fused against BatchNorm then ReLU,
// forward and backward, under each kernel set on one worker. The bytes are
// the tensor read and the tensor written (forward: x, y; backward: gy, gx)
// for both, so MB/s compare as times do.
func BenchmarkBatchNormReLU(b *testing.B) {
	const n, c, h, w = 32, 64, 56, 56
	rng := rand.New(rand.NewPCG(3, 4))
	x, gy := randTensor(rng, n, c, h, w), randTensor(rng, n, c, h, w)
	gamma, beta, rm, rv := randTensor(rng, c), randTensor(rng, c), New(c), New(c)
	gx, gg, gb := New(n, c, h, w), New(c), New(c)
	pool := NewPool(1)
	defer pool.Close()
	for _, ks := range availableKernels() {
		withKernels(ks, func() {
			for _, fused := range []bool{false, true} {
				tp := NewTape(pool)
				var y *Var
				fwd := func() {
					tp.Reset()
					xv, g, bt := tp.Param(x, gx), tp.Param(gamma, gg), tp.Param(beta, gb)
					if fused {
						y = tp.BatchNormReLU(xv, g, bt, rm, rv, 0.1, 1e-5, true)
					} else {
						y = tp.ReLU(tp.BatchNorm(xv, g, bt, rm, rv, 0.1, 1e-5, true))
					}
				}
				fwd()
				benchBackward(tp, y, gy)
				name := map[bool]string{false: "bn+relu", true: "fused"}[fused]
				b.Run(fmt.Sprintf("%s/%s/fwd", ks.name, name), func(b *testing.B) {
					benchBytes(b, 8*len(x.Data))
					b.ReportAllocs()
					for b.Loop() {
						fwd()
					}
				})
				b.Run(fmt.Sprintf("%s/%s/bwd", ks.name, name), func(b *testing.B) {
					benchBytes(b, 8*len(x.Data))
					b.ReportAllocs()
					for b.Loop() {
						benchBackward(tp, y, gy)
					}
				})
			}
		})
	}
}

// BenchmarkGlobalAvgPool: ResNet-18's head, 32×512×7×7 to 32×512, forward
// and backward, against the same pooling as AvgPool2D with a 7×7 window.
func BenchmarkGlobalAvgPool(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := randTensor(rng, 32, 512, 7, 7)
	gx := New(x.Shape...)
	for _, global := range []bool{true, false} {
		gy := randTensor(rng, 32, 512)
		if !global {
			gy.Shape = []int{32, 512, 1, 1}
		}
		tp := NewTape(nil)
		var y *Var
		fwd := func() {
			tp.Reset()
			if global {
				y = tp.GlobalAvgPool(tp.Param(x, gx))
			} else {
				y = tp.AvgPool2D(tp.Param(x, gx), 7, 7, 0)
			}
		}
		fwd()
		name := map[bool]string{true: "global", false: "avgpool7x7"}[global]
		b.Run(name+"/fwd", func(b *testing.B) {
			benchBytes(b, 4*len(x.Data)+4*len(gy.Data))
			for b.Loop() {
				fwd()
			}
		})
		b.Run(name+"/bwd", func(b *testing.B) {
			benchBytes(b, 4*len(x.Data)+4*len(gy.Data))
			for b.Loop() {
				benchBackward(tp, y, gy)
			}
		})
	}
}

// BenchmarkCrossEntropySmoothed: the ImageNet loss on 32×1000 logits,
// forward and backward: plain, smoothed by 0.1, and the same smoothing
// composed of primitives ((1-ε)·CE + ε·mean(-LogSoftmax)).
func BenchmarkCrossEntropySmoothed(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	x := randTensor(rng, 32, 1000)
	gx := New(x.Shape...)
	labels := make([]int, 32)
	for i := range labels {
		labels[i] = rng.IntN(1000)
	}
	const eps = 0.1
	for _, v := range []string{"smoothing=0", "smoothing=0.1", "composite"} {
		tp := NewTape(nil)
		step := func() {
			tp.Reset()
			l := tp.Param(x, gx)
			var loss *Var
			switch v {
			case "smoothing=0":
				loss = tp.CrossEntropy(l, labels)
			case "smoothing=0.1":
				loss = tp.CrossEntropySmoothed(l, labels, eps)
			default:
				ce := tp.MulScalar(tp.CrossEntropy(l, labels), 1-eps)
				uni := tp.MulScalar(tp.MeanAll(tp.LogSoftmax(l, 1)), -eps)
				loss = tp.Add(ce, uni)
			}
			tp.Backward(loss)
		}
		step()
		b.Run(v, func(b *testing.B) {
			benchBytes(b, 8*len(x.Data))
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
		})
	}
}
