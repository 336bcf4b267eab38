package allreduce

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// maxPowerSGDRank is the largest rank a job may name.
const maxPowerSGDRank = 64

// psgdStream is the random stream of the first matrix's initial Q; matrix
// i of a reducer uses psgdStream+i.
const psgdStream = 0x9e3779b97f4a7c15

// blasImpl is gonum's pure-Go (and assembly) BLAS.
var blasImpl gonum.Implementation

// gradientCodecs lists the valid codec names of a job.
const gradientCodecs = "fp32, bf16, fp16 (each optionally +zstd or +s2), powersgd-rN (1 ≤ N ≤ 64)"

// CheckGradientCodec validates a job's codec name: anything NewCodec
// takes, or powersgd-rN.
func CheckGradientCodec(name string) error {
	if _, ok := PowerSGDRank(name); ok {
		return nil
	}
	if CheckCodec(name) == nil {
		return nil
	}
	return fmt.Errorf("allreduce: unknown gradient codec %q (want %s)", name, gradientCodecs)
}

// PowerSGDRank returns N for "powersgd-rN" (1 ≤ N ≤ 64, in decimal with
// no leading zero) and ok=false for any other name.
func PowerSGDRank(name string) (rank int, ok bool) {
	d, ok := strings.CutPrefix(name, "powersgd-r")
	if !ok || d == "" || d[0] == '0' || len(d) > 2 {
		return 0, false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(d)
	if err != nil || n > maxPowerSGDRank {
		return 0, false
	}
	return n, true
}

// lowRank is the PowerSGD state of one gradient viewed as a rows×cols
// matrix.
type lowRank struct {
	rows, cols, r int
	seed, stream  uint64    // of the initial Q
	q             []float32 // (r, cols): Qᵀ, i.e. Q's columns one after another
	e             []float32 // (rows, cols): error feedback
}

func newLowRank(rows, cols, r int, seed, stream uint64) *lowRank {
	m := &lowRank{
		rows: rows, cols: cols, r: r, seed: seed, stream: stream,
		q: make([]float32, r*cols),
		e: make([]float32, rows*cols),
	}
	m.reset()
	return m
}

// reset zeroes the error feedback and restores the initial Q.
func (m *lowRank) reset() {
	clear(m.e)
	rng := rand.New(rand.NewPCG(m.seed, m.stream))
	for i := range m.q {
		m.q[i] = float32(rng.NormFloat64())
	}
}

// powerWork is the scratch of PowerSGD steps, grown to the largest step and
// kept, so steady-state steps allocate nothing.
type powerWork struct {
	p     []float32 // Pᵀ of each matrix of a step, one after another
	q     []float32 // Qᵀ likewise
	ortho []float64 // one Pᵀ in float64
}

func growTo[T any](s []T, n int) []T { return slices.Grow(s[:0], n)[:n] }

// step runs one PowerSGD step over mats, whose gradients (rows·cols each,
// row-major) are grads, and sums exact across ranks in fp32 alongside (it
// may be empty). Every rank must pass matrices of the same shapes in the
// same order. On success each grads[i] holds the approximation of the sum
// over ranks and the matrices' Q and E are updated; on error grads are
// undefined but the matrices' state is as before.
//
// The operations submitted are, in this order: exact (if not empty), the
// Ps, the Qs (if mats is not empty).
func (w *powerWork) step(ctx context.Context, c *Comm, mats []*lowRank, grads [][]float32, exact []float32) error {
	np, nq, most := 0, 0, 0
	for _, m := range mats {
		np += m.r * m.rows
		nq += m.r * m.cols
		most = max(most, m.r*m.rows)
	}
	w.p = growTo(w.p, np)
	w.q = growTo(w.q, nq)
	w.ortho = growTo(w.ortho, most)

	var hx *Handle
	if len(exact) > 0 {
		hx = c.Start(ctx, Op{Kind: OpAllReduce, Buf: exact, Exact: true})
	}
	// M = G + E in place; Pᵀ = Qᵀ Mᵀ, while the exact sum travels.
	off := 0
	for i, m := range mats {
		g := grads[i]
		addTo(g, m.e)
		pt := w.p[off : off+m.r*m.rows]
		blasImpl.Sgemm(blas.NoTrans, blas.Trans, m.r, m.rows, m.cols, 1, m.q, m.cols, g, m.cols, 0, pt, m.rows)
		off += len(pt)
	}
	var errP error
	if np > 0 {
		errP = c.Start(ctx, Op{Kind: OpAllReduce, Buf: w.p, Exact: true}).Wait()
	}
	if hx != nil {
		if err := hx.Wait(); err != nil {
			return err
		}
	}
	if errP != nil || len(mats) == 0 {
		return errP
	}
	// Orthonormalize; Qᵀ = Pᵀ M.
	poff, qoff := 0, 0
	for i, m := range mats {
		pt := w.p[poff : poff+m.r*m.rows]
		qt := w.q[qoff : qoff+m.r*m.cols]
		orthonormalizeRows(pt, m.r, m.rows, w.ortho)
		blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, m.r, m.cols, m.rows, 1, pt, m.rows, grads[i], m.cols, 0, qt, m.cols)
		poff += len(pt)
		qoff += len(qt)
	}
	if err := c.Start(ctx, Op{Kind: OpAllReduce, Buf: w.q, Exact: true}).Wait(); err != nil {
		return err
	}
	// result = P Qᵀ; E = M − result/n; keep Q.
	inv := 1 / float32(c.Size())
	poff, qoff = 0, 0
	for i, m := range mats {
		pt := w.p[poff : poff+m.r*m.rows]
		qt := w.q[qoff : qoff+m.r*m.cols]
		g := grads[i]
		copy(m.e, g)
		blasImpl.Sgemm(blas.Trans, blas.NoTrans, m.rows, m.cols, m.r, 1, pt, m.rows, qt, m.cols, 0, g, m.cols)
		blasImpl.Saxpy(len(g), -inv, g, 1, m.e, 1)
		copy(m.q, qt)
		poff += len(pt)
		qoff += len(qt)
	}
	return nil
}

