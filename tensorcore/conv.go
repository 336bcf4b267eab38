package tensorcore

import "fmt"

// ConvParams describes a 2-D convolution: stride, zero padding and dilation
// in each spatial dimension, and the number of groups. Zero strides and
// dilations mean 1; zero groups means 1.
type ConvParams struct {
	StrideH, StrideW int
	PadH, PadW       int
	DilH, DilW       int
	Groups           int
}

func (cp ConvParams) norm() ConvParams {
	if cp.StrideH == 0 {
		cp.StrideH = 1
	}
	if cp.StrideW == 0 {
		cp.StrideW = 1
	}
	if cp.DilH == 0 {
		cp.DilH = 1
	}
	if cp.DilW == 0 {
		cp.DilW = 1
	}
	if cp.Groups == 0 {
		cp.Groups = 1
	}
	return cp
}

// ConvGeom is the full geometry of one convolution: input (N, C, H, W),
// weight (O, C/Groups, KH, KW), output (N, O, OH, OW), and the parameters.
type ConvGeom struct {
	N, C, H, W int
	O, KH, KW  int
	OH, OW     int
	ConvParams
}

// NewConvGeom computes the output size of a convolution of an NCHW input of
// shape x with a weight of shape w (O, C/groups, KH, KW). It panics, naming
// both shapes, when they do not fit together.
func NewConvGeom(x, w [4]int, cp ConvParams) ConvGeom {
	cp = cp.norm()
	g := ConvGeom{N: x[0], C: x[1], H: x[2], W: x[3], O: w[0], KH: w[2], KW: w[3], ConvParams: cp}
	if cp.Groups < 1 || g.C%cp.Groups != 0 || g.O%cp.Groups != 0 || w[1] != g.C/cp.Groups {
		panic(fmt.Sprintf("tensorcore: conv: input %v and weight %v do not fit with %d groups", x, w, cp.Groups))
	}
	g.OH = (g.H+2*cp.PadH-cp.DilH*(g.KH-1)-1)/cp.StrideH + 1
	g.OW = (g.W+2*cp.PadW-cp.DilW*(g.KW-1)-1)/cp.StrideW + 1
	if g.OH < 1 || g.OW < 1 {
		panic(fmt.Sprintf("tensorcore: conv: input %v is smaller than weight %v with %+v", x, w, cp))
	}
	return g
}

// Conv2D computes y = conv(x, w) + bias for the geometry g. x is (N, C, H,
// W), w is (O, C/Groups, KH, KW), bias is (O) or nil, y is (N, O, OH, OW) and
// is overwritten.
func Conv2D(p *Pool, g ConvGeom, x, w, bias, y []float32) { conv2DRef(g, x, w, bias, y) }

// Conv2DBackwardData computes gx = dL/dx from gy = dL/dy; gx is
// overwritten. It is also the forward pass of a transposed convolution.
func Conv2DBackwardData(p *Pool, g ConvGeom, gy, w, gx []float32) {
	conv2DBackwardDataRef(g, gy, w, gx)
}

// Conv2DBackwardWeight computes gw = dL/dw and, when gb is not nil, gb =
// dL/dbias, from x and gy; both are overwritten.
func Conv2DBackwardWeight(p *Pool, g ConvGeom, x, gy, gw, gb []float32) {
	conv2DBackwardWeightRef(g, x, gy, gw, gb)
}

// convTaps calls fn for every (output pixel, kernel tap) pair of g that
// reads an input pixel inside the image, with flat indices into x, w and y.
// It is the plain, obviously correct definition the references share.
func convTaps(g ConvGeom, fn func(xi, wi, yi int)) {
	cg, og := g.C/g.Groups, g.O/g.Groups
	for n := 0; n < g.N; n++ {
		for o := 0; o < g.O; o++ {
			grp := o / og
			for oh := 0; oh < g.OH; oh++ {
				for ow := 0; ow < g.OW; ow++ {
					yi := ((n*g.O+o)*g.OH+oh)*g.OW + ow
					for c := 0; c < cg; c++ {
						ci := grp*cg + c
						for kh := 0; kh < g.KH; kh++ {
							ih := oh*g.StrideH - g.PadH + kh*g.DilH
							if ih < 0 || ih >= g.H {
								continue
							}
							for kw := 0; kw < g.KW; kw++ {
								iw := ow*g.StrideW - g.PadW + kw*g.DilW
								if iw < 0 || iw >= g.W {
									continue
								}
								xi := ((n*g.C+ci)*g.H+ih)*g.W + iw
								wi := ((o*cg+c)*g.KH+kh)*g.KW + kw
								fn(xi, wi, yi)
							}
						}
					}
				}
			}
		}
	}
}

func conv2DRef(g ConvGeom, x, w, bias, y []float32) {
	plane := g.OH * g.OW
	for n := 0; n < g.N; n++ {
		for o := 0; o < g.O; o++ {
			var b float32
			if bias != nil {
				b = bias[o]
			}
			dst := y[(n*g.O+o)*plane : (n*g.O+o+1)*plane]
			for i := range dst {
				dst[i] = b
			}
		}
	}
	convTaps(g, func(xi, wi, yi int) { y[yi] += x[xi] * w[wi] })
}

func conv2DBackwardDataRef(g ConvGeom, gy, w, gx []float32) {
	clear(gx[:g.N*g.C*g.H*g.W])
	convTaps(g, func(xi, wi, yi int) { gx[xi] += gy[yi] * w[wi] })
}

func conv2DBackwardWeightRef(g ConvGeom, x, gy, gw, gb []float32) {
	clear(gw[:g.O*(g.C/g.Groups)*g.KH*g.KW])
	convTaps(g, func(xi, wi, yi int) { gw[wi] += x[xi] * gy[yi] })
	if gb != nil {
		plane := g.OH * g.OW
		for o := 0; o < g.O; o++ {
			var s float32
			for n := 0; n < g.N; n++ {
				s += vecSumRef(gy[(n*g.O+o)*plane : (n*g.O+o+1)*plane])
			}
			gb[o] = s
		}
	}
}
