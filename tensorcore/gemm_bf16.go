package tensorcore

import (
	"fmt"
	"math"
	"unsafe"
)

// Mixed precision (bf16 products, fp32 sums).
//
// A Pool set to BF16 runs every GEMM it is given (Sgemm, MatMul, Linear
// and the GEMMs of the convolutions) with both operands rounded to bfloat16
// (round to nearest even; see bf16Round) as they are packed, and the
// products summed in float32 by VDPBF16PS. Only the inputs to the products
// are rounded: the sums, alpha, beta and C are float32, the output contract
// is Sgemm's (C = alpha*op(A)*op(B) + beta*C, strides, C not read when beta
// is 0), and nothing the caller owns is rounded in place, so master weights
// and gradients stay float32. A product of two bf16 values is exact in
// float32, so the error is that of rounding the inputs: at most 2⁻⁸ of
// each factor (bf16 keeps 8 significant bits), about 2⁻⁷ of each product,
// so at most about 2⁻⁷·Σ|aᵢbᵢ| in a sum; typical errors are far smaller,
// the roundings being unbiased.
//
// The weight gradient of a stride-1 convolution, which runs as tiles of dot
// products rather than a GEMM (conv_grid.go), follows the same contract
// (conv_grid_bf16.go). What is not a product stays float32: bias
// gradients and every element-wise op.

// Precision is how the products inside a Pool's GEMMs are computed.
type Precision uint8

const (
	// FP32 computes products and sums in float32 (the default).
	FP32 Precision = iota
	// BF16 rounds both factors of every product to bfloat16 and sums in
	// float32; it needs AVX512_BF16 (HasBF16).
	BF16
)

func (pr Precision) String() string {
	switch pr {
	case FP32:
		return "fp32"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("Precision(%d)", uint8(pr))
}

// ParsePrecision parses "fp32" (or "") and "bf16", the spellings of a
// job's precision key.
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "", "fp32":
		return FP32, nil
	case "bf16":
		return BF16, nil
	}
	return FP32, fmt.Errorf("tensorcore: unknown precision %q (want fp32 or bf16)", s)
}

// HasBF16 reports whether this CPU (and build) can run BF16 products:
// amd64 with AVX512_BF16 and AVX512BW, without the noasm tag.
func HasBF16() bool { return bestBF16Kernels() != nil }

// SetPrecision sets how p's GEMMs compute their products from now on. It
// returns an error, and leaves p at FP32, when pr is BF16 and the CPU
// lacks AVX512_BF16 (HasBF16), or when p is nil (a nil Pool always runs
// FP32); the caller decides whether to go on in FP32. Like every use of
// p, it must not run concurrently with a kernel given p.
func (p *Pool) SetPrecision(pr Precision) error {
	switch pr {
	case FP32:
		if p != nil {
			p.bf16.ks = nil
		}
		return nil
	case BF16:
		if p == nil {
			return fmt.Errorf("tensorcore: bf16 needs a Pool; a nil Pool computes in fp32")
		}
		ks := bestBF16Kernels()
		if ks == nil {
			p.bf16.ks = nil
			return fmt.Errorf("tensorcore: this CPU has no AVX512_BF16 (or the build has no assembly); computing in fp32")
		}
		p.bf16.ks = ks
		return nil
	}
	return fmt.Errorf("tensorcore: unknown precision %v", pr)
}

// Precision reports how p's GEMMs compute their products.
func (p *Pool) Precision() Precision {
	if p != nil && p.bf16.ks != nil {
		return BF16
	}
	return FP32
}

