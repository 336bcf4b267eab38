package dataset

import (
	"math"
	"math/rand/v2"
)

// Distortion is a random planar affine distortion of digit images, the
// training distortions of LeCun et al. 1998 (section III.C): a horizontal
// and vertical translation, a scaling, a squeeze (the width stretched by
// s and the height by 1/s) and a horizontal shear. Each is drawn
// uniformly, per sample and epoch, within the bounds below; the zero
// value distorts nothing.
type Distortion struct {
	Shift   float64 // translation, in pixels of the stored image, up to ±Shift on each axis
	Scale   float64 // scaling by a factor in [1−Scale, 1+Scale]
	Squeeze float64 // squeeze factor s in [1−Squeeze, 1+Squeeze]
	Shear   float64 // horizontal shear x += k·y, k in [−Shear, Shear]
}

// PaperDistortion is the distortion the LeNet-5 experiments use. The paper
// gives no bounds; these keep a digit recognizable: ±2 pixels, ±10%
// scale and squeeze, shear up to ±0.2.
var PaperDistortion = Distortion{Shift: 2, Scale: 0.1, Squeeze: 0.1, Shear: 0.2}

// affine is the map from an output pixel (x, y), both measured from the
// image's centre, to the source point it samples: src = A·(x, y) + t.
type affine struct{ a, b, c, d, tx, ty float64 }

// draw picks the distortion of sample index in epoch of a run seeded seed:
// a pure function of the three, so resumed and re-sharded runs see the
// same images.
func (ds Distortion) draw(seed uint64, epoch, index int) affine {
	var p rand.PCG
	p.Seed(seed^0x64697374, uint64(epoch)<<32|uint64(uint32(index))) // stream "dist"
	u := func(r float64) float64 {                                   // uniform in [−r, r]
		return r * (2*float64(p.Uint64()>>11)/(1<<53) - 1)
	}
	dx, dy := u(ds.Shift), u(ds.Shift)
	scale := 1 + u(ds.Scale)
	sq := 1 + u(ds.Squeeze)
	shear := u(ds.Shear)
	// Forward map: p' = S·H·p + t with S = diag(scale·sq, scale/sq) and
	// H = [[1, shear], [0, 1]]. Sampling needs its inverse.
	fa, fb, fc, fd := scale*sq, scale*sq*shear, 0.0, scale/sq
	det := fa*fd - fb*fc
	a, b, c, d := fd/det, -fb/det, -fc/det, fa/det
	return affine{a: a, b: b, c: c, d: d, tx: -(a*dx + b*dy), ty: -(c*dx + d*dy)}
}

// warp writes into dst (h·w floats) the image src (h·w, row-major) under
// m, sampled bilinearly about the image's centre; points outside src take
// the value bg (the background).
func (m affine) warp(dst, src []float32, h, w int, bg float32) {
	cx, cy := float64(w-1)/2, float64(h-1)/2
	at := func(r, c int) float32 {
		if r < 0 || r >= h || c < 0 || c >= w {
			return bg
		}
		return src[r*w+c]
	}
	for oy := range h {
		y := float64(oy) - cy
		for ox := range w {
			x := float64(ox) - cx
			sx := m.a*x + m.b*y + m.tx + cx
			sy := m.c*x + m.d*y + m.ty + cy
			x0, y0 := math.Floor(sx), math.Floor(sy)
			fx, fy := float32(sx-x0), float32(sy-y0)
			c0, r0 := int(x0), int(y0)
			top := at(r0, c0)*(1-fx) + at(r0, c0+1)*fx
			bot := at(r0+1, c0)*(1-fx) + at(r0+1, c0+1)*fx
			dst[oy*w+ox] = top*(1-fy) + bot*fy
		}
	}
}
