package tensorcore

import "fmt"

// MatMul returns op(a)·op(b), where op transposes the last two dimensions
// when transA/transB is set. Operands are 2-D, op(a) (M, K) and op(b)
// (K, N), giving (M, N); or batched 3-D, (B, M, K) and (B, K, N), giving
// (B, M, N). It panics naming both shapes when they do not fit.
func (tp *Tape) MatMul(a, b *Var, transA, transB bool) *Var {
	as, bs := a.Value.Shape, b.Value.Shape
	if len(as) != len(bs) || (len(as) != 2 && len(as) != 3) || (len(as) == 3 && as[0] != bs[0]) {
		panic(fmt.Sprintf("tensorcore: MatMul: shapes %v and %v: want two 2-D or two 3-D operands with one batch size", as, bs))
	}
	batch := 1
	if len(as) == 3 {
		batch = as[0]
		as, bs = as[1:], bs[1:]
	}
	m, k := as[0], as[1]
	if transA {
		m, k = k, m
	}
	k2, n := bs[0], bs[1]
	if transB {
		k2, n = n, k2
	}
	if k != k2 {
		panic(fmt.Sprintf("tensorcore: MatMul: shapes %v and %v (transA %v, transB %v) do not fit", a.Value.Shape, b.Value.Shape, transA, transB))
	}
	var shape [3]int
	s := shape[:0]
	if len(a.Value.Shape) == 3 {
		s = append(s, batch)
	}
	s = append(s, m, n)
	nd := tp.push(opMatMul, a, b, nil, s, false)
	nd.mm = matMulArgs{batch: batch, m: m, n: n, k: k, transA: transA, transB: transB}
	y := nd.out.Value.Data
	ad, bd := a.Value.Data, b.Value.Data
	for p := 0; p < batch; p++ {
		Sgemm(tp.pool, transA, transB, m, n, k, 1, ad[p*m*k:], as[1], bd[p*k*n:], bs[1], 0, y[p*m*n:], n)
	}
	return nd.out
}

// Linear returns x·wᵀ + b for x (N, in), w (out, in) in PyTorch's layout,
// and b (out) or nil, giving (N, out).
func (tp *Tape) Linear(x, w, b *Var) *Var {
	xs, ws := x.Value.Shape, w.Value.Shape
	if len(xs) != 2 || len(ws) != 2 || xs[1] != ws[1] {
		panic(fmt.Sprintf("tensorcore: Linear: input %v and weight %v do not fit", xs, ws))
	}
	if b != nil && (shapeLen(b.Value.Shape) != ws[0]) {
		panic(fmt.Sprintf("tensorcore: Linear: weight %v and bias %v do not fit", ws, b.Value.Shape))
	}
	n, in, out := xs[0], xs[1], ws[0]
	var shape = [2]int{n, out}
	nd := tp.push(opLinear, x, w, b, shape[:], false)
	nd.lin = linearArgs{n: n, in: in, out: out}
	y := nd.out.Value.Data
	beta := float32(0)
	if b != nil {
		bd := b.Value.Data
		for r := 0; r < n; r++ {
			copy(y[r*out:(r+1)*out], bd)
		}
		beta = 1
	}
	Sgemm(tp.pool, false, true, n, out, in, 1, x.Value.Data, in, w.Value.Data, in, beta, y, out)
	return nd.out
}

func shape4(name string, s []int) [4]int {
	if len(s) != 4 {
		panic(fmt.Sprintf("tensorcore: %s: shape %v is not 4-D", name, s))
	}
	return [4]int{s[0], s[1], s[2], s[3]}
}

