package repro

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// Sparse coding: the energy of a code z of an input x under a dictionary
// whose n unit-norm atoms are the rows of Dt (n, m) is
//
//	E(z) = ½‖x − Dtᵀz‖² + λ‖z‖₁,
//
// minimized here by ISTA, FISTA (in batches, on Sgemm) and coordinate
// descent (CoD, one sample at a time). Matrices are row-major float32; a
// batch of N inputs is X (N, m) and their codes Z (N, n).

// Dict is a dictionary of N atoms of dimension M, each a row of Atoms.
type Dict struct {
	N, M  int
	Atoms []float32 // (N, M), rows of unit norm
	Gram  []float32 // (N, N): Atoms·Atomsᵀ
	L     float32   // the largest eigenvalue of Gram: the energy gradient's Lipschitz constant
}

// NewDict returns a dictionary over atoms (n rows of m), normalized to
// unit norm in place; a zero atom is an error.
func NewDict(n, m int, atoms []float32) (*Dict, error) {
	if n <= 0 || m <= 0 || len(atoms) != n*m {
		return nil, fmt.Errorf("repro: dictionary of %d atoms of %d from %d values", n, m, len(atoms))
	}
	d := &Dict{N: n, M: m, Atoms: atoms}
	if err := d.normalize(); err != nil {
		return nil, err
	}
	return d, nil
}

// normalize scales every atom to unit norm and recomputes Gram and L.
func (d *Dict) normalize() error {
	for i := range d.N {
		a := d.Atoms[i*d.M : (i+1)*d.M]
		var s float64
		for _, v := range a {
			s += float64(v) * float64(v)
		}
		if !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("repro: dictionary atom %d has norm %v", i, math.Sqrt(s))
		}
		inv := float32(1 / math.Sqrt(s))
		for j := range a {
			a[j] *= inv
		}
	}
	if len(d.Gram) != d.N*d.N {
		d.Gram = make([]float32, d.N*d.N)
	}
	tensorcore.Sgemm(nil, false, true, d.N, d.N, d.M, 1, d.Atoms, d.M, d.Atoms, d.M, 0, d.Gram, d.N)
	d.L = float32(maxEigenSym(d.Gram, d.N) * 1.0001)
	return nil
}

// maxEigenSym returns the largest eigenvalue of the symmetric positive
// semi-definite n×n matrix a, by power iteration from a fixed start.
func maxEigenSym(a []float32, n int) float64 {
	v := make([]float64, n)
	w := make([]float64, n)
	for i := range v {
		v[i] = 1 / math.Sqrt(float64(n)) * (1 + 0.01*float64(i%7))
	}
	lambda := 0.0
	for range 500 {
		var norm float64
		for i := range n {
			var s float64
			row := a[i*n : (i+1)*n]
			for j, x := range row {
				s += float64(x) * v[j]
			}
			w[i] = s
			norm += s * s
		}
		norm = math.Sqrt(norm)
		if norm == 0 {
			return 0
		}
		next := 0.0
		for i := range n {
			next += w[i] * v[i]
			v[i] = w[i] / norm
		}
		if math.Abs(next-lambda) <= 1e-9*math.Abs(next) {
			return next
		}
		lambda = next
	}
	return lambda
}

// shrink is the soft threshold h_θ(v) = sign(v)·max(|v| − θ, 0), in the
// float32 of the solvers and the float64 of LCoD's hand backward.
func shrink[T float32 | float64](v, theta T) T {
	switch {
	case v > theta:
		return v - theta
	case v < -theta:
		return v + theta
	}
	return 0
}

// Correlate sets c (N, n) to X·Atomsᵀ for the n rows of x (N·M values).
func (d *Dict) Correlate(c, x []float32, rows int) {
	tensorcore.Sgemm(nil, false, true, rows, d.N, d.M, 1, x, d.M, d.Atoms, d.M, 0, c, d.N)
}

// Energy returns the mean over the rows of x of ½‖x − Dtᵀz‖² + λ‖z‖₁.
func (d *Dict) Energy(x, z []float32, rows int, lambda float32) float64 {
	rec := make([]float32, rows*d.M)
	tensorcore.Sgemm(nil, false, false, rows, d.M, d.N, 1, z, d.N, d.Atoms, d.M, 0, rec, d.M)
	var e float64
	for i, v := range rec {
		r := float64(x[i] - v)
		e += 0.5 * r * r
	}
	for _, v := range z[:rows*d.N] {
		e += float64(lambda) * math.Abs(float64(v))
	}
	return e / float64(rows)
}

// ISTA runs iters iterations of iterative shrinkage-thresholding from z = 0
// on the rows of x and leaves the codes in z (rows·N values). trace, when
// not nil, is called after each iteration with its number (1-based) and
// the codes so far.
func (d *Dict) ISTA(z, x []float32, rows int, lambda float32, iters int, trace func(it int, z []float32)) {
	d.fista(z, x, rows, lambda, iters, false, trace)
}

