package repro

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randomDict(t *testing.T, rng *rand.Rand, n, m int) *Dict {
	t.Helper()
	atoms := make([]float32, n*m)
	for i := range atoms {
		atoms[i] = float32(rng.NormFloat64())
	}
	d, err := NewDict(n, m, atoms)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// With an orthonormal dictionary the lasso's solution is h_λ(Dx): every
// solver must find it.
func TestSolversOrthonormal(t *testing.T) {
	const n = 4
	// A rotation of the plane, twice: an orthonormal 4×4 dictionary.
	c, s := float32(math.Cos(0.3)), float32(math.Sin(0.3))
	atoms := []float32{c, s, 0, 0, -s, c, 0, 0, 0, 0, c, -s, 0, 0, s, c}
	d, err := NewDict(n, n, atoms)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(d.L)-1) > 1e-3 {
		t.Fatalf("L = %v, want 1", d.L)
	}
	x := []float32{0.9, -0.2, 0.05, 0.5}
	const lambda = 0.1
	want := make([]float32, n)
	d.Correlate(want, x, 1)
	for i := range want {
		want[i] = shrink(want[i], lambda)
	}
	z := make([]float32, n)
	for name, solve := range map[string]func(){
		"ista":  func() { d.ISTA(z, x, 1, lambda, 20, nil) },
		"fista": func() { d.FISTA(z, x, 1, lambda, 20, nil) },
		"cod":   func() { d.CoD(z, x, lambda, 8, d.identityMinusGram(), make([]float32, n), nil) },
	} {
		clear(z)
		solve()
		for i := range z {
			if math.Abs(float64(z[i]-want[i])) > 1e-5 {
				t.Errorf("%s: z = %v, want %v", name, z, want)
				break
			}
		}
	}
}

// On an overcomplete random dictionary the solvers agree and the answer
// meets the lasso's optimality conditions: Dᵢ·(x − Dᵀz) = λ·sign(zᵢ) where
// zᵢ ≠ 0 and |Dᵢ·(x − Dᵀz)| ≤ λ elsewhere.
func TestSolversAgreeAndAreOptimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n, m = 24, 12
	d := randomDict(t, rng, n, m)
	x := make([]float32, m)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	const lambda = 0.3
	zf := make([]float32, n)
	d.FISTA(zf, x, 1, lambda, 3000, nil)
	zi := make([]float32, n)
	d.ISTA(zi, x, 1, lambda, 20000, nil)
	zc := make([]float32, n)
	d.CoD(zc, x, lambda, 30000, d.identityMinusGram(), make([]float32, n), nil)
	for i := range zf {
		if math.Abs(float64(zf[i]-zi[i])) > 2e-3 || math.Abs(float64(zf[i]-zc[i])) > 2e-3 {
			t.Fatalf("solvers disagree:\nfista %v\nista  %v\ncod   %v", zf, zi, zc)
		}
	}
	// Residual correlations.
	rec := make([]float32, m)
	for i := range n {
		for j := range m {
			rec[j] += zf[i] * d.Atoms[i*m+j]
		}
	}
	nz := 0
	for i := range n {
		var g float64
		for j := range m {
			g += float64(d.Atoms[i*m+j]) * float64(x[j]-rec[j])
		}
		switch {
		case zf[i] > 0 && math.Abs(g-lambda) > 1e-3, zf[i] < 0 && math.Abs(g+lambda) > 1e-3:
			t.Errorf("atom %d: z %v, correlation %v, want ±λ", i, zf[i], g)
		case zf[i] == 0 && math.Abs(g) > lambda+1e-3:
			t.Errorf("atom %d: zero code with correlation %v > λ", i, g)
		}
		if zf[i] != 0 {
			nz++
		}
	}
	if nz == 0 || nz == n {
		t.Errorf("%d non-zeros of %d: a degenerate test", nz, n)
	}
	// FISTA's energy is no worse than a few iterations' and ISTA's.
	e := d.Energy(x, zf, 1, lambda)
	z5 := make([]float32, n)
	d.FISTA(z5, x, 1, lambda, 5, nil)
	if d.Energy(x, z5, 1, lambda) < e-1e-6 {
		t.Errorf("5 iterations beat 3000")
	}
}

// The coordinate-descent iterate's energy never rises.
func TestCoDEnergyMonotone(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, m = 30, 10
	d := randomDict(t, rng, n, m)
	x := make([]float32, m)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	prev := d.Energy(x, make([]float32, n), 1, 0.2)
	steps := 0
	d.codHeld(x, 0.2, 200, func(z []float32) {
		steps++
		e := d.Energy(x, z, 1, 0.2)
		if e > prev+1e-5 {
			t.Fatalf("step %d: energy rose from %v to %v", steps, prev, e)
		}
		prev = e
	})
}