// Conv2D returns the convolution (cross-correlation, as in PyTorch) of x
// (N, C, H, W) with w (O, C/groups, KH, KW), plus b (O) or nil, giving
// (N, O, OH, OW).
func (tp *Tape) Conv2D(x, w, b *Var, cp ConvParams) *Var {
	g := NewConvGeom(shape4("Conv2D input", x.Value.Shape), shape4("Conv2D weight", w.Value.Shape), cp)
	if b != nil && shapeLen(b.Value.Shape) != g.O {
		panic(fmt.Sprintf("tensorcore: Conv2D: weight %v and bias %v do not fit", w.Value.Shape, b.Value.Shape))
	}
	shape := [4]int{g.N, g.O, g.OH, g.OW}
	nd := tp.push(opConv2D, x, w, b, shape[:], false)
	nd.geom = g
	var bd []float32
	if b != nil {
		bd = b.Value.Data
	}
	Conv2D(tp.pool, g, x.Value.Data, w.Value.Data, bd, nd.out.Value.Data)
	return nd.out
}

// ConvTranspose2D returns the transposed convolution (the gradient of
// Conv2D with respect to its input) of x (N, in, H, W) with w (in,
// out/groups, KH, KW) in PyTorch's layout, plus b (out) or nil. The output
// is (N, out, OH, OW) with OH = (H-1)*strideH - 2*padH + dilH*(KH-1) +
// outPadH + 1, likewise OW. Output padding must be smaller than the stride
// (PyTorch also allows it below the dilation; ringtrain does not).
func (tp *Tape) ConvTranspose2D(x, w, b *Var, cp ConvParams, outPadH, outPadW int) *Var {
	xs, ws := shape4("ConvTranspose2D input", x.Value.Shape), shape4("ConvTranspose2D weight", w.Value.Shape)
	c := cp.norm()
	if outPadH < 0 || outPadW < 0 || outPadH >= c.StrideH || outPadW >= c.StrideW {
		panic(fmt.Sprintf("tensorcore: ConvTranspose2D: output padding %d,%d must be smaller than the stride (%+v)", outPadH, outPadW, c))
	}
	oh := (xs[2]-1)*c.StrideH - 2*c.PadH + c.DilH*(ws[2]-1) + outPadH + 1
	ow := (xs[3]-1)*c.StrideW - 2*c.PadW + c.DilW*(ws[3]-1) + outPadW + 1
	outC := ws[1] * c.Groups
	if xs[1] != ws[0] || oh < 1 || ow < 1 {
		panic(fmt.Sprintf("tensorcore: ConvTranspose2D: input %v and weight %v do not fit with %+v", xs, ws, c))
	}
	// The geometry of the forward convolution this op transposes: its input
	// is our output, its output our input.
	g := NewConvGeom([4]int{xs[0], outC, oh, ow}, ws, c)
	if g.OH != xs[2] || g.OW != xs[3] {
		panic(fmt.Sprintf("tensorcore: ConvTranspose2D: input %v and weight %v do not fit with %+v", xs, ws, c))
	}
	if b != nil && shapeLen(b.Value.Shape) != outC {
		panic(fmt.Sprintf("tensorcore: ConvTranspose2D: weight %v and bias %v do not fit", ws, b.Value.Shape))
	}
	shape := [4]int{xs[0], outC, oh, ow}
	nd := tp.push(opConvT2D, x, w, b, shape[:], false)
	nd.geom = g
	y := nd.out.Value.Data
	Conv2DBackwardData(tp.pool, g, x.Value.Data, w.Value.Data, y)
	if b != nil {
		addChannelBias(y, b.Value.Data, g.N, outC, oh*ow)
	}
	return nd.out
}

// addChannelBias adds bias[c] to every element of channel c of an
// (n, c, plane) array.
func addChannelBias(y, bias []float32, n, c, plane int) {
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			bv := bias[ch]
			row := y[(i*c+ch)*plane : (i*c+ch+1)*plane]
			for j := range row {
				row[j] += bv
			}
		}
	}
}

// channelSums adds the sum of every channel of an (n, c, plane) array to
// dst[c].
func channelSums(dst, y []float32, n, c, plane int) {
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			dst[ch] += vecSum(y[(i*c+ch)*plane : (i*c+ch+1)*plane])
		}
	}
}
