package allreduce

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
)

// PowerSGD all-reduces a gradient viewed as a rows×cols matrix through a
// rank-r approximation (Vogels et al. 2019), with error feedback:
//
//	M = G + E          (E: what earlier steps failed to send)
//	P = M Q;  all-reduce P;  orthonormalize P's columns
//	Q = Mᵀ P; all-reduce Q
//	result = P Qᵀ      (≈ Σ_ranks M, identical on every rank)
//	E = M − result / n
//
// Each step sends r(rows+cols) floats instead of rows·cols. Q is kept
// between steps (warm start), starting from the same seeded random matrix on
// every rank. It is not a Codec: it needs two all-reduces per step, so it
// sits on top of Comm.AllReduce, which carries P and Q in plain fp32.
//
// A PowerSGD value holds one gradient's state; it is not safe for
// concurrent use.
type PowerSGD struct {
	rows, cols, r int
	p             []float32 // (rows, r) row-major
	q             []float32 // (cols, r) row-major
	e             []float32 // (rows, cols) error feedback
}

// NewPowerSGD returns the state for a rows×cols gradient at rank r; every
// rank must use the same seed.
func NewPowerSGD(rows, cols, r int, seed uint64) (*PowerSGD, error) {
	if rows < 1 || cols < 1 || r < 1 || r > min(rows, cols) {
		return nil, fmt.Errorf("allreduce: powersgd rank %d for a %d×%d matrix", r, rows, cols)
	}
	s := &PowerSGD{
		rows: rows, cols: cols, r: r,
		p: make([]float32, rows*r),
		q: make([]float32, cols*r),
		e: make([]float32, rows*cols),
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for i := range s.q {
		s.q[i] = float32(rng.NormFloat64())
	}
	return s, nil
}

// CompressionRatio is rows·cols / (r·(rows+cols)): fp32 bytes per byte sent.
func (s *PowerSGD) CompressionRatio() float64 {
	return float64(s.rows*s.cols) / float64(s.r*(s.rows+s.cols))
}

// AllReduce replaces buf (this rank's rows×cols gradient, row-major) by the
// rank-r approximation of the sum over ranks, bit-identical on every rank,
// and updates the error feedback.
func (s *PowerSGD) AllReduce(ctx context.Context, c *Comm, buf []float32) error {
	if len(buf) != s.rows*s.cols {
		return fmt.Errorf("allreduce: powersgd buffer of %d floats, want %d×%d", len(buf), s.rows, s.cols)
	}
	rows, cols, r := s.rows, s.cols, s.r
	m := buf
	addTo(m, s.e) // M = G + E, in place
	// P = M Q
	clear(s.p)
	for i := 0; i < rows; i++ {
		pi := s.p[i*r : i*r+r]
		mi := m[i*cols : i*cols+cols]
		for j, v := range mi {
			qj := s.q[j*r : j*r+r]
			for k := range pi {
				pi[k] += v * qj[k]
			}
		}
	}
	if err := c.AllReduce(ctx, s.p); err != nil {
		return err
	}
	orthonormalize(s.p, rows, r)
	// Q = Mᵀ P
	clear(s.q)
	for i := 0; i < rows; i++ {
		pi := s.p[i*r : i*r+r]
		mi := m[i*cols : i*cols+cols]
		for j, v := range mi {
			qj := s.q[j*r : j*r+r]
			for k := range qj {
				qj[k] += v * pi[k]
			}
		}
	}
	if err := c.AllReduce(ctx, s.q); err != nil {
		return err
	}
	// result = P Qᵀ; E = M − result/n
	inv := 1 / float32(c.Size())
	for i := 0; i < rows; i++ {
		pi := s.p[i*r : i*r+r]
		mi := m[i*cols : i*cols+cols]
		ei := s.e[i*cols : i*cols+cols]
		for j := range mi {
			qj := s.q[j*r : j*r+r]
			var a float32
			for k := range pi {
				a += pi[k] * qj[k]
			}
			ei[j] = mi[j] - a*inv
			mi[j] = a
		}
	}
	return nil
}

// orthonormalize runs Gram-Schmidt on the r columns of the rows×r
// row-major matrix p, accumulating in float64 and projecting twice
// ("twice is enough") so the columns stay orthogonal in float32. A column
// that lies (numerically) in the span of the earlier ones is set to zero
// rather than normalized into noise.
func orthonormalize(p []float32, rows, r int) {
	colNorm := func(k int) float64 {
		var s float64
		for i := 0; i < rows; i++ {
			s += float64(p[i*r+k]) * float64(p[i*r+k])
		}
		return math.Sqrt(s)
	}
	for k := 0; k < r; k++ {
		before := colNorm(k)
		for pass := 0; pass < 2; pass++ {
			for l := 0; l < k; l++ {
				var dot float64
				for i := 0; i < rows; i++ {
					dot += float64(p[i*r+k]) * float64(p[i*r+l])
				}
				d := float32(dot)
				for i := 0; i < rows; i++ {
					p[i*r+k] -= d * p[i*r+l]
				}
			}
		}
		nrm := colNorm(k)
		if nrm <= 1e-5*before || nrm < 1e-30 {
			for i := 0; i < rows; i++ {
				p[i*r+k] = 0
			}
			continue
		}
		inv := float32(1 / nrm)
		for i := 0; i < rows; i++ {
			p[i*r+k] *= inv
		}
	}
}
