//go:build amd64 && !noasm

package tensorcore

// Assembly kernels (vec_amd64.s). Each processes n floats, n a positive
// multiple of 8; the wrappers below do the tails in Go.

//go:noescape
func axpyAVX2(x, y *float32, n int, alpha float32)

//go:noescape
func scaleAVX2(dst, x *float32, n int, alpha float32)

//go:noescape
func addAVX2(dst, a, b *float32, n int)

//go:noescape
func mulAVX2(dst, a, b *float32, n int)

//go:noescape
func reluAVX2(dst, x *float32, n int)

//go:noescape
func reluGradAVX2(dst, gy, x *float32, n int)

//go:noescape
func dotAVX2(x, y *float32, n int) float32

//go:noescape
func sumAVX2(x *float32, n int) float32

//go:noescape
func maxAVX2(x *float32, n int) (m float32, nan int32)

func vecAxpyAVX2(alpha float32, x, y []float32) {
	n := len(x)
	y = y[:n]
	if v := n &^ 7; v > 0 {
		axpyAVX2(&x[0], &y[0], v, alpha)
	}
	for i := n &^ 7; i < n; i++ {
		y[i] += alpha * x[i]
	}
}

func vecScaleAVX2(dst []float32, alpha float32, x []float32) {
	n := len(dst)
	x = x[:n]
	if v := n &^ 7; v > 0 {
		scaleAVX2(&dst[0], &x[0], v, alpha)
	}
	for i := n &^ 7; i < n; i++ {
		dst[i] = alpha * x[i]
	}
}

func vecAddAVX2(dst, a, b []float32) {
	n := len(dst)
	a, b = a[:n], b[:n]
	if v := n &^ 7; v > 0 {
		addAVX2(&dst[0], &a[0], &b[0], v)
	}
	for i := n &^ 7; i < n; i++ {
		dst[i] = a[i] + b[i]
	}
}

func vecMulAVX2(dst, a, b []float32) {
	n := len(dst)
	a, b = a[:n], b[:n]
	if v := n &^ 7; v > 0 {
		mulAVX2(&dst[0], &a[0], &b[0], v)
	}
	for i := n &^ 7; i < n; i++ {
		dst[i] = a[i] * b[i]
	}
}

func vecReluAVX2(dst, x []float32) {
	n := len(x)
	dst = dst[:n]
	if v := n &^ 7; v > 0 {
		reluAVX2(&dst[0], &x[0], v)
	}
	vecReluRef(dst[n&^7:], x[n&^7:])
}

func vecReluGradAVX2(dst, gy, x []float32) {
	n := len(x)
	dst, gy = dst[:n], gy[:n]
	if v := n &^ 7; v > 0 {
		reluGradAVX2(&dst[0], &gy[0], &x[0], v)
	}
	vecReluGradRef(dst[n&^7:], gy[n&^7:], x[n&^7:])
}

// vecDotAVX2 sums 8 lanes in a fixed order, then adds the tail in order:
// the result depends only on the input.
func vecDotAVX2(x, y []float32) float32 {
	n := len(x)
	y = y[:n]
	var s float32
	if v := n &^ 7; v > 0 {
		s = dotAVX2(&x[0], &y[0], v)
	}
	for i := n &^ 7; i < n; i++ {
		s += x[i] * y[i]
	}
	return s
}

func vecSumAVX2(x []float32) float32 {
	n := len(x)
	var s float32
	if v := n &^ 7; v > 0 {
		s = sumAVX2(&x[0], v)
	}
	for i := n &^ 7; i < n; i++ {
		s += x[i]
	}
	return s
}

func vecMaxAVX2(x []float32) float32 {
	n := len(x)
	if n < 8 {
		return vecMaxRef(x)
	}
	m, nan := maxAVX2(&x[0], n&^7)
	if nan != 0 {
		return vecMaxRef(x) // returns the first NaN
	}
	for _, v := range x[n&^7:] {
		if v > m || v != v {
			m = v
			if v != v {
				return v
			}
		}
	}
	return m
}
