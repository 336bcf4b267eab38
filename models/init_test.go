package models

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/tensorcore"
)

func convGroups(g int) tensorcore.ConvParams { return tensorcore.ConvParams{Groups: g} }

func TestFans(t *testing.T) {
	cases := []struct {
		shape   []int
		in, out int
	}{
		{[]int{10}, 10, 10},
		{[]int{120, 400}, 400, 120},
		{[]int{16, 6, 5, 5}, 150, 400},
		{[]int{4, 3, 4, 4}, 48, 64}, // ConvTranspose2d (in, out, k, k): PyTorch's convention
	}
	for _, c := range cases {
		in, out := Fans(c.shape)
		if in != c.in || out != c.out {
			t.Errorf("Fans(%v) = %d, %d; want %d, %d", c.shape, in, out, c.in, c.out)
		}
	}
}

func moments(x []float32) (mean, std, maxAbs float64) {
	for _, v := range x {
		mean += float64(v)
		maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
	}
	mean /= float64(len(x))
	for _, v := range x {
		d := float64(v) - mean
		std += d * d
	}
	return mean, math.Sqrt(std / float64(len(x))), maxAbs
}

// Each initializer's sample standard deviation (and bound, for uniform
// laws) matches its formula on a large weight.
func TestInitializerScales(t *testing.T) {
	shape := []int{256, 64, 3, 3} // fanIn 576, fanOut 2304
	in, out := 576.0, 2304.0
	u := math.Sqrt(1.0 / 3) // std of U(-1, 1)
	cases := []struct {
		name  string
		init  Initializer
		std   float64
		bound float64 // 0: unbounded
	}{
		{"lecun normal", LeCunNormal(), 1 / math.Sqrt(in), 0},
		{"lecun uniform", LeCunUniform(), 1 / math.Sqrt(in), math.Sqrt(3 / in)},
		{"glorot uniform", GlorotUniform(1), math.Sqrt(2 / (in + out)), math.Sqrt(6 / (in + out))},
		{"glorot normal gain 2", GlorotNormal(2), 2 * math.Sqrt(2/(in+out)), 0},
		{"he normal", HeNormal(), math.Sqrt(2 / in), 0},
		{"he uniform", HeUniform(), math.Sqrt(2 / in), math.Sqrt(6 / in)},
		{"kaiming normal fan out", KaimingNormal(0, FanOut), math.Sqrt(2 / out), 0},
		{"pytorch weight", PyTorchWeight(), u / math.Sqrt(in), 1 / math.Sqrt(in)},
		{"pytorch bias", PyTorchBias(576), u / math.Sqrt(in), 1 / math.Sqrt(in)},
		{"normal", Normal(3, 0.5), 0.5, 0},
		{"uniform", Uniform(-2, 2), 2 * u, 2},
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for _, c := range cases {
		w := make([]float32, 256*64*9)
		c.init(w, shape, rng)
		mean, std, maxAbs := moments(w)
		wantMean := 0.0
		if c.name == "normal" {
			wantMean = 3
			maxAbs = 0
		}
		if math.Abs(mean-wantMean) > 0.02*c.std || math.Abs(std-c.std) > 0.01*c.std {
			t.Errorf("%s: mean %.4g std %.4g, want mean %v std %.4g", c.name, mean, std, wantMean, c.std)
		}
		if c.bound > 0 && (maxAbs > c.bound || maxAbs < 0.99*c.bound) {
			t.Errorf("%s: max |w| %.5g, want just under %.5g", c.name, maxAbs, c.bound)
		}
	}
	w := []float32{1, 2}
	Zeros()(w, []int{2}, rng)
	if w[0] != 0 || w[1] != 0 {
		t.Errorf("Zeros gave %v", w)
	}
	PyTorchBias(0)(w, []int{2}, rng)
	if w[0] != 0 {
		t.Errorf("PyTorchBias(0) gave %v", w)
	}
}

func TestInitializerDeterministic(t *testing.T) {
	for _, init := range []Initializer{PyTorchWeight(), HeNormal(), Orthogonal(1)} {
		a, b := make([]float32, 60), make([]float32, 60)
		init(a, []int{6, 10}, rand.New(rand.NewPCG(3, 4)))
		init(b, []int{6, 10}, rand.New(rand.NewPCG(3, 4)))
		for i := range a {
			if a[i] != b[i] {
				t.Fatal("same seed, different values")
			}
		}
	}
}

// Orthogonal gives orthonormal rows (wide) or columns (tall), times gain.
func TestOrthogonal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, shape := range [][]int{{7, 7}, {12, 5}, {5, 12}, {8, 4, 3, 3}, {1, 6}, {6}} {
		n := shapeProd(shape)
		w := make([]float32, n)
		gain := 1.5
		Orthogonal(gain)(w, shape, rng)
		rows := 1
		if len(shape) > 1 {
			rows = shape[0]
		}
		cols := n / rows
		// G = WᵀW (tall or square) or WWᵀ (wide) must be gain²·I.
		k := min(rows, cols)
		for i := 0; i < k; i++ {
			for j := 0; j < k; j++ {
				var s float64
				if rows >= cols {
					for r := 0; r < rows; r++ {
						s += float64(w[r*cols+i]) * float64(w[r*cols+j])
					}
				} else {
					for c := 0; c < cols; c++ {
						s += float64(w[i*cols+c]) * float64(w[j*cols+c])
					}
				}
				want := 0.0
				if i == j {
					want = gain * gain
				}
				if math.Abs(s-want) > 1e-5 {
					t.Fatalf("shape %v: G[%d][%d] = %v, want %v", shape, i, j, s, want)
				}
			}
		}
	}
}

// householderQ's Q and R = QᵀA reconstruct A, with R upper triangular and
// its diagonal positive.
func TestHouseholderQR(t *testing.T) {
	const m, n = 6, 4
	rng := rand.New(rand.NewPCG(9, 9))
	a := make([]float64, m*n)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	a[0] = -3 // exercise both reflection signs
	orig := append([]float64(nil), a...)
	q := householderQ(a, m, n)
	r := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			for k := 0; k < m; k++ {
				r[i*n+j] += q[k*n+i] * orig[k*n+j]
			}
		}
	}
	for i := 0; i < n; i++ {
		if r[i*n+i] <= 0 {
			t.Errorf("R[%d][%d] = %v, want > 0", i, i, r[i*n+i])
		}
		for j := 0; j < i; j++ {
			if math.Abs(r[i*n+j]) > 1e-12 {
				t.Errorf("R[%d][%d] = %v, want 0", i, j, r[i*n+j])
			}
		}
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k < n; k++ {
				s += q[i*n+k] * r[k*n+j]
			}
			if math.Abs(s-orig[i*n+j]) > 1e-12 {
				t.Fatalf("QR[%d][%d] = %v, want %v", i, j, s, orig[i*n+j])
			}
		}
	}
	// A zero column does not break the factorization.
	z := make([]float64, 3*2)
	z[1], z[3], z[5] = 1, 2, 2
	q = householderQ(z, 3, 2)
	for _, v := range q {
		if math.IsNaN(v) {
			t.Fatal("NaN from a zero column")
		}
	}
}
