package tensorcore

import "math"

// The batch-normalization row kernels: the per-element loops of
// BatchNorm's and BatchNormReLU's forward and backward over one run of a
// channel (a plane of one image, or one element of a 2-D input).
//
// relu selects BatchNormReLU: a rectified output, and a gradient masked
// where the normalized value z = x·sc + sh is not positive. The backward
// kernels recompute z from x (the same two roundings as forward) rather
// than read the output, so the fused op never touches a second tensor. The
// unfused BatchNorm passes relu false and sees the gradient that ReLU
// masked for it (0 where z <= 0, as here), which makes the two give the
// same bits under one kernel set. Products are rounded explicitly
// (float32(a*b)) so that no compiler fuses them into an FMA the assembly
// does not use.

// bnSumRef adds the elements of x to s in float64, in order.
func bnSumRef(x []float32, s float64) float64 {
	for _, v := range x {
		s += float64(v)
	}
	return s
}

// bnSumSqDevRef adds Σ(x-mu)² to q in float64, in order.
func bnSumSqDevRef(x []float32, mu, q float64) float64 {
	for _, v := range x {
		d := float64(v) - mu
		q += d * d
	}
	return q
}

// bnScaleShiftRef writes y = x·sc + sh, rectified as vecRelu when relu
// (NaN and -0 pass).
func bnScaleShiftRef(y, x []float32, sc, sh float32, relu bool) {
	y = y[:len(x)]
	if relu {
		for j, v := range x {
			v = float32(v*sc) + sh
			// v < 0 becomes +0, by masking rather than a branch
			y[j] = math.Float32frombits(math.Float32bits(v) &^ -uint32(b2i(v < 0)))
		}
		return
	}
	for j, v := range x {
		y[j] = float32(v*sc) + sh
	}
}

// bnGradSumsRef adds Σg and Σg·x̂ to sdy and sdyx in float64, in order, with
// x̂ = (x-mu)·is and g = gy, or 0 where relu and x·sc+sh > 0 fails:
//
//	for j: g := gy[j] (0 if relu && !(x[j]·sc+sh > 0)); sdy += g; sdyx += g·float64((x[j]-mu)·is)
func bnGradSumsRef(gy, x []float32, mu, is, sc, sh float32, relu bool, sdy, sdyx float64) (float64, float64) {
	x = x[:len(gy)]
	for j, g := range gy {
		if relu {
			g = bnMask(g, x[j], sc, sh)
		}
		sdy += float64(g)
		sdyx += float64(g) * float64(float32((x[j]-mu)*is))
	}
	return sdy, sdyx
}

// bnGradApplyRef adds BatchNorm's training input gradient, g and x̂ as in
// bnGradSumsRef:
//
//	gx[j] += k·(g - mdy - x̂·mdyx)
func bnGradApplyRef(gx, gy, x []float32, k, mu, is, mdy, mdyx, sc, sh float32, relu bool) {
	gx, x = gx[:len(gy)], x[:len(gy)]
	for j, g := range gy {
		if relu {
			g = bnMask(g, x[j], sc, sh)
		}
		xh := float32((x[j] - mu) * is)
		gx[j] += float32(k * (g - mdy - float32(xh*mdyx)))
	}
}

// bnMask is g where x·sc+sh > 0 and +0 elsewhere (as ReLU's gradient),
// by masking the bits: a branch on the sign of normalized data would
// mispredict half the time.
func bnMask(g, x, sc, sh float32) float32 {
	return math.Float32frombits(math.Float32bits(g) & -uint32(b2i(float32(x*sc)+sh > 0)))
}

// bnAffine returns channel ch's normalization y = x·sc + sh from the saved
// statistics and the affine parameters (nil: none), as forward and
// backward both compute it.
func bnAffine(nd *node, ch int) (sc, sh float32) {
	bn := &nd.bn
	sc, sh = bn.invStd[ch], -bn.mean[ch]*bn.invStd[ch]
	if nd.b != nil {
		g := nd.b.Value.Data[ch]
		sc *= g
		sh *= g
	}
	if nd.c != nil {
		sh += nd.c.Value.Data[ch]
	}
	return sc, sh
}
