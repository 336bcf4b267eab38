package tensorcore

import (
	"fmt"
	"math"
)

// poolGeom checks a pooling of x (N, C, H, W) with a k×k window and returns
// the output height and width (floor mode, as PyTorch's default).
func poolGeom(name string, xs []int, k, stride, pad int) (oh, ow int) {
	if len(xs) != 4 || k < 1 || stride < 1 || pad < 0 || 2*pad > k {
		panic(fmt.Sprintf("tensorcore: %s: input %v with kernel %d, stride %d, padding %d: want 4-D input, k, stride >= 1 and padding <= k/2", name, xs, k, stride, pad))
	}
	oh = (xs[2]+2*pad-k)/stride + 1
	ow = (xs[3]+2*pad-k)/stride + 1
	if oh < 1 || ow < 1 {
		panic(fmt.Sprintf("tensorcore: %s: input %v is smaller than kernel %d with padding %d", name, xs, k, pad))
	}
	return oh, ow
}

// MaxPool2D returns the maximum over k×k windows of x (N, C, H, W), moved
// by stride, with implicit -Inf padding pad on every side (pad <= k/2), in
// floor mode: (N, C, (H+2pad-k)/stride+1, likewise W), as PyTorch's
// max_pool2d. NaN propagates. Of equal maxima the first in row-major window
// order wins; its position is kept for backward, which routes the gradient
// there. Stride 2 (ResNet's 3×3 pad 1 stem, VGG's and AlexNet's pools) runs
// on the kernel set's 8-wide row kernel.
func (tp *Tape) MaxPool2D(x *Var, k, stride, pad int) *Var {
	xs := x.Value.Shape
	oh, ow := poolGeom("MaxPool2D", xs, k, stride, pad)
	shape := [4]int{xs[0], xs[1], oh, ow}
	nd := tp.push(opMaxPool2D, x, nil, nil, shape[:], false)
	nd.pool = poolArgs{k: k, stride: stride, pad: pad}
	planes, h, w := xs[0]*xs[1], xs[2], xs[3]
	nd.iaux = growI(nd.iaux, planes*oh*ow)
	nd.phase = parMaxPool
	tp.pool.forTask(planes, max(1, parGrain/(h*w)), nd)
	return nd.out
}

// maxPoolForward pools planes [p0, p1) of h×w into oh×ow, writing the
// maxima to y and their flat indices (into x) to arg. Every path scans a
// window row by row and keeps the first strictly greater element (the first
// NaN, if any), so the kernel sets agree bit for bit.
func maxPoolForward(x, y []float32, arg []int32, p0, p1, h, w, oh, ow, k, stride, pad int) {
	// With stride 2 the windows of outputs [jl, jr) lie inside the row; the
	// kernel set pools those, the edges go window by window.
	jl, jr := ow, ow
	if stride == 2 {
		jl = min((pad+1)/2, ow)
		jr = max(min(ow, (w-k+pad)/2+1), jl)
	}
	for p := p0; p < p1; p++ {
		base := p * h * w
		for i := 0; i < oh; i++ {
			h0, h1 := poolWindow(i, k, stride, pad, h)
			yo := (p*oh + i) * ow
			for j := 0; j < jl; j++ {
				y[yo+j], arg[yo+j] = maxPoolWindow(x, base, w, h0, h1, j, k, stride, pad)
			}
			if jr > jl {
				kern.maxPoolS2(y[yo+jl:yo+jr], arg[yo+jl:yo+jr], x, base+h0*w+2*jl-pad, w, h1-h0, k)
			}
			for j := jr; j < ow; j++ {
				y[yo+j], arg[yo+j] = maxPoolWindow(x, base, w, h0, h1, j, k, stride, pad)
			}
		}
	}
}

// maxPoolWindow is the maximum of rows [h0, h1) of output column j's
// window in the plane at base, and its index.
func maxPoolWindow(x []float32, base, w, h0, h1, j, k, stride, pad int) (float32, int32) {
	w0, w1 := poolWindow(j, k, stride, pad, w)
	m, bi := float32(math.Inf(-1)), base+h0*w+w0
	for r := h0; r < h1; r++ {
		for c := w0; c < w1; c++ {
			v := x[base+r*w+c]
			if v > m || v != v {
				m, bi = v, base+r*w+c
				if v != v {
					return m, int32(bi)
				}
			}
		}
	}
	return m, int32(bi)
}

// maxPoolS2Ref is the reference stride-2 max-pooling row kernel: for each
// t < len(y), the maximum over the window of nr rows of x, starting at
// offset off and ldx apart, by columns 2t .. 2t+kw-1 of each, scanned row by
// row with the first strictly greater element (or the first NaN) winning,
// into y[t] and its offset into x into arg[t]:
//
//	m, bi := -Inf, off+2t
//	for r < nr, dc < kw: v := x[off+r*ldx+2t+dc]; if v > m || v != v { m, bi = v, that offset; stop at NaN }
func maxPoolS2Ref(y []float32, arg []int32, x []float32, off, ldx, nr, kw int) {
	maxPoolS2From(y, arg, x, off, ldx, nr, kw, 0)
}

