package dataset

// Area-weighted resampling: how a stored image becomes a smaller model
// input, as the 1990 ConvNet's 16×16 digits are made from MNIST's 28×28.
// Each output pixel is the mean of the source area it covers, source pixels
// cut by the area's border weighing by the fraction inside. The arithmetic
// (float64 span boundaries, float32 accumulation in row-major source order,
// one scale per axis at the end) is the one the training loop has always
// used, so trained results do not change.

// span is the source range of one output pixel along one axis, with the
// weights of its first and last source pixels (the ones in between weigh 1).
type span struct {
	lo, hi          int
	wLo, wHi, scale float32
}

// spanAt returns the span of output pixel i when n source pixels are split
// into m output pixels of equal area (m ≤ n).
func spanAt(n, m, i int) span {
	r := float64(n) / float64(m)
	a, b := float64(i)*r, float64(i+1)*r
	lo, hi := int(a), int(b-1e-9)
	s := span{lo: lo, hi: hi, scale: float32(1 / r)}
	if lo == hi {
		s.wLo = float32(b - a)
	} else {
		s.wLo = float32(float64(lo+1) - a)
		s.wHi = float32(b - float64(hi))
	}
	return s
}

// weight is the weight of source pixel i (lo ≤ i ≤ hi) in s.
func (s span) weight(i int) float32 {
	switch i {
	case s.lo:
		return s.wLo
	case s.hi:
		return s.wHi
	}
	return 1
}

// maxStackSpans is the largest output width whose column spans
// resampleArea computes once and keeps on the stack; wider outputs compute
// them as they go.
const maxStackSpans = 64

// resampleArea writes into dst (h·w floats, row-major) the area-weighted
// resampling of the srcH×srcW image src (row-major). h ≤ srcH and w ≤ srcW.
// It allocates nothing and writes only dst, so any number of calls may run
// at once on distinct destinations.
func resampleArea(dst []float32, h, w int, src []float32, srcH, srcW int) {
	var xs [maxStackSpans]span
	if w <= maxStackSpans {
		for ox := range w {
			xs[ox] = spanAt(srcW, w, ox)
		}
	}
	for oy := range h {
		sy := spanAt(srcH, h, oy)
		for ox := range w {
			var sx span
			if w <= maxStackSpans {
				sx = xs[ox]
			} else {
				sx = spanAt(srcW, w, ox)
			}
			var acc float32
			for r := sy.lo; r <= sy.hi; r++ {
				wr := sy.weight(r)
				for c := sx.lo; c <= sx.hi; c++ {
					acc += wr * sx.weight(c) * src[r*srcW+c]
				}
			}
			dst[oy*w+ox] = acc * sy.scale * sx.scale
		}
	}
}
