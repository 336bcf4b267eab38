package tensorcore

// bf16GemmWeightPixels is the output size (OH·OW) under which the BF16
// weight gradient of a stride-1 convolution runs as a GEMM rather than as
// dot tiles on the grid. ResNet-18 layers at batch 16, one thread, bf16
// cpu-GFLOP/s (tiles / GEMM): 64@56 153 / 60, 128@28 159 / 91, 256@14
// 118 / 122, 512@7 54 / 104.
const bf16GemmWeightPixels = 256

// backwardWeightBF16 overwrites gw with dL/dw in BF16 for a geometry that
// gridFits, by dot tiles on the grid or, for small images, by a GEMM.
func backwardWeightBF16(ks *bf16KernelSet, p *Pool, g ConvGeom, x, gy, gw []float32) {
	if g.OH*g.OW < bf16GemmWeightPixels {
		gemmBackwardWeightBF16(ks, p, g, x, gy, gw)
		return
	}
	gridBackwardWeightBF16(ks, p, g, x, gy, gw)
}

// gridBackwardWeightBF16 is gridBackwardWeight in BF16: the gradient grid
// and the padded input are rounded to bf16 once (each element then serves
// O/G or C/G·KH·KW dot products), the dot products summed in fp32 by
// VDPBF16PS. The grid rows are padded to a multiple of 32 pixels (a
// VDPBF16PS step); sums run in a fixed order, as in fp32.
func gridBackwardWeightBF16(ks *bf16KernelSet, p *Pool, g ConvGeom, x, gy, gw []float32) {
	s := p.scratchFor(0)
	defer p.releaseScratch(s)
	R, C := ks.dtR, ks.dtC
	cg, og := g.C/g.Groups, g.O/g.Groups
	kdim := cg * g.KH * g.KW
	hp, wp := g.H+2*g.PadH, g.W+2*g.PadW
	plane := g.OH * wp
	planeP := (plane + 31) &^ 31
	opad, kpad := (og+R-1)/R*R, (kdim+C-1)/C*C
	xp, kkOff := padInput(s, g, x, cg, planeP-plane+(g.KW-1)*g.DilW+32)
	s.bf16.x = growUint16(s.bf16.x, len(xp))
	xb := s.bf16.x
	ks.round(xb, xp)
	s.cols = growInts(s.cols, kpad)
	offs := s.cols
	copy(offs, kkOff)
	clear(offs[kdim:])
	s.convY = grow(s.convY, opad*planeP)
	row := s.convY // one image's gradient grid in fp32, rounded into gyb
	s.bf16.gy = growUint16(s.bf16.gy, g.N*opad*planeP)
	gyb := s.bf16.gy
	s.conv = grow(s.conv, opad*kpad)
	out := s.conv
	for gi := 0; gi < g.Groups; gi++ {
		for n := 0; n < g.N; n++ {
			layGradGrid(row, gy, g, gi, n, opad, wp, planeP)
			ks.round(gyb[n*opad*planeP:(n+1)*opad*planeP], row)
		}
		clear(out)
		job := dotWJob[uint16]{dtR: R, dtC: C, dotTile: ks.dotTile, gyg: gyb, xp: xb[gi*cg*hp*wp:], offs: offs, out: out,
			n: g.N, opad: opad, kpad: kpad, img: g.C * hp * wp, planeP: planeP}
		tiles := kpad / C
		if p.Workers() > 1 && g.N*opad*kpad*planeP >= gemmSerialFlops {
			p.bf16.dotw = job
			p.forTask(tiles, 1, &p.bf16.dotw)
			p.bf16.dotw = dotWJob[uint16]{}
		} else {
			job.run(0, 0, tiles)
		}
		for o := 0; o < og; o++ {
			copy(gw[(gi*og+o)*kdim:(gi*og+o+1)*kdim], out[o*kpad:o*kpad+kdim])
		}
	}
}

// gemmBackwardWeightBF16 overwrites gw with dL/dw as one GEMM per group,
// gWᵀ(C/G·KH·KW × O/G) = im2col(x) · gYᵀ, as conv2DBackwardWeightWith does
// for strides above 1. With BF16 it beats the dot tiles on small images,
// where the tiles' per-image lane reductions and the grid's extra columns
// cost more than packing the im2col rows (see bf16GemmWeightPixels).
func gemmBackwardWeightBF16(ks *bf16KernelSet, p *Pool, g ConvGeom, x, gy, gw []float32) {
	cg, og := g.C/g.Groups, g.O/g.Groups
	kdim := cg * g.KH * g.KW
	P := g.OH * g.OW
	s := p.scratchFor(0)
	defer p.releaseScratch(s)
	s.conv = grow(s.conv, kdim*og)
	gwt := s.conv // (kdim × og)
	for gi := 0; gi < g.Groups; gi++ {
		a := gemmOperand{kind: operandIm2colRows, cv: im2colSrc(x, g, gi*cg)}
		b := gemmOperand{kind: operandPlanesT, cv: convSrc{x: gy, C: g.O, c0: gi * og, plane: P}}
		sgemmBF16(ks, p, kdim, og, g.N*P, 1, a, b, gemmOut{d: gwt, rs: og, plane: og}, 0)
		for o := 0; o < og; o++ {
			dst := gw[(gi*og+o)*kdim:][:kdim]
			for kk := range dst {
				dst[kk] = gwt[kk*og+o]
			}
		}
	}
}
