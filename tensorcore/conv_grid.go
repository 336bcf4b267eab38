package tensorcore

// Stride-1 convolutions on a padded grid.
//
// With stride 1, the im2col matrix of an input padded to Hp×Wp has a
// simple shape when its columns run over the padded grid (oh < OH, all
// Wp columns) instead of the OH×OW output: row (c, kh, kw) of it is the
// padded image shifted by kkOff = c·Hp·Wp + kh·dh·Wp + kw·dw. Packing a
// GEMM panel is then a contiguous copy per row. The Wp−OW extra columns per
// output row are computed and dropped when the grid output is compacted
// into NCHW.

// packGrid packs rows [p0, p0+kc) and grid columns [j0, j0+nn) of the
// im2col matrix into one B micro-panel: B(kk, j) = x[(j/plane)*img +
// kkOff[kk] + j%plane].
func (cv *convSrc) packGrid(panel []float32, nr, p0, kc, j0, nn int) {
	n, r := j0/cv.plane, j0%cv.plane
	offs := cv.kkOff[p0 : p0+kc]
	x := cv.x
	if nn == nr && r+nr <= cv.plane {
		gatherRows(panel, x[n*cv.img+r:], offs, nr)
		return
	}
	// The panel spans image boundaries (or is a partial one): copy per
	// image segment.
	for p, off := range offs {
		dst := panel[p*nr : p*nr+nr]
		nseg, rseg := n, r
		for c := 0; c < nn; {
			seg := min(nn-c, cv.plane-rseg)
			copy(dst[c:c+seg], x[nseg*cv.img+rseg+off:])
			c += seg
			nseg++
			rseg = 0
		}
		clear(dst[nn:])
	}
}

// gridFits reports whether g runs on the padded grid: stride 1 and
// non-negative padding.
func gridFits(g ConvGeom) bool {
	return g.StrideH == 1 && g.StrideW == 1 && g.PadH >= 0 && g.PadW >= 0
}

// padInput copies x (N, C, H, W) into s.convX as (N, C, H+2ph, W+2pw) with
// zero borders and a zero tail of tail floats, and fills s.convK with the
// offsets of the im2col rows of one group (cg channels). It returns the
// padded buffer and the offsets.
func padInput(s *scratch, g ConvGeom, x []float32, cg, tail int) ([]float32, []int) {
	hp, wp := g.H+2*g.PadH, g.W+2*g.PadW
	n := g.N * g.C * hp * wp
	s.convX = grow(s.convX, n+tail)
	xp := s.convX
	for nc := 0; nc < g.N*g.C; nc++ {
		dst := xp[nc*hp*wp : (nc+1)*hp*wp]
		src := x[nc*g.H*g.W : (nc+1)*g.H*g.W]
		clear(dst[:g.PadH*wp])
		for h := 0; h < g.H; h++ {
			row := dst[(g.PadH+h)*wp : (g.PadH+h+1)*wp]
			clear(row[:g.PadW])
			copy(row[g.PadW:g.PadW+g.W], src[h*g.W:(h+1)*g.W])
			clear(row[g.PadW+g.W:])
		}
		clear(dst[(g.PadH+g.H)*wp:])
	}
	clear(xp[n:])
	khw := g.KH * g.KW
	s.convK = growInts(s.convK, cg*khw)
	for c := 0; c < cg; c++ {
		for kh := 0; kh < g.KH; kh++ {
			for kw := 0; kw < g.KW; kw++ {
				s.convK[(c*g.KH+kh)*g.KW+kw] = c*hp*wp + kh*g.DilH*wp + kw*g.DilW
			}
		}
	}
	return xp, s.convK
}

// gridForward overwrites y with conv(x, w) + bias (bias may be nil) for a
// geometry that gridFits.
func gridForward(ks *kernelSet, p *Pool, g ConvGeom, x, w, bias, y []float32) {
	s := p.scratchFor(0)
	defer p.releaseScratch(s)
	cg, og := g.C/g.Groups, g.O/g.Groups
	kdim := cg * g.KH * g.KW
	hp, wp := g.H+2*g.PadH, g.W+2*g.PadW
	plane := g.OH * wp
	// The last grid columns of the last image read up to (KW-1)*dw floats
	// past the padded input, and a packed panel up to a panel width more.
	xp, kkOff := padInput(s, g, x, cg, (g.KW-1)*g.DilW+gemmMaxNR)
	xb := roundGridBF16(p, s, xp)
	s.convY = grow(s.convY, g.N*g.O*plane)
	yg := s.convY
	for gi := 0; gi < g.Groups; gi++ {
		a := gemmOperand{kind: operandDense, d: w[gi*og*kdim:], ld: kdim}
		b := gemmOperand{kind: operandGrid, cv: convSrc{x: xp[gi*cg*hp*wp:], plane: plane, img: g.C * hp * wp, kkOff: kkOff}}
		if xb != nil {
			b.cv.x16 = xb[gi*cg*hp*wp:]
		}
		out := gemmOut{d: yg, rs: plane, plane: plane, img: g.O * plane, rowOffset: gi * og}
		sgemmWith(ks, p, og, g.N*plane, kdim, 1, a, b, out, 0)
	}
	// Compact the grid into NCHW, adding the bias.
	P := g.OH * g.OW
	for no := 0; no < g.N*g.O; no++ {
		var b float32
		if bias != nil {
			b = bias[no%g.O]
		}
		src := yg[no*plane : (no+1)*plane]
		dst := y[no*P : (no+1)*P]
		for oh := 0; oh < g.OH; oh++ {
			d := dst[oh*g.OW : (oh+1)*g.OW]
			sr := src[oh*wp : oh*wp+g.OW]
			if bias == nil {
				copy(d, sr)
				continue
			}
			for i, v := range sr {
				d[i] = v + b
			}
		}
	}
}

