package models

import (
	"math"
	"math/rand/v2"
)

// An Initializer fills dst, a tensor of the given shape, with initial values
// drawn from rng. Weight layouts follow PyTorch: Linear (out, in), Conv2d
// (out, in/groups, kh, kw), ConvTranspose2d (in, out/groups, kh, kw); fans
// are computed from the shape as PyTorch does (see Fans).
type Initializer func(dst []float32, shape []int, rng *rand.Rand)

// FanMode selects which fan scales a variance-preserving initializer.
type FanMode int

const (
	FanIn  FanMode = iota // preserve the variance of the forward pass
	FanOut                // preserve the variance of the backward pass
)

// Fans returns the fan-in and fan-out of a weight of the given shape the way
// PyTorch computes them: for shape (a, b, k...) fanIn = b·∏k and fanOut =
// a·∏k; a 1-D shape (n) has fanIn = fanOut = n. (For ConvTranspose2d's
// (in, out/groups, kh, kw) layout this makes "fan-in" the output side, as in
// PyTorch.)
func Fans(shape []int) (fanIn, fanOut int) {
	switch len(shape) {
	case 0:
		return 1, 1
	case 1:
		return shape[0], shape[0]
	}
	rf := 1
	for _, d := range shape[2:] {
		rf *= d
	}
	return shape[1] * rf, shape[0] * rf
}

func fan(shape []int, mode FanMode) float64 {
	in, out := Fans(shape)
	if mode == FanOut {
		return float64(out)
	}
	return float64(in)
}

// Zeros sets every element to 0.
func Zeros() Initializer { return Constant(0) }

// Constant sets every element to v.
func Constant(v float32) Initializer {
	return func(dst []float32, _ []int, _ *rand.Rand) {
		for i := range dst {
			dst[i] = v
		}
	}
}

// Uniform draws from U(lo, hi).
func Uniform(lo, hi float64) Initializer {
	return func(dst []float32, _ []int, rng *rand.Rand) {
		for i := range dst {
			dst[i] = float32(lo + (hi-lo)*rng.Float64())
		}
	}
}

// Normal draws from N(mean, std²).
func Normal(mean, std float64) Initializer {
	return func(dst []float32, _ []int, rng *rand.Rand) {
		for i := range dst {
			dst[i] = float32(mean + std*rng.NormFloat64())
		}
	}
}

// scaledUniform draws from U(-bound, bound) with bound = scale/√fan.
func scaledUniform(scale float64, mode FanMode) Initializer {
	return func(dst []float32, shape []int, rng *rand.Rand) {
		bound := scale / math.Sqrt(fan(shape, mode))
		Uniform(-bound, bound)(dst, shape, rng)
	}
}

// scaledNormal draws from N(0, std²) with std = scale/√fan.
func scaledNormal(scale float64, mode FanMode) Initializer {
	return func(dst []float32, shape []int, rng *rand.Rand) {
		Normal(0, scale/math.Sqrt(fan(shape, mode)))(dst, shape, rng)
	}
}

// LeCunNormal draws from N(0, 1/fanIn) (LeCun et al., "Efficient BackProp",
// 1998; not truncated).
func LeCunNormal() Initializer { return scaledNormal(1, FanIn) }

// LeCunUniform draws from U(-√(3/fanIn), √(3/fanIn)), the uniform law with
// variance 1/fanIn.
func LeCunUniform() Initializer { return scaledUniform(math.Sqrt(3), FanIn) }

// GlorotUniform (Xavier) draws from U(-b, b) with b = gain·√(6/(fanIn+fanOut)).
func GlorotUniform(gain float64) Initializer {
	return func(dst []float32, shape []int, rng *rand.Rand) {
		in, out := Fans(shape)
		b := gain * math.Sqrt(6/float64(in+out))
		Uniform(-b, b)(dst, shape, rng)
	}
}

// GlorotNormal (Xavier) draws from N(0, σ²) with σ = gain·√(2/(fanIn+fanOut)).
func GlorotNormal(gain float64) Initializer {
	return func(dst []float32, shape []int, rng *rand.Rand) {
		in, out := Fans(shape)
		Normal(0, gain*math.Sqrt(2/float64(in+out)))(dst, shape, rng)
	}
}

// KaimingGain returns √(2/(1+a²)), the gain for a leaky ReLU of negative
// slope a (a = 0: ReLU, gain √2).
func KaimingGain(a float64) float64 { return math.Sqrt(2 / (1 + a*a)) }

// KaimingNormal (He) draws from N(0, σ²) with σ = KaimingGain(a)/√fan.
func KaimingNormal(a float64, mode FanMode) Initializer {
	return scaledNormal(KaimingGain(a), mode)
}