func TestTuneLambda(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, m, rows = 40, 20, 50
	d := randomDict(t, rng, n, m)
	x := make([]float32, rows*m)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	lambda := d.tuneLambda(x, rows, 0.1, 200)
	z := make([]float32, rows*n)
	d.FISTA(z, x, rows, lambda, 200, nil)
	if f := nonZeroFraction(z); math.Abs(f-0.1) > 0.02 {
		t.Errorf("λ %v gives %.3f non-zeros, want 0.1", lambda, f)
	}
}

func TestNewDictRejectsZeroAtom(t *testing.T) {
	if _, err := NewDict(2, 2, []float32{1, 0, 0, 0}); err == nil {
		t.Error("a zero atom was accepted")
	}
	if _, err := NewDict(2, 2, []float32{1}); err == nil {
		t.Error("a short atom slice was accepted")
	}
}

// LCoD's hand-written gradient matches finite differences, the choice of
// coordinates held fixed (the perturbations are too small to change it).
func TestLCoDGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n, m = 8, 5
	d := randomDict(t, rng, n, m)
	l := newLCoD(d, 0.1, 4)
	// Move off the CoD point so that S's diagonal and every part matter.
	for i := range l.params {
		l.params[i] += 0.05 * rng.NormFloat64()
	}
	x := make([]float32, m)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	target := make([]float64, n)
	for i := range target {
		target[i] = rng.NormFloat64()
	}
	const w = 0.7
	z := make([]float64, n)
	loss := func() float64 {
		l.forward(z, x)
		var s float64
		for j := range z {
			e := z[j] - target[j]
			s += 0.5 * w * e * e
		}
		return s
	}
	loss()
	clear(l.grad)
	l.backward(x, z, target, w)
	const eps = 1e-6
	checked := 0
	for i := range l.params {
		num := centralDifference(l.params, i, eps, loss)
		if math.Abs(num-l.grad[i]) > 1e-5*max(1, math.Abs(num)) {
			t.Errorf("parameter %d: gradient %v, finite difference %v", i, l.grad[i], num)
		}
		if num != 0 {
			checked++
		}
	}
	if checked < len(l.params)/4 {
		t.Errorf("only %d of %d gradients non-zero: a degenerate test", checked, len(l.params))
	}
}

// A batch's gradient, computed in parts by workers, is the finite-difference
// gradient of the batch's weighted loss, every row counted once.
func TestLCoDBatchGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const n, m, rows = 6, 4, 7
	d := randomDict(t, rng, n, m)
	l := newLCoD(d, 0.1, 3)
	for i := range l.params {
		l.params[i] += 0.05 * rng.NormFloat64()
	}
	set := codeSet{rows: rows, x: make([]float32, rows*m), zStar: make([]float32, rows*n)}
	for i := range set.x {
		set.x[i] = float32(rng.NormFloat64())
	}
	for i := range set.zStar {
		set.zStar[i] = float32(rng.NormFloat64())
	}
	w := rowWeights(set.zStar, rows, n)
	order := rng.Perm(rows)
	ws := make([]*lcod, lcodShards)
	for i := range ws {
		ws[i] = l.worker()
	}
	l.batchGradient(ws, set, order, w)
	z := make([]float64, n)
	loss := func() float64 {
		var s float64
		for r := range rows {
			l.forward(z, set.x[r*m:(r+1)*m])
			for j := range z {
				e := z[j] - float64(set.zStar[r*n+j])
				s += 0.5 * float64(w[r]) * float64(w[r]) * e * e / rows
			}
		}
		return s
	}
	const eps = 1e-6
	for i := range l.params {
		if num := centralDifference(l.params, i, eps, loss); math.Abs(num-l.grad[i]) > 1e-5*max(1, math.Abs(num)) {
			t.Errorf("parameter %d: gradient %v, finite difference %v", i, l.grad[i], num)
		}
	}
}

// centralDifference returns (loss(p_i + h) − loss(p_i − h))/2h, p_i being
// p[i], which it restores.
func centralDifference[T float32 | float64](p []T, i int, h T, loss func() float64) float64 {
	v := p[i]
	p[i] = v + h
	up := loss()
	p[i] = v - h
	down := loss()
	p[i] = v
	return (up - down) / (2 * float64(h))
}
