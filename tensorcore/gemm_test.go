package tensorcore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

const guardVal = float32(-12345.5)

// guarded is a buffer with sentinel guards before and after the region a
// kernel may touch, starting at an arbitrary offset so slices are unaligned.
type guarded struct {
	buf       []float32
	off, n    int
	guardSize int
}

func newGuarded(rng *rand.Rand, off, n int) *guarded {
	const gs = 19
	g := &guarded{buf: make([]float32, off+n+gs), off: off, n: n, guardSize: gs}
	for i := range g.buf {
		g.buf[i] = guardVal
	}
	if rng != nil {
		for i := range g.data() {
			g.data()[i] = float32(rng.NormFloat64())
		}
	}
	return g
}

func (g *guarded) data() []float32 { return g.buf[g.off : g.off+g.n : g.off+g.n] }

func (g *guarded) checkGuards(t *testing.T, what string) {
	t.Helper()
	for i := 0; i < g.off; i++ {
		if g.buf[i] != guardVal {
			t.Fatalf("%s: write before the buffer at -%d", what, g.off-i)
		}
	}
	for i := g.off + g.n; i < len(g.buf); i++ {
		if g.buf[i] != guardVal {
			t.Fatalf("%s: write after the buffer at +%d", what, i-g.off-g.n)
		}
	}
}

// testPools returns the pools every parallel kernel is tested with; the
// caller closes them with closePools.
func testPools() []*Pool { return []*Pool{nil, NewPool(1), NewPool(2), NewPool(3)} }

func closePools(ps []*Pool) {
	for _, p := range ps {
		p.Close()
	}
}

// matAt returns element (i, j) of op(X) for a row-major X with stride ld.
func matAt(d []float32, ld int, trans bool, i, j int) float32 {
	if trans {
		return d[j*ld+i]
	}
	return d[i*ld+j]
}

type gemmCase struct {
	ta, tb      bool
	m, n, k     int
	alpha, beta float32
	off         int // offset of every slice into its buffer
	pad         int // extra columns in every leading dimension
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("ta=%v,tb=%v,m=%d,n=%d,k=%d,alpha=%g,beta=%g,off=%d,pad=%d",
		tc.ta, tc.tb, tc.m, tc.n, tc.k, tc.alpha, tc.beta, tc.off, tc.pad)
}

// runGemmCase runs one case with kernel set ks on pool p and checks every
// element of C against a float64 reference with a norm-wise tolerance,
// the padding columns of C and the guards around every buffer.
func runGemmCase(t *testing.T, ks *kernelSet, p *Pool, tc gemmCase, rng *rand.Rand) {
	t.Helper()
	ar, ac := tc.m, tc.k
	if tc.ta {
		ar, ac = ac, ar
	}
	br, bc := tc.k, tc.n
	if tc.tb {
		br, bc = bc, br
	}
	lda, ldb, ldc := ac+tc.pad, bc+tc.pad, tc.n+tc.pad
	size := func(r, ld, c int) int {
		if r == 0 {
			return 0
		}
		return (r-1)*ld + c
	}
	a := newGuarded(rng, tc.off, size(ar, lda, ac))
	b := newGuarded(rng, tc.off, size(br, ldb, bc))
	c := newGuarded(rng, tc.off, size(tc.m, ldc, tc.n))
	c0 := append([]float32(nil), c.data()...)
	if tc.beta == 0 {
		for i := range c.data() {
			c.data()[i] = float32(math.NaN()) // must not be read
		}
	}
	// Padding columns of C carry sentinels.
	for i := 0; i < tc.m; i++ {
		for j := tc.n; j < ldc && i*ldc+j < c.n; j++ {
			c.data()[i*ldc+j] = guardVal
		}
	}
	sgemmKS(ks, p, tc.ta, tc.tb, tc.m, tc.n, tc.k, tc.alpha, a.data(), lda, b.data(), ldb, tc.beta, c.data(), ldc)
	a.checkGuards(t, "A")
	b.checkGuards(t, "B")
	c.checkGuards(t, "C")
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			var want, mag float64
			for l := 0; l < tc.k; l++ {
				x := float64(matAt(a.data(), lda, tc.ta, i, l)) * float64(matAt(b.data(), ldb, tc.tb, l, j))
				want += x
				mag += math.Abs(x)
			}
			want *= float64(tc.alpha)
			mag *= math.Abs(float64(tc.alpha))
			if tc.beta != 0 {
				cv := float64(c0[i*ldc+j])
				want += float64(tc.beta) * cv
				mag += math.Abs(float64(tc.beta) * cv)
			}
			got := float64(c.data()[i*ldc+j])
			if d := math.Abs(got - want); !(d <= 1e-5*mag+1e-30) {
				t.Fatalf("%s: C[%d,%d] = %g, want %g (tolerance %g)", tc, i, j, got, want, 1e-5*mag)
			}
		}
		for j := tc.n; j < ldc && i*ldc+j < c.n; j++ {
			if c.data()[i*ldc+j] != guardVal {
				t.Fatalf("%s: wrote padding column C[%d,%d]", tc, i, j)
			}
		}
	}
}

