//go:build amd64 && !noasm

package tensorcore

// Assembly pooling kernels (pool2d_amd64.s). Each handles n outputs, n a
// positive multiple of 8; the wrappers below do the rest in Go.

//go:noescape
func maxPoolS2AVX2(y *float32, arg *int32, x *float32, off, ldx, nr, kw, n int) (nan int32)

//go:noescape
func maxPool2x2GradAVX2(g0, g1, gy *float32, arg *int32, base0, base1, n int)

// maxPoolS2KernAVX2 is maxPoolS2Ref on AVX2. A window holding a NaN sends
// the whole call to the reference, so NaN results match it exactly.
func maxPoolS2KernAVX2(y []float32, arg []int32, x []float32, off, ldx, nr, kw int) {
	n := len(y)
	arg = arg[:n]
	// Each block of eight reads 16 floats from row+2t+dc, one float past its
	// last window column: stay inside x.
	n8 := n &^ 7
	for n8 > 0 && off+(nr-1)*ldx+2*n8+kw-2 >= len(x) {
		n8 -= 8
	}
	if n8 > 0 && maxPoolS2AVX2(&y[0], &arg[0], &x[0], off, ldx, nr, kw, n8) != 0 {
		n8 = 0 // a NaN: redo everything in the reference
	}
	maxPoolS2From(y, arg, x, off, ldx, nr, kw, n8)
}

// maxPool2x2GradKernAVX2 is maxPool2x2GradRef on AVX2.
func maxPool2x2GradKernAVX2(g, gy []float32, arg []int32, base, ld int) {
	n := len(gy)
	g0, g1, arg := g[:2*n], g[ld:ld+2*n], arg[:n]
	n8 := n &^ 7
	if n8 > 0 {
		maxPool2x2GradAVX2(&g0[0], &g1[0], &gy[0], &arg[0], base, base+ld, n8)
	}
	maxPool2x2GradRef(g[2*n8:], gy[n8:], arg[n8:], base+2*n8, ld)
}
