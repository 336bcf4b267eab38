//go:build amd64 && !noasm

package tensorcore

// Assembly pooling kernels (pool2d_amd64.s). Each handles n outputs, n a
// positive multiple of 8; the wrappers below do the rest in Go.

//go:noescape
func maxPoolS2AVX2(y *float32, arg *int32, x *float32, off, ldx, nr, kw, n int) (nan int32)

//go:noescape
func maxPool2x2GradAVX2(dst, gy *float32, arg *int32, base, n int)

// maxPoolS2KernAVX2 is maxPoolS2Ref on AVX2. A tail of fewer than eight
// outputs is pooled as the last eight again (each output depends only on
// x, so recomputing some is harmless) rather than one window at a time in
// Go. A window holding a NaN sends the whole call to the reference, so
// NaN results match it exactly.
func maxPoolS2KernAVX2(y []float32, arg []int32, x []float32, off, ldx, nr, kw int) {
	n := len(y)
	arg = arg[:n]
	// A block of eight from output t reads 16 floats from row+2t+dc, one
	// past its last window column, up to this offset: it must lie in x.
	end := func(t int) int { return off + (nr-1)*ldx + 2*t + 16 + kw - 2 }
	n8 := n &^ 7
	for n8 > 0 && end(n8-8) >= len(x) {
		n8 -= 8
	}
	done := n8
	if n8 > 0 && maxPoolS2AVX2(&y[0], &arg[0], &x[0], off, ldx, nr, kw, n8) != 0 {
		maxPoolS2Ref(y, arg, x, off, ldx, nr, kw)
		return
	}
	if t := n - 8; done < n && t >= 0 && end(t) < len(x) {
		if maxPoolS2AVX2(&y[t], &arg[t], &x[0], off+2*t, ldx, nr, kw, 8) != 0 {
			maxPoolS2Ref(y, arg, x, off, ldx, nr, kw)
			return
		}
		done = n
	}
	maxPoolS2From(y, arg, x, off, ldx, nr, kw, done)
}

// maxPool2x2GradKernAVX2 is maxPool2x2GradRef on AVX2, a row at a time; a
// tail of fewer than eight outputs is written as the last eight again.
//
// Each row is cleared before the kernel overwrites it. That is redundant
// work, but on rows that are not in cache (VGG's 32×64×224×224 gradient,
// 411 MB) the kernel's own stores, interleaved with its loads, wait on
// fetching the lines: measured ~2.4× slower than clear-and-scatter when
// both rows were stored in one loop, ~10% slower a row at a time. The dense
// clear fetches them at full speed; with it the kernel matches the Go
// reference there and stays 2–3× faster on rows in cache (LeNet).
func maxPool2x2GradKernAVX2(g, gy []float32, arg []int32, base, ld int) {
	n := len(gy)
	if n < 8 {
		maxPool2x2GradRef(g, gy, arg, base, ld)
		return
	}
	arg = arg[:n]
	for _, r := range [2]int{0, ld} {
		row := g[r : r+2*n]
		clear(row)
		n8 := n &^ 7
		maxPool2x2GradAVX2(&row[0], &gy[0], &arg[0], base+r, n8)
		if t := n - 8; n8 < n {
			maxPool2x2GradAVX2(&row[2*t], &gy[t], &arg[t], base+r+2*t, 8)
		}
	}
}
