package repro

import (
	"math"
	"math/rand/v2"
	"testing"
)

// bruteAssignment returns the least total cost over all permutations.
func bruteAssignment(cost []float64, n int) float64 {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	best := math.Inf(1)
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			var s float64
			for i, j := range perm {
				s += cost[i*n+j]
			}
			best = min(best, s)
			return
		}
		for i := k; i < n; i++ {
			perm[k], perm[i] = perm[i], perm[k]
			rec(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	rec(0)
	return best
}

func TestMinCostAssignmentMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for trial := range 200 {
		n := 1 + trial%7
		cost := make([]float64, n*n)
		for i := range cost {
			cost[i] = float64(rng.IntN(20)) - 5 // ties and negatives on purpose
		}
		match, err := minCostAssignment(cost, n)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, n)
		var s float64
		for i, j := range match {
			if j < 0 || j >= n || seen[j] {
				t.Fatalf("n=%d: match %v is not a permutation", n, match)
			}
			seen[j] = true
			s += cost[i*n+j]
		}
		if want := bruteAssignment(cost, n); s != want {
			t.Fatalf("n=%d cost %v: total %v, brute force %v", n, cost, s, want)
		}
	}
}

func TestMinCostAssignmentRejectsBadInput(t *testing.T) {
	if _, err := minCostAssignment([]float64{1, 2, 3}, 2); err == nil {
		t.Error("short matrix accepted")
	}
	if _, err := minCostAssignment([]float64{1, math.NaN(), 3, 4}, 2); err == nil {
		t.Error("NaN accepted")
	}
}

func TestClusterAccuracy(t *testing.T) {
	// Clusters are the labels renamed, but for one sample.
	labels := []int{0, 0, 1, 1, 2, 2, 2}
	clusters := []int{2, 2, 0, 0, 1, 1, 0}
	acc, err := clusterAccuracy(clusters, labels, 3)
	if err != nil || math.Abs(acc-6.0/7) > 1e-12 {
		t.Errorf("accuracy %v, %v; want 6/7", acc, err)
	}
	if _, err := clusterAccuracy([]int{3}, []int{0}, 3); err == nil {
		t.Error("cluster out of range accepted")
	}
}
