package tensorcore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func TestBF16Round(t *testing.T) {
	for _, tc := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0xbf800000, 0xbf80}, // -1
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // above the tie
		{0x3f807fff, 0x3f80}, // below the tie
		{0x7f7fffff, 0x7f80}, // max float32 rounds to +Inf
		{0x7f800000, 0x7f80}, // +Inf
		{0xff800000, 0xff80}, // -Inf
		{0x00000000, 0x0000},
		{0x80000000, 0x8000},
		{0x00400000, 0x0000}, // denormal: zero
		{0x807fffff, 0x8000}, // negative denormal: -0
		{0x7fc00000, 0x7fc0}, // quiet NaN
		{0x7f800001, 0x7fc0}, // signalling NaN, quieted, not rounded to Inf
		{0xffffffff, 0xffff}, // NaN with every bit set stays NaN
	} {
		if got := bf16Round(math.Float32frombits(tc.in)); got != tc.want {
			t.Errorf("bf16Round(%#08x) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

// TestBF16PackPairs runs every packPairs against the reference, on random
// bit patterns (NaNs, infinities and denormals included) and on values,
// for panel widths of both micro-kernels and odd kc.
func TestBF16PackPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, ks := range availableBF16Kernels() {
		for _, w := range []int{6, 12, 16, 32, 5, 20} {
			for _, kc := range []int{1, 2, 3, 8, 255, 256} {
				src := make([]float32, kc*w)
				for i := range src {
					if i%2 == 0 {
						src[i] = math.Float32frombits(rng.Uint32())
					} else {
						src[i] = float32(rng.NormFloat64())
					}
				}
				kp := (kc + 1) / 2
				want := make([]uint32, kp*w)
				bf16PackPairsRef(want, src, kc, w)
				got := make([]uint32, kp*w+7)
				for i := range got {
					got[i] = 0xdeadbeef
				}
				ks.packPairs(got, src, kc, w)
				for i, v := range want {
					if got[i] != v {
						t.Fatalf("%s w=%d kc=%d: pair %d = %#08x, want %#08x (inputs %#08x %#08x)", ks.name, w, kc, i, got[i], v,
							math.Float32bits(src[(i/w)*2*w+i%w]), math.Float32bits(src[min((i/w)*2*w+w+i%w, len(src)-1)]))
					}
				}
				for i := kp * w; i < len(got); i++ {
					if got[i] != 0xdeadbeef {
						t.Fatalf("%s w=%d kc=%d: wrote past the panel at %d", ks.name, w, kc, i)
					}
				}
			}
		}
	}
}

// bf16Want64 returns, in float64, the sum over l of bf16(A(i,l))·bf16(B(l,j))
// scaled by alpha plus beta·C0, and the sum of the magnitudes of its terms.
func bf16Want64(tc gemmCase, a []float32, lda int, b []float32, ldb int, c0 []float32, ldc, i, j int) (want, mag float64) {
	for l := 0; l < tc.k; l++ {
		x := float64(bf16Float(bf16Round(matElem(a, lda, tc.ta, i, l)))) * float64(bf16Float(bf16Round(matElem(b, ldb, tc.tb, l, j))))
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
	return want, mag
}

// runBF16GemmCase runs one product through the bf16 driver with kernel set
// ks and checks it against float64 sums of the rounded inputs, the guards
// around every buffer and the padding columns of C.
func runBF16GemmCase(t *testing.T, ks *bf16KernelSet, p *Pool, tc gemmCase, rng *rand.Rand) {
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
	size := func(r, ld, c int) int { return (r-1)*ld + c }
	a := newGuarded(rng, tc.off, size(ar, lda, ac))
	b := newGuarded(rng, tc.off, size(br, ldb, bc))
	c := newGuarded(rng, tc.off, size(tc.m, ldc, tc.n))
	c0 := append([]float32(nil), c.data()...)
	if tc.beta == 0 {
		for i := range c.data() {
			c.data()[i] = float32(math.NaN()) // must not be read
		}
	}
	for i := 0; i < tc.m; i++ {
		for j := tc.n; j < ldc && i*ldc+j < c.n; j++ {
			c.data()[i*ldc+j] = guardVal
		}
	}
	sgemmBF16(ks, p, tc.m, tc.n, tc.k, tc.alpha, denseOperand(tc.ta, a.data(), lda), denseOperand(tc.tb, b.data(), ldb),
		gemmOut{d: c.data(), rs: ldc, plane: tc.n}, tc.beta)
	a.checkGuards(t, "A")
	b.checkGuards(t, "B")
	c.checkGuards(t, "C")
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			want, mag := bf16Want64(tc, a.data(), lda, b.data(), ldb, c0, ldc, i, j)
			got := float64(c.data()[i*ldc+j])
			if d := math.Abs(got - want); !(d <= 1e-5*mag+1e-30) {
				t.Fatalf("%s %s: C[%d,%d] = %g, want %g (tolerance %g)", ks.name, tc, i, j, got, want, 1e-5*mag)
			}
		}
		for j := tc.n; j < ldc && i*ldc+j < c.n; j++ {
			if c.data()[i*ldc+j] != guardVal {
				t.Fatalf("%s %s: wrote padding column C[%d,%d]", ks.name, tc, i, j)
			}
		}
	}
}

// TestSgemmBF16MatchesReference covers the edges of the bf16 driver and
// kernels: odd k and k past one kc block (257, 513), tails of m and n on
// both kernels' tiles, transposes, beta 0 and 1, strides and unaligned
// slices, on pools of 1–3 workers.
func TestSgemmBF16MatchesReference(t *testing.T) {
	pools := testPools()
	defer closePools(pools)
	rng := rand.New(rand.NewPCG(7, 8))
	sizes := []int{1, 2, 7, 13, 33, 65}
	scal := [][2]float32{{1, 0}, {-1.5, 0.25}, {0.5, 1}}
	for _, ks := range availableBF16Kernels() {
		t.Run(ks.name, func(t *testing.T) {
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					for _, m := range sizes {
						for _, n := range sizes {
							for ki, k := range []int{1, 2, 3, 17, 257} {
								si := (m + n + ki) % len(scal)
								ab := scal[si]
								tc := gemmCase{ta: ta, tb: tb, m: m, n: n, k: k, alpha: ab[0], beta: ab[1],
									off: []int{0, 1, 3}[(m+n+ki)%3], pad: (si * 5) % 7}
								runBF16GemmCase(t, ks, pools[(m+n+k+si)%len(pools)], tc, rng)
							}
						}
					}
				}
			}
			for _, tc := range []gemmCase{
				{m: 250, n: 300, k: 513, alpha: 1, beta: 0},
				{m: 97, n: 4200, k: 31, alpha: 1, beta: 1, pad: 3, off: 1},
				{ta: true, tb: true, m: 241, n: 65, k: 300, alpha: 2, beta: 0.5},
			} {
				for _, p := range pools {
					runBF16GemmCase(t, ks, p, tc, rng)
				}
			}
		})
	}
}