// bf16KernelSet is one implementation of the bf16 GEMM's leaves; the
// driver (sgemmBF16) is shared and tests run the same suite against every
// set in availableBF16Kernels.
type bf16KernelSet struct {
	name string

	// gemm computes C[0:rows, 0:nr] = alpha*Ap*Bp + beta*C like
	// kernelSet.gemm, where Ap is kp groups of mr bf16 pairs and Bp kp
	// groups of nr pairs (as packed by packPairs): pair q of row r of A
	// holds A(r, 2q) in its low half and A(r, 2q+1) in its high half, and
	// likewise down the columns of B. When beta is 0, C is not read.
	gemm   func(kp int, a, b *uint32, c *float32, ldc, rows int, alpha, beta float32)
	mr, nr int

	// packPairs rounds a packed float32 panel (kc groups of w floats) to
	// bf16 and interleaves consecutive groups: dst[q*w+r] =
	// bf16(src[2q*w+r]) | bf16(src[(2q+1)*w+r])<<16 for q < (kc+1)/2,
	// with a zero high half past kc. See bf16PackPairsRef.
	packPairs func(dst []uint32, src []float32, kc, w int)

	// dotTile is kernelSet.dotTile on bf16 rows: it adds to out[r*ldo+c]
	// the dot product over j < n of a[r*lda+j] and b[boffs[c]+j], for r <
	// dtR and c < dtC, summing pairs (j, j+1) as VDPBF16PS does. n is a
	// positive multiple of 32.
	dotTile  func(n int, a *uint16, lda int, b *uint16, boffs *int, out *float32, ldo int)
	dtR, dtC int

	// round sets dst[i] = bf16Round(src[i]) for i < len(src).
	round func(dst []uint16, src []float32)

	// packGridPairs packs one nr-column B micro-panel of bf16 pairs from
	// rows of a bf16 image: dst[q*nr+c] = src[offs[2q]+c] |
	// src[offs[2q+1]+c]<<16 for q < (len(offs)+1)/2, a zero high half
	// past len(offs). See bf16PackGridPairsRef.
	packGridPairs func(dst []uint32, src []uint16, offs []int, nr int)
}

// bf16State is a Pool's precision setting and the job descriptors of its
// BF16 products in flight (kept in the Pool so that starting them does not
// allocate).
type bf16State struct {
	ks   *bf16KernelSet // nil: FP32
	gemm bf16Job
	dotw dotWJob[uint16]
}

// goBF16Kernels is the plain-Go reference set; it runs on any CPU but is
// used only by tests (SetPrecision never picks it: it would be slower than
// FP32).
var goBF16Kernels = &bf16KernelSet{
	name:      "go",
	gemm:      bf16Kernel6x16Go,
	mr:        6,
	nr:        16,
	packPairs: bf16PackPairsRef,
	dotTile:   dotTile4x4BF16Go,
	dtR:       4,
	dtC:       4,
	round:     bf16RoundRef,

	packGridPairs: bf16PackGridPairsRef,
}

// availableBF16Kernels lists every bf16 kernel set that runs on this CPU,
// plain Go first.
func availableBF16Kernels() []*bf16KernelSet {
	ks := []*bf16KernelSet{goBF16Kernels}
	if b := bestBF16Kernels(); b != nil {
		ks = append(ks, b)
	}
	return ks
}