// FISTA is ISTA with Beck and Teboulle's momentum.
func (d *Dict) FISTA(z, x []float32, rows int, lambda float32, iters int, trace func(it int, z []float32)) {
	d.fista(z, x, rows, lambda, iters, true, trace)
}

func (d *Dict) fista(z, x []float32, rows int, lambda float32, iters int, momentum bool, trace func(int, []float32)) {
	n := d.N
	z = z[:rows*n]
	c := make([]float32, rows*n) // X·Atomsᵀ
	d.Correlate(c, x, rows)
	y := make([]float32, rows*n) // the point the gradient is taken at
	g := make([]float32, rows*n)
	prev := make([]float32, rows*n)
	clear(z)
	inv, theta := 1/d.L, lambda/d.L
	t := 1.0
	for it := 1; it <= iters; it++ {
		// g = y·Gram (the gradient is g − c).
		tensorcore.Sgemm(nil, false, false, rows, n, n, 1, y, n, d.Gram, n, 0, g, n)
		copy(prev, z)
		for i := range z {
			z[i] = shrink(y[i]-inv*(g[i]-c[i]), theta)
		}
		if momentum {
			tNext := (1 + math.Sqrt(1+4*t*t)) / 2
			beta := float32((t - 1) / tNext)
			t = tNext
			for i := range y {
				y[i] = z[i] + beta*(z[i]-prev[i])
			}
		} else {
			copy(y, z)
		}
		if trace != nil {
			trace(it, z)
		}
	}
}

// CoD runs steps steps of coordinate descent on one input x (M values),
// each updating the coordinate whose optimal value moved most, and sets z
// (N values) to h_λ(B), the code the last state implies. The energy of the
// code held in the iteration never increases (see the test). s is
// I − Gram (N×N), b a scratch of N values. trace, when not nil, gets the
// step number (1-based) and h_λ(B) after each step.
func (d *Dict) CoD(z, x []float32, lambda float32, steps int, s, b []float32, trace func(step int, z []float32)) {
	n := d.N
	d.Correlate(b, x, 1)
	held := make([]float32, n) // the iteration's code Z
	for step := 1; step <= steps; step++ {
		k, best := 0, float32(-1)
		for j := range n {
			if dz := abs32(shrink(b[j], lambda) - held[j]); dz > best {
				k, best = j, dz
			}
		}
		zk := shrink(b[k], lambda)
		delta := zk - held[k]
		if delta != 0 {
			for j := range n {
				b[j] += s[j*n+k] * delta
			}
		}
		held[k] = zk
		if trace != nil {
			for j := range n {
				z[j] = shrink(b[j], lambda)
			}
			trace(step, z)
		}
	}
	for j := range n {
		z[j] = shrink(b[j], lambda)
	}
}

// codHeld is CoD returning the iteration's own code (not h_λ(B)): the
// coordinate-wise minimizer, whose energy the test checks never rises.
func (d *Dict) codHeld(x []float32, lambda float32, steps int, each func(held []float32)) {
	n := d.N
	s := d.identityMinusGram()
	b := make([]float32, n)
	d.Correlate(b, x, 1)
	held := make([]float32, n)
	for range steps {
		k, best := 0, float32(-1)
		for j := range n {
			if dz := abs32(shrink(b[j], lambda) - held[j]); dz > best {
				k, best = j, dz
			}
		}
		zk := shrink(b[k], lambda)
		for j := range n {
			b[j] += s[j*n+k] * (zk - held[k])
		}
		held[k] = zk
		each(held)
	}
}

