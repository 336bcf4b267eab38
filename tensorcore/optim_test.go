package tensorcore

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSGDKernels holds every kernel set's SGD step against the reference,
// for every mode (no buffer, first step, momentum, Nesterov, dampening,
// weight decay) and lengths around the vector width, and checks that a
// non-finite gradient stays non-finite and that nothing past len(p) is
// written.
func TestSGDKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	modes := []struct {
		name string
		a    SGDArgs
		buf  bool
	}{
		{"plain", SGDArgs{LR: 0.1}, false},
		{"plain+wd", SGDArgs{LR: 0.05, WeightDecay: 1e-2}, false},
		{"first", SGDArgs{LR: 0.1, Momentum: 0.9, First: true}, true},
		{"first-nesterov", SGDArgs{LR: 0.1, Momentum: 0.9, Nesterov: true, First: true}, true},
		{"momentum", SGDArgs{LR: 0.1, Momentum: 0.9, WeightDecay: 5e-4}, true},
		{"dampening", SGDArgs{LR: 0.02, Momentum: 0.5, Dampening: 0.3}, true},
		{"nesterov", SGDArgs{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}, true},
	}
	for _, ks := range availableKernels() {
		for _, m := range modes {
			for _, n := range []int{1, 7, 8, 9, 31, 64, 1000} {
				p0, g := randSlice(rng, n+3), randSlice(rng, n)
				b0 := randSlice(rng, n+3)
				pWant, pGot := append([]float32(nil), p0...), append([]float32(nil), p0...)
				var bWant, bGot []float32
				if m.buf {
					bWant, bGot = append([]float32(nil), b0...), append([]float32(nil), b0...)
					SGDStepRef(pWant[:n], g, bWant[:n], m.a)
					ks.sgd(pGot[:n], g, bGot[:n], m.a)
				} else {
					SGDStepRef(pWant[:n], g, nil, m.a)
					ks.sgd(pGot[:n], g, nil, m.a)
				}
				for i := range pWant {
					if !close32(pGot[i], pWant[i], 1e-6) || (m.buf && !close32(bGot[i], bWant[i], 1e-6)) {
						t.Fatalf("%s %s n=%d: element %d: p %v want %v, buf %v want %v", ks.name, m.name, n, i, pGot[i], pWant[i], elem(bGot, i), elem(bWant, i))
					}
				}
				for i := n; i < n+3; i++ {
					if pGot[i] != p0[i] || (m.buf && bGot[i] != b0[i]) {
						t.Fatalf("%s %s n=%d: wrote past the end at %d", ks.name, m.name, n, i)
					}
				}
			}
			// A non-finite gradient leaves its parameter non-finite.
			p, g, b := make([]float32, 16), make([]float32, 16), make([]float32, 16)
			g[3], g[12] = float32(math.NaN()), float32(math.Inf(1))
			var buf []float32
			if m.buf {
				buf = b
			}
			ks.sgd(p, g, buf, m.a)
			for _, i := range []int{3, 12} {
				if v := float64(p[i]); !math.IsNaN(v) && !math.IsInf(v, 0) {
					t.Errorf("%s %s: element %d is %v after a non-finite gradient", ks.name, m.name, i, v)
				}
			}
		}
	}
}

// TestSGDStepDeterministic: the same inputs give the same bits.
func TestSGDStepDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p, g, b := randSlice(rng, 1003), randSlice(rng, 1003), randSlice(rng, 1003)
	p2, b2 := append([]float32(nil), p...), append([]float32(nil), b...)
	a := SGDArgs{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}
	SGDStep(p, g, b, a)
	SGDStep(p2, g, b2, a)
	for i := range p {
		if math.Float32bits(p[i]) != math.Float32bits(p2[i]) || math.Float32bits(b[i]) != math.Float32bits(b2[i]) {
			t.Fatalf("element %d differs between equal runs", i)
		}
	}
}

func close32(a, b, tol float32) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	m := max(abs32(a), abs32(b), 1)
	return d <= tol*m
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

func elem(s []float32, i int) any {
	if i < len(s) {
		return s[i]
	}
	return nil
}

// TestOptimKernelsSliceIndependent: SGDStep and Axpy give every element
// the same bits whether a slice is processed whole or cut at any point,
// which is what lets optimizers and gradient sums split their work.
func TestOptimKernelsSliceIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 203
	p0, g, b0 := randSlice(rng, n), randSlice(rng, n), randSlice(rng, n)
	a := SGDArgs{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-3, Nesterov: true}
	for _, ks := range availableKernels() {
		wholeP, wholeB := append([]float32(nil), p0...), append([]float32(nil), b0...)
		ks.sgd(wholeP, g, wholeB, a)
		wholeY := append([]float32(nil), b0...)
		ks.axpyExact(0.37, g, wholeY)
		for _, cut := range []int{1, 5, 8, 13, 100, 202} {
			p, b, y := append([]float32(nil), p0...), append([]float32(nil), b0...), append([]float32(nil), b0...)
			ks.sgd(p[:cut], g[:cut], b[:cut], a)
			ks.sgd(p[cut:], g[cut:], b[cut:], a)
			ks.axpyExact(0.37, g[:cut], y[:cut])
			ks.axpyExact(0.37, g[cut:], y[cut:])
			for i := range n {
				if math.Float32bits(p[i]) != math.Float32bits(wholeP[i]) || math.Float32bits(b[i]) != math.Float32bits(wholeB[i]) ||
					math.Float32bits(y[i]) != math.Float32bits(wholeY[i]) {
					t.Fatalf("%s: cut at %d: element %d differs from the whole slice's", ks.name, cut, i)
				}
			}
		}
	}
}
