package dataset

import (
	"fmt"
	"math"
	"testing"
)

// sameBits reports the first index where a and b differ bit for bit.
func sameBits(a, b []float32) (int, bool) {
	if len(a) != len(b) {
		return -1, false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i, false
		}
	}
	return 0, true
}

// The training loop's input resampler before it moved here (worker/input.go),
// kept verbatim but for names as the reference Fill's resampling must match
// bit for bit.

type refInput struct {
	c, h, w     int
	srcH, srcW  int
	full        []float32
	wy, wx      []refSpan
	needsResize bool
}

type refSpan struct {
	lo, hi          int
	wLo, wHi, scale float32
}

func newRefInput(shape []int, d *MNIST) (*refInput, error) {
	if len(shape) != 3 || shape[0] != 1 {
		return nil, fmt.Errorf("worker: the model wants input %v; MNIST gives 1×%d×%d images", shape, d.Rows, d.Cols)
	}
	in := &refInput{c: 1, h: shape[1], w: shape[2], srcH: d.Rows, srcW: d.Cols}
	if in.h > d.Rows || in.w > d.Cols {
		return nil, fmt.Errorf("worker: the model wants %d×%d input; MNIST images are %d×%d", in.h, in.w, d.Rows, d.Cols)
	}
	if in.h != d.Rows || in.w != d.Cols {
		in.needsResize = true
		in.wy = refSpans(d.Rows, in.h)
		in.wx = refSpans(d.Cols, in.w)
	}
	return in, nil
}

func refSpans(n, m int) []refSpan {
	out := make([]refSpan, m)
	r := float64(n) / float64(m)
	for i := range out {
		a, b := float64(i)*r, float64(i+1)*r
		lo, hi := int(a), int(b-1e-9)
		s := refSpan{lo: lo, hi: hi, scale: float32(1 / r)}
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

func (s refSpan) weight(i int) float32 {
	switch i {
	case s.lo:
		return s.wLo
	case s.hi:
		return s.wHi
	}
	return 1
}

func (in *refInput) size() int { return in.c * in.h * in.w }

func (in *refInput) batch(d *MNIST, idx []int, x []float32, y []int) {
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

// TestResampleAreaLarge: outputs wider than the spans kept on the stack
// take the general path, with the same arithmetic as the reference.
func TestResampleAreaLarge(t *testing.T) {
	const srcH, srcW = 90, 150
	src := make([]float32, srcH*srcW)
	for i := range src {
		src[i] = float32(math.Sin(float64(i) * 0.37))
	}
	for _, hw := range [][2]int{{70, 100}, {90, 65}, {3, 149}} {
		h, w := hw[0], hw[1]
		want := make([]float32, h*w)
		for oy, sy := range refSpans(srcH, h) {
			for ox, sx := range refSpans(srcW, w) {
				var acc float32
				for r := sy.lo; r <= sy.hi; r++ {
					wr := sy.weight(r)
					for c := sx.lo; c <= sx.hi; c++ {
						acc += wr * sx.weight(c) * src[r*srcW+c]
					}
				}
				want[oy*w+ox] = acc * sy.scale * sx.scale
			}
		}
		got := make([]float32, h*w)
		resampleArea(got, h, w, src, srcH, srcW)
		if i, ok := sameBits(got, want); !ok {
			t.Fatalf("%dx%d: x[%d] = %v, the reference gives %v", h, w, i, got[i], want[i])
		}
	}
}
