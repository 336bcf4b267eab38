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
//
// It runs as one GEMM per group, Y(O/G × N·OH·OW) = W(O/G × C/G·KH·KW) ·
// im2col(x), with the im2col matrix never materialized: its panels are
// packed straight from x (with stride 1, from a zero-padded copy of x, see
// conv_grid.go). Deterministic for a given p.Workers().
func Conv2D(p *Pool, g ConvGeom, x, w, bias, y []float32) {
	conv2DWith(kern, p, g, x, w, bias, y)
}

// Conv2DBackwardData computes gx = dL/dx from gy = dL/dy; gx is
// overwritten. It is also the forward pass of a transposed convolution.
//
// With stride 1 it is a convolution of gy with the flipped, transposed
// weights; with larger strides it runs per image as a GEMM into columns
// followed by col2im.
func Conv2DBackwardData(p *Pool, g ConvGeom, gy, w, gx []float32) {
	conv2DBackwardDataWith(kern, p, g, gy, w, gx)
}

// Conv2DBackwardWeight computes gw = dL/dw and, when gb is not nil, gb =
// dL/dbias, from x and gy; both are overwritten.
//
// With stride 1 it runs as tiles of dot products between gy and shifted
// rows of a zero-padded copy of x (conv_grid.go); otherwise as one GEMM per
// group, gWᵀ(C/G·KH·KW × O/G) = im2col(x) · gYᵀ. Sums over the batch and
// pixels run in a fixed order for a given p.Workers(). With stride 1, an
// infinite x may turn entries of gw that the reference makes ±Inf into NaN
// (the padded grid multiplies x by zero past the image edges).
func Conv2DBackwardWeight(p *Pool, g ConvGeom, x, gy, gw, gb []float32) {
	conv2DBackwardWeightWith(kern, p, g, x, gy, gw, gb)
}

func (g ConvGeom) checkLens(op string, x, w, y []float32) {
	nx, nw, ny := g.N*g.C*g.H*g.W, g.O*(g.C/g.Groups)*g.KH*g.KW, g.N*g.O*g.OH*g.OW
	if len(x) < nx || len(w) < nw || len(y) < ny {
		panic(fmt.Sprintf("tensorcore: %s: geometry %+v needs x %d, w %d, y %d elements, got %d, %d, %d",
			op, g, nx, nw, ny, len(x), len(w), len(y)))
	}
}

// convSrc describes an operand read from an NCHW tensor x with C channels
// of H×W: either the im2col matrix of a convolution (rows: channel c of the
// group starting at c0, tap kh, kw; columns: image n, output pixel oh, ow)
// or, for packPlanesT, planes of plane floats viewed as (pixels × channels).
type convSrc struct {
	x                      []float32
	C, H, W                int
	c0                     int
	KH, KW                 int
	sh, sw, ph, pw, dh, dw int
	OH, OW                 int
	plane                  int
	img                    int   // stride between images in x (grid and planes operands)
	gw                     int   // row stride of the padded grid (grid operands)
	kkOff                  []int // offset in x of each im2col row (grid operands)

	x16 []uint16 // x rounded to bf16, or nil (grid operands of a BF16 GEMM)
}

func im2colSrc(x []float32, g ConvGeom, c0 int) convSrc {
	return convSrc{x: x, C: g.C, H: g.H, W: g.W, c0: c0, KH: g.KH, KW: g.KW,
		sh: g.StrideH, sw: g.StrideW, ph: g.PadH, pw: g.PadW, dh: g.DilH, dw: g.DilW,
		OH: g.OH, OW: g.OW}
}

