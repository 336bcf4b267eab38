package tensorcore

import (
	"fmt"
	"unsafe"
)

// Blocking of the SGEMM driver (BLIS-style). The micro-kernel computes an
// mr×nr tile of C (6×16 with AVX2, 12×32 with AVX-512) from an A
// micro-panel (mr rows, packed column by column) and a B micro-panel (nr
// columns, packed row by row). A gemmKC-deep B micro-panel (16 or 32 KiB)
// stays in L1 while the A micro-panels stream past it, a gemmMC×gemmKC
// block of packed A (240 KiB) stays in L2, and a gemmKC×gemmNC panel of
// packed B (at most 4 MiB) in L3. On the 12×32 kernel with a 1 MiB L2,
// kc 256 / mc 240 measured 5–17% faster than 192 / 144 at n = 1024–2048
// and about the same at 512; 384 / 192 was in between (bench/openblas,
// -minflop 2e10, same run). gemmMC is a multiple of both kernels' mr.
const (
	gemmMaxMR = 16
	gemmMaxNR = 32
	gemmKC    = 256
	gemmMC    = 240
	gemmNC    = 4096

	// gemmSerialFlops is the size (m*n*k) under which a product runs on
	// the calling goroutine: splitting costs more than it saves.
	gemmSerialFlops = 96 * 96 * 96
)