// bf16Round returns the bfloat16 nearest to x (ties to even), as its 16
// bits, the way VCVTNE2PS2BF16 rounds: denormal inputs become zeros of
// their sign and NaNs stay NaNs (quiet).
func bf16Round(x float32) uint16 {
	u := math.Float32bits(x)
	switch {
	case u&0x7f800000 == 0: // zero or denormal
		return uint16(u>>16) & 0x8000
	case u&0x7fffffff > 0x7f800000: // NaN
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// bf16Float returns the float32 whose value the bf16 bits h hold.
func bf16Float(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// bf16PackPairsRef is the plain-Go packPairs (see bf16KernelSet).
func bf16PackPairsRef(dst []uint32, src []float32, kc, w int) {
	kp := (kc + 1) / 2
	_ = dst[kp*w-1]
	for q := 0; q < kp; q++ {
		lo := src[2*q*w:][:w]
		d := dst[q*w:][:w]
		if 2*q+1 == kc {
			for r, v := range lo {
				d[r] = uint32(bf16Round(v))
			}
			continue
		}
		hi := src[(2*q+1)*w:][:w]
		for r, v := range lo {
			d[r] = uint32(bf16Round(v)) | uint32(bf16Round(hi[r]))<<16
		}
	}
}

// bf16RoundRef is the plain-Go round (see bf16KernelSet).
func bf16RoundRef(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = bf16Round(v)
	}
}

// bf16PackGridPairsRef is the plain-Go packGridPairs (see bf16KernelSet).
func bf16PackGridPairsRef(dst []uint32, src []uint16, offs []int, nr int) {
	kc := len(offs)
	for q := 0; q < (kc+1)/2; q++ {
		d := dst[q*nr:][:nr]
		lo := src[offs[2*q]:][:nr]
		if 2*q+1 == kc {
			for c, v := range lo {
				d[c] = uint32(v)
			}
			continue
		}
		hi := src[offs[2*q+1]:][:nr]
		for c, v := range lo {
			d[c] = uint32(v) | uint32(hi[c])<<16
		}
	}
}

// roundGridBF16 returns xp rounded to bf16 in s when p runs BF16, for the
// grid operand of a stride-1 convolution to pack its panels from (each
// element is packed O/G times, so it is rounded once here), or nil.
func roundGridBF16(p *Pool, s *scratch, xp []float32) []uint16 {
	if p == nil || p.bf16.ks == nil {
		return nil
	}
	s.bf16.x = growUint16(s.bf16.x, len(xp))
	p.bf16.ks.round(s.bf16.x, xp)
	return s.bf16.x
}

// dotTile4x4BF16Go is the plain-Go dotTile (see bf16KernelSet.dotTile):
// each lane l of 16 sums the pairs (j+2l, j+2l+1) as VDPBF16PS does, and
// the lanes are added in the tree order of dotTile4x4AVX512.
func dotTile4x4BF16Go(n int, a *uint16, lda int, b *uint16, boffs *int, out *float32, ldo int) {
	offs := unsafe.Slice(boffs, 4)
	maxOff := max(offs[0], offs[1], offs[2], offs[3])
	as := unsafe.Slice(a, 3*lda+n)
	bs := unsafe.Slice(b, maxOff+n)
	os := unsafeSlice(out, 3*ldo+4)
	for r := 0; r < 4; r++ {
		ar := as[r*lda : r*lda+n]
		for c := 0; c < 4; c++ {
			br := bs[offs[c] : offs[c]+n]
			var lanes [16]float32
			for j := 0; j < n; j += 32 {
				for l := range lanes {
					s := lanes[l] + float32(bf16Float(ar[j+2*l+1])*bf16Float(br[j+2*l+1]))
					lanes[l] = s + float32(bf16Float(ar[j+2*l])*bf16Float(br[j+2*l]))
				}
			}
			for w := 8; w >= 1; w /= 2 {
				for l := 0; l < w; l++ {
					lanes[l] += lanes[l+w]
				}
			}
			os[r*ldo+c] += lanes[0]
		}
	}
}

// bf16Kernel6x16Go is the plain-Go bf16 micro-kernel (see
// bf16KernelSet.gemm). Each pair is added as VDPBF16PS does: the product
// of the high halves, then that of the low halves, each exact and each
// sum rounded to float32.
func bf16Kernel6x16Go(kp int, a, b *uint32, c *float32, ldc, rows int, alpha, beta float32) {
	const mr, nr = 6, 16
	var acc [mr][nr]float32
	as := unsafe.Slice(a, kp*mr)
	bs := unsafe.Slice(b, kp*nr)
	for q := 0; q < kp; q++ {
		bv := (*[nr]uint32)(bs[q*nr:])
		av := (*[mr]uint32)(as[q*mr:])
		for r := 0; r < mr; r++ {
			alo, ahi := bf16Float(uint16(av[r])), bf16Float(uint16(av[r]>>16))
			accr := &acc[r]
			for cc := 0; cc < nr; cc++ {
				blo, bhi := bf16Float(uint16(bv[cc])), bf16Float(uint16(bv[cc]>>16))
				s := accr[cc] + float32(ahi*bhi)
				accr[cc] = s + float32(alo*blo)
			}
		}
	}
	cs := unsafeSlice(c, (rows-1)*ldc+nr)
	for r := 0; r < rows; r++ {
		row := cs[r*ldc : r*ldc+nr]
		for cc := range row {
			v := alpha * acc[r][cc]
			if beta != 0 {
				v += beta * row[cc]
			}
			row[cc] = v
		}
	}
}

// sgemmBF16Ref is the plain-Go reference of a BF16 Sgemm: both inputs
// rounded to bf16, products summed in float64, then C = alpha*sum +
// beta*C in float32.
func sgemmBF16Ref(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for l := 0; l < k; l++ {
				av, bv := matElem(a, lda, transA, i, l), matElem(b, ldb, transB, l, j)
				s += float64(bf16Float(bf16Round(av))) * float64(bf16Float(bf16Round(bv)))
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * float32(s)
			} else {
				c[i*ldc+j] = alpha*float32(s) + beta*c[i*ldc+j]
			}
		}
	}
}