// packIm2col packs rows [p0, p0+kc) and columns [j0, j0+nn) (nn <= nr)
// of the im2col matrix into one B micro-panel, zero-padded to nr columns.
func (cv *convSrc) packIm2col(s *scratch, panel []float32, nr, p0, kc, j0, nn int) {
	// Per column: image base offset, first input row and column.
	s.cols = growInts(s.cols, 4*nr)
	base, ihs, iws, run := s.cols[:nr], s.cols[nr:2*nr], s.cols[2*nr:3*nr], s.cols[3*nr:4*nr]
	P := cv.OH * cv.OW
	n, pix := j0/P, j0%P
	oh, ow := pix/cv.OW, pix%cv.OW
	for c := 0; c < nn; c++ {
		base[c] = n * cv.C * cv.H * cv.W
		ihs[c] = oh*cv.sh - cv.ph
		iws[c] = ow*cv.sw - cv.pw
		if ow++; ow == cv.OW {
			ow = 0
			if oh++; oh == cv.OH {
				oh = 0
				n++
			}
		}
	}
	// Runs of columns on one output row: contiguous in x when sw == 1.
	runs := 0
	if cv.sw == 1 {
		for c := 0; c < nn; {
			e := c + 1
			for e < nn && base[e] == base[c] && ihs[e] == ihs[c] {
				e++
			}
			run[runs] = e
			runs++
			c = e
		}
	}
	khw := cv.KH * cv.KW
	hw := cv.H * cv.W
	for p := 0; p < kc; p++ {
		kk := p0 + p
		c, r := kk/khw, kk%khw
		dy, dx := (r/cv.KW)*cv.dh, (r%cv.KW)*cv.dw
		chOff := (cv.c0 + c) * hw
		dst := panel[p*nr : p*nr+nr]
		if runs > 0 {
			c0 := 0
			for ri := 0; ri < runs; ri++ {
				c1 := run[ri]
				ih := ihs[c0] + dy
				seg := dst[c0:c1]
				if ih < 0 || ih >= cv.H {
					clear(seg)
					c0 = c1
					continue
				}
				iw0 := iws[c0] + dx
				lo, hi := max(0, -iw0), min(len(seg), cv.W-iw0)
				if hi <= lo {
					clear(seg)
					c0 = c1
					continue
				}
				clear(seg[:lo])
				off := base[c0] + chOff + ih*cv.W + iw0
				copy(seg[lo:hi], cv.x[off+lo:off+hi])
				clear(seg[hi:])
				c0 = c1
			}
		} else {
			for c := 0; c < nn; c++ {
				ih, iw := ihs[c]+dy, iws[c]+dx
				if uint(ih) < uint(cv.H) && uint(iw) < uint(cv.W) {
					dst[c] = cv.x[base[c]+chOff+ih*cv.W+iw]
				} else {
					dst[c] = 0
				}
			}
		}
		clear(dst[nn:])
	}
}

// packIm2colRows packs rows [i0, i0+mm) (mm <= mr) and columns [p0,
// p0+kc) of the im2col matrix into one A micro-panel, zero-padded to mr
// rows.
func (cv *convSrc) packIm2colRows(panel []float32, mr, i0, mm, p0, kc int) {
	khw := cv.KH * cv.KW
	hw := cv.H * cv.W
	P := cv.OH * cv.OW
	for r := 0; r < mr; r++ {
		if r >= mm {
			for p := 0; p < kc; p++ {
				panel[p*mr+r] = 0
			}
			continue
		}
		kk := i0 + r
		c, t := kk/khw, kk%khw
		dy, dx := (t/cv.KW)*cv.dh, (t%cv.KW)*cv.dw
		chOff := (cv.c0 + c) * hw
		n, pix := p0/P, p0%P
		oh, ow := pix/cv.OW, pix%cv.OW
		for p := 0; p < kc; {
			seg := min(kc-p, cv.OW-ow)
			ih := oh*cv.sh - cv.ph + dy
			out := panel[p*mr+r:]
			if ih < 0 || ih >= cv.H {
				for q := 0; q < seg; q++ {
					out[q*mr] = 0
				}
			} else {
				rowOff := n*cv.C*hw + chOff + ih*cv.W
				iw := ow*cv.sw - cv.pw + dx
				for q := 0; q < seg; q++ {
					if uint(iw) < uint(cv.W) {
						out[q*mr] = cv.x[rowOff+iw]
					} else {
						out[q*mr] = 0
					}
					iw += cv.sw
				}
			}
			p += seg
			ow = 0
			if oh++; oh == cv.OH {
				oh = 0
				n++
			}
		}
	}
}