// identityMinusGram returns I − Gram (N×N).
func (d *Dict) identityMinusGram() []float32 {
	s := make([]float32, d.N*d.N)
	for i := range s {
		s[i] = -d.Gram[i]
	}
	for i := range d.N {
		s[i*d.N+i]++
	}
	return s
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// nonZeroFraction returns the fraction of non-zero entries of z.
func nonZeroFraction(z []float32) float64 {
	nz := 0
	for _, v := range z {
		if v != 0 {
			nz++
		}
	}
	return float64(nz) / float64(max(len(z), 1))
}

// tuneLambda bisects (on a log scale) for the λ whose FISTA codes (iters
// iterations) of the rows of x have the fraction target of non-zeros.
func (d *Dict) tuneLambda(x []float32, rows int, target float64, iters int) float32 {
	z := make([]float32, rows*d.N)
	d.Correlate(z, x, rows)
	hi := 0.0 // no code is non-zero for λ ≥ max |Dx|
	for _, v := range z {
		hi = max(hi, math.Abs(float64(v)))
	}
	lo := 1e-6 * hi
	for range 16 {
		mid := math.Sqrt(lo * hi)
		d.FISTA(z, x, rows, float32(mid), iters, nil)
		if nonZeroFraction(z) > target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return float32(math.Sqrt(lo * hi))
}

// learnDict learns a dictionary of n atoms for the rows of x (rows·m
// values) by alternating FISTA codes (codeIters iterations, batches of
// batch rows) and a gradient step on the atoms, which are then rescaled to
// unit norm. The first atoms are random rows of x. λ is re-tuned for the
// fraction nnz of non-zeros after each epoch, on the first tuneRows rows
// with FISTA codes of tuneIters iterations.
func learnDict(ctx context.Context, rng *rand.Rand, x []float32, rows, m, n, epochs, batch, codeIters int, nnz float64, lr float32,
	tuneRows, tuneIters int, progress func(float64)) (*Dict, float32, error) {
	if rows < n || rows < batch {
		return nil, 0, fmt.Errorf("repro: %d inputs to learn %d atoms", rows, n)
	}
	atoms := make([]float32, n*m)
	for i, r := range rng.Perm(rows)[:n] {
		copy(atoms[i*m:(i+1)*m], x[r*m:(r+1)*m])
		for j := range m { // a little noise keeps equal rows apart
			atoms[i*m+j] += 0.01 * float32(rng.NormFloat64())
		}
	}
	d, err := NewDict(n, m, atoms)
	if err != nil {
		return nil, 0, err
	}
	tuneRows = min(rows, tuneRows)
	lambda := d.tuneLambda(x, tuneRows, nnz, tuneIters)
	z := make([]float32, batch*n)
	xb := make([]float32, batch*m)
	res := make([]float32, batch*m)
	grad := make([]float32, n*m)
	for ep := range epochs {
		perm := rng.Perm(rows)
		for b := 0; b+batch <= rows; b += batch {
			if err := ctx.Err(); err != nil {
				return nil, 0, err
			}
			for i, r := range perm[b : b+batch] {
				copy(xb[i*m:(i+1)*m], x[r*m:(r+1)*m])
			}
			d.FISTA(z, xb, batch, lambda, codeIters, nil)
			// res = Z·Dt − X; the energy's gradient in Dt is Zᵀ·res.
			tensorcore.Sgemm(nil, false, false, batch, m, n, 1, z, n, d.Atoms, m, 0, res, m)
			for i := range res {
				res[i] -= xb[i]
			}
			tensorcore.Sgemm(nil, true, false, n, m, batch, 1, z, n, res, m, 0, grad, m)
			step := lr / float32(batch)
			for i := range d.Atoms {
				d.Atoms[i] -= step * grad[i]
			}
			if err := d.normalize(); err != nil {
				return nil, 0, err
			}
			if progress != nil {
				progress((float64(ep) + float64(b+batch)/float64(rows)) / float64(epochs))
			}
		}
		lambda = d.tuneLambda(x, tuneRows, nnz, tuneIters)
	}
	return d, lambda, nil
}

// digitVectors returns the first n images of an MNIST split, area-resampled
// to side×side pixels in [0, 1] (undoing the set's normalization), each
// then scaled to unit norm when unit is set, and their labels.
func digitVectors(set dataset.Set, n, side int, unit bool) ([]float32, []int, error) {
	if set.Len() < n {
		return nil, nil, fmt.Errorf("repro: %s has %d images, want %d", set.Name(), set.Len(), n)
	}
	m := side * side
	x := make([]float32, n*m)
	y := make([]int, n)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	if err := set.Fill(x, y, idx, dataset.Transform{Out: dataset.Shape{C: 1, H: side, W: side}}); err != nil {
		return nil, nil, err
	}
	for i := range x {
		x[i] = float32(max(0, float64(x[i])*dataset.MNISTStd+dataset.MNISTMean))
	}
	if unit {
		for i := range n {
			row := x[i*m : (i+1)*m]
			var s float64
			for _, v := range row {
				s += float64(v) * float64(v)
			}
			if s == 0 {
				return nil, nil, errors.New("repro: a blank digit")
			}
			inv := float32(1 / math.Sqrt(s))
			for j := range row {
				row[j] *= inv
			}
		}
	}
	return x, y, nil
}

// relCodeError returns the mean over rows of ‖z − z*‖²/‖z*‖², leaving out
// rows whose z* is zero.
func relCodeError(z, zStar []float32, rows, n int) float64 {
	var sum float64
	cnt := 0
	for i := range rows {
		var num, den float64
		for j := i * n; j < (i+1)*n; j++ {
			e := float64(z[j] - zStar[j])
			num += e * e
			den += float64(zStar[j]) * float64(zStar[j])
		}
		if den > 0 {
			sum += num / den
			cnt++
		}
	}
	if cnt == 0 {
		return math.NaN()
	}
	return sum / float64(cnt)
}