// TestBF16KernelsAgree checks that the assembly and plain-Go micro-kernels
// compute the same sums bit for bit: the Go kernel adds each pair the way
// the SDM defines VDPBF16PS (high product, then low, each sum rounded), and
// the assembly's 12×32 tile must equal the Go kernel's four 6×16 tiles.
func TestBF16KernelsAgree(t *testing.T) {
	ks := bestBF16Kernels()
	if ks == nil {
		t.Skip("no bf16 assembly on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, kp := range []int{1, 2, 5, 128} {
		a := make([]uint32, kp*12)
		b := make([]uint32, kp*32)
		for i := range a {
			a[i] = uint32(bf16Round(float32(rng.NormFloat64()))) | uint32(bf16Round(float32(rng.NormFloat64())))<<16
		}
		for i := range b {
			b[i] = uint32(bf16Round(float32(rng.NormFloat64()))) | uint32(bf16Round(float32(rng.NormFloat64())))<<16
		}
		got := make([]float32, 12*32)
		ks.gemm(kp, &a[0], &b[0], &got[0], 32, 12, 1, 0)
		// The Go kernel over the four 6×16 quarters of the same panels.
		want := make([]float32, 12*32)
		a6 := make([]uint32, kp*6)
		b16 := make([]uint32, kp*16)
		for r0 := 0; r0 < 12; r0 += 6 {
			for c0 := 0; c0 < 32; c0 += 16 {
				for q := 0; q < kp; q++ {
					copy(a6[q*6:q*6+6], a[q*12+r0:])
					copy(b16[q*16:q*16+16], b[q*32+c0:])
				}
				bf16Kernel6x16Go(kp, &a6[0], &b16[0], &want[r0*32+c0], 32, 6, 1, 0)
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("kp=%d: C[%d,%d] = %g, Go kernel %g", kp, i/32, i%32, got[i], want[i])
			}
		}
	}
}

func TestPoolPrecision(t *testing.T) {
	var nilPool *Pool
	if err := nilPool.SetPrecision(BF16); err == nil {
		t.Errorf("nil Pool accepted BF16")
	}
	if nilPool.Precision() != FP32 {
		t.Errorf("nil Pool precision %v", nilPool.Precision())
	}
	for _, s := range []string{"", "fp32", "bf16"} {
		pr, err := ParsePrecision(s)
		if err != nil || (s != "" && pr.String() != s) {
			t.Errorf("ParsePrecision(%q) = %v, %v", s, pr, err)
		}
	}
	if _, err := ParsePrecision("fp16"); err == nil {
		t.Errorf("ParsePrecision(fp16) succeeded")
	}
	p := NewPool(2)
	defer p.Close()
	err := p.SetPrecision(BF16)
	if !HasBF16() {
		if err == nil || p.Precision() != FP32 {
			t.Fatalf("SetPrecision(BF16) without AVX512_BF16: err %v, precision %v", err, p.Precision())
		}
		t.Skipf("no AVX512_BF16: %v", err)
	}
	if err != nil || p.Precision() != BF16 {
		t.Fatalf("SetPrecision(BF16): %v, precision %v", err, p.Precision())
	}
	// Sgemm on the pool now rounds its inputs: 1+2⁻¹⁰ is 1 in bf16.
	x := []float32{1 + 1.0/1024}
	var y [1]float32
	Sgemm(p, false, false, 1, 1, 1, 1, x, 1, x, 1, 0, y[:], 1)
	if y[0] != 1 {
		t.Errorf("BF16 Sgemm: (1+2⁻¹⁰)² = %g, want 1", y[0])
	}
	if err := p.SetPrecision(FP32); err != nil || p.Precision() != FP32 {
		t.Fatalf("SetPrecision(FP32): %v", err)
	}
	Sgemm(p, false, false, 1, 1, 1, 1, x, 1, x, 1, 0, y[:], 1)
	if want := x[0] * x[0]; y[0] != want {
		t.Errorf("FP32 Sgemm: %g, want %g", y[0], want)
	}
}

// bf16Slice returns s with every element rounded to bf16.
func bf16Slice(s []float32) []float32 {
	r := make([]float32, len(s))
	for i, v := range s {
		r[i] = bf16Float(bf16Round(v))
	}
	return r
}

// convBF16Tol is the stated error bound of a BF16 convolution against the
// fp32 one, relative to the sum of the magnitudes of the terms: each
// factor is rounded to bf16 (8 significant bits: relative error ≤ 2⁻⁸),
// so each product is off by at most about 2⁻⁷ of itself, plus fp32
// summation.
const convBF16Tol = 1.0/128 + 1e-5

// TestConvBF16 runs the convolutions on pools set to BF16 (every bf16
// kernel set), and checks each output twice: against float64 sums of the
// bf16-rounded inputs at fp32 accuracy (the contract: only the factors are
// rounded), and against the fp32 results within convBF16Tol. The weight
// gradient of a stride-1 convolution is not a GEMM and stays fp32.
func TestConvBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	pools := []*Pool{NewPool(1), NewPool(2)}
	defer closePools(pools)
	cases := append(convCases(), convCase{x: [4]int{2, 8, 9, 9}, w: [4]int{40, 8, 7, 7}, cp: ConvParams{StrideH: 2, StrideW: 2, PadH: 3, PadW: 3}})
	for ci, cc := range cases {
		g := NewConvGeom(cc.x, cc.w, cc.cp)
		nx, nw, ny := g.N*g.C*g.H*g.W, g.O*(g.C/g.Groups)*g.KH*g.KW, g.N*g.O*g.OH*g.OW
		x, w, gy := randSlice(rng, nx), randSlice(rng, nw), randSlice(rng, ny)
		y64, ymag, gx64, gxmag, gw64, gwmag := convWant64(g, x, w, gy)
		y16, y16mag, gx16, gx16mag, gw16, gw16mag := convWant64(g, bf16Slice(x), bf16Slice(w), bf16Slice(gy))
		for _, ks := range availableBF16Kernels() {
			for pi, p := range pools {
				p.bf16.ks = ks
				name := fmt.Sprintf("case %d %+v %s pool %d", ci, g, ks.name, pi)
				y := newGuarded(nil, 1, ny)
				conv2DWith(kern, p, g, x, w, nil, y.data())
				y.checkGuards(t, name+" y")
				checkClose(t, name+" forward", y.data(), y16, y16mag)
				checkCloseTol(t, name+" forward vs fp32", y.data(), y64, ymag, convBF16Tol)

				gx := newGuarded(nil, 1, nx)
				conv2DBackwardDataWith(kern, p, g, gy, w, gx.data())
				gx.checkGuards(t, name+" gx")
				checkClose(t, name+" backward data", gx.data(), gx16, gx16mag)
				checkCloseTol(t, name+" backward data vs fp32", gx.data(), gx64, gxmag, convBF16Tol)

				gw := newGuarded(nil, 1, nw)
				conv2DBackwardWeightWith(kern, p, g, x, gy, gw.data(), nil)
				gw.checkGuards(t, name+" gw")
				checkClose(t, name+" backward weight", gw.data(), gw16, gw16mag)
				checkCloseTol(t, name+" backward weight vs fp32", gw.data(), gw64, gwmag, convBF16Tol)
				if gridFits(g) { // both ways, whichever backwardWeightBF16 picks
					for _, bw := range []func(*bf16KernelSet, *Pool, ConvGeom, []float32, []float32, []float32){gridBackwardWeightBF16, gemmBackwardWeightBF16} {
						gw := newGuarded(nil, 1, nw)
						bw(ks, p, g, x, gy, gw.data())
						gw.checkGuards(t, name+" gw")
						checkClose(t, name+" backward weight (grid or gemm)", gw.data(), gw16, gw16mag)
					}
				}
				p.bf16.ks = nil
			}
		}
	}
}