// packPlanesT packs rows [p0, p0+kc) and columns [j0, j0+nn) of the matrix
// B(p, j) = x[(p/plane)*C*plane + (c0+j)*plane + p%plane] (pixels of an
// NCHW tensor against its channels) into one B micro-panel.
func (cv *convSrc) packPlanesT(panel []float32, nr, p0, kc, j0, nn int) {
	P := cv.plane
	for cc := 0; cc < nr; cc++ {
		if cc >= nn {
			for p := 0; p < kc; p++ {
				panel[p*nr+cc] = 0
			}
			continue
		}
		ch := cv.c0 + j0 + cc
		n, pix := p0/P, p0%P
		for p := 0; p < kc; {
			seg := min(kc-p, P-pix)
			src := cv.x[(n*cv.C+ch)*P+pix:][:seg]
			out := panel[p*nr+cc:]
			for q, v := range src {
				out[q*nr] = v
			}
			p += seg
			pix = 0
			n++
		}
	}
}

func conv2DWith(ks *kernelSet, p *Pool, g ConvGeom, x, w, bias, y []float32) {
	g.checkLens("conv2d", x, w, y)
	if gridFits(g) {
		gridForward(ks, p, g, x, w, bias, y)
		return
	}
	convForwardGemm(ks, p, g, x, w, y)
	if bias == nil {
		return
	}
	plane := g.OH * g.OW
	for n := 0; n < g.N; n++ {
		for o := 0; o < g.O; o++ {
			b := bias[o]
			dst := y[(n*g.O+o)*plane : (n*g.O+o+1)*plane]
			for i := range dst {
				dst[i] += b
			}
		}
	}
}

// convForwardGemm overwrites y with conv(x, w) (no bias). g's padding may
// be negative (a crop), as used by the backward pass.
func convForwardGemm(ks *kernelSet, p *Pool, g ConvGeom, x, w, y []float32) {
	cg, og := g.C/g.Groups, g.O/g.Groups
	kdim := cg * g.KH * g.KW
	P := g.OH * g.OW
	for gi := 0; gi < g.Groups; gi++ {
		a := gemmOperand{kind: operandDense, d: w[gi*og*kdim:], ld: kdim}
		b := gemmOperand{kind: operandIm2col, cv: im2colSrc(x, g, gi*cg)}
		out := gemmOut{d: y, rs: P, plane: P, img: g.O * P, rowOffset: gi * og}
		sgemmWith(ks, p, og, g.N*P, kdim, 1, a, b, out, 0)
	}
}

func conv2DBackwardDataWith(ks *kernelSet, p *Pool, g ConvGeom, gy, w, gx []float32) {
	g.checkLens("conv2d backward data", gx, w, gy)
	cg, og := g.C/g.Groups, g.O/g.Groups
	khw := g.KH * g.KW
	s := p.scratchFor(0)
	defer p.releaseScratch(s)
	if g.StrideH == 1 && g.StrideW == 1 {
		// gx = conv(gy, w') with w'[c, o, kh, kw] = w[o, c, KH-1-kh,
		// KW-1-kw] per group, padding (K-1)*dil - pad, output H×W.
		s.conv = grow(s.conv, g.O*cg*khw)
		wt := s.conv
		for gi := 0; gi < g.Groups; gi++ {
			for o := 0; o < og; o++ {
				for c := 0; c < cg; c++ {
					src := w[((gi*og+o)*cg+c)*khw:][:khw]
					dst := wt[((gi*cg+c)*og+o)*khw:][:khw]
					for t, v := range src {
						dst[khw-1-t] = v
					}
				}
			}
		}
		tg := ConvGeom{N: g.N, C: g.O, H: g.OH, W: g.OW, O: g.C, KH: g.KH, KW: g.KW, OH: g.H, OW: g.W,
			ConvParams: ConvParams{StrideH: 1, StrideW: 1,
				PadH: (g.KH-1)*g.DilH - g.PadH, PadW: (g.KW-1)*g.DilW - g.PadW,
				DilH: g.DilH, DilW: g.DilW, Groups: g.Groups}}
		if gridFits(tg) {
			gridForward(ks, p, tg, gy, wt, nil, gx)
		} else {
			convForwardGemm(ks, p, tg, gy, wt, gx)
		}
		return
	}
	// General stride: per image and group, cols = wᵀ·gy, then col2im.
	kdim := cg * khw
	P := g.OH * g.OW
	s.conv = grow(s.conv, kdim*P)
	cols := s.conv
	clear(gx[:g.N*g.C*g.H*g.W])
	for n := 0; n < g.N; n++ {
		for gi := 0; gi < g.Groups; gi++ {
			a := gemmOperand{kind: operandDenseT, d: w[gi*og*kdim:], ld: kdim}
			b := gemmOperand{kind: operandDense, d: gy[(n*g.O+gi*og)*P:], ld: P}
			sgemmWith(ks, p, kdim, P, og, 1, a, b, gemmOut{d: cols, rs: P, plane: P}, 0)
			col2imAdd(g, cols, gx[(n*g.C+gi*cg)*g.H*g.W:], cg)
		}
	}
}

