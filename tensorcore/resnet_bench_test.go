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

// benchBytes reports GB/s for a pass that moves bytes per iteration.
func benchBytes(b *testing.B, bytes int) {
	b.SetBytes(int64(bytes))
}

// BenchmarkMaxPoolResNetStem: 3×3 stride 2 pad 1 max pooling of 32×64×112×112
// to 56×56, forward (x read, y and argmax written) and backward (argmax and
// gy read, gx written).
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
				y = tp.MaxPool2D(tp.Param(x, gx), k, stride, pad)
			}
			fwd()
			gy := randTensor(rng, y.Value.Shape...)
			y.Grad = gy
			b.Run(fmt.Sprintf("%s/fwd", ks.name), func(b *testing.B) {
				benchBytes(b, 4*nx+8*ny)
				for b.Loop() {
					fwd()
				}
			})
			b.Run(fmt.Sprintf("%s/bwd", ks.name), func(b *testing.B) {
				benchBytes(b, 4*nx+8*ny)
				nd := tp.nodes[0]
				for b.Loop() {
					tp.gen++
					nd.out.gradGen = tp.gen
					backward(tp, nd)
				}
			})
		})
	}
}
