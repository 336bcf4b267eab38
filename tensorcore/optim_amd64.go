//go:build amd64 && !noasm

package tensorcore

// sgdAVX2 runs SGD's update over n floats (a positive multiple of 8) of p,
// g and buf; mode 0 has no buffer (buf unused), 1 is momentum and 2
// Nesterov momentum on later steps, 3 and 4 the same on the first step
// (which only writes buf). damp is 1 − Dampening.
//
//go:noescape
func sgdAVX2(p, grad, buf *float32, n int, lr, wd, mom, damp float32, mode int)

// sgdKernAVX2 is SGDStep on AVX2. Every element, the tail's too (through
// an 8-float copy), goes through the same fused arithmetic, so an element's
// result does not depend on how the parameters are sliced.
func sgdKernAVX2(p, g, buf []float32, a SGDArgs) {
	mode := 0
	if buf != nil {
		mode = 1
		if a.Nesterov {
			mode = 2
		}
		if a.First {
			mode += 2
		}
	}
	n := len(p)
	v := n &^ 7
	lr, wd, mom, damp := a.LR, a.WeightDecay, a.Momentum, 1-a.Dampening
	if v > 0 {
		var b *float32
		if buf != nil {
			b = &buf[0]
		}
		sgdAVX2(&p[0], &g[0], b, v, lr, wd, mom, damp, mode)
	}
	if v < n {
		var tp, tg, tb [8]float32
		copy(tp[:], p[v:])
		copy(tg[:], g[v:])
		if buf != nil {
			copy(tb[:], buf[v:])
		}
		sgdAVX2(&tp[0], &tg[0], &tb[0], 8, lr, wd, mom, damp, mode)
		copy(p[v:], tp[:])
		if buf != nil {
			copy(buf[v:], tb[:])
		}
	}
}

// axpyExactAVX2 is vecAxpyAVX2 with the tail through an 8-float copy, so
// that every element gets the same fused multiply-add wherever the slice
// starts and ends.
func axpyExactAVX2(alpha float32, x, y []float32) {
	n := len(x)
	y = y[:n]
	v := n &^ 7
	if v > 0 {
		axpyAVX2(&x[0], &y[0], v, alpha)
	}
	if v < n {
		var tx, ty [8]float32
		copy(tx[:], x[v:])
		copy(ty[:], y[v:])
		axpyAVX2(&tx[0], &ty[0], 8, alpha)
		copy(y[v:], ty[:])
	}
}