// dotChunk is the length of the pixel blocks gridBackwardWeight sums over
// at a time, so that a tile's rows stay in L1.
const dotChunk = 1024

// dotWJob computes the weight gradient of one group as tiles of dot
// products between rows of the gradient grid (gy) and shifted rows of the
// padded input, in fp32 (T float32) or on bf16 copies of both (T uint16,
// see gridBackwardWeightBF16); parts own disjoint ranges of column tiles.
type dotWJob[T float32 | uint16] struct {
	dtR, dtC           int // the tile's rows and columns (kernelSet.dtR, dtC)
	dotTile            func(n int, a *T, lda int, b *T, boffs *int, out *float32, ldo int)
	gyg                []T       // (N, opad, planeP) gradient on the grid, zero off the image
	xp                 []T       // padded input from the group's first channel
	offs               []int     // (kpad) im2col row offsets into xp
	out                []float32 // (opad × kpad) result
	n, opad, kpad, img int
	planeP             int
}

func (t *dotWJob[T]) run(_, lo, hi int) {
	R, C := t.dtR, t.dtC
	for n := 0; n < t.n; n++ {
		for j0 := 0; j0 < t.planeP; j0 += dotChunk {
			jn := min(dotChunk, t.planeP-j0)
			for ot := 0; ot < t.opad; ot += R {
				a := t.gyg[(n*t.opad+ot)*t.planeP+j0:]
				b := t.xp[n*t.img+j0:]
				for kt := lo; kt < hi; kt++ {
					t.dotTile(jn, &a[0], t.planeP, &b[0], &t.offs[kt*C], &t.out[ot*t.kpad+kt*C], t.kpad)
				}
			}
		}
	}
}

// layGradGrid writes image n's gradient of group gi's output channels
// into dst, opad rows of planeP: each output row at its place on the padded
// grid (rows of wp), zeros in the grid's extra columns, past the plane and
// in the rows beyond the group's channels.
func layGradGrid(dst, gy []float32, g ConvGeom, gi, n, opad, wp, planeP int) {
	og, P, plane := g.O/g.Groups, g.OH*g.OW, g.OH*wp
	for o := 0; o < opad; o++ {
		d := dst[o*planeP : (o+1)*planeP]
		if o >= og {
			clear(d)
			continue
		}
		src := gy[(n*g.O+gi*og+o)*P:][:P]
		for oh := 0; oh < g.OH; oh++ {
			copy(d[oh*wp:oh*wp+g.OW], src[oh*g.OW:(oh+1)*g.OW])
			clear(d[oh*wp+g.OW : (oh+1)*wp])
		}
		clear(d[plane:])
	}
}

// gridBackwardWeight overwrites gw with dL/dw for a geometry that
// gridFits: gW(O/G × C/G·KH·KW) = gY · im2col(x)ᵀ per group. Both operands
// are contiguous along the pixels, so it runs as tiles of dot products
// over the padded grid, with no packing: the gradient is laid on the grid
// with zeros in its extra columns, and each im2col row is the padded input
// shifted by its offset. Sums run over images, then pixel blocks, in a
// fixed order.
func gridBackwardWeight(ks *kernelSet, p *Pool, g ConvGeom, x, gy, gw []float32) {
	if p != nil && p.bf16.ks != nil {
		backwardWeightBF16(p.bf16.ks, p, g, x, gy, gw)
		return
	}
	s := p.scratchFor(0)
	defer p.releaseScratch(s)
	R, C := ks.dtR, ks.dtC
	cg, og := g.C/g.Groups, g.O/g.Groups
	kdim := cg * g.KH * g.KW
	hp, wp := g.H+2*g.PadH, g.W+2*g.PadW
	plane := g.OH * wp
	planeP := (plane + 15) &^ 15
	opad, kpad := (og+R-1)/R*R, (kdim+C-1)/C*C
	xp, kkOff := padInput(s, g, x, cg, planeP-plane+(g.KW-1)*g.DilW+16)
	s.cols = growInts(s.cols, kpad)
	offs := s.cols
	copy(offs, kkOff)
	clear(offs[kdim:])
	s.convY = grow(s.convY, g.N*opad*planeP)
	gyg := s.convY
	s.conv = grow(s.conv, opad*kpad)
	out := s.conv
	for gi := 0; gi < g.Groups; gi++ {
		for n := 0; n < g.N; n++ {
			layGradGrid(gyg[n*opad*planeP:(n+1)*opad*planeP], gy, g, gi, n, opad, wp, planeP)
		}
		clear(out)
		job := dotWJob[float32]{dtR: R, dtC: C, dotTile: ks.dotTile, gyg: gyg, xp: xp[gi*cg*hp*wp:], offs: offs, out: out,
			n: g.N, opad: opad, kpad: kpad, img: g.C * hp * wp, planeP: planeP}
		tiles := kpad / C
		if p.Workers() > 1 && g.N*opad*kpad*planeP >= gemmSerialFlops {
			p.dotw = job
			p.forTask(tiles, 1, &p.dotw)
			p.dotw = dotWJob[float32]{}
		} else {
			job.run(0, 0, tiles)
		}
		for o := 0; o < og; o++ {
			copy(gw[(gi*og+o)*kdim:(gi*og+o+1)*kdim], out[o*kpad:o*kpad+kdim])
		}
	}
}