// matElem returns element (i, j) of op(X) for a row-major X with stride ld.
func matElem(d []float32, ld int, trans bool, i, j int) float32 {
	if trans {
		return d[j*ld+i]
	}
	return d[i*ld+j]
}

// bf16Scratch is a worker's memory for the bf16 kernels: packed bf16
// panels and one float32 micro-panel packed on the way (GEMM), the padded
// input and the gradient grid in bf16 (stride-1 weight gradient).
type bf16Scratch struct {
	packA, packB []uint32
	panel        []float32
	x, gy        []uint16
}

func growUint16(buf []uint16, n int) []uint16 {
	if cap(buf) < n {
		return make([]uint16, n, n+n/8)
	}
	return buf[:n]
}

func growUint32(buf []uint32, n int) []uint32 {
	if cap(buf) < n {
		return make([]uint32, n, n+n/8)
	}
	return buf[:n]
}

// bf16Job is one BF16 GEMM split into parts, like gemmJob.
type bf16Job struct {
	ks          *bf16KernelSet
	m, n, k     int
	alpha, beta float32
	a, b        gemmOperand
	c           gemmOut
	splitN      bool
	blocks      int
	pool        *Pool
}

// sgemmBF16 is sgemmWith in BF16: C = alpha*A*B + beta*C with C laid out
// as out, k > 0. The blocking and the split across p are those of the
// float32 driver.
func sgemmBF16(ks *bf16KernelSet, p *Pool, m, n, k int, alpha float32, a, b gemmOperand, out gemmOut, beta float32) {
	parts := p.Workers()
	if parts > 1 && m*n*k >= gemmSerialFlops {
		j := &p.bf16.gemm
		j.init(ks, m, n, k, alpha, a, b, out, beta, p, parts)
		p.forTask(j.blocks, 1, j)
		p.bf16.gemm = bf16Job{}
		return
	}
	var j bf16Job
	j.init(ks, m, n, k, alpha, a, b, out, beta, nil, 1)
	s := p.scratchFor(0)
	j.serial(s, 0, m, 0, n)
	p.releaseScratch(s)
}

func (j *bf16Job) init(ks *bf16KernelSet, m, n, k int, alpha float32, a, b gemmOperand, out gemmOut, beta float32, p *Pool, parts int) {
	*j = bf16Job{ks: ks, m: m, n: n, k: k, alpha: alpha, beta: beta, a: a, b: b, c: out, pool: p}
	mb, nb := (m+ks.mr-1)/ks.mr, (n+ks.nr-1)/ks.nr
	j.splitN = nb >= 2*parts || mb < parts // as gemmJob.init
	if j.splitN {
		j.blocks = nb
	} else {
		j.blocks = mb
	}
}

func (j *bf16Job) run(part, lo, hi int) {
	s := j.pool.scratchFor(part)
	if j.splitN {
		j.serial(s, 0, j.m, lo*j.ks.nr, min(hi*j.ks.nr, j.n))
	} else {
		j.serial(s, lo*j.ks.mr, min(hi*j.ks.mr, j.m), 0, j.n)
	}
	j.pool.releaseScratch(s)
}