// KaimingUniform (He) draws from U(-b, b) with b = KaimingGain(a)·√(3/fan).
func KaimingUniform(a float64, mode FanMode) Initializer {
	return scaledUniform(KaimingGain(a)*math.Sqrt(3), mode)
}

// HeNormal is KaimingNormal for ReLU (a = 0) with fan-in.
func HeNormal() Initializer { return KaimingNormal(0, FanIn) }

// HeUniform is KaimingUniform for ReLU (a = 0) with fan-in.
func HeUniform() Initializer { return KaimingUniform(0, FanIn) }

// PyTorchWeight is PyTorch's default for Linear and Conv weights:
// KaimingUniform with a = √5, that is U(-1/√fanIn, 1/√fanIn).
func PyTorchWeight() Initializer { return KaimingUniform(math.Sqrt(5), FanIn) }

// PyTorchBias is PyTorch's default for the bias of a Linear or Conv layer
// whose weight has the given fan-in: U(-1/√fanIn, 1/√fanIn) (zeros when
// fanIn is 0).
func PyTorchBias(fanIn int) Initializer {
	if fanIn <= 0 {
		return Zeros()
	}
	b := 1 / math.Sqrt(float64(fanIn))
	return Uniform(-b, b)
}

// Orthogonal fills the weight, viewed as a (shape[0], ∏shape[1:]) matrix,
// with a (semi-)orthogonal matrix times gain: the Q of a Householder QR of a
// Gaussian matrix, with each column's sign set so that R has a positive
// diagonal (which makes Q Haar-distributed). Rows are orthonormal when the
// matrix is wide, columns when it is tall. A 1-D shape is treated as a
// single row.
func Orthogonal(gain float64) Initializer {
	return func(dst []float32, shape []int, rng *rand.Rand) {
		rows := 1
		if len(shape) > 1 {
			rows = shape[0]
		}
		if rows == 0 || len(dst) == 0 {
			return
		}
		cols := len(dst) / rows
		// Factor the tall m×n matrix (transposed when the weight is wide).
		m, n := rows, cols
		if rows < cols {
			m, n = cols, rows
		}
		a := make([]float64, m*n)
		for i := range a {
			a[i] = rng.NormFloat64()
		}
		q := householderQ(a, m, n)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				v := float32(gain * q[i*n+j])
				if rows < cols {
					dst[j*cols+i] = v
				} else {
					dst[i*cols+j] = v
				}
			}
		}
	}
}

// householderQ returns the m×n (m ≥ n) orthonormal factor Q of the
// row-major matrix a = QR, with the columns of Q signed so that diag(R) ≥ 0.
// a is overwritten.
func householderQ(a []float64, m, n int) []float64 {
	vs := make([][]float64, n) // Householder vectors, vs[k] has length m-k
	signs := make([]float64, n)
	for k := 0; k < n; k++ {
		var norm float64
		for i := k; i < m; i++ {
			norm = math.Hypot(norm, a[i*n+k])
		}
		signs[k] = 1
		if norm == 0 {
			continue // zero column: H_k is the identity, R[k][k] = 0
		}
		alpha := -norm // reflect x onto alpha·e1 with the sign that avoids cancellation
		if a[k*n+k] < 0 {
			alpha = norm
		}
		v := make([]float64, m-k)
		for i := k; i < m; i++ {
			v[i-k] = a[i*n+k]
		}
		v[0] -= alpha
		var vn float64
		for _, x := range v {
			vn = math.Hypot(vn, x)
		}
		for i := range v {
			v[i] /= vn
		}
		// A[k:, k:] -= 2 v (vᵀ A[k:, k:])
		for j := k; j < n; j++ {
			var s float64
			for i := k; i < m; i++ {
				s += v[i-k] * a[i*n+j]
			}
			for i := k; i < m; i++ {
				a[i*n+j] -= 2 * s * v[i-k]
			}
		}
		vs[k] = v
		if alpha < 0 {
			signs[k] = -1
		}
	}
	// Q = H_0 H_1 … H_{n-1} applied to the first n columns of the identity.
	q := make([]float64, m*n)
	for j := 0; j < n; j++ {
		q[j*n+j] = 1
	}
	for k := n - 1; k >= 0; k-- {
		v := vs[k]
		if v == nil {
			continue
		}
		for j := 0; j < n; j++ {
			var s float64
			for i := k; i < m; i++ {
				s += v[i-k] * q[i*n+j]
			}
			for i := k; i < m; i++ {
				q[i*n+j] -= 2 * s * v[i-k]
			}
		}
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			q[i*n+j] *= signs[j]
		}
	}
	return q
}
