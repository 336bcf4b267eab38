package tensorcore

import (
	"math"
	"math/rand/v2"
	"testing"
)

var vecSizes = []int{0, 1, 3, 7, 8, 9, 17, 31, 32, 33, 127, 1025}

func TestVecElementwise(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, ks := range availableKernels() {
		for _, n := range vecSizes {
			for _, off := range []int{0, 1, 3} {
				x := newGuarded(rng, off, n)
				y := newGuarded(rng, off+1, n)
				check := func(name string, dst *guarded, want []float32) {
					t.Helper()
					dst.checkGuards(t, ks.name+" "+name)
					for i, w := range want {
						got := dst.data()[i]
						if !sameFloat(got, w, 1e-6) {
							t.Fatalf("%s %s n=%d off=%d: [%d] = %g, want %g", ks.name, name, n, off, i, got, w)
						}
					}
				}
				// A few special values exercise NaN and signed zeros.
				if n > 4 {
					x.data()[1] = float32(math.NaN())
					x.data()[2] = float32(math.Copysign(0, -1))
					x.data()[3] = float32(math.Inf(-1))
				}
				want := make([]float32, n)
				dst := newGuarded(nil, off+2, n)

				vecAddRef(want, x.data(), y.data())
				ks.add(dst.data(), x.data(), y.data())
				check("add", dst, want)

				vecMulRef(want, x.data(), y.data())
				ks.mul(dst.data(), x.data(), y.data())
				check("mul", dst, want)

				vecScaleRef(want, -0.75, x.data())
				ks.scale(dst.data(), -0.75, x.data())
				check("scale", dst, want)

				vecReluRef(want, x.data())
				ks.relu(dst.data(), x.data())
				check("relu", dst, want)

				vecReluGradRef(want, y.data(), x.data())
				ks.reluGrad(dst.data(), y.data(), x.data())
				check("reluGrad", dst, want)

				// axpy may fuse the multiply-add: compare in float64 with a
				// tolerance on the magnitudes of both terms.
				copy(dst.data(), y.data())
				ks.axpy(1.25, x.data(), dst.data())
				dst.checkGuards(t, ks.name+" axpy")
				for i := range n {
					w := float64(y.data()[i]) + 1.25*float64(x.data()[i])
					mag := math.Abs(float64(y.data()[i])) + math.Abs(1.25*float64(x.data()[i]))
					got := float64(dst.data()[i])
					if math.IsNaN(w) || math.IsInf(w, 0) {
						if !sameFloat(float32(got), float32(w), 0) {
							t.Fatalf("%s axpy n=%d: [%d] = %g, want %g", ks.name, n, i, got, w)
						}
						continue
					}
					if math.Abs(got-w) > 1e-6*mag {
						t.Fatalf("%s axpy n=%d: [%d] = %g, want %g", ks.name, n, i, got, w)
					}
				}

				// In place (dst aliasing an input).
				copy(want, x.data())
				vecReluRef(want, want)
				copy(dst.data(), x.data())
				ks.relu(dst.data(), dst.data())
				check("relu in place", dst, want)

				x.checkGuards(t, "x")
				y.checkGuards(t, "y")
			}
		}
	}
}

// sameFloat reports whether got equals want within rel (relative), treating
// NaNs as equal and requiring equal signs of zero.
func sameFloat(got, want float32, rel float64) bool {
	g, w := float64(got), float64(want)
	if math.IsNaN(w) || math.IsNaN(g) {
		return math.IsNaN(w) && math.IsNaN(g)
	}
	if w == 0 && g == 0 {
		return math.Signbit(w) == math.Signbit(g)
	}
	if math.IsInf(w, 0) {
		return g == w
	}
	return math.Abs(g-w) <= rel*math.Abs(w)
}

func TestVecReductions(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, ks := range availableKernels() {
		for _, n := range append(vecSizes, 100003) {
			for _, off := range []int{0, 1, 3} {
				x := newGuarded(rng, off, n)
				y := newGuarded(rng, off, n)
				var dot, dotMag, sum, sumMag float64
				for i := 0; i < n; i++ {
					p := float64(x.data()[i]) * float64(y.data()[i])
					dot += p
					dotMag += math.Abs(p)
					sum += float64(x.data()[i])
					sumMag += math.Abs(float64(x.data()[i]))
				}
				if got := float64(ks.dot(x.data(), y.data())); math.Abs(got-dot) > 1e-5*dotMag+1e-30 {
					t.Fatalf("%s dot n=%d: %g, want %g", ks.name, n, got, dot)
				}
				if got := float64(ks.sum(x.data())); math.Abs(got-sum) > 1e-5*sumMag+1e-30 {
					t.Fatalf("%s sum n=%d: %g, want %g", ks.name, n, got, sum)
				}
				// Same input, same bits.
				if a, b := ks.dot(x.data(), y.data()), ks.dot(x.data(), y.data()); math.Float32bits(a) != math.Float32bits(b) {
					t.Fatalf("%s dot not deterministic", ks.name)
				}
				if n > 0 {
					if got, want := ks.max(x.data()), vecMaxRef(x.data()); got != want {
						t.Fatalf("%s max n=%d: %g, want %g", ks.name, n, got, want)
					}
					for _, at := range []int{0, n / 2, n - 1} {
						old := x.data()[at]
						x.data()[at] = float32(math.NaN())
						if got := ks.max(x.data()); !math.IsNaN(float64(got)) {
							t.Fatalf("%s max n=%d with NaN at %d: %g", ks.name, n, at, got)
						}
						x.data()[at] = float32(math.Inf(1))
						if got := ks.max(x.data()); !math.IsInf(float64(got), 1) {
							t.Fatalf("%s max n=%d with +Inf at %d: %g", ks.name, n, at, got)
						}
						x.data()[at] = old
					}
				}
				x.checkGuards(t, "x")
			}
		}
	}
}

func TestVecDispatch(t *testing.T) {
	x := []float32{1, -2, 3, -4, 5, -6, 7, -8, 9}
	y := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}
	if got := vecDot(x, y); got != 5 {
		t.Fatalf("vecDot = %g, want 5", got)
	}
	if got := vecSum(x); got != 5 {
		t.Fatalf("vecSum = %g, want 5", got)
	}
	if got := vecMax(x); got != 9 {
		t.Fatalf("vecMax = %g, want 9", got)
	}
	d := make([]float32, len(x))
	vecRelu(d, x)
	vecReluGrad(d, y, d)
	vecAdd(d, d, y)
	vecMul(d, d, x)
	vecScale(d, 2, d)
	vecAxpy(1, x, d)
	want := []float32{5, -6, 15, -12, 25, -18, 35, -24, 45}
	for i := range d {
		if d[i] != want[i] {
			t.Fatalf("chain [%d] = %g, want %g", i, d[i], want[i])
		}
	}
}