// orthonormalizeRows makes the r rows of pt (r×n, row-major: Pᵀ, so its
// rows are P's columns) orthonormal by modified Gram–Schmidt in float64
// (work holds at least r·n), projecting twice ("twice is enough") so the
// rows stay orthogonal when rounded back to float32. A row that lies
// (numerically) in the span of the earlier ones is set to zero rather than
// normalized into noise.
func orthonormalizeRows(pt []float32, r, n int, work []float64) {
	w := work[:r*n]
	for i, v := range pt[:r*n] {
		w[i] = float64(v)
	}
	for k := 0; k < r; k++ {
		x := w[k*n : k*n+n]
		before := blasImpl.Dnrm2(n, x, 1)
		for range 2 {
			for l := 0; l < k; l++ {
				y := w[l*n : l*n+n]
				blasImpl.Daxpy(n, -blasImpl.Ddot(n, x, 1, y, 1), y, 1, x, 1)
			}
		}
		nrm := blasImpl.Dnrm2(n, x, 1)
		if nrm <= 1e-5*before || nrm < 1e-30 {
			clear(x)
			continue
		}
		blasImpl.Dscal(n, 1/nrm, x, 1)
	}
	for i, v := range w {
		pt[i] = float32(v)
	}
}

// PowerSGD all-reduces gradients viewed as rows×cols matrices through
// rank-r approximations (Vogels et al. 2019), with error feedback. For
// each matrix, on every rank:
//
//	M = G + E          (G: this rank's gradient; E: what earlier steps held back)
//	P = M Q;  all-reduce P;  orthonormalize P's columns
//	Q = Mᵀ P; all-reduce Q
//	result = P Qᵀ      (≈ Σ_ranks M, bit-identical on every rank)
//	E = M − result / n (n ranks)
//
// The all-reduce sums gradients, so the quantity wanted is Σ_ranks G, and
// each rank's G is its share of that sum. The result approximates Σ M, of
// which result/n is one rank's share, so each rank keeps back its M less
// that share: summed over ranks, the residuals are Σ M − result, exactly
// what the result missed. (A rank's own E is not the error of its own M;
// only the sum over ranks is meaningful, and that is what error feedback
// needs.)
//
// Each step sends r(rows+cols) floats instead of rows·cols. Q is kept
// between steps (warm start), starting from the same seeded random matrix on
// every rank. P and Q travel in fp32 (Comm's exact all-reduce) whatever the
// Comm's codec.
//
// The products are gonum's BLAS kernels, called through its
// implementation value rather than blas32's process-wide one, so no other
// package can swap them. P's columns are orthonormalized with modified
// Gram–Schmidt in float64. Both are deterministic functions of their
// inputs, and every rank feeds them the same all-reduced P and Q, so every
// rank computes the same bits.
//
// A PowerSGD value holds the state of one gradient (see PowerSGDReducer
// for a model's parameters). It is not safe for concurrent use.
type PowerSGD struct {
	m     *lowRank
	work  powerWork
	mats  [1]*lowRank
	grads [1][]float32
}

