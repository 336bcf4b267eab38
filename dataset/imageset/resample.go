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
	s >>= precisionBits
	if s < 0 {
		return 0
	}
	if s > 255 {
		return 255
	}
	return uint8(s)
}

// resampleBuf is resampleRGB's working memory, reused from call to call.
type resampleBuf struct {
	tmp []uint8 // the horizontal pass
	acc []int32 // one output row's sums
}

// resampleRGB resamples an interleaved RGB region (srcW pixels wide, its
// top left at source coordinates (x0, y0)) through the axes xs and ys into
// dst (len(xs.start)×len(ys.start) interleaved RGB pixels); the axes'
// source ranges must lie in the region. buf may be nil.
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
			s0, s1, s2 := int32(half), int32(half), int32(half)
			p := in[3*(start-x0):]
			ws := xs.w[k]
			p = p[:3*len(ws)]
			for i, c := range ws {
				s0 += int32(p[3*i]) * c
				s1 += int32(p[3*i+1]) * c
				s2 += int32(p[3*i+2]) * c
			}
			out[3*k], out[3*k+1], out[3*k+2] = clip8(s0), clip8(s1), clip8(s2)
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
			out[x] = clip8(s)
		}
	}
}