func checkCloseTol(t *testing.T, what string, got []float32, want, mag []float64, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*mag[i]+1e-30) {
			t.Fatalf("%s: [%d] = %g, want %g (tolerance %g)", what, i, got[i], want[i], tol*mag[i])
		}
	}
}

// TestBF16DotTilesAgree checks the assembly dotTile against the plain-Go
// one bit for bit, with b rows at odd offsets (a stride-1 convolution's
// shifted input rows), and the guards after out's tile.
func TestBF16DotTilesAgree(t *testing.T) {
	ks := bestBF16Kernels()
	if ks == nil {
		t.Skip("no bf16 assembly on this CPU or build")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{32, 64, 1024} {
		lda := n + 3
		a := make([]uint16, 3*lda+n)
		b := make([]uint16, 2*n+9)
		for i := range a {
			a[i] = bf16Round(float32(rng.NormFloat64()))
		}
		for i := range b {
			b[i] = bf16Round(float32(rng.NormFloat64()))
		}
		offs := []int{0, 1, 7, n + 9}
		const ldo = 6
		got, want := make([]float32, 4*ldo), make([]float32, 4*ldo)
		for i := range got {
			got[i] = float32(i)
			want[i] = float32(i)
		}
		ks.dotTile(n, &a[0], lda, &b[0], &offs[0], &got[0], ldo)
		dotTile4x4BF16Go(n, &a[0], lda, &b[0], &offs[0], &want[0], ldo)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("n=%d: out[%d] = %g, Go %g", n, i, got[i], want[i])
			}
		}
	}
}

