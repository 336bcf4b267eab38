package tensorcore

import "math"

// vecTanh computes dst[i] = tanh(x[i]). dst may alias x. The plain-Go
// kernels round math.Tanh; the SIMD ones compute tanhApprox's algorithm,
// within 1e-6 relative of it (±0, ±Inf and NaN exact). Either way an
// element's result depends on its value only, never on its position.
func vecTanh(dst, x []float32) { kern.tanh(dst, x) }

// vecTanhGrad computes gx[i] += gy[i]·(1 − y[i]²), tanh's backward given
// its output y.
func vecTanhGrad(gx, gy, y []float32) { kern.tanhGrad(gx, gy, y) }

func vecTanhRef(dst, x []float32) {
	for i, v := range x {
		dst[i] = float32(math.Tanh(float64(v)))
	}
}

func vecTanhGradRef(gx, gy, y []float32) {
	for i, v := range y {
		gx[i] += gy[i] * (1 - v*v)
	}
}

// tanhApprox is the algorithm of the SIMD tanh kernels, in Go, one lane at
// a time (the kernels' tests hold both to math.Tanh). With a = |x|:
//
//	a < 0.625: tanh(a) = a + a·a²·P(a²)
//	otherwise: tanh(a) = 1 − 2/(exp(2·min(a, 9)) + 1)
//
// and the sign of x put back; tanh(±9) already rounds to ±1 in float32.
func tanhApprox(x float32) float32 {
	if x != x {
		return x
	}
	a := float32(math.Abs(float64(x)))
	var t float32
	if a < 0.625 {
		s := a * a
		p := ((((-5.70498872745e-3*s+2.06390887954e-2)*s-5.37397155531e-2)*s+1.33314422036e-1)*s - 3.33332819422e-1)
		t = a + p*(a*s)
	} else {
		z := expApprox(2 * min(a, 9))
		t = 1 - 2/(z+1)
	}
	return float32(math.Copysign(float64(t), float64(x)))
}

// expApprox is exp(r) for 0 ≤ r ≤ 18 as the SIMD kernels compute it: n =
// round(r/ln2), r' = r − n·ln2 (ln2 in two parts), exp(r') by a degree-7
// polynomial, times 2^n.
func expApprox(r float32) float32 {
	n := float32(math.RoundToEven(float64(r * 1.44269504088896341)))
	r = r - n*0.693359375
	r = r - n*-2.12194440e-4
	p := float32(1.9875691500e-4)
	for _, c := range []float32{1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1} {
		p = p*r + c
	}
	e := p*(r*r) + r + 1
	return math.Float32frombits(math.Float32bits(e) + uint32(int32(n))<<23)
}