// NewPowerSGD returns the state for a rows×cols gradient at rank r
// (1 ≤ r ≤ min(rows, cols)); every rank must use the same seed.
func NewPowerSGD(rows, cols, r int, seed uint64) (*PowerSGD, error) {
	if rows < 1 || cols < 1 || r < 1 || r > min(rows, cols) {
		return nil, fmt.Errorf("allreduce: powersgd rank %d for a %d×%d matrix", r, rows, cols)
	}
	s := &PowerSGD{m: newLowRank(rows, cols, r, seed, psgdStream)}
	s.mats[0] = s.m
	return s, nil
}

// CompressionRatio is rows·cols / (r·(rows+cols)): fp32 bytes per byte sent.
func (s *PowerSGD) CompressionRatio() float64 {
	return float64(s.m.rows*s.m.cols) / float64(s.m.r*(s.m.rows+s.m.cols))
}

// AllReduce replaces buf (this rank's rows×cols gradient, row-major) by the
// rank-r approximation of the sum over ranks, bit-identical on every rank,
// and updates the error feedback. It submits two exact all-reduces to c.
func (s *PowerSGD) AllReduce(ctx context.Context, c *Comm, buf []float32) error {
	if len(buf) != s.m.rows*s.m.cols {
		return fmt.Errorf("allreduce: powersgd buffer of %d floats, want %d×%d", len(buf), s.m.rows, s.m.cols)
	}
	s.grads[0] = buf
	err := s.work.step(ctx, c, s.mats[:], s.grads[:], nil)
	s.grads[0] = nil
	return err
}

// ParamShape describes one parameter of a flat gradient arena.
type ParamShape struct {
	Name  string
	Shape []int // the tensor's shape; a matrix view is Shape[0] × (product of the rest)
	Off   int   // offset in the arena, in elements
}

// NamedFloats is a named float32 tensor of rank-local state, for
// checkpoints.
type NamedFloats struct {
	Name string
	Data []float32
}

