//go:build amd64 && !noasm

package tensorcore

// SGEMM micro-kernels (gemm_kernel_amd64.s); see kernelSet.gemm.

//go:noescape
func sgemmKernel6x16AVX2(kc int, a, b, c *float32, ldc, rows int, alpha, beta float32)

//go:noescape
func sgemmKernel12x32AVX512(kc int, a, b, c *float32, ldc, rows int, alpha, beta float32)

//go:noescape
func gatherRowsAVX2(dst, src *float32, offs *int, rows, width int)

// gatherRows sets dst[i*width : (i+1)*width] = src[offs[i] : offs[i]+width]
// for every i < len(offs); width is 16 or 32 and every source row must lie
// inside src.
func gatherRows(dst, src []float32, offs []int, width int) {
	if len(offs) == 0 {
		return
	}
	if !hasAVX2() {
		gatherRowsGo(dst, src, offs, width)
		return
	}
	_ = dst[len(offs)*width-1]
	for _, o := range offs {
		_ = src[o : o+width] // bounds: the assembly does not check
	}
	gatherRowsAVX2(&dst[0], &src[0], &offs[0], len(offs), width)
}

//go:noescape
func dotTile4x4AVX512(n int, a *float32, lda int, b *float32, boffs *int, out *float32, ldo int)

//go:noescape
func dotTile3x4AVX2(n int, a *float32, lda int, b *float32, boffs *int, out *float32, ldo int)

//go:noescape
func packA6AVX2(dst, src *float32, ld, kc, mr int)

//go:noescape
func packBAVX2(dst, src *float32, ld, kc, panels, nr int)

// packARowsFast packs the first kc&^7 columns of mr (6 or 12) rows of d
// (row r at off + r*ld) into an A micro-panel and returns how many columns
// it packed.
func packARowsFast(panel, d []float32, off, ld, mr, kc int) int {
	kc8 := kc &^ 7
	if kc8 == 0 || (mr != 6 && mr != 12) || !hasAVX2() {
		return 0
	}
	_ = panel[mr*kc8-1]
	_ = d[off : off+(mr-1)*ld+kc8] // bounds: the assembly does not check
	for r := 0; r < mr; r += 6 {
		packA6AVX2(&panel[r], &d[off+r*ld], ld, kc8, mr)
	}
	return kc8
}

// packColsFast packs the first kc&^7 columns of n rows of d (row r at off
// + r*ld) into a panel of n interleaved rows (panel[p*n+r] = row r's
// column p) — a transposed B operand's micro-panel, n = nr — six rows at a
// time with the A packer's transposes, the rows left over by the loop
// below. It returns how many columns it packed.
func packColsFast(panel, d []float32, off, ld, n, kc int) int {
	kc8 := kc &^ 7
	if kc8 == 0 || n < 6 || !hasAVX2() {
		return 0
	}
	_ = panel[n*kc8-1]
	_ = d[off : off+(n-1)*ld+kc8] // bounds: the assembly does not check
	r := 0
	for ; r+6 <= n; r += 6 {
		packA6AVX2(&panel[r], &d[off+r*ld], ld, kc8, n)
	}
	for ; r < n; r++ {
		row := d[off+r*ld:][:kc8]
		for p, v := range row {
			panel[p*n+r] = v
		}
	}
	return kc8
}

// packBFast packs kc rows of panels×nr columns of d (row p at off + p*ld)
// into nr-column B micro-panels, nr 16 or 32, and reports whether it could.
func packBFast(dst, d []float32, off, ld, kc, panels, nr int) bool {
	if panels == 0 || kc == 0 || (nr != 16 && nr != 32) || !hasAVX2() {
		return false
	}
	_ = dst[panels*kc*nr-1]
	_ = d[off : off+(kc-1)*ld+panels*nr] // bounds: the assembly does not check
	packBAVX2(&dst[0], &d[off], ld, kc, panels, nr)
	return true
}
