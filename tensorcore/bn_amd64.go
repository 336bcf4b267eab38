//go:build amd64 && !noasm

package tensorcore

// Assembly batch-normalization row kernels (bn_amd64.s). Each handles n
// floats, n a positive multiple of 8; the wrappers do the tail with the
// references.

//go:noescape
func bnScaleShiftAVX2(y, x *float32, n int, sc, sh float32, relu bool)

//go:noescape
func bnGradSumsAVX2(gy, x *float32, n int, mu, is, sc, sh float32, relu bool) (sdy, sdyx float64)

//go:noescape
func bnGradApplyAVX2(gx, gy, x *float32, n int, k, mu, is, mdy, mdyx, sc, sh float32, relu bool)

//go:noescape
func bnSumAVX2(x *float32, n int) float64

//go:noescape
func bnSumSqDevAVX2(x *float32, n int, mu float64) float64

// bnSumKernAVX2 adds the lanes' sum, folded, to s, then the tail in order.
func bnSumKernAVX2(x []float32, s float64) float64 {
	n := len(x)
	if v := n &^ 7; v > 0 {
		s += bnSumAVX2(&x[0], v)
	}
	return bnSumRef(x[n&^7:], s)
}

// bnSumSqDevKernAVX2 is bnSumKernAVX2 for Σ(x-mu)².
func bnSumSqDevKernAVX2(x []float32, mu, q float64) float64 {
	n := len(x)
	if v := n &^ 7; v > 0 {
		q += bnSumSqDevAVX2(&x[0], v, mu)
	}
	return bnSumSqDevRef(x[n&^7:], mu, q)
}

func bnScaleShiftKernAVX2(y, x []float32, sc, sh float32, relu bool) {
	n := len(x)
	y = y[:n]
	if v := n &^ 7; v > 0 {
		bnScaleShiftAVX2(&y[0], &x[0], v, sc, sh, relu)
	}
	bnScaleShiftRef(y[n&^7:], x[n&^7:], sc, sh, relu)
}

// bnGradSumsKernAVX2 adds the row's lane sums, folded, to sdy and sdyx,
// then the tail in order.
func bnGradSumsKernAVX2(gy, x []float32, mu, is, sc, sh float32, relu bool, sdy, sdyx float64) (float64, float64) {
	n := len(gy)
	x = x[:n]
	if v := n &^ 7; v > 0 {
		s, sx := bnGradSumsAVX2(&gy[0], &x[0], v, mu, is, sc, sh, relu)
		sdy, sdyx = sdy+s, sdyx+sx
	}
	return bnGradSumsRef(gy[n&^7:], x[n&^7:], mu, is, sc, sh, relu, sdy, sdyx)
}

func bnGradApplyKernAVX2(gx, gy, x []float32, k, mu, is, mdy, mdyx, sc, sh float32, relu bool) {
	n := len(gy)
	gx, x = gx[:n], x[:n]
	if v := n &^ 7; v > 0 {
		bnGradApplyAVX2(&gx[0], &gy[0], &x[0], v, k, mu, is, mdy, mdyx, sc, sh, relu)
	}
	bnGradApplyRef(gx[n&^7:], gy[n&^7:], x[n&^7:], k, mu, is, mdy, mdyx, sc, sh, relu)
}
