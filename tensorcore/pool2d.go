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
// floor mode: (N, C, (H+2pad-k)/stride+1, likewise W). NaN propagates. The
// position of each maximum is kept for backward.
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
// maxima to y and their flat indices (into x) to arg.
func maxPoolForward(x, y []float32, arg []int32, p0, p1, h, w, oh, ow, k, stride, pad int) {
	if k == 2 && stride == 2 && pad == 0 {
		// The common LeNet case, written so the compiler emits conditional
		// moves: a data-dependent branch per comparison mispredicts half the
		// time and costs several times more. A NaN makes the value NaN (the
		// index then points at some element of the window).
		for p := p0; p < p1; p++ {
			base := p * h * w
			for i := 0; i < oh; i++ {
				r0 := base + 2*i*w
				r1 := r0 + w
				yo := (p*oh + i) * ow
				row0, row1 := x[r0:r0+2*ow], x[r1:r1+2*ow]
				yr, ar := y[yo:yo+ow], arg[yo:yo+ow]
				for j := range yr {
					a, b := row0[2*j], row0[2*j+1]
					c, d := row1[2*j], row1[2*j+1]
					k0 := int32(r0 + 2*j)
					if b > a {
						k0++
					}
					k1 := int32(r1 + 2*j)
					if d > c {
						k1++
					}
					m0, m1 := max(a, b), max(c, d)
					if m1 > m0 {
						k0 = k1
					}
					yr[j] = max(m0, m1)
					ar[j] = k0
				}
			}
		}
		return
	}
	negInf := float32(math.Inf(-1))
	for p := p0; p < p1; p++ {
		base := p * h * w
		for i := 0; i < oh; i++ {
			h0, h1 := poolWindow(i, k, stride, pad, h)
			for j := 0; j < ow; j++ {
				w0, w1 := poolWindow(j, k, stride, pad, w)
				m, bi := negInf, base+h0*w+w0
				for r := h0; r < h1; r++ {
					for c := w0; c < w1; c++ {
						v := x[base+r*w+c]
						if v > m || v != v {
							m, bi = v, base+r*w+c
							if v != v {
								goto done
							}
						}
					}
				}
			done:
				y[(p*oh+i)*ow+j] = m
				arg[(p*oh+i)*ow+j] = int32(bi)
			}
		}
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

// poolWindow is the input range [lo, hi) along one axis that output index i
// of a k-wide window moved by stride, with padding pad, covers inside an
// axis of length n.
func poolWindow(i, k, stride, pad, n int) (lo, hi int) {
	lo = i*stride - pad
	return max(lo, 0), min(lo+k, n)
}
