package tensorcore

import (
	"math"
	"math/rand/v2"
	"testing"
)

// tanhInputs are values across tanh's range: zeros, subnormals, the
// polynomial's border at 0.625, the saturation near 9, huge values,
// infinities and NaN, each with both signs, then random ones.
func tanhInputs(rng *rand.Rand) []float32 {
	xs := []float32{0, 1e-45, 1e-38, 1e-20, 1e-8, 1e-4, 0.01, 0.1, 0.3, 0.5, 0.6249999, 0.625, 0.6250001,
		0.7, 1, 1.5, 2, 3, 4.5, 6, 8, 8.9999, 9, 9.0001, 10, 15, 20, 44, 88, 89, 1e10, 3.4e38,
		float32(math.Inf(1)), float32(math.NaN())}
	for range 4000 {
		xs = append(xs, float32(rng.NormFloat64()*3))
	}
	for range 1000 {
		xs = append(xs, float32(math.Exp(rng.Float64()*50-40))) // 4e-18 … 2e4
	}
	for _, v := range xs[:len(xs):len(xs)] {
		xs = append(xs, -v)
	}
	return xs
}

// TestTanhAccuracy holds every kernel set's tanh, and tanhApprox, to
// math.Tanh within 1e-6 relative; ±0, ±1 limits, ±Inf and NaN exact.
func TestTanhAccuracy(t *testing.T) {
	xs := tanhInputs(rand.New(rand.NewPCG(21, 22)))
	want := make([]float32, len(xs))
	for i, v := range xs {
		want[i] = float32(math.Tanh(float64(v)))
	}
	check := func(name string, got []float32) {
		t.Helper()
		worst := 0.0
		for i, w := range want {
			if !sameFloat(got[i], w, 1e-6) {
				t.Errorf("%s: tanh(%g) = %g, want %g", name, xs[i], got[i], w)
				continue
			}
			if w != 0 && !math.IsNaN(float64(w)) {
				worst = max(worst, math.Abs(float64(got[i])-float64(w))/math.Abs(float64(w)))
			}
		}
		t.Logf("%s: worst relative error %.3g", name, worst)
	}
	for _, ks := range availableKernels() {
		got := make([]float32, len(xs))
		ks.tanh(got, xs)
		check(ks.name, got)
	}
	got := make([]float32, len(xs))
	for i, v := range xs {
		got[i] = tanhApprox(v)
	}
	check("tanhApprox", got)
}

// TestTanhKernels runs the tanh kernels over every length and alignment
// with guard regions, in place too, and checks that an element's result
// does not depend on where it lies (tails use the same arithmetic).
func TestTanhKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, ks := range availableKernels() {
		for _, n := range vecSizes {
			for _, off := range []int{0, 1, 3} {
				x := newGuarded(rng, off, n)
				for i := range x.data() {
					x.data()[i] *= 4
				}
				gy := newGuarded(rng, off+1, n)
				dst := newGuarded(nil, off+2, n)
				ks.tanh(dst.data(), x.data())
				dst.checkGuards(t, ks.name+" tanh")
				x.checkGuards(t, ks.name+" tanh x")
				for i, v := range x.data() {
					one := make([]float32, 1)
					ks.tanh(one, []float32{v})
					if dst.data()[i] != one[0] {
						t.Fatalf("%s n=%d: tanh(%g) is %g at [%d] but %g alone", ks.name, n, v, dst.data()[i], i, one[0])
					}
					if !sameFloat(one[0], float32(math.Tanh(float64(v))), 1e-6) {
						t.Fatalf("%s: tanh(%g) = %g", ks.name, v, one[0])
					}
				}
				inPlace := newGuarded(nil, off, n)
				copy(inPlace.data(), x.data())
				ks.tanh(inPlace.data(), inPlace.data())
				for i := range n {
					if inPlace.data()[i] != dst.data()[i] {
						t.Fatalf("%s n=%d: in place [%d] = %g, want %g", ks.name, n, i, inPlace.data()[i], dst.data()[i])
					}
				}

				// Backward: gx += gy·(1 − y²), y = the forward's output.
				y := dst.data()
				gx := newGuarded(rng, off+2, n)
				want := make([]float64, n)
				mag := make([]float64, n)
				for i := range n {
					d := float64(gy.data()[i]) * (1 - float64(y[i])*float64(y[i]))
					want[i] = float64(gx.data()[i]) + d
					mag[i] = math.Abs(float64(gx.data()[i])) + math.Abs(d) + math.Abs(float64(gy.data()[i]))
				}
				ks.tanhGrad(gx.data(), gy.data(), y)
				gx.checkGuards(t, ks.name+" tanhGrad")
				gy.checkGuards(t, ks.name+" tanhGrad gy")
				for i := range n {
					if got := float64(gx.data()[i]); math.Abs(got-want[i]) > 1e-6*mag[i] {
						t.Fatalf("%s tanhGrad n=%d off=%d: [%d] = %g, want %g", ks.name, n, off, i, got, want[i])
					}
				}
			}
		}
	}
}