// Sgemm computes C = alpha*op(A)*op(B) + beta*C on row-major float32
// matrices, where op(X) is X or its transpose. op(A) is m×k, op(B) is k×n and
// C is m×n; lda, ldb and ldc are the row strides of A, B and C as stored.
// When beta is 0, C is not read (NaNs in it do not propagate).
//
// The work is split across p (nil runs on the calling goroutine). Results are
// deterministic for a given p.Workers(): every element of C is computed by
// one worker, summing over k in a fixed order. Slices too short for their
// shapes panic.
func Sgemm(p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmKS(kern, p, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmKS is Sgemm with an explicit kernel set.
func sgemmKS(ks *kernelSet, p *Pool, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	checkMat("A", transA, m, k, a, lda)
	checkMat("B", transB, k, n, b, ldb)
	checkMat("C", false, m, n, c, ldc)
	sgemmWith(ks, p, m, n, k, alpha,
		denseOperand(transA, a, lda), denseOperand(transB, b, ldb),
		gemmOut{d: c, rs: ldc, plane: n}, beta)
}

func checkMat(name string, trans bool, rows, cols int, d []float32, ld int) {
	if trans {
		rows, cols = cols, rows
	}
	if rows == 0 || cols == 0 {
		return
	}
	if ld < cols || len(d) < (rows-1)*ld+cols {
		panic(fmt.Sprintf("tensorcore: sgemm: %s is %d×%d with stride %d but has %d elements", name, rows, cols, ld, len(d)))
	}
}

// operandKind says how a GEMM operand's logical element is found in memory.
type operandKind uint8

const (
	operandDense      operandKind = iota // A(i,p) = d[i*ld+p]; B(p,j) = d[p*ld+j]
	operandDenseT                        // A(i,p) = d[p*ld+i]; B(p,j) = d[j*ld+p]
	operandIm2col                        // B(p,j): the im2col matrix of conv (see convSrc)
	operandIm2colRows                    // A(i,p): the im2col matrix of conv, rows i
	operandPlanesT                       // B(p,j): planes of conv viewed as (pixels × channels)
	operandGrid                          // B(p,j): im2col of a padded image over its padded grid (see convSrc.packGrid)
)

// gemmOperand is an A or B operand: a dense matrix or a virtual matrix
// (im2col of an image, planes of an NCHW tensor) packed straight from its
// source.
type gemmOperand struct {
	kind operandKind
	d    []float32
	ld   int
	cv   convSrc
}

func denseOperand(trans bool, d []float32, ld int) gemmOperand {
	if trans {
		return gemmOperand{kind: operandDenseT, d: d, ld: ld}
	}
	return gemmOperand{kind: operandDense, d: d, ld: ld}
}

// gemmOut is where C lives: element (i, j) is at
// d[i*rs + (j/plane)*img + j%plane]. A dense matrix has plane = n and
// img = 0; the output of a convolution over a batch has plane = OH*OW,
// rs = OH*OW and img = O*OH*OW.
type gemmOut struct {
	d         []float32
	rs        int
	plane     int
	img       int
	rowOffset int // added to the row index (selects a group's channels)
}

// gemmJob is one SGEMM split into parts along m or n.
type gemmJob struct {
	ks          *kernelSet
	m, n, k     int
	alpha, beta float32
	a, b        gemmOperand
	c           gemmOut
	mr, nr      int
	splitN      bool
	blocks      int // number of mr rows or nr columns blocks along the split
	pool        *Pool
}

func (j *gemmJob) run(part, lo, hi int) {
	s := j.pool.scratchFor(part)
	if j.splitN {
		j0, j1 := lo*j.nr, min(hi*j.nr, j.n)
		j.serial(s, 0, j.m, j0, j1)
	} else {
		i0, i1 := lo*j.mr, min(hi*j.mr, j.m)
		j.serial(s, i0, i1, 0, j.n)
	}
	j.pool.releaseScratch(s)
}

// sgemmWith runs C = alpha*A*B + beta*C with kernel set ks; C's layout is
// out. It splits the work over p when the product is large enough.
func sgemmWith(ks *kernelSet, p *Pool, m, n, k int, alpha float32, a, b gemmOperand, out gemmOut, beta float32) {
	if m <= 0 || n <= 0 {
		return
	}
	if p != nil && p.bf16.ks != nil && k > 0 {
		sgemmBF16(p.bf16.ks, p, m, n, k, alpha, a, b, out, beta)
		return
	}
	parts := p.Workers()
	if parts > 1 && m*n*k >= gemmSerialFlops {
		j := &p.gemm
		j.init(ks, m, n, k, alpha, a, b, out, beta, p, parts)
		p.forTask(j.blocks, 1, j)
		p.gemm = gemmJob{} // drop references to the caller's memory
		return
	}
	var j gemmJob
	j.init(ks, m, n, k, alpha, a, b, out, beta, nil, 1)
	s := p.scratchFor(0)
	j.serial(s, 0, m, 0, n)
	p.releaseScratch(s)
}

func (j *gemmJob) init(ks *kernelSet, m, n, k int, alpha float32, a, b gemmOperand, out gemmOut, beta float32, p *Pool, parts int) {
	*j = gemmJob{ks: ks, m: m, n: n, k: k, alpha: alpha, beta: beta, a: a, b: b, c: out, pool: p, mr: ks.mr, nr: ks.nr}
	mb, nb := (m+j.mr-1)/j.mr, (n+j.nr-1)/j.nr
	// Split along n when there are enough column panels: each worker then
	// packs all of A and only its own columns of B, so its kc×nc block of
	// B stays small enough for its L2 (splitting m makes every worker pack
	// all of B, which measured ~20% slower on two cores).
	j.splitN = nb >= 2*parts || mb < parts
	if j.splitN {
		j.blocks = nb
	} else {
		j.blocks = mb
	}
}

// serial computes rows [i0, i1) and columns [j0, j1) of C on one goroutine.
func (j *gemmJob) serial(s *scratch, i0, i1, j0, j1 int) {
	if j.k <= 0 {
		j.scaleC(i0, i1, j0, j1)
		return
	}
	ncMax := min(gemmNC, (j1-j0+j.nr-1)/j.nr*j.nr)
	mcMax := min(gemmMC, (i1-i0+j.mr-1)/j.mr*j.mr)
	kcMax := min(gemmKC, j.k)
	s.packB = grow(s.packB, kcMax*ncMax)
	s.packA = grow(s.packA, kcMax*mcMax)
	for jc := j0; jc < j1; jc += gemmNC {
		nc := min(gemmNC, j1-jc)
		for pc := 0; pc < j.k; pc += gemmKC {
			kc := min(gemmKC, j.k-pc)
			j.b.packB(s, s.packB, j.nr, pc, kc, jc, nc)
			beta := j.beta
			if pc > 0 {
				beta = 1
			}
			for ic := i0; ic < i1; ic += gemmMC {
				mc := min(gemmMC, i1-ic)
				j.a.packA(s.packA, j.mr, ic, mc, pc, kc)
				j.macro(s, ic, mc, jc, nc, kc, beta)
			}
		}
	}
}

// macro runs the micro-kernel over an mc×nc block of C from packed A and B.
func (j *gemmJob) macro(s *scratch, ic, mc, jc, nc, kc int, beta float32) {
	c := &j.c
	kernel := j.ks.gemm
	mr, nr := j.mr, j.nr
	alpha := j.alpha
	for jr := 0; jr < nc; jr += nr {
		nn := min(nr, nc-jr)
		bp := s.packB[jr*kc:]
		col := jc + jr
		img, q := col/c.plane, col%c.plane
		whole := nn == nr && q+nr <= c.plane
		for ir := 0; ir < mc; ir += mr {
			mm := min(mr, mc-ir)
			ap := s.packA[ir*kc:]
			row := ic + ir + c.rowOffset
			if whole {
				off := row*c.rs + img*c.img + q
				cs := c.d[off : off+(mm-1)*c.rs+nr]
				kernel(kc, &ap[0], &bp[0], &cs[0], c.rs, mm, alpha, beta)
				continue
			}
			t := s.tile[:mr*nr]
			kernel(kc, &ap[0], &bp[0], &t[0], nr, mm, 1, 0)
			c.addTile(t, nr, row, col, mm, nn, alpha, beta)
		}
	}
}

// scaleC sets C = beta*C (C = 0 when beta is 0) over a block: the k = 0
// product.
func (j *gemmJob) scaleC(i0, i1, j0, j1 int) {
	c := &j.c
	for i := i0; i < i1; i++ {
		for jj := j0; jj < j1; jj++ {
			off := (i+c.rowOffset)*c.rs + (jj/c.plane)*c.img + jj%c.plane
			if j.beta == 0 {
				c.d[off] = 0
			} else {
				c.d[off] *= j.beta
			}
		}
	}
}

// packA packs rows [i0, i0+mc) and columns [p0, p0+kc) of A into dst as
// mr-row micro-panels, each kc columns of mr floats; rows past mc are zero.
func (o *gemmOperand) packA(dst []float32, mr, i0, mc, p0, kc int) {
	for ir := 0; ir < mc; ir += mr {
		mm := min(mr, mc-ir)
		panel := dst[ir*kc : ir*kc+mr*kc]
		switch o.kind {
		case operandDense:
			if mm == mr && (mr == 12 || mr == 6) {
				packARows(panel, o.d, (i0+ir)*o.ld+p0, o.ld, mr, kc)
				continue
			}
			for r := 0; r < mr; r++ {
				if r >= mm {
					for p := 0; p < kc; p++ {
						panel[p*mr+r] = 0
					}
					continue
				}
				row := o.d[(i0+ir+r)*o.ld+p0:][:kc]
				out := panel[r:]
				for p, v := range row {
					out[p*mr] = v
				}
			}
		case operandDenseT:
			base := p0*o.ld + i0 + ir
			for p := 0; p < kc; p++ {
				d := panel[p*mr : p*mr+mr]
				copy(d, o.d[base+p*o.ld:][:mm])
				clear(d[mm:])
			}
		case operandIm2colRows:
			o.cv.packIm2colRows(panel, mr, i0+ir, mm, p0, kc)
		default:
			panic("tensorcore: sgemm: operand kind cannot be A")
		}
	}
}

// packARows packs mr (6 or 12) full rows of a row-major matrix, starting
// at off with stride ld, kc columns each, into one A micro-panel.
func packARows(panel, d []float32, off, ld, mr, kc int) {
	p0 := packARowsFast(panel, d, off, ld, mr, kc)
	if p0 == kc {
		return
	}
	r0, r1, r2 := d[off:][:kc], d[off+ld:][:kc], d[off+2*ld:][:kc]
	r3, r4, r5 := d[off+3*ld:][:kc], d[off+4*ld:][:kc], d[off+5*ld:][:kc]
	if mr == 6 {
		for p := p0; p < kc; p++ {
			q := (*[6]float32)(panel[p*6:])
			q[0], q[1], q[2], q[3], q[4], q[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
		}
		return
	}
	r6, r7, r8 := d[off+6*ld:][:kc], d[off+7*ld:][:kc], d[off+8*ld:][:kc]
	r9, r10, r11 := d[off+9*ld:][:kc], d[off+10*ld:][:kc], d[off+11*ld:][:kc]
	for p := p0; p < kc; p++ {
		q := (*[12]float32)(panel[p*12:])
		q[0], q[1], q[2], q[3], q[4], q[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
		q[6], q[7], q[8], q[9], q[10], q[11] = r6[p], r7[p], r8[p], r9[p], r10[p], r11[p]
	}
}

// packB packs rows [p0, p0+kc) and columns [j0, j0+nc) of B into dst as
// nr-column micro-panels, each kc rows of nr floats; columns past nc are
// zero.
func (o *gemmOperand) packB(s *scratch, dst []float32, nr, p0, kc, j0, nc int) {
	jr0 := 0
	if o.kind == operandDense {
		// Whole panels in one pass over B's rows, which streams them.
		if full := nc / nr; packBFast(dst, o.d, p0*o.ld+j0, o.ld, kc, full, nr) {
			jr0 = full * nr
		}
	}
	for jr := jr0; jr < nc; jr += nr {
		nn := min(nr, nc-jr)
		panel := dst[jr*kc : jr*kc+nr*kc]
		switch o.kind {
		case operandDense:
			base := p0*o.ld + j0 + jr
			for p := 0; p < kc; p++ {
				d := panel[p*nr : p*nr+nr]
				copy(d, o.d[base+p*o.ld:][:nn])
				clear(d[nn:])
			}
		case operandDenseT:
			p1 := 0
			if nn == nr {
				p1 = packColsFast(panel, o.d, (j0+jr)*o.ld+p0, o.ld, nr, kc)
			}
			for cc := 0; cc < nr; cc++ {
				if cc >= nn {
					for p := 0; p < kc; p++ {
						panel[p*nr+cc] = 0
					}
					continue
				}
				row := o.d[(j0+jr+cc)*o.ld+p0:][:kc]
				out := panel[cc:]
				for p := p1; p < kc; p++ {
					out[p*nr] = row[p]
				}
			}
		case operandIm2col:
			o.cv.packIm2col(s, panel, nr, p0, kc, j0+jr, nn)
		case operandPlanesT:
			o.cv.packPlanesT(panel, nr, p0, kc, j0+jr, nn)
		case operandGrid:
			o.cv.packGrid(panel, nr, p0, kc, j0+jr, nn)
		default:
			panic("tensorcore: sgemm: operand kind cannot be B")
		}
	}
}

// sgemmKernel6x16Go is the plain-Go micro-kernel (see kernelSet.gemm).
func sgemmKernel6x16Go(kc int, a, b, c *float32, ldc, rows int, alpha, beta float32) {
	const mr, nr = 6, 16
	var acc [mr][nr]float32
	as := unsafeSlice(a, kc*mr)
	bs := unsafeSlice(b, kc*nr)
	for p := 0; p < kc; p++ {
		bv := (*[nr]float32)(bs[p*nr:])
		av := (*[mr]float32)(as[p*mr:])
		for r := 0; r < mr; r++ {
			ar := av[r]
			accr := &acc[r]
			for cc := 0; cc < nr; cc++ {
				accr[cc] += ar * bv[cc]
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

// sgemmRef is the plain-Go reference for Sgemm: a triple loop with a float32
// accumulator.
func sgemmRef(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for l := 0; l < k; l++ {
				var av, bv float32
				if transA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				if transB {
					bv = b[j*ldb+l]
				} else {
					bv = b[l*ldb+j]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}

func gatherRowsGo(dst, src []float32, offs []int, width int) {
	for i, o := range offs {
		copy(dst[i*width:(i+1)*width], src[o:o+width])
	}
}

// dotTile4x4Go is the plain-Go dotTile (see kernelSet.dotTile), summing
// each product in 16 lanes like the assembly.
func dotTile4x4Go(n int, a *float32, lda int, b *float32, boffs *int, out *float32, ldo int) {
	offs := unsafe.Slice(boffs, 4)
	maxOff := max(offs[0], offs[1], offs[2], offs[3])
	as := unsafeSlice(a, 3*lda+n)
	bs := unsafeSlice(b, maxOff+n)
	os := unsafeSlice(out, 3*ldo+4)
	for r := 0; r < 4; r++ {
		ar := as[r*lda : r*lda+n]
		for c := 0; c < 4; c++ {
			br := bs[offs[c] : offs[c]+n]
			var lanes [16]float32
			for j := 0; j < n; j += 16 {
				for l := range lanes {
					lanes[l] += ar[j+l] * br[j+l]
				}
			}
			var s float32
			for _, v := range lanes {
				s += v
			}
			os[r*ldo+c] += s
		}
	}
}