func TestBF16ZeroAllocs(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	if err := p.SetPrecision(BF16); err != nil {
		t.Skip(err)
	}
	rng := rand.New(rand.NewPCG(13, 14))
	const m, n, k = 128, 160, 96
	a, b, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
	gemm := func() { Sgemm(p, false, false, m, n, k, 1, a, k, b, n, 0, c, n) }
	gemm()
	if allocs := testing.AllocsPerRun(10, gemm); allocs != 0 {
		t.Fatalf("%v allocs per BF16 Sgemm", allocs)
	}
	for _, cc := range []convCase{
		{x: [4]int{4, 6, 14, 14}, w: [4]int{16, 6, 5, 5}, cp: ConvParams{PadH: 1, PadW: 1}},
		{x: [4]int{4, 6, 14, 14}, w: [4]int{16, 6, 5, 5}, cp: ConvParams{StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}},
		{x: [4]int{2, 6, 20, 20}, w: [4]int{16, 6, 3, 3}, cp: ConvParams{PadH: 1, PadW: 1}}, // weight gradient on the grid
	} {
		cp := cc.cp
		g := NewConvGeom(cc.x, cc.w, cp)
		x, w := randSlice(rng, g.N*g.C*g.H*g.W), randSlice(rng, g.O*g.C*g.KH*g.KW)
		y, gx, gw, gb := make([]float32, g.N*g.O*g.OH*g.OW), make([]float32, len(x)), make([]float32, len(w)), make([]float32, g.O)
		step := func() {
			Conv2D(p, g, x, w, gb, y)
			Conv2DBackwardData(p, g, y, w, gx)
			Conv2DBackwardWeight(p, g, x, y, gw, gb)
		}
		step()
		if a := testing.AllocsPerRun(5, step); a != 0 {
			t.Fatalf("%+v: %v allocs per BF16 forward+backward", cp, a)
		}
	}
}

