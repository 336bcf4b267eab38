package tensorcore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// withKernels runs f with ks as the package's kernel set. The tests of this
// package do not run in parallel, so swapping it is safe there.
func withKernels(ks *kernelSet, f func()) {
	old := kern
	kern = ks
	defer func() { kern = old }()
	f()
}

// poolValues fills x with values that make ties common (a coarse ladder,
// half of them clipped to zero as after a ReLU, some negative zeros) and,
// when special, -Inf and NaN.
func poolValues(rng *rand.Rand, x []float32, special bool) {
	for i := range x {
		v := float32(rng.IntN(9)-4) * 0.5
		switch {
		case v < 0 && rng.IntN(2) == 0:
			v = 0
		case v == 0 && rng.IntN(2) == 0:
			v = float32(math.Copysign(0, -1))
		}
		x[i] = v
	}
	if special && len(x) > 0 {
		x[rng.IntN(len(x))] = float32(math.Inf(-1))
		x[rng.IntN(len(x))] = float32(math.NaN())
	}
}

func sameBits(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

// TestMaxPoolS2Kernels runs the stride-2 row kernel of every kernel set
// against the reference on windows of 1 to 3 rows and 2 to 5 columns, with
// ties, signed zeros, -Inf and NaN: values, argmax and guards must match
// bit for bit.
func TestMaxPoolS2Kernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, ks := range availableKernels() {
		for _, nr := range []int{1, 2, 3} {
			for _, kw := range []int{2, 3, 5} {
				for _, n := range []int{0, 1, 7, 8, 9, 16, 23, 40} {
					for _, special := range []bool{false, true} {
						ldx := 2*n + kw + rng.IntN(3)
						off := rng.IntN(3)
						// The last row ends exactly at the end of x (the
						// kernel must not read past it) or a little before
						// (room for the 8-wide kernel's reads).
						x := newGuarded(rng, 1, off+(nr-1)*ldx+2*max(n-1, 0)+kw+rng.IntN(3))
						poolValues(rng, x.data(), special)
						y, want := newGuarded(nil, 2, n), make([]float32, n)
						arg, warg := make([]int32, n+4), make([]int32, n)
						for i := range arg {
							arg[i] = -7
						}
						maxPoolS2Ref(want, warg, x.data(), off, ldx, nr, kw)
						ks.maxPoolS2(y.data(), arg[:n], x.data(), off, ldx, nr, kw)
						what := fmt.Sprintf("%s nr=%d kw=%d n=%d special=%v", ks.name, nr, kw, n, special)
						y.checkGuards(t, what)
						x.checkGuards(t, what+" x")
						for i := n; i < len(arg); i++ {
							if arg[i] != -7 {
								t.Fatalf("%s: arg written past its end", what)
							}
						}
						for i := range n {
							if !sameBits(y.data()[i], want[i]) || arg[i] != warg[i] {
								t.Fatalf("%s: [%d] = %g at %d, want %g at %d", what, i, y.data()[i], arg[i], want[i], warg[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestMaxPool2x2GradKernels runs the 2×2 gradient row kernel of every set
// against the reference, each window's argmax drawn at random; the columns
// of the two rows past the windows must stay untouched.
func TestMaxPool2x2GradKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, ks := range availableKernels() {
		for _, n := range []int{0, 1, 7, 8, 9, 16, 31, 40} {
			base, ld := 10+rng.IntN(5), 2*n+rng.IntN(3)
			gy := newGuarded(rng, 1, n)
			if n > 2 {
				gy.data()[1] = float32(math.Copysign(0, -1))
				gy.data()[2] = float32(math.NaN())
			}
			arg := make([]int32, n)
			for i := range arg {
				arg[i] = int32(base + []int{0, 1, ld, ld + 1}[rng.IntN(4)] + 2*i)
			}
			g := newGuarded(rng, 2, ld+2*n)
			want := append([]float32(nil), g.data()...)
			maxPool2x2GradRef(want, gy.data(), arg, base, ld)
			ks.maxPool2x2Grad(g.data(), gy.data(), arg, base, ld)
			what := fmt.Sprintf("%s n=%d ld=%d", ks.name, n, ld)
			g.checkGuards(t, what)
			for i := range want {
				if !sameBits(g.data()[i], want[i]) {
					t.Fatalf("%s: [%d] = %g, want %g", what, i, g.data()[i], want[i])
				}
			}
		}
	}
}

// maxPoolNaive is max pooling written from its definition: -Inf padding,
// the first strictly greater element in row-major window order (the first
// NaN, if any) wins; an all -Inf window points at its first element.
func maxPoolNaive(x []float32, n, c, h, w, k, stride, pad int) (y []float32, arg []int) {
	oh, ow := (h+2*pad-k)/stride+1, (w+2*pad-k)/stride+1
	for p := 0; p < n*c; p++ {
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				m, bi := float32(math.Inf(-1)), -1
			window:
				for r := i*stride - pad; r < i*stride-pad+k; r++ {
					for q := j*stride - pad; q < j*stride-pad+k; q++ {
						if r < 0 || r >= h || q < 0 || q >= w {
							continue
						}
						at := (p*h+r)*w + q
						if bi < 0 {
							bi = at
						}
						if v := x[at]; v > m || v != v {
							m, bi = v, at
							if v != v {
								break window
							}
						}
					}
				}
				y, arg = append(y, m), append(arg, bi)
			}
		}
	}
	return y, arg
}

// TestMaxPool2DKernelSets runs MaxPool2D forward and backward under every
// kernel set, for the fast paths (2×2 stride 2, 3×3 stride 2 pad 1) and
// general windows, against the naive definition: values and argmax bit for
// bit, and the gradient routed to the argmax.
func TestMaxPool2DKernelSets(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	shapes := [][4]int{{2, 3, 13, 17}, {1, 2, 40, 38}, {1, 1, 3, 3}, {2, 1, 8, 64}}
	geoms := [][3]int{{2, 2, 0}, {3, 2, 1}, {3, 2, 0}, {3, 1, 1}, {5, 2, 2}, {4, 2, 1}, {1, 2, 0}, {2, 1, 0}}
	for _, ks := range availableKernels() {
		withKernels(ks, func() {
			for _, s := range shapes {
				for _, g := range geoms {
					k, stride, pad := g[0], g[1], g[2]
					if s[2]+2*pad < k || s[3]+2*pad < k {
						continue
					}
					for _, special := range []bool{false, true} {
						what := fmt.Sprintf("%s %v k=%d s=%d p=%d special=%v", ks.name, s, k, stride, pad, special)
						x := New(s[:]...)
						poolValues(rng, x.Data, special)
						want, warg := maxPoolNaive(x.Data, s[0], s[1], s[2], s[3], k, stride, pad)
						for _, workers := range []int{1, 2} {
							pool := NewPool(workers)
							tp := NewTape(pool)
							gx := New(s[:]...)
							y := tp.MaxPool2D(tp.Param(x, gx), k, stride, pad)
							for i, w := range want {
								got := y.Value.Data[i]
								if !sameBits(got, w) && !(got != got && w != w) {
									t.Fatalf("%s: y[%d] = %g, want %g", what, i, got, w)
								}
								if a := int(tp.nodes[0].iaux[i]); a != warg[i] {
									t.Fatalf("%s: arg[%d] = %d, want %d", what, i, a, warg[i])
								}
							}
							gy := randTensor(rng, y.Value.Shape...)
							tp.Backward(tp.SumAll(tp.Mul(y, tp.Const(gy))))
							wg := make([]float32, len(x.Data))
							for i, a := range tp.nodes[0].iaux {
								wg[a] += gy.Data[i]
							}
							for i := range wg {
								if !sameBits(gx.Data[i], wg[i]) && !(wg[i] == 0 && gx.Data[i] == 0) {
									t.Fatalf("%s workers=%d: gx[%d] = %g, want %g", what, workers, i, gx.Data[i], wg[i])
								}
							}
							pool.Close()
						}
					}
				}
			}
		})
	}
}
