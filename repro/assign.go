package repro

import (
	"fmt"
	"math"
)

// minCostAssignment solves the assignment problem on the n×n cost matrix
// cost (row-major): it returns match, where row i is matched to column
// match[i], a permutation minimizing Σ cost[i][match[i]]. It is the
// Hungarian algorithm with potentials (Kuhn–Munkres, O(n³)). A cost that
// is NaN or infinite, or a matrix not n×n, is an error.
func minCostAssignment(cost []float64, n int) ([]int, error) {
	if n <= 0 || len(cost) != n*n {
		return nil, fmt.Errorf("repro: assignment: %d costs for %d rows", len(cost), n)
	}
	for _, c := range cost {
		if math.IsNaN(c) || math.IsInf(c, 0) {
			return nil, fmt.Errorf("repro: assignment: cost %v", c)
		}
	}
	// 1-based: u, v are the row and column potentials, p[j] the row
	// matched to column j (0: none), way[j] the previous column on the
	// shortest augmenting path to j.
	u, v := make([]float64, n+1), make([]float64, n+1)
	p, way := make([]int, n+1), make([]int, n+1)
	minv := make([]float64, n+1)
	used := make([]bool, n+1)
	for i := 1; i <= n; i++ {
		p[0] = i
		j0 := 0
		for j := range minv {
			minv[j], used[j] = math.Inf(1), false
		}
		for {
			used[j0] = true
			i0, delta, j1 := p[j0], math.Inf(1), 0
			for j := 1; j <= n; j++ {
				if used[j] {
					continue
				}
				if cur := cost[(i0-1)*n+j-1] - u[i0] - v[j]; cur < minv[j] {
					minv[j], way[j] = cur, j0
				}
				if minv[j] < delta {
					delta, j1 = minv[j], j
				}
			}
			for j := 0; j <= n; j++ {
				if used[j] {
					u[p[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
			if p[j0] == 0 {
				break
			}
		}
		for j0 != 0 {
			j1 := way[j0]
			p[j0] = p[j1]
			j0 = j1
		}
	}
	match := make([]int, n)
	for j := 1; j <= n; j++ {
		match[p[j]-1] = j - 1
	}
	return match, nil
}

// clusterAccuracy returns the fraction of samples whose cluster, under the
// one-to-one mapping of k clusters to k classes that agrees with the most
// labels, is their label. clusters and labels hold values in [0, k).
func clusterAccuracy(clusters, labels []int, k int) (float64, error) {
	if len(clusters) != len(labels) || len(labels) == 0 {
		return 0, fmt.Errorf("repro: %d clusters for %d labels", len(clusters), len(labels))
	}
	count := make([]float64, k*k) // (cluster, class)
	for i, c := range clusters {
		l := labels[i]
		if c < 0 || c >= k || l < 0 || l >= k {
			return 0, fmt.Errorf("repro: cluster %d or label %d outside [0, %d)", c, l, k)
		}
		count[c*k+l]++
	}
	cost := make([]float64, k*k)
	for i, c := range count {
		cost[i] = -c
	}
	match, err := minCostAssignment(cost, k)
	if err != nil {
		return 0, err
	}
	var hit float64
	for c, l := range match {
		hit += count[c*k+l]
	}
	return hit / float64(len(labels)), nil
}
