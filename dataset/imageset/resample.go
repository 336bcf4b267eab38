package imageset

import "math"

// Resampling as Pillow's Image.resize with its BILINEAR filter (what
// torchvision's Resize and RandomResizedCrop use on PIL images), in the
// same arithmetic so that results agree to the bit:
//
//   - an output pixel x of an axis resized from n source pixels (the span
//     [in0, in1)) to m has its centre at in0 + (x+½)·s in the source,
//     s = (in1−in0)/m;
//   - its weights are the triangle filter max(0, 1−|d|) at the source
//     pixels' centres, with d measured in units of max(s, 1) source pixels
//     (so shrinking averages over the whole footprint: antialiasing), over
//     the source pixels within the support max(s, 1) of the centre, then
//     normalized to sum 1;
//   - weights become fixed point with 22 fractional bits, rounded half
//     away from zero, and every pass rounds its sums to 8 bits (adding
//     half and shifting) and clamps them to 0..255;
//   - the horizontal pass runs first, over only the source rows the
//     vertical pass reads.

// precisionBits is Pillow's fixed-point precision for 8-bit images.
const precisionBits = 32 - 8 - 2

// axis is the resampling of one axis: output pixel k reads the source
// pixels start[k] … start[k]+len(w[k])−1 with weights w[k].
type axis struct {
	start []int
	w     [][]int32
}

// resampleAxis returns the resampling of the first, first+1, …, first+m−1
// output pixels when the n source pixels origin … origin+n−1 are resized to
// size pixels (first+m ≤ size). Source pixels outside them are never read.
func resampleAxis(origin, n, size, first, m int) axis {
	scale := float64(n) / float64(size)
	fs := max(scale, 1)
	support := fs // the bilinear filter's support is 1
	ksize := int(math.Ceil(support))*2 + 1
	a := axis{start: make([]int, m), w: make([][]int32, m)}
	flat := make([]int32, m*ksize) // one allocation for all the weights
	ss := 1 / fs
	ws := make([]float64, 0, ksize)
	for k := range m {
		centre := (float64(first+k) + 0.5) * scale
		lo := max(int(centre-support+0.5), 0)
		hi := min(int(centre+support+0.5), n)
		ws = ws[:0]
		var sum float64
		for x := lo; x < hi; x++ {
			d := math.Abs((float64(x) - centre + 0.5) * ss)
			w := 0.0
			if d < 1 {
				w = 1 - d
			}
			ws = append(ws, w)
			sum += w
		}
		fixed := flat[k*ksize : k*ksize+len(ws) : k*ksize+len(ws)]
		for i, w := range ws {
			if sum != 0 {
				w /= sum
			}
			if w < 0 {
				fixed[i] = int32(-0.5 + w*(1<<precisionBits))
			} else {
				fixed[i] = int32(0.5 + w*(1<<precisionBits))
			}
		}
		a.start[k], a.w[k] = origin+lo, fixed
	}
	return a
}

// span returns the source range [lo, hi) the axis reads.
func (a axis) span() (lo, hi int) {
	lo, hi = math.MaxInt, 0
	for k, s := range a.start {
		lo = min(lo, s)
		hi = max(hi, s+len(a.w[k]))
	}
	return lo, hi
}

// clip8 rounds a fixed-point sum to 8 bits (the half is added by the
// caller's initial value) and clamps it to 0..255.
func clip8(s int32) uint8 {
	return uint8(min(max(s>>precisionBits, 0), 255))
}

// resampleBuf is resampleRGB's working memory, reused from call to call.
type resampleBuf struct {
	tmp []uint8 // the horizontal pass
	acc []int32 // one output row's sums
}

