package tensorcore

// The vector kernels below are the hot elementwise and reduction loops. Each
// exported-to-the-package name dispatches to the fastest implementation the
// CPU supports; each has a plain-Go reference (the *Ref functions) that the
// shared tests compare it with. All of them require len(dst) == len(x) ==
// len(y) where they take several slices; the caller checks shapes.

// vecAxpy computes y[i] += alpha*x[i].
func vecAxpy(alpha float32, x, y []float32) { kern.axpy(alpha, x, y) }

// vecAdd computes dst[i] = a[i] + b[i]. dst may alias a or b.
func vecAdd(dst, a, b []float32) { kern.add(dst, a, b) }

// vecMul computes dst[i] = a[i] * b[i]. dst may alias a or b.
func vecMul(dst, a, b []float32) { kern.mul(dst, a, b) }

// vecScale computes dst[i] = alpha * x[i]. dst may alias x.
func vecScale(dst []float32, alpha float32, x []float32) { kern.scale(dst, alpha, x) }

// vecDot returns the sum of x[i]*y[i]. The summation order is fixed by the
// kernel set (lanes, then tail), so equal inputs give equal results; it may
// differ from the sequential reference by rounding.
func vecDot(x, y []float32) float32 { return kern.dot(x, y) }

// vecSum returns the sum of x[i], in a fixed order like vecDot.
func vecSum(x []float32) float32 { return kern.sum(x) }

// vecMax returns the largest x[i] (NaN if any x[i] is NaN); x must not be empty.
func vecMax(x []float32) float32 { return kern.max(x) }

// vecRelu computes dst[i] = max(x[i], 0), propagating NaN. dst may alias x.
func vecRelu(dst, x []float32) { kern.relu(dst, x) }

// vecReluGrad computes dst[i] = gy[i] if x[i] > 0, else 0. dst may alias gy.
func vecReluGrad(dst, gy, x []float32) { kern.reluGrad(dst, gy, x) }

func vecAxpyRef(alpha float32, x, y []float32) {
	for i, v := range x {
		y[i] += alpha * v
	}
}

func vecAddRef(dst, a, b []float32) {
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}

func vecMulRef(dst, a, b []float32) {
	for i := range dst {
		dst[i] = a[i] * b[i]
	}
}

func vecScaleRef(dst []float32, alpha float32, x []float32) {
	for i := range dst {
		dst[i] = alpha * x[i]
	}
}

func vecDotRef(x, y []float32) float32 {
	var s float32
	for i, v := range x {
		s += v * y[i]
	}
	return s
}

func vecSumRef(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += v
	}
	return s
}

func vecMaxRef(x []float32) float32 {
	m := x[0]
	for _, v := range x {
		if v > m || v != v {
			m = v
			if v != v {
				return v
			}
		}
	}
	return m
}

func vecReluRef(dst, x []float32) {
	for i, v := range x {
		if v < 0 {
			v = 0
		}
		dst[i] = v
	}
}

func vecReluGradRef(dst, gy, x []float32) {
	for i, v := range x {
		if v > 0 {
			dst[i] = gy[i]
		} else {
			dst[i] = 0
		}
	}
}
