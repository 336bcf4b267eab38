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
