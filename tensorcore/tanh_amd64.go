//go:build amd64 && !noasm

package tensorcore

// Assembly kernels (tanh_amd64.s). Each processes n floats, n a positive
// multiple of 8.

//go:noescape
func tanhAVX2(dst, x *float32, n int)

//go:noescape
func tanhGradAVX2(gx, gy, y *float32, n int)

// vecTanhAVX2 runs the tail through the kernel too, in a padded block, so
// that every element gets the same arithmetic wherever it lies.
func vecTanhAVX2(dst, x []float32) {
	n := len(x)
	dst = dst[:n]
	if v := n &^ 7; v > 0 {
		tanhAVX2(&dst[0], &x[0], v)
	}
	if t := n & 7; t > 0 {
		var in, out [8]float32
		copy(in[:], x[n&^7:])
		tanhAVX2(&out[0], &in[0], 8)
		copy(dst[n&^7:], out[:t])
	}
}

func vecTanhGradAVX2(gx, gy, y []float32) {
	n := len(y)
	gx, gy = gx[:n], gy[:n]
	if v := n &^ 7; v > 0 {
		tanhGradAVX2(&gx[0], &gy[0], &y[0], v)
	}
	if t := n & 7; t > 0 {
		var a, b, c [8]float32
		copy(a[:], gx[n&^7:])
		copy(b[:], gy[n&^7:])
		copy(c[:], y[n&^7:])
		tanhGradAVX2(&a[0], &b[0], &c[0], 8)
		copy(gx[n&^7:], a[:t])
	}
}