// serial computes rows [i0, i1) and columns [j0, j1) of C on one
// goroutine. Each micro-panel is packed in float32 by the operand's own
// packer (dense, im2col, grid...) into a small buffer that stays in L1,
// then rounded and paired into the bf16 block.
func (j *bf16Job) serial(s *scratch, i0, i1, j0, j1 int) {
	ks := j.ks
	mr, nr := ks.mr, ks.nr
	b16 := &s.bf16
	ncMax := min(gemmNC, (j1-j0+nr-1)/nr*nr)
	mcMax := min(gemmMC, (i1-i0+mr-1)/mr*mr)
	kcMax := min(gemmKC, j.k)
	kpMax := (kcMax + 1) / 2
	b16.packB = growUint32(b16.packB, kpMax*ncMax)
	b16.packA = growUint32(b16.packA, kpMax*mcMax)
	b16.panel = grow(b16.panel, kcMax*max(mr, nr))
	for jc := j0; jc < j1; jc += gemmNC {
		nc := min(gemmNC, j1-jc)
		for pc := 0; pc < j.k; pc += gemmKC {
			kc := min(gemmKC, j.k-pc)
			kp := (kc + 1) / 2
			for jr := 0; jr < nc; jr += nr {
				nn := min(nr, nc-jr)
				if cv := &j.b.cv; cv.x16 != nil {
					// A whole grid panel inside one image: pairs straight
					// from the rounded image.
					if n, r := (jc+jr)/cv.plane, (jc+jr)%cv.plane; nn == nr && r+nr <= cv.plane {
						ks.packGridPairs(b16.packB[jr*kp:], cv.x16[n*cv.img+r:], cv.kkOff[pc:pc+kc], nr)
						continue
					}
				}
				j.b.packB(s, b16.panel, nr, pc, kc, jc+jr, nn)
				ks.packPairs(b16.packB[jr*kp:], b16.panel, kc, nr)
			}
			beta := j.beta
			if pc > 0 {
				beta = 1
			}
			for ic := i0; ic < i1; ic += gemmMC {
				mc := min(gemmMC, i1-ic)
				for ir := 0; ir < mc; ir += mr {
					j.a.packA(b16.panel, mr, ic+ir, min(mr, mc-ir), pc, kc)
					ks.packPairs(b16.packA[ir*kp:], b16.panel, kc, mr)
				}
				j.macro(s, ic, mc, jc, nc, kp, beta)
			}
		}
	}
}

// macro runs the micro-kernel over an mc×nc block of C; as gemmJob.macro.
func (j *bf16Job) macro(s *scratch, ic, mc, jc, nc, kp int, beta float32) {
	c := &j.c
	kernel := j.ks.gemm
	mr, nr := j.ks.mr, j.ks.nr
	pa, pb := s.bf16.packA, s.bf16.packB
	for jr := 0; jr < nc; jr += nr {
		nn := min(nr, nc-jr)
		bp := pb[jr*kp:]
		col := jc + jr
		img, q := col/c.plane, col%c.plane
		whole := nn == nr && q+nr <= c.plane
		for ir := 0; ir < mc; ir += mr {
			mm := min(mr, mc-ir)
			ap := pa[ir*kp:]
			row := ic + ir + c.rowOffset
			if whole {
				off := row*c.rs + img*c.img + q
				cs := c.d[off : off+(mm-1)*c.rs+nr]
				kernel(kp, &ap[0], &bp[0], &cs[0], c.rs, mm, j.alpha, beta)
				continue
			}
			t := s.tile[:mr*nr]
			kernel(kp, &ap[0], &bp[0], &t[0], nr, mm, 1, 0)
			c.addTile(t, nr, row, col, mm, nn, j.alpha, beta)
		}
	}
}

// addTile sets C = alpha*T + beta*C (C not read when beta is 0) over the
// mm×nn block of C at (row, col), where T is a tile with row stride ldt;
// the block may span images. It is the tail store of gemmJob.macro.
func (c *gemmOut) addTile(t []float32, ldt, row, col, mm, nn int, alpha, beta float32) {
	for r := 0; r < mm; r++ {
		tr := t[r*ldt : r*ldt+nn]
		rowBase := (row + r) * c.rs
		for cc := 0; cc < nn; {
			jj := col + cc
			im, qq := jj/c.plane, jj%c.plane
			seg := min(nn-cc, c.plane-qq)
			dst := c.d[rowBase+im*c.img+qq:][:seg]
			src := tr[cc : cc+seg]
			switch {
			case beta != 0:
				for i, v := range src {
					dst[i] = alpha*v + beta*dst[i]
				}
			case alpha == 1:
				copy(dst, src)
			default:
				for i, v := range src {
					dst[i] = alpha * v
				}
			}
			cc += seg
		}
	}
}
