package repro

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/ringtrain/ringtrain/tensorcore"
	"gonum.org/v1/gonum/mat"
)

// The graph signal processing behind spectral-net: a k-nearest-neighbour
// graph over n nodes, its normalized Laplacian, the Laplacian's
// eigenbasis (the graph's Fourier basis), and the spline basis that makes
// a multiplier over the graph's frequencies smooth.

// knnGraph returns the weight matrix W (n×n, row-major) of the symmetric
// k-nearest-neighbour graph: node i links to the k other nodes j with the
// smallest dist[i*n+j] (ties to the lower index), with weight
// weight(i, j, dist[i*n+j]), and W = max(W, Wᵀ) so that an edge either end
// chose is kept. dist need not be symmetric; its diagonal is ignored.
func knnGraph(n, k int, dist []float64, weight func(i, j int, d float64) float64) ([]float64, error) {
	if n < 2 || k < 1 || k >= n || len(dist) != n*n {
		return nil, fmt.Errorf("repro: knn graph: %d nodes, k = %d, %d distances", n, k, len(dist))
	}
	w := make([]float64, n*n)
	for i := range n {
		row := dist[i*n : (i+1)*n]
		for _, j := range nearest(i, k, row) {
			v := weight(i, j, row[j])
			if math.IsNaN(v) || v < 0 {
				return nil, fmt.Errorf("repro: knn graph: weight %v between nodes %d and %d", v, i, j)
			}
			w[i*n+j] = max(w[i*n+j], v)
			w[j*n+i] = max(w[j*n+i], v)
		}
	}
	return w, nil
}

// nearest returns the k nodes other than i with the smallest row[j],
// nearest first (ties to the lower index).
func nearest(i, k int, row []float64) []int {
	order := make([]int, 0, len(row)-1)
	for j := range row {
		if j != i {
			order = append(order, j)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case row[a] < row[b]:
			return -1
		case row[a] > row[b]:
			return 1
		}
		return 0
	})
	return order[:k]
}

// selfTuningGraph returns the weight matrix of the k-nearest-neighbour
// graph (as knnGraph) of n nodes at distances dist (n×n, symmetric) with
// the self-tuning Gaussian kernel w_ij = exp(−d_ij²/(σ_i σ_j)), σ_i the
// distance from node i to its k-th nearest neighbour: each node's kernel
// width adapts to how close its neighbours are (Zelnik-Manor and Perona
// 2004; Henaff, Bruna and LeCun 2015 estimate graphs with it).
func selfTuningGraph(n, k int, dist []float64) ([]float64, error) {
	if n < 2 || k < 1 || k >= n || len(dist) != n*n {
		return nil, fmt.Errorf("repro: self-tuning graph: %d nodes, k = %d, %d distances", n, k, len(dist))
	}
	sigma := make([]float64, n)
	for i := range n {
		row := dist[i*n : (i+1)*n]
		nn := nearest(i, k, row)
		// A node whose k nearest sit at distance 0 gets a tiny width
		// rather than a division by zero.
		sigma[i] = max(row[nn[k-1]], 1e-12)
	}
	return knnGraph(n, k, dist, func(i, j int, d float64) float64 {
		return math.Exp(-d * d / (sigma[i] * sigma[j]))
	})
}

// columnDistances returns the Euclidean distances between the standardized
// columns of x (n rows of d features), each scaled by 1/√n: for two
// features that vary, d_ij = √(2(1 − corr_ij)), so features that rise and
// fall together are close and features that move against each other are
// far. A feature constant over the rows is a column of zeros.
func columnDistances(x []float32, n, d int) []float64 {
	cov := centeredGram(x, n, d)
	// corr(i, j) between the columns; corr(i, i) is 0 for a
	// constant feature (its standardized column is zeros).
	corr := func(i, j int) float64 {
		v := float64(cov[i*d+i]) * float64(cov[j*d+j])
		if v <= 0 {
			return 0
		}
		return max(-1, min(1, float64(cov[i*d+j])/math.Sqrt(v)))
	}
	dist := make([]float64, d*d)
	for i := range d {
		for j := range d {
			dist[i*d+j] = math.Sqrt(max(corr(i, i)+corr(j, j)-2*corr(i, j), 0))
		}
	}
	return dist
}