// maxPoolS2From is maxPoolS2Ref for outputs t >= t0 only.
func maxPoolS2From(y []float32, arg []int32, x []float32, off, ldx, nr, kw, t0 int) {
	if kw == 2 && nr == 2 {
		// VGG's and LeNet's 2×2 windows, written so that the compiler
		// emits conditional moves and set-on-condition: a data-dependent
		// branch per comparison mispredicts half the time. Only the index
		// is chosen; the value is read back at it (max would turn a -0, +0
		// tie into +0). For windows without NaN the pairwise choice is the
		// row-major first strict maximum; a NaN anywhere (rare) sends the
		// whole call to the slow loop, which overwrites every output.
		nan := 0
		for t := t0; t < len(y); t++ {
			k := off + 2*t
			a, b, c, d := x[k], x[k+1], x[k+ldx], x[k+ldx+1]
			k0 := k + b2i(b > a)
			k1 := k + ldx + b2i(d > c)
			m0, m1 := max(a, b), max(c, d)
			k0 ^= (k0 ^ k1) & -b2i(m1 > m0)
			nan |= b2i(m0 != m0) | b2i(m1 != m1)
			y[t], arg[t] = x[k0], int32(k0)
		}
		if nan == 0 {
			return
		}
	}
	for t := t0; t < len(y); t++ {
		maxPoolS2Slow(y, arg, x, off, ldx, nr, kw, t)
	}
}

// b2i is 1 for true and 0 for false, without a branch.
func b2i(b bool) int {
	var i int
	if b {
		i = 1
	}
	return i
}

// maxPoolS2Slow computes output t of maxPoolS2Ref.
func maxPoolS2Slow(y []float32, arg []int32, x []float32, off, ldx, nr, kw, t int) {
	m, bi := float32(math.Inf(-1)), off+2*t
	for r := 0; r < nr; r++ {
		row := off + r*ldx + 2*t
		for c := row; c < row+kw; c++ {
			v := x[c]
			if v > m || v != v {
				m, bi = v, c
				if v != v {
					y[t], arg[t] = m, int32(bi)
					return
				}
			}
		}
	}
	y[t], arg[t] = m, int32(bi)
}

// maxPool2x2GradRef is the reference input gradient of two input rows
// under non-overlapping 2×2 windows: g holds the upper row, whose first
// element has offset base in x, and ld elements on the lower one (ld >=
// 2·len(gy)). Columns [0, 2·len(gy)) of both rows are written, gy[t] where
// arg[t] points and 0 elsewhere:
//
//	g[r·ld+2t+e] = gy[t] if arg[t] == base+r·ld+2t+e else 0 (r, e = 0, 1)
func maxPool2x2GradRef(g, gy []float32, arg []int32, base, ld int) {
	n := len(gy)
	clear(g[:2*n])
	clear(g[ld : ld+2*n])
	for t, v := range gy {
		g[int(arg[t])-base] = v
	}
}

// AvgPool2D returns the mean over k×k windows of x (N, C, H, W), moved by
// stride, with zero padding pad on every side (pad <= k/2) counted in the
// divisor (PyTorch's count_include_pad), in floor mode.
func (tp *Tape) AvgPool2D(x *Var, k, stride, pad int) *Var {
	xs := x.Value.Shape
	oh, ow := poolGeom("AvgPool2D", xs, k, stride, pad)
	shape := [4]int{xs[0], xs[1], oh, ow}
	nd := tp.push(opAvgPool2D, x, nil, nil, shape[:], false)
	nd.pool = poolArgs{k: k, stride: stride, pad: pad}
	planes, h, w := xs[0]*xs[1], xs[2], xs[3]
	xd, y := x.Value.Data, nd.out.Value.Data
	inv := 1 / float32(k*k)
	for p := 0; p < planes; p++ {
		base := p * h * w
		for i := 0; i < oh; i++ {
			h0, h1 := poolWindow(i, k, stride, pad, h)
			for j := 0; j < ow; j++ {
				w0, w1 := poolWindow(j, k, stride, pad, w)
				var s float32
				for r := h0; r < h1; r++ {
					for c := w0; c < w1; c++ {
						s += xd[base+r*w+c]
					}
				}
				y[(p*oh+i)*ow+j] = s * inv
			}
		}
	}
	return nd.out
}

// GlobalAvgPool returns the mean of each plane of x (N, C, H, W) as
// (N, C): PyTorch's adaptive_avg_pool2d(x, 1) flattened, the form a
// classifier head takes (Reshape to (N, C, 1, 1) where that is wanted).
func (tp *Tape) GlobalAvgPool(x *Var) *Var {
	xs := x.Value.Shape
	if len(xs) != 4 || xs[2]*xs[3] == 0 {
		panic(fmt.Sprintf("tensorcore: GlobalAvgPool: input %v is not 4-D with non-empty planes", xs))
	}
	shape := [2]int{xs[0], xs[1]}
	nd := tp.push(opGlobalAvgPool, x, nil, nil, shape[:], false)
	hw := xs[2] * xs[3]
	xd, y := x.Value.Data, nd.out.Value.Data
	inv := 1 / float32(hw)
	for p := range y {
		y[p] = vecSum(xd[p*hw:(p+1)*hw]) * inv
	}
	return nd.out
}

// gradGlobalAvgPool spreads each plane's gradient evenly over the plane,
// adding (acc) or writing (!acc). ones (a plane of 1s) lets the vector
// kernels broadcast the value: v·1 is exact, so the bits are those of
// adding or storing v.
func gradGlobalAvgPool(gx, gy, ones []float32, hw int, acc bool) {
	inv := 1 / float32(hw)
	for p, g := range gy {
		v := g * inv
		row := gx[p*hw : (p+1)*hw]
		if acc {
			vecAxpy(v, ones, row)
		} else {
			vecScale(row, v, ones)
		}
	}
}

// poolWindow is the input range [lo, hi) along one axis that output index i
// of a k-wide window moved by stride, with padding pad, covers inside an
// axis of length n.
func poolWindow(i, k, stride, pad, n int) (lo, hi int) {
	lo = i*stride - pad
	return max(lo, 0), min(lo+k, n)
}
