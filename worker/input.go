package worker

import (
	"fmt"

	"github.com/ringtrain/ringtrain/dataset"
)

// input turns data set images into the model's input: as they are when the
// sizes match, or resampled (area-weighted) when the model wants a smaller
// image, as the 1990 ConvNet's 16×16 digits.
type input struct {
	c, h, w     int // the model's input
	srcH, srcW  int // the data set's images
	full        []float32
	wy, wx      []span // resampling spans per output row/column
	needsResize bool
}

// span is the source range of one output pixel along one axis, with the
// weights of its first and last source pixels (the ones in between weigh 1).
type span struct {
	lo, hi          int
	wLo, wHi, scale float32
}

func newInput(shape []int, d *dataset.MNIST) (*input, error) {
	if len(shape) != 3 || shape[0] != 1 {
		return nil, fmt.Errorf("worker: the model wants input %v; MNIST gives 1×%d×%d images", shape, d.Rows, d.Cols)
	}
	in := &input{c: 1, h: shape[1], w: shape[2], srcH: d.Rows, srcW: d.Cols}
	if in.h > d.Rows || in.w > d.Cols {
		return nil, fmt.Errorf("worker: the model wants %d×%d input; MNIST images are %d×%d", in.h, in.w, d.Rows, d.Cols)
	}
	if in.h != d.Rows || in.w != d.Cols {
		in.needsResize = true
		in.wy = spans(d.Rows, in.h)
		in.wx = spans(d.Cols, in.w)
	}
	return in, nil
}

// spans splits n source pixels into m output pixels of equal area.
func spans(n, m int) []span {
	out := make([]span, m)
	r := float64(n) / float64(m)
	for i := range out {
		a, b := float64(i)*r, float64(i+1)*r
		lo, hi := int(a), int(b-1e-9)
		s := span{lo: lo, hi: hi, scale: float32(1 / r)}
		if lo == hi {
			s.wLo = float32(b - a)
		} else {
			s.wLo = float32(float64(lo+1) - a)
			s.wHi = float32(b - float64(hi))
		}
		out[i] = s
	}
	return out
}

func (s span) weight(i int) float32 {
	switch i {
	case s.lo:
		return s.wLo
	case s.hi:
		return s.wHi
	}
	return 1
}

// size is the number of floats of one input image.
func (in *input) size() int { return in.c * in.h * in.w }

// shape is the NCHW shape of a batch of n images.
func (in *input) shape(n int) []int { return []int{n, in.c, in.h, in.w} }

// batch writes the images idx of d into x (normalized, resampled if
// needed) and their labels into y.
func (in *input) batch(d *dataset.MNIST, idx []int, x []float32, y []int) {
	x, y = x[:len(idx)*in.size()], y[:len(idx)]
	if !in.needsResize {
		d.Batch(idx, x, y)
		return
	}
	src := in.srcH * in.srcW
	if len(in.full) < src {
		in.full = make([]float32, src)
	}
	for i := range idx {
		d.Batch(idx[i:i+1], in.full, y[i:i+1])
		dst := x[i*in.size() : (i+1)*in.size()]
		for oy, sy := range in.wy {
			for ox, sx := range in.wx {
				var acc float32
				for r := sy.lo; r <= sy.hi; r++ {
					wr := sy.weight(r)
					for c := sx.lo; c <= sx.hi; c++ {
						acc += wr * sx.weight(c) * in.full[r*in.srcW+c]
					}
				}
				dst[oy*in.w+ox] = acc * sy.scale * sx.scale
			}
		}
	}
}