func TestSgemmMatchesReference(t *testing.T) {
	pools := testPools()
	defer closePools(pools)
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 3, 17, 127}
	scal := [][2]float32{{1, 0}, {-1.5, 0.25}, {0.5, 1}}
	for _, ks := range availableKernels() {
		t.Run(ks.name, func(t *testing.T) {
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					for _, m := range sizes {
						for _, n := range sizes {
							for ki, k := range sizes {
								for si, ab := range scal {
									tc := gemmCase{ta: ta, tb: tb, m: m, n: n, k: k, alpha: ab[0], beta: ab[1],
										off: []int{0, 1, 3}[(m+n+ki)%3], pad: (si * 5) % 7}
									p := pools[(m+n+k+si)%len(pools)]
									runGemmCase(t, ks, p, tc, rng)
								}
							}
						}
					}
				}
			}
		})
	}
}

func TestSgemmLarge(t *testing.T) {
	pools := testPools()
	defer closePools(pools)
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []gemmCase{
		{m: 1025, n: 17, k: 33, alpha: 1, beta: 0, off: 1, pad: 2},
		{m: 5, n: 1025, k: 31, alpha: 2, beta: 0.5, off: 3},
		{ta: true, tb: true, m: 13, n: 19, k: 1025, alpha: 1, beta: 1, off: 1, pad: 1},
		{ta: true, m: 300, n: 290, k: 270, alpha: 1, beta: 0, off: 3, pad: 3},
		{tb: true, m: 150, n: 4100, k: 7, alpha: 1, beta: 0.5},
	}
	if !testing.Short() {
		cases = append(cases, gemmCase{m: 1025, n: 1025, k: 1025, alpha: 1, beta: 0, off: 1, pad: 1})
	}
	for _, ks := range availableKernels() {
		for _, tc := range cases {
			for _, p := range pools {
				if tc.m*tc.n*tc.k > 1e8 && (ks != kern || p.Workers() != 2) {
					continue // the cube once, on the fast path
				}
				runGemmCase(t, ks, p, tc, rng)
			}
		}
	}
}

func TestSgemmKZeroAndEmpty(t *testing.T) {
	for _, ks := range availableKernels() {
		c := []float32{1, 2, 3, 4}
		sgemmKS(ks, nil, false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0.5, c, 2)
		if c[0] != 0.5 || c[3] != 2 {
			t.Fatalf("%s: k=0 with beta=0.5 gave %v", ks.name, c)
		}
		c = []float32{float32(math.NaN()), 2, 3, 4}
		sgemmKS(ks, nil, false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0, c, 2)
		if c[0] != 0 || c[3] != 0 {
			t.Fatalf("%s: k=0 with beta=0 gave %v", ks.name, c)
		}
		sgemmKS(ks, nil, false, false, 0, 5, 3, 1, nil, 3, nil, 5, 0, nil, 5) // m = 0: nothing to do
	}
}

func TestSgemmNaNInfPropagate(t *testing.T) {
	pools := testPools()
	defer closePools(pools)
	for _, ks := range availableKernels() {
		for _, p := range pools {
			const m, n, k = 37, 41, 300
			a := make([]float32, m*k)
			b := make([]float32, k*n)
			for i := range a {
				a[i] = 1
			}
			for i := range b {
				b[i] = 1
			}
			a[5*k+7] = float32(math.NaN())
			b[9*n+3] = float32(math.Inf(1))
			c := make([]float32, m*n)
			sgemmKS(ks, p, false, false, m, n, k, 1, a, k, b, n, 0, c, n)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					v := c[i*n+j]
					switch {
					case i == 5:
						if !math.IsNaN(float64(v)) {
							t.Fatalf("%s: C[%d,%d] = %g, want NaN", ks.name, i, j, v)
						}
					case j == 3:
						if !math.IsInf(float64(v), 1) {
							t.Fatalf("%s: C[%d,%d] = %g, want +Inf", ks.name, i, j, v)
						}
					default:
						if v != k {
							t.Fatalf("%s: C[%d,%d] = %g, want %d", ks.name, i, j, v, k)
						}
					}
				}
			}
		}
	}
}

