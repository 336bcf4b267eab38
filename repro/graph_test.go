package repro

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// A path of three nodes with unit weights: L = I − D^-1/2 W D^-1/2 is
// known in closed form, with eigenvalues 0, 1, 2.
func TestLaplacianOfPath(t *testing.T) {
	w := []float64{0, 1, 0, 1, 0, 1, 0, 1, 0}
	l, err := normalizedLaplacian(3, w)
	if err != nil {
		t.Fatal(err)
	}
	r := 1 / math.Sqrt2
	want := [][]float64{{1, -r, 0}, {-r, 1, -r}, {0, -r, 1}}
	for i := range 3 {
		for j := range 3 {
			if math.Abs(l.At(i, j)-want[i][j]) > 1e-12 {
				t.Errorf("L[%d][%d] = %v, want %v", i, j, l.At(i, j), want[i][j])
			}
		}
	}
	vals, _, err := graphFourier(l)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []float64{0, 1, 2} {
		if math.Abs(vals[i]-v) > 1e-9 {
			t.Errorf("eigenvalue %d = %v, want %v", i, vals[i], v)
		}
	}
	if _, err := normalizedLaplacian(2, []float64{0, 1, 2, 0}); err == nil {
		t.Error("an asymmetric W gave no error")
	}
}

// The 8-NN Gaussian graph of random points in the plane, as spectral-net
// builds it over pixels: W symmetric with every node of degree ≥ k, L
// symmetric with eigenvalues in [0, 2] and the smallest ≈ 0, whose
// eigenvector is ∝ D^1/2·1, and an orthonormal eigenbasis.
func TestKNNGraphLaplacian(t *testing.T) {
	const n, k = 60, 8
	rng := rand.New(rand.NewPCG(1, 2))
	xy := make([][2]float64, n)
	for i := range xy {
		xy[i] = [2]float64{rng.Float64() * 10, rng.Float64() * 10}
	}
	dist := make([]float64, n*n)
	for i := range n {
		for j := range n {
			dx, dy := xy[i][0]-xy[j][0], xy[i][1]-xy[j][1]
			dist[i*n+j] = dx*dx + dy*dy
		}
	}
	w, err := knnGraph(n, k, dist, func(_, _ int, d float64) float64 { return math.Exp(-d / 4) })
	if err != nil {
		t.Fatal(err)
	}
	deg := make([]float64, n)
	for i := range n {
		links := 0
		for j := range n {
			if w[i*n+j] != w[j*n+i] {
				t.Fatalf("W[%d][%d] = %v but W[%d][%d] = %v", i, j, w[i*n+j], j, i, w[j*n+i])
			}
			if w[i*n+j] > 0 {
				links++
			}
			deg[i] += w[i*n+j]
		}
		if w[i*n+i] != 0 || links < k {
			t.Errorf("node %d: self weight %v, %d links (want ≥ %d)", i, w[i*n+i], links, k)
		}
	}
	l, err := normalizedLaplacian(n, w)
	if err != nil {
		t.Fatal(err)
	}
	vals, u, err := graphFourier(l)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(vals[0]) > 1e-9 {
		t.Errorf("smallest eigenvalue %v, want 0", vals[0])
	}
	for i, v := range vals {
		if v < -1e-9 || v > 2+1e-9 || (i > 0 && v < vals[i-1]) {
			t.Errorf("eigenvalue %d = %v: outside [0, 2] or out of order", i, v)
		}
	}
	// The null vector is D^1/2·1, normalized (up to sign).
	var norm float64
	for _, d := range deg {
		norm += d
	}
	var dot float64
	for i := range n {
		dot += float64(u[i*n]) * math.Sqrt(deg[i]/norm)
	}
	if math.Abs(math.Abs(dot)-1) > 1e-5 {
		t.Errorf("first eigenvector·D^1/2·1 = %v, want ±1", dot)
	}
	// UᵀU = I, and U·diag(λ)·Uᵀ = L.
	um := mat.NewDense(n, n, nil)
	for i := range n {
		for j := range n {
			um.Set(i, j, float64(u[i*n+j]))
		}
	}
	var utu, rec mat.Dense
	utu.Mul(um.T(), um)
	rec.Mul(um, mat.NewDiagDense(n, vals))
	rec.Mul(&rec, um.T())
	for i := range n {
		for j := range n {
			id := 0.0
			if i == j {
				id = 1
			}
			if math.Abs(utu.At(i, j)-id) > 1e-5 || math.Abs(rec.At(i, j)-l.At(i, j)) > 1e-5 {
				t.Fatalf("at %d,%d: UᵀU = %v, UΛUᵀ = %v vs L = %v", i, j, utu.At(i, j), rec.At(i, j), l.At(i, j))
			}
		}
	}
	if _, err := knnGraph(n, n, dist, nil); err == nil {
		t.Error("k = n gave no error")
	}
}