// TestBF16PackGridPairs runs every packGridPairs against the reference,
// on odd and even row counts and odd offsets.
func TestBF16PackGridPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	src := make([]uint16, 4000)
	for i := range src {
		src[i] = uint16(rng.Uint32())
	}
	for _, ks := range availableBF16Kernels() {
		for _, nr := range []int{16, 32} {
			for _, kc := range []int{1, 2, 9, 256} {
				offs := make([]int, kc)
				for i := range offs {
					offs[i] = rng.IntN(len(src) - nr)
				}
				kp := (kc + 1) / 2
				want := make([]uint32, kp*nr)
				bf16PackGridPairsRef(want, src, offs, nr)
				got := make([]uint32, kp*nr+5)
				for i := range got {
					got[i] = 0xdeadbeef
				}
				ks.packGridPairs(got, src, offs, nr)
				for i, v := range want {
					if got[i] != v {
						t.Fatalf("%s nr=%d kc=%d: [%d] = %#08x, want %#08x", ks.name, nr, kc, i, got[i], v)
					}
				}
				for i := kp * nr; i < len(got); i++ {
					if got[i] != 0xdeadbeef {
						t.Fatalf("%s nr=%d kc=%d: wrote past the panel at %d", ks.name, nr, kc, i)
					}
				}
			}
		}
	}
}