// PowerSGDReducer all-reduces buckets of a gradient arena with PowerSGD:
// every parameter of two or more dimensions whose rank-r approximation is
// smaller than the tensor (r·(rows+cols) < rows·cols) is compressed with
// error feedback and warm-started Q (the math is PowerSGD's); every
// other parameter (1-D biases, BN) is summed exactly in fp32, by one exact
// all-reduce per bucket of those parameters' elements, packed contiguously
// in the bucket's parameter order. The result in grad is bit-identical on
// every rank.
//
// Per bucket, Reduce submits to the Comm, in this order: the exact sum (if
// the bucket has such parameters), then the packed P factors and the
// packed Q factors of its compressed parameters (if it has any). Every
// rank must reduce the same buckets in the same order. The Comm's codec
// does not matter: all three are exact.
//
// A reducer is not safe for concurrent use; one per rank.
type PowerSGDReducer struct {
	params []ParamShape
	sizes  []int
	rank   int
	mats   []*lowRank // per parameter; nil where it is summed exactly
	work   powerWork

	// Scratch of Reduce.
	bmats []*lowRank
	bgrad [][]float32
	exact []float32
	seen  []uint64 // parameter -> the call that last saw it
	calls uint64
}

// NewPowerSGDReducer returns a reducer for an arena of params at rank
// 1 ≤ rank ≤ 64; every rank must use the same params and seed. Names must
// be unique and non-empty, dimensions ≥ 0, and parameters must not
// overlap.
func NewPowerSGDReducer(params []ParamShape, rank int, seed uint64) (*PowerSGDReducer, error) {
	if rank < 1 || rank > maxPowerSGDRank {
		return nil, fmt.Errorf("allreduce: powersgd rank %d (want 1 to %d)", rank, maxPowerSGDRank)
	}
	p := &PowerSGDReducer{
		params: make([]ParamShape, len(params)),
		sizes:  make([]int, len(params)),
		rank:   rank,
		mats:   make([]*lowRank, len(params)),
		seen:   make([]uint64, len(params)),
	}
	names := make(map[string]bool, len(params))
	for i, ps := range params {
		if ps.Name == "" || names[ps.Name] {
			return nil, fmt.Errorf("allreduce: powersgd parameter %d: empty or repeated name %q", i, ps.Name)
		}
		names[ps.Name] = true
		if ps.Off < 0 {
			return nil, fmt.Errorf("allreduce: powersgd parameter %q at offset %d", ps.Name, ps.Off)
		}
		size := 1
		for _, d := range ps.Shape {
			if d < 0 || (d > 0 && size > (1<<62)/d) {
				return nil, fmt.Errorf("allreduce: powersgd parameter %q of shape %v", ps.Name, ps.Shape)
			}
			size *= d
		}
		p.params[i] = ParamShape{Name: ps.Name, Shape: slices.Clone(ps.Shape), Off: ps.Off}
		p.sizes[i] = size
		if len(ps.Shape) >= 2 {
			rows := ps.Shape[0]
			cols := size / max(rows, 1)
			if size > 0 && rows+cols <= (size-1)/rank { // rank·(rows+cols) < rows·cols
				p.mats[i] = newLowRank(rows, cols, rank, seed, psgdStream+uint64(i))
			}
		}
	}
	order := make([]int, len(params))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return p.params[a].Off - p.params[b].Off })
	end, last := 0, -1
	for _, i := range order {
		if p.sizes[i] == 0 {
			continue
		}
		if p.params[i].Off < end {
			return nil, fmt.Errorf("allreduce: powersgd parameters %q and %q overlap", p.params[last].Name, p.params[i].Name)
		}
		end, last = p.params[i].Off+p.sizes[i], i
	}
	return p, nil
}