func TestSgemmDeterministic(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	const m, n, k = 200, 300, 700
	a, b := randSlice(rng, m*k), randSlice(rng, k*n)
	c1, c2 := make([]float32, m*n), make([]float32, m*n)
	Sgemm(p, false, true, m, n, k, 1, a, k, b, k, 0, c1, n)
	Sgemm(p, false, true, m, n, k, 1, a, k, b, k, 0, c2, n)
	for i := range c1 {
		if math.Float32bits(c1[i]) != math.Float32bits(c2[i]) {
			t.Fatalf("C[%d] differs between runs: %g vs %g", i, c1[i], c2[i])
		}
	}
}

func TestSgemmShortSlicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a short A")
		}
	}()
	Sgemm(nil, false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
}

func TestSgemmZeroAllocs(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	const m, n, k = 128, 160, 96
	a, b, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
	for _, pool := range []*Pool{p, nil} {
		if pool == nil && raceEnabled {
			continue
		}
		Sgemm(pool, false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		allocs := testing.AllocsPerRun(10, func() {
			Sgemm(pool, false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		})
		if allocs != 0 {
			t.Fatalf("pool %d workers: %v allocs per Sgemm", pool.Workers(), allocs)
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// checkPanels checks packed micro-panels w lanes wide over extent rows
// (A) or columns (B), kc deep: lane l of panel i at depth p is at(i*w+l, p),
// or 0 past extent.
func checkPanels(t *testing.T, what string, got []float32, w, extent, kc int, at func(i, p int) float32) {
	t.Helper()
	for i0 := 0; i0 < extent; i0 += w {
		for p := 0; p < kc; p++ {
			for l := 0; l < w; l++ {
				want := float32(0)
				if i0+l < extent {
					want = at(i0+l, p)
				}
				if v := got[i0*kc+p*w+l]; v != want {
					t.Fatalf("%s: panel %d (%d, %d) = %v, want %v", what, i0/w, p, l, v, want)
				}
			}
		}
	}
}

// TestPackPanels checks the packing of dense A and B operands (the
// assembly fast paths and their Go tails) element by element against the
// micro-panel layout, on odd sizes, unaligned sources and guarded outputs.
func TestPackPanels(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const rows, cols = 40, 150
	for _, off := range []int{0, 1, 3} {
		src := newGuarded(rng, off, rows*cols)
		d := src.data()
		o := denseOperand(false, d, cols)
		for _, kc := range []int{1, 7, 8, 17, 33} {
			for _, mr := range []int{6, 12} {
				for _, mc := range []int{1, 5, 6, 13, 24} {
					i0, p0 := 2, 3
					what := fmt.Sprintf("packA mr %d mc %d kc %d", mr, mc, kc)
					dst := newGuarded(nil, off, (mc+mr-1)/mr*mr*kc)
					o.packA(dst.data(), mr, i0, mc, p0, kc)
					dst.checkGuards(t, what)
					checkPanels(t, what, dst.data(), mr, mc, kc, func(i, p int) float32 { return d[(i0+i)*cols+p0+p] })
				}
			}
			for _, nr := range []int{16, 32} {
				for _, nc := range []int{1, 16, 17, 33, 100} {
					p0, j0 := 4, 5
					what := fmt.Sprintf("packB nr %d nc %d kc %d", nr, nc, kc)
					dst := newGuarded(nil, off, (nc+nr-1)/nr*nr*kc)
					o.packB(nil, dst.data(), nr, p0, kc, j0, nc)
					dst.checkGuards(t, what)
					checkPanels(t, what, dst.data(), nr, nc, kc, func(j, p int) float32 { return d[(p0+p)*cols+j0+j] })
				}
			}
		}
		src.checkGuards(t, "source")
	}
}