// centeredGram returns XcᵀXc (d×d, row-major) for the columns of x (n
// rows of d features) less their means: n − 1 times their covariance.
func centeredGram(x []float32, n, d int) []float32 {
	mean := make([]float64, d)
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			mean[j] += float64(v)
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	xc := make([]float32, n*d)
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			xc[i*d+j] = v - float32(mean[j])
		}
	}
	g := make([]float32, d*d)
	tensorcore.Sgemm(nil, true, false, d, d, n, 1, xc, d, xc, d, 0, g, d)
	return g
}

// normalizedLaplacian returns L = I − D^-1/2 W D^-1/2 for the symmetric
// weight matrix w (n×n, row-major), D the diagonal of W's row sums. A node
// without edges gets L_ii = 1 (its row of D^-1/2 W D^-1/2 is zero). Its
// eigenvalues lie in [0, 2], with 0 once per connected component.
func normalizedLaplacian(n int, w []float64) (*mat.SymDense, error) {
	if len(w) != n*n {
		return nil, fmt.Errorf("repro: laplacian: %d weights for %d nodes", len(w), n)
	}
	inv := make([]float64, n) // D^-1/2
	for i := range n {
		var d float64
		for j := range n {
			if w[i*n+j] != w[j*n+i] {
				return nil, fmt.Errorf("repro: laplacian: weights %d,%d and %d,%d differ", i, j, j, i)
			}
			d += w[i*n+j]
		}
		if d > 0 {
			inv[i] = 1 / math.Sqrt(d)
		}
	}
	l := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			v := -inv[i] * w[i*n+j] * inv[j]
			if i == j {
				v++
			}
			l.SetSym(i, j, v)
		}
	}
	return l, nil
}

// graphFourier returns the eigenvalues of the symmetric l in ascending
// order and its orthonormal eigenvectors as the columns of u (n×n,
// row-major, float32 for the tape).
func graphFourier(l *mat.SymDense) (vals []float64, u []float32, err error) {
	var es mat.EigenSym
	if !es.Factorize(l, true) {
		return nil, nil, errors.New("repro: graph fourier: the eigendecomposition did not converge")
	}
	vals = es.Values(nil)
	var vec mat.Dense
	es.VectorsTo(&vec)
	n := len(vals)
	u = make([]float32, n*n)
	for i := range n {
		for j := range n {
			u[i*n+j] = float32(vec.At(i, j))
		}
	}
	return vals, u, nil
}

// splineBasis returns the values of k clamped uniform cubic B-splines at
// n points evenly spread over [0, 1] (the frequencies in ascending order),
// as an n×k row-major matrix S: a multiplier S·a over the frequencies is
// then a smooth (twice continuously differentiable) function of the
// frequency index with k coefficients a. Each row sums to 1. k must be at
// least 4.
func splineBasis(n, k int) ([]float64, error) {
	const p = 3 // cubic
	if n < 1 || k < p+1 {
		return nil, fmt.Errorf("repro: spline basis: %d points, %d splines (want at least %d)", n, k, p+1)
	}
	knots := make([]float64, k+p+1)
	for i := range knots {
		switch {
		case i <= p:
			knots[i] = 0
		case i >= k:
			knots[i] = 1
		default:
			knots[i] = float64(i-p) / float64(k-p)
		}
	}
	s := make([]float64, n*k)
	b := make([]float64, len(knots)-1)
	for r := range n {
		t := 0.0
		if n > 1 {
			t = float64(r) / float64(n-1)
		}
		// Degree 0: the indicator of the knot span holding t (the last
		// span is closed on the right).
		clear(b)
		if t >= 1 {
			b[k-1] = 1
		} else {
			for j := range b {
				if knots[j] <= t && t < knots[j+1] {
					b[j] = 1
				}
			}
		}
		// Cox–de Boor: raise the degree one step at a time, in place (b[j]
		// of degree d reads b[j] and b[j+1] of degree d-1).
		for d := 1; d <= p; d++ {
			for j := 0; j < len(knots)-1-d; j++ {
				var v float64
				if den := knots[j+d] - knots[j]; den > 0 {
					v += (t - knots[j]) / den * b[j]
				}
				if den := knots[j+d+1] - knots[j+1]; den > 0 {
					v += (knots[j+d+1] - t) / den * b[j+1]
				}
				b[j] = v
			}
		}
		copy(s[r*k:(r+1)*k], b[:k])
	}
	return s, nil
}