// Reduce all-reduces the parameters of b (indices into params; see Bucket
// and PlanBuckets; b.Span is not consulted) inside grad, the whole arena,
// summing over ranks. On error grad's values for b are undefined, but the
// reducer's state is as before the call.
func (p *PowerSGDReducer) Reduce(ctx context.Context, c *Comm, grad []float32, b Bucket) error {
	p.calls++
	bm, bg := p.bmats[:0], p.bgrad[:0]
	nx := 0
	for _, i := range b.Params {
		if i < 0 || i >= len(p.params) {
			return fmt.Errorf("allreduce: powersgd bucket names parameter %d of %d", i, len(p.params))
		}
		if p.seen[i] == p.calls {
			return fmt.Errorf("allreduce: powersgd bucket names parameter %q twice", p.params[i].Name)
		}
		p.seen[i] = p.calls
		off, size := p.params[i].Off, p.sizes[i]
		if off+size > len(grad) {
			return fmt.Errorf("allreduce: powersgd parameter %q ends at %d, past the arena's %d", p.params[i].Name, off+size, len(grad))
		}
		if m := p.mats[i]; m != nil {
			bm = append(bm, m)
			bg = append(bg, grad[off:off+size])
		} else {
			nx += size
		}
	}
	p.exact = growTo(p.exact, nx)
	k := 0
	for _, i := range b.Params {
		if p.mats[i] == nil {
			k += copy(p.exact[k:], grad[p.params[i].Off:p.params[i].Off+p.sizes[i]])
		}
	}
	err := p.work.step(ctx, c, bm, bg, p.exact)
	clear(bg) // the views are the caller's
	p.bmats, p.bgrad = bm[:0], bg[:0]
	if err != nil {
		return err
	}
	k = 0
	for _, i := range b.Params {
		if p.mats[i] == nil {
			k += copy(grad[p.params[i].Off:p.params[i].Off+p.sizes[i]], p.exact[k:])
		}
	}
	return nil
}

// State returns the rank-local state to checkpoint: for each compressed
// parameter, in parameter order, its error feedback
// ("<name>.powersgd_error", rows·cols floats) and its Q
// ("<name>.powersgd_q", cols·r floats: Q's columns one after another). The
// slices are the reducer's own: reading them is a snapshot only between
// Reduce calls.
func (p *PowerSGDReducer) State() []NamedFloats {
	var st []NamedFloats
	for i, m := range p.mats {
		if m != nil {
			st = append(st,
				NamedFloats{Name: p.params[i].Name + ".powersgd_error", Data: m.e},
				NamedFloats{Name: p.params[i].Name + ".powersgd_q", Data: m.q})
		}
	}
	return st
}

// LoadState copies state that State returned back into the reducer: the
// same names, each once and with the same length, in any order. On error
// nothing is copied.
func (p *PowerSGDReducer) LoadState(st []NamedFloats) error {
	want := make(map[string][]float32)
	for _, t := range p.State() {
		want[t.Name] = t.Data
	}
	seen := make(map[string]bool, len(st))
	for _, t := range st {
		dst, ok := want[t.Name]
		switch {
		case !ok:
			return fmt.Errorf("allreduce: powersgd state: unknown tensor %q", t.Name)
		case seen[t.Name]:
			return fmt.Errorf("allreduce: powersgd state: tensor %q given twice", t.Name)
		case len(t.Data) != len(dst):
			return fmt.Errorf("allreduce: powersgd state: tensor %q has %d floats, want %d", t.Name, len(t.Data), len(dst))
		}
		seen[t.Name] = true
	}
	if len(seen) != len(want) {
		for name := range want {
			if !seen[name] {
				return fmt.Errorf("allreduce: powersgd state: tensor %q missing", name)
			}
		}
	}
	for _, t := range st {
		copy(want[t.Name], t.Data)
	}
	return nil
}

// Reset zeroes the error feedback and restores the initial Q: a fresh
// start.
func (p *PowerSGDReducer) Reset() {
	for _, m := range p.mats {
		if m != nil {
			m.reset()
		}
	}
}

// BytesPerStep is the fp32 bytes one rank contributes to the all-reduces of
// one step over the whole arena: compressed, with PowerSGD, and
// uncompressed, summing every parameter exactly.
func (p *PowerSGDReducer) BytesPerStep() (compressed, uncompressed int) {
	for i, size := range p.sizes {
		uncompressed += 4 * size
		if m := p.mats[i]; m != nil {
			compressed += 4 * m.r * (m.rows + m.cols)
		} else {
			compressed += 4 * size
		}
	}
	return compressed, uncompressed
}