// col2imAdd adds the (cg·KH·KW × OH·OW) column matrix cols into the cg
// channels of one image starting at gx.
func col2imAdd(g ConvGeom, cols, gx []float32, cg int) {
	P := g.OH * g.OW
	for c := 0; c < cg; c++ {
		for kh := 0; kh < g.KH; kh++ {
			for kw := 0; kw < g.KW; kw++ {
				row := cols[((c*g.KH+kh)*g.KW+kw)*P:][:P]
				for oh := 0; oh < g.OH; oh++ {
					ih := oh*g.StrideH - g.PadH + kh*g.DilH
					if ih < 0 || ih >= g.H {
						continue
					}
					dst := gx[(c*g.H+ih)*g.W:][:g.W]
					src := row[oh*g.OW:][:g.OW]
					for ow, v := range src {
						iw := ow*g.StrideW - g.PadW + kw*g.DilW
						if uint(iw) < uint(g.W) {
							dst[iw] += v
						}
					}
				}
			}
		}
	}
}

func conv2DBackwardWeightWith(ks *kernelSet, p *Pool, g ConvGeom, x, gy, gw, gb []float32) {
	g.checkLens("conv2d backward weight", x, gw, gy)
	if gridFits(g) {
		gridBackwardWeight(ks, p, g, x, gy, gw)
		convBiasGrad(ks, g, gy, gb)
		return
	}
	cg, og := g.C/g.Groups, g.O/g.Groups
	kdim := cg * g.KH * g.KW
	P := g.OH * g.OW
	s := p.scratchFor(0)
	defer p.releaseScratch(s)
	s.conv = grow(s.conv, kdim*og)
	gwt := s.conv // (kdim × og)
	for gi := 0; gi < g.Groups; gi++ {
		a := gemmOperand{kind: operandIm2colRows, cv: im2colSrc(x, g, gi*cg)}
		bs := convSrc{x: gy, C: g.O, c0: gi * og, plane: P}
		b := gemmOperand{kind: operandPlanesT, cv: bs}
		sgemmWith(ks, p, kdim, og, g.N*P, 1, a, b, gemmOut{d: gwt, rs: og, plane: og}, 0)
		for o := 0; o < og; o++ {
			dst := gw[(gi*og+o)*kdim:][:kdim]
			for kk := range dst {
				dst[kk] = gwt[kk*og+o]
			}
		}
	}
	convBiasGrad(ks, g, gy, gb)
}

// convBiasGrad sets gb[o] to the sum of gy over the batch and pixels of
// channel o; gb may be nil.
func convBiasGrad(ks *kernelSet, g ConvGeom, gy, gb []float32) {
	if gb == nil {
		return
	}
	P := g.OH * g.OW
	for o := 0; o < g.O; o++ {
		var sum float32
		for n := 0; n < g.N; n++ {
			sum += ks.sum(gy[(n*g.O+o)*P : (n*g.O+o+1)*P])
		}
		gb[o] = sum
	}
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