// Four cubic splines on [0, 1] with no interior knot are the Bernstein
// polynomials; more splines still sum to 1 everywhere and are ≥ 0.
func TestSplineBasis(t *testing.T) {
	const n = 11
	s, err := splineBasis(n, 4)
	if err != nil {
		t.Fatal(err)
	}
	for r := range n {
		x := float64(r) / (n - 1)
		want := []float64{math.Pow(1-x, 3), 3 * x * (1 - x) * (1 - x), 3 * x * x * (1 - x), x * x * x}
		for j, v := range want {
			if math.Abs(s[r*4+j]-v) > 1e-12 {
				t.Errorf("B%d(%v) = %v, want %v", j, x, s[r*4+j], v)
			}
		}
	}
	const k = 40
	s, err = splineBasis(400, k)
	if err != nil {
		t.Fatal(err)
	}
	for r := range 400 {
		var sum float64
		for j := range k {
			v := s[r*k+j]
			if v < 0 {
				t.Fatalf("B%d at point %d = %v < 0", j, r, v)
			}
			sum += v
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Fatalf("row %d sums to %v", r, sum)
		}
	}
	if s[0] != 1 || s[400*k-1] != 1 {
		t.Errorf("end splines at the ends: %v, %v; want 1", s[0], s[400*k-1])
	}
	if _, err := splineBasis(10, 3); err == nil {
		t.Error("3 cubic splines gave no error")
	}
}

// columnDistances against standardizing the columns by hand: a column and
// a positive multiple of it are at distance 0, a column and its negative
// at 2 (= √(2(1 − (−1)))), a constant column at 1 from any other, and the
// rest at the Euclidean distance of the standardized columns over √n.
func TestColumnDistances(t *testing.T) {
	const n, d = 50, 5
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, n*d)
	for i := range n {
		a, b := rng.NormFloat64(), rng.NormFloat64()
		x[i*d+0] = float32(a)
		x[i*d+1] = float32(3*a + 1) // ∝ column 0
		x[i*d+2] = float32(-a)      // column 0 negated
		x[i*d+3] = float32(a + b)
		x[i*d+4] = 7 // constant
	}
	dist := columnDistances(x, n, d)
	// Standardize by hand (population variance), in float64.
	z := make([][]float64, d)
	for j := range d {
		var mean, sq float64
		for i := range n {
			mean += float64(x[i*d+j])
		}
		mean /= n
		for i := range n {
			sq += (float64(x[i*d+j]) - mean) * (float64(x[i*d+j]) - mean)
		}
		z[j] = make([]float64, n)
		for i := range n {
			if sq > 0 {
				z[j][i] = (float64(x[i*d+j]) - mean) / math.Sqrt(sq/n)
			}
		}
	}
	for i := range d {
		for j := range d {
			var s float64
			for r := range n {
				s += (z[i][r] - z[j][r]) * (z[i][r] - z[j][r])
			}
			want := math.Sqrt(s / n)
			if math.Abs(dist[i*d+j]-want) > 1e-3 {
				t.Errorf("d(%d, %d) = %v, want %v", i, j, dist[i*d+j], want)
			}
		}
	}
	for _, c := range []struct {
		i, j int
		want float64
	}{{0, 1, 0}, {0, 2, 2}, {0, 4, 1}, {3, 4, 1}, {4, 4, 0}} {
		if math.Abs(dist[c.i*d+c.j]-c.want) > 1e-3 {
			t.Errorf("d(%d, %d) = %v, want %v", c.i, c.j, dist[c.i*d+c.j], c.want)
		}
	}
}

// selfTuningGraph on points of a line: every node keeps its k nearest,
// σ_i is the distance to the k-th of them, and an edge weighs
// exp(−d²/(σ_i σ_j)), the same from either end.
func TestSelfTuningGraph(t *testing.T) {
	pos := []float64{0, 1, 3, 7, 15} // gaps double: widths differ by node
	const n, k = 5, 2
	dist := make([]float64, n*n)
	for i := range n {
		for j := range n {
			dist[i*n+j] = math.Abs(pos[i] - pos[j])
		}
	}
	w, err := selfTuningGraph(n, k, dist)
	if err != nil {
		t.Fatal(err)
	}
	sigma := []float64{3, 2, 3, 6, 12} // distance to the 2nd nearest
	edges := [][2]int{{0, 1}, {0, 2}, {1, 2}, {1, 3}, {2, 3}, {3, 4}, {2, 4}}
	want := make([]float64, n*n)
	for _, e := range edges {
		i, j := e[0], e[1]
		v := math.Exp(-dist[i*n+j] * dist[i*n+j] / (sigma[i] * sigma[j]))
		want[i*n+j], want[j*n+i] = v, v
	}
	for i := range n * n {
		if math.Abs(w[i]-want[i]) > 1e-12 {
			t.Errorf("w[%d][%d] = %v, want %v", i/n, i%n, w[i], want[i])
		}
	}
	if _, err := selfTuningGraph(n, n, dist); err == nil {
		t.Error("k = n gave no error")
	}
}