// resampleRGB resamples an interleaved RGB region (srcW pixels wide, its
// top left at source coordinates (x0, y0)) through the axes xs and ys into
// dst (len(xs.start)×len(ys.start) interleaved RGB pixels); the axes'
// source ranges must lie in the region. buf may be nil. Its result is
// resampleRGBRef's, to the bit: the loops differ, the sums do not.
func resampleRGB(dst []uint8, xs, ys axis, src []uint8, srcW, x0, y0 int, buf *resampleBuf) {
	if buf == nil {
		buf = new(resampleBuf)
	}
	w := len(xs.start)
	rlo, rhi := ys.span()
	rows := rhi - rlo
	if need := 3 * w * rows; cap(buf.tmp) < need {
		buf.tmp = make([]uint8, need)
	}
	tmp := buf.tmp[:3*w*rows]
	const half = 1 << (precisionBits - 1)
	for r := range rows {
		in := src[3*(r+rlo-y0)*srcW:]
		out := tmp[3*r*w : 3*(r+1)*w]
		for k, start := range xs.start {
			ws := xs.w[k]
			p := in[3*(start-x0):]
			p = p[:3*len(ws)]
			s0, s1, s2 := int32(half), int32(half), int32(half)
			// The common tap counts unrolled (a 224 output of ImageNet's
			// crops takes 2 to 5 taps), the rest one tap at a time.
			switch len(ws) {
			case 2:
				q, c := p[:6:6], ws[:2:2]
				s0 += int32(q[0])*c[0] + int32(q[3])*c[1]
				s1 += int32(q[1])*c[0] + int32(q[4])*c[1]
				s2 += int32(q[2])*c[0] + int32(q[5])*c[1]
			case 3:
				q, c := p[:9:9], ws[:3:3]
				s0 += int32(q[0])*c[0] + int32(q[3])*c[1] + int32(q[6])*c[2]
				s1 += int32(q[1])*c[0] + int32(q[4])*c[1] + int32(q[7])*c[2]
				s2 += int32(q[2])*c[0] + int32(q[5])*c[1] + int32(q[8])*c[2]
			case 4:
				q, c := p[:12:12], ws[:4:4]
				s0 += int32(q[0])*c[0] + int32(q[3])*c[1] + int32(q[6])*c[2] + int32(q[9])*c[3]
				s1 += int32(q[1])*c[0] + int32(q[4])*c[1] + int32(q[7])*c[2] + int32(q[10])*c[3]
				s2 += int32(q[2])*c[0] + int32(q[5])*c[1] + int32(q[8])*c[2] + int32(q[11])*c[3]
			default:
				for _, c := range ws {
					q := p[:3:3]
					s0 += int32(q[0]) * c
					s1 += int32(q[1]) * c
					s2 += int32(q[2]) * c
					p = p[3:]
				}
			}
			o := out[3*k : 3*k+3 : 3*k+3]
			o[0], o[1], o[2] = clip8(s0), clip8(s1), clip8(s2)
		}
	}
	// The vertical pass: each output row sums up to four source rows at
	// a time, element by element, reading memory in order.
	n := 3 * w
	if cap(buf.acc) < n {
		buf.acc = make([]int32, n)
	}
	acc := buf.acc[:n]
	for k, start := range ys.start {
		ws := ys.w[k]
		base := tmp[(start-rlo)*n:]
		out := dst[k*n:][:n]
		switch len(ws) {
		case 1:
			r0, c0 := base[:n], ws[0]
			for x := range out {
				out[x] = clip8(half + int32(r0[x])*c0)
			}
		case 2:
			r0, r1 := base[:n], base[n:2*n]
			c0, c1 := ws[0], ws[1]
			for x := range out {
				out[x] = clip8(half + int32(r0[x])*c0 + int32(r1[x])*c1)
			}
		case 3:
			r0, r1, r2 := base[:n], base[n:2*n], base[2*n:3*n]
			c0, c1, c2 := ws[0], ws[1], ws[2]
			for x := range out {
				out[x] = clip8(half + int32(r0[x])*c0 + int32(r1[x])*c1 + int32(r2[x])*c2)
			}
		case 4:
			r0, r1, r2, r3 := base[:n], base[n:2*n], base[2*n:3*n], base[3*n:4*n]
			c0, c1, c2, c3 := ws[0], ws[1], ws[2], ws[3]
			for x := range out {
				out[x] = clip8(half + int32(r0[x])*c0 + int32(r1[x])*c1 + int32(r2[x])*c2 + int32(r3[x])*c3)
			}
		default:
			r0, r1, r2, r3 := base[:n], base[n:2*n], base[2*n:3*n], base[3*n:4*n]
			c0, c1, c2, c3 := ws[0], ws[1], ws[2], ws[3]
			for x := range acc {
				acc[x] = half + int32(r0[x])*c0 + int32(r1[x])*c1 + int32(r2[x])*c2 + int32(r3[x])*c3
			}
			for i := 4; i < len(ws); i++ {
				row, c := base[i*n:(i+1)*n], ws[i]
				for x, v := range row {
					acc[x] += int32(v) * c
				}
			}
			for x, s := range acc {
				out[x] = clip8(s)
			}
		}
	}
}

// clip8Ref rounds a fixed-point sum to 8 bits (the half is added by the
// caller's initial value) and clamps it to 0..255.
func clip8Ref(s int32) uint8 {
	s >>= precisionBits
	if s < 0 {
		return 0
	}
	if s > 255 {
		return 255
	}
	return uint8(s)
}

// resampleRGBRef is resampleRGB written plainly, one tap at a time: the
// reference its faster loops are tested against (they agree exactly, as
// integer sums do in any order). It resamples an interleaved RGB region (srcW pixels wide, its
// top left at source coordinates (x0, y0)) through the axes xs and ys into
// dst (len(xs.start)×len(ys.start) interleaved RGB pixels); the axes'
// source ranges must lie in the region. buf may be nil.
func resampleRGBRef(dst []uint8, xs, ys axis, src []uint8, srcW, x0, y0 int, buf *resampleBuf) {
	if buf == nil {
		buf = new(resampleBuf)
	}
	w := len(xs.start)
	rlo, rhi := ys.span()
	rows := rhi - rlo
	if need := 3 * w * rows; cap(buf.tmp) < need {
		buf.tmp = make([]uint8, need)
	}
	tmp := buf.tmp[:3*w*rows]
	const half = 1 << (precisionBits - 1)
	for r := range rows {
		in := src[3*(r+rlo-y0)*srcW:]
		out := tmp[3*r*w : 3*(r+1)*w]
		for k, start := range xs.start {
			s0, s1, s2 := int32(half), int32(half), int32(half)
			p := in[3*(start-x0):]
			ws := xs.w[k]
			p = p[:3*len(ws)]
			for i, c := range ws {
				s0 += int32(p[3*i]) * c
				s1 += int32(p[3*i+1]) * c
				s2 += int32(p[3*i+2]) * c
			}
			out[3*k], out[3*k+1], out[3*k+2] = clip8Ref(s0), clip8Ref(s1), clip8Ref(s2)
		}
	}
	// The vertical pass sums whole rows, tap by tap, so that it reads
	// memory in order.
	if cap(buf.acc) < 3*w {
		buf.acc = make([]int32, 3*w)
	}
	acc := buf.acc[:3*w]
	for k, start := range ys.start {
		for x := range acc {
			acc[x] = half
		}
		for i, c := range ys.w[k] {
			row := tmp[3*(start-rlo+i)*w:][:len(acc)]
			for x, v := range row {
				acc[x] += int32(v) * c
			}
		}
		out := dst[3*k*w:][:len(acc)]
		for x, s := range acc {
			out[x] = clip8Ref(s)
		}
	}
}
