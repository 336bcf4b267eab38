package tensorcore

import "math"

// backward is ringtrain's one gradient table: the derivative rule of every
// primitive op, in one switch. It runs for node nd during Tape.Backward,
// after every consumer of nd's output has added its part to nd.out.Grad,
// and adds nd's contribution to the gradients of those inputs that need one.
func backward(tp *Tape, nd *node) {
	gy := nd.out.Grad.Data
	a, b, c := nd.a, nd.b, nd.c
	switch nd.kind {
	case opMatMul:
		gradMatMul(tp, nd, gy)

	case opLinear: // y = x wᵀ + b
		n, in, out := nd.lin.n, nd.lin.in, nd.lin.out
		if a.needGrad {
			gx, acc := tp.gradOut(a)
			Sgemm(tp.pool, false, false, n, in, out, 1, gy, out, b.Value.Data, in, beta(acc), gx, in)
		}
		if b.needGrad {
			gw, acc := tp.gradOut(b)
			Sgemm(tp.pool, true, false, out, in, n, 1, gy, out, a.Value.Data, in, beta(acc), gw, in)
		}
		if c != nil && c.needGrad {
			gb := tp.gradAcc(c)
			for r := 0; r < n; r++ {
				vecAxpy(1, gy[r*out:(r+1)*out], gb)
			}
		}

	case opConv2D:
		g := nd.geom
		if a.needGrad {
			gx, acc := tp.gradOut(a)
			if acc {
				s := tp.free.take(len(gx))
				Conv2DBackwardData(tp.pool, g, gy, b.Value.Data, s)
				vecAxpy(1, s, gx)
				tp.free.give(s)
			} else {
				Conv2DBackwardData(tp.pool, g, gy, b.Value.Data, gx)
			}
		}
		if b.needGrad || (c != nil && c.needGrad) {
			nw := len(b.Value.Data)
			nb := 0
			if c != nil && c.needGrad {
				nb = g.O
			}
			s := tp.free.take(nw + nb)
			sw, sb := s[:nw], s[nw:nw+nb]
			if nb == 0 {
				sb = nil
			}
			Conv2DBackwardWeight(tp.pool, g, a.Value.Data, gy, sw, sb)
			if b.needGrad {
				vecAxpy(1, sw, tp.gradAcc(b))
			}
			if sb != nil {
				vecAxpy(1, sb, tp.gradAcc(c))
			}
			tp.free.give(s)
		}

	case opConvT2D: // y = Conv2DBackwardData(x) under geometry g; gy is g's input side
		g := nd.geom
		if a.needGrad {
			gx, acc := tp.gradOut(a)
			if acc {
				s := tp.free.take(len(gx))
				Conv2D(tp.pool, g, gy, b.Value.Data, nil, s)
				vecAxpy(1, s, gx)
				tp.free.give(s)
			} else {
				Conv2D(tp.pool, g, gy, b.Value.Data, nil, gx)
			}
		}
		if b.needGrad {
			s := tp.free.take(len(b.Value.Data))
			Conv2DBackwardWeight(tp.pool, g, gy, a.Value.Data, s, nil)
			vecAxpy(1, s, tp.gradAcc(b))
			tp.free.give(s)
		}
		if c != nil && c.needGrad {
			channelSums(tp.gradAcc(c), gy, g.N, g.C, g.H*g.W)
		}

	case opMaxPool2D: // the gradient goes to the maximum of each window
		if a.needGrad {
			xs := a.Value.Shape
			if gx, acc := tp.gradOut(a); !acc && nd.pool == (poolArgs{k: 2, stride: 2}) && xs[2]%2 == 0 && xs[3]%2 == 0 {
				// Non-overlapping windows tile the input: write every
				// element once instead of clearing and scattering.
				nd.gx = gx
				nd.phase = parMaxPoolGrad
				tp.pool.forTask(xs[0]*xs[1], max(1, parGrain/(xs[2]*xs[3])), nd)
			} else {
				nd.gx, nd.acc = gx, acc
				nd.phase = parMaxPoolGradScatter
				tp.pool.forTask(xs[0]*xs[1], max(1, parGrain/(xs[2]*xs[3])), nd)
			}
		}

	case opAvgPool2D:
		if a.needGrad {
			gradAvgPool(tp.gradAcc(a), gy, a.Value.Shape, nd.out.Value.Shape, nd.pool.k, nd.pool.stride, nd.pool.pad)
		}

	case opGlobalAvgPool:
		if a.needGrad {
			gx, acc := tp.gradOut(a)
			xs := a.Value.Shape
			hw := xs[2] * xs[3]
			nd.scratch = growF(nd.scratch, hw)
			for i := range nd.scratch {
				nd.scratch[i] = 1
			}
			gradGlobalAvgPool(gx, gy, nd.scratch, hw, acc)
		}

	case opAdd, opSub, opMul, opDiv:
		gradBinary(tp, nd)

	case opAddScalar:
		if a.needGrad {
			gx, acc := tp.gradOut(a)
			addTo(gx, gy, acc)
		}
	case opMulScalar:
		if a.needGrad {
			vecAxpy(nd.scalar, gy, tp.gradAcc(a))
		}
	case opNeg:
		if a.needGrad {
			vecAxpy(-1, gy, tp.gradAcc(a))
		}
	case opReLU:
		if a.needGrad {
			var gx []float32
			acc := false
			if tp.handGrad(a, nd) { // masked in place: vecReluGrad's dst may alias gy
				gx = a.Grad.Data
			} else {
				gx, acc = tp.gradOut(a)
			}
			if !acc {
				nd.gx = gx
				nd.phase = parReLUGrad
				tp.pool.forTask(len(gx), parGrain, nd)
			} else {
				// Masking into scratch and adding avoids a data-dependent
				// branch per element.
				s := tp.free.take(len(gx))
				vecReluGrad(s, gy, nd.out.Value.Data) // y > 0 exactly where x > 0
				vecAxpy(1, s, gx)
				tp.free.give(s)
			}
		}
	case opLeakyReLU, opTanh, opSigmoid, opSoftplus, opExp, opLog, opSquare, opSqrt, opAbs:
		if a.needGrad {
			nd.gx = tp.gradAcc(a)
			nd.phase = parUnaryGrad
			tp.pool.forTask(len(gy), elementGrain(nd.kind), nd)
		}

	case opSoftmax, opLogSoftmax:
		if a.needGrad {
			gradSoftmax(nd.kind == opLogSoftmax, tp.gradAcc(a), gy, nd.out.Value.Data, nd.axis.outer, nd.axis.size, nd.axis.inner)
		}

	case opSum: // y = scale * sum over the reduced dims; gx = scale * broadcast(gy)
		if a.needGrad {
			gx := tp.gradAcc(a)
			bc := &nd.bc
			rows, n := bc.rows()
			ib := bc.sb[bc.rank-1]
			s := nd.scalar
			var it bcIter
			for r := 0; r < rows; r++ {
				gr := gx[it.oa : it.oa+n]
				if ib == 0 {
					v := s * gy[it.ob]
					for j := range gr {
						gr[j] += v
					}
				} else {
					vecAxpy(s, gy[it.ob:it.ob+n], gr)
				}
				bc.next(&it)
			}
		}

	case opMax:
		if a.needGrad {
			gx := tp.gradAcc(a)
			size, inner := nd.axis.size, nd.axis.inner
			for p, k := range nd.iaux {
				o, in := p/inner, p%inner
				gx[(o*size+int(k))*inner+in] += gy[p]
			}
		}

	case opReshape:
		if a.needGrad {
			gx, acc := tp.gradOut(a)
			addTo(gx, gy, acc)
		}

	case opTranspose: // y[o] = x[perm offset]; gx[perm offset] += gy[o]
		if a.needGrad {
			gx := tp.gradAcc(a)
			bc := &nd.bc
			rows, n := bc.rows()
			ia := bc.sa[bc.rank-1]
			var it bcIter
			for r := 0; r < rows; r++ {
				pa := it.oa
				for _, v := range gy[it.oo : it.oo+n] {
					gx[pa] += v
					pa += ia
				}
				bc.next(&it)
			}
		}

	case opConcat:
		cc := &nd.concat
		dim, outer, inner, total := cc.dim, cc.outer, cc.inner, cc.total
		off := 0
		for _, v := range nd.xs {
			k := v.Value.Shape[dim] * inner
			if v.needGrad {
				gx := tp.gradAcc(v)
				for o := 0; o < outer; o++ {
					vecAxpy(1, gy[o*total*inner+off:o*total*inner+off+k], gx[o*k:(o+1)*k])
				}
			}
			off += k
		}

	case opSlice:
		if a.needGrad {
			gx := tp.gradAcc(a)
			sl := &nd.slice
			outer, size, inner, start, end := sl.axis.outer, sl.axis.size, sl.axis.inner, sl.start, sl.end
			k := (end - start) * inner
			for o := 0; o < outer; o++ {
				vecAxpy(1, gy[o*k:(o+1)*k], gx[(o*size+start)*inner:(o*size+start)*inner+k])
			}
		}

	case opPad2D:
		if a.needGrad {
			gx := tp.gradAcc(a)
			pa := &nd.pad
			planes, h, w, top, left := pa.planes, pa.h, pa.w, pa.top, pa.left
			os := nd.out.Value.Shape
			oh, ow := os[len(os)-2], os[len(os)-1]
			for p := 0; p < planes; p++ {
				for i := 0; i < h; i++ {
					src := gy[(p*oh+i+top)*ow+left : (p*oh+i+top)*ow+left+w]
					vecAxpy(1, src, gx[(p*h+i)*w:(p*h+i+1)*w])
				}
			}
		}

	case opGather:
		if a.needGrad {
			gx := tp.gradAcc(a)
			outer, size, inner := nd.axis.outer, nd.axis.size, nd.axis.inner
			for o := 0; o < outer; o++ {
				for i := 0; i < inner; i++ {
					gx[(o*size+nd.idx[o*inner+i])*inner+i] += gy[o*inner+i]
				}
			}
		}

	case opIndexSelect:
		if a.needGrad {
			gx := tp.gradAcc(a)
			outer, size, inner := nd.axis.outer, nd.axis.size, nd.axis.inner
			m := len(nd.idx)
			for j, k := range nd.idx {
				for o := 0; o < outer; o++ {
					vecAxpy(1, gy[(o*m+j)*inner:(o*m+j+1)*inner], gx[(o*size+k)*inner:(o*size+k+1)*inner])
				}
			}
		}

	case opBatchNorm:
		gradBatchNorm(tp, nd)

	case opDropout:
		if a.needGrad {
			gx := tp.gradAcc(a)
			for i, m := range nd.aux {
				gx[i] += gy[i] * m
			}
		}

	case opCrossEntropy: // d/dlogits = (softmax - target) / N, target onehot or smoothed
		if a.needGrad {
			gx := tp.gradAcc(a)
			n := len(nd.idx)
			cc := len(nd.aux) / max(n, 1)
			s := gy[0] / float32(n)
			e := nd.scalar // label smoothing
			for i, l := range nd.idx {
				row, p := gx[i*cc:(i+1)*cc], nd.aux[i*cc:(i+1)*cc]
				vecAxpy(s, p, row)
				if e == 0 {
					row[l] -= s
					continue
				}
				u := s * e / float32(cc)
				for j := range row {
					row[j] -= u
				}
				row[l] -= s * (1 - e)
			}
		}

	case opMSE: // d/da = 2(a-b)/n, d/db = -d/da
		s := 2 * gy[0] / float32(max(len(a.Value.Data), 1))
		ad, bd := a.Value.Data, b.Value.Data
		if a.needGrad {
			ga := tp.gradAcc(a)
			for i, v := range ad {
				ga[i] += s * (v - bd[i])
			}
		}
		if b.needGrad {
			gb := tp.gradAcc(b)
			for i, v := range ad {
				gb[i] -= s * (v - bd[i])
			}
		}

	case opBCEWithLogits: // d/dx = (sigmoid(x) - y)/n, d/dy = -x/n
		s := gy[0] / float32(max(len(a.Value.Data), 1))
		xd, yd := a.Value.Data, b.Value.Data
		if a.needGrad {
			gx := tp.gradAcc(a)
			for i, v := range xd {
				gx[i] += s * (sigmoid32(v) - yd[i])
			}
		}
		if b.needGrad {
			gt := tp.gradAcc(b)
			for i, v := range xd {
				gt[i] -= s * v
			}
		}

	default:
		panic("tensorcore: backward: unknown op kind")
	}
}

func beta(acc bool) float32 {
	if acc {
		return 1
	}
	return 0
}

// gradMatMul: for C = op(A)·op(B), dA = dC·op(B)ᵀ and dB = op(A)ᵀ·dC, each
// written in the stored layout of A and B.
func gradMatMul(tp *Tape, nd *node, gy []float32) {
	a, b := nd.a, nd.b
	mm := &nd.mm
	batch, m, n, k := mm.batch, mm.m, mm.n, mm.k
	tA, tB := mm.transA, mm.transB
	ad, bd := a.Value.Data, b.Value.Data
	lda, ldb := k, n // stored row strides of A and B
	if tA {
		lda = m
	}
	if tB {
		ldb = k
	}
	if a.needGrad {
		ga, acc := tp.gradOut(a)
		for p := 0; p < batch; p++ {
			g, bb, dc := ga[p*m*k:], bd[p*k*n:], gy[p*m*n:]
			if !tA { // dA (M, K) = dC (M, N) · op(B)ᵀ
				Sgemm(tp.pool, false, !tB, m, k, n, 1, dc, n, bb, ldb, beta(acc), g, k)
			} else { // dA stored (K, M) = op(B) (K, N) · dCᵀ
				Sgemm(tp.pool, tB, true, k, m, n, 1, bb, ldb, dc, n, beta(acc), g, m)
			}
		}
	}
	if b.needGrad {
		gb, acc := tp.gradOut(b)
		for p := 0; p < batch; p++ {
			g, aa, dc := gb[p*k*n:], ad[p*m*k:], gy[p*m*n:]
			if !tB { // dB (K, N) = op(A)ᵀ (K, M) · dC
				Sgemm(tp.pool, !tA, false, k, n, m, 1, aa, lda, dc, n, beta(acc), g, n)
			} else { // dB stored (N, K) = dCᵀ (N, M) · op(A) (M, K)
				Sgemm(tp.pool, true, tA, n, k, m, 1, dc, n, aa, lda, beta(acc), g, k)
			}
		}
	}
}

// gradBinary reduces the broadcast gradients of Add, Sub, Mul and Div onto
// their operands. An operand of the output's full size takes its gradient
// in parallel; a broadcast one accumulates serially, in a fixed order.
func gradBinary(tp *Tape, nd *node) {
	a, b := nd.a, nd.b
	bc := &nd.bc
	// For Add and Sub, dA = dY: when a is of the output's size, its
	// gradient untouched so far, it takes over dY's buffer, after b's
	// gradient has been read from it.
	hand := (nd.kind == opAdd || nd.kind == opSub) && a != b && a.needGrad &&
		shapeLen(a.Value.Shape) == shapeLen(nd.out.Value.Shape)
	order := [2]int{0, 1}
	if hand {
		order = [2]int{1, 0}
	}
	for _, which := range order {
		v := [2]*Var{a, b}[which]
		if !v.needGrad {
			continue
		}
		if which == 0 && hand && tp.handGrad(a, nd) {
			g := a.Grad.Data
			for i := range g {
				g[i] += 0 // as adding dY into a cleared gradient: -0 becomes +0
			}
			continue
		}
		nd.gx = tp.gradAcc(v)
		st := &bc.sa
		nd.phase = parBinaryGradA
		if which == 1 {
			st = &bc.sb
			nd.phase = parBinaryGradB
		}
		if bc.full(st) {
			tp.forRuns(bc, nd)
		} else {
			rows, n := bc.rows()
			gradBinaryRuns(nd, which, bcIter{}, rows, n) // the whole walk, in order
		}
	}
}

// gradBinaryRuns adds the gradient of one operand (which: 0 for a, 1 for b)
// over runs of the walk: dA = dY·∂y/∂a, dB = dY·∂y/∂b, where for Add ±1
// (Sub: -1 for b), for Mul the other operand, and for Div 1/b and -y/b.
func gradBinaryRuns(nd *node, which int, it bcIter, runs, n int) {
	bc := &nd.bc
	ad, bd, yd, gy := nd.a.Value.Data, nd.b.Value.Data, nd.out.Value.Data, nd.out.Grad.Data
	ia, ib := bc.sa[bc.rank-1], bc.sb[bc.rank-1]
	g := nd.gx
	for r := 0; r < runs; r++ {
		gr := gy[it.oo : it.oo+n]
		pa, pb, po := it.oa, it.ob, it.oo
		switch {
		case which == 0 && (nd.kind == opAdd || nd.kind == opSub): // dA = dY
			if ia == 1 {
				vecAxpy(1, gr, g[pa:pa+n])
			} else {
				for _, v := range gr {
					g[pa] += v
					pa += ia
				}
			}
		case which == 0 && nd.kind == opMul: // dA = dY·B
			for _, v := range gr {
				g[pa] += v * bd[pb]
				pa += ia
				pb += ib
			}
		case which == 0 && nd.kind == opDiv: // dA = dY/B
			for _, v := range gr {
				g[pa] += v / bd[pb]
				pa += ia
				pb += ib
			}
		case nd.kind == opAdd || nd.kind == opSub: // dB = ±dY
			s := float32(1)
			if nd.kind == opSub {
				s = -1
			}
			if ib == 1 {
				vecAxpy(s, gr, g[pb:pb+n])
			} else {
				for _, v := range gr {
					g[pb] += s * v
					pb += ib
				}
			}
		case nd.kind == opMul: // dB = dY·A
			for _, v := range gr {
				g[pb] += v * ad[pa]
				pa += ia
				pb += ib
			}
		case nd.kind == opDiv: // dB = -dY·A/B² = -dY·Y/B
			for _, v := range gr {
				g[pb] -= v * yd[po] / bd[pb]
				po++
				pb += ib
			}
		}
		bc.next(&it)
	}
}

// gradUnary adds dY·f'(x) to gx for the elementwise ops, given x and y =
// f(x) (and the op's scalar argument s).
func gradUnary(kind opKind, gx, gy, x, y []float32, s float32) {
	gx, gy, y = gx[:len(x)], gy[:len(x)], y[:len(x)]
	switch kind {
	case opLeakyReLU: // 1 where x > 0, else the slope (as a select, not a branch)
		for i, v := range x {
			pos := 0
			if v > 0 {
				pos = 1
			}
			gx[i] += gy[i] * (s + (1-s)*float32(pos))
		}
	case opTanh: // 1 - y²
		vecTanhGrad(gx, gy, y)
	case opSigmoid: // y(1-y)
		for i, v := range y {
			gx[i] += gy[i] * v * (1 - v)
		}
	case opSoftplus: // sigmoid(x)
		for i, v := range x {
			gx[i] += gy[i] * sigmoid32(v)
		}
	case opExp: // y
		for i, v := range y {
			gx[i] += gy[i] * v
		}
	case opLog: // 1/x
		for i, v := range x {
			gx[i] += gy[i] / v
		}
	case opSquare: // 2x
		for i, v := range x {
			gx[i] += 2 * v * gy[i]
		}
	case opSqrt: // 1/(2y)
		for i, v := range y {
			gx[i] += gy[i] / (2 * v)
		}
	case opAbs: // sign(x), 0 at 0, NaN at NaN
		for i, v := range x {
			pos, neg := 0, 0
			if v > 0 {
				pos = 1
			}
			if v < 0 {
				neg = 1
			}
			gx[i] += gy[i] * float32(pos-neg)
			if v != v { // rare: predicted well
				gx[i] = v
			}
		}
	}
}

// gradSoftmax: softmax dx = y(dy - Σ dy·y); log-softmax dx = dy - softmax(x)·Σ dy.
func gradSoftmax(logOut bool, gx, gy, y []float32, outer, size, inner int) {
	for o := 0; o < outer; o++ {
		for in := 0; in < inner; in++ {
			base := o*size*inner + in
			var s float32
			for k := 0; k < size; k++ {
				p := base + k*inner
				if logOut {
					s += gy[p]
				} else {
					s += gy[p] * y[p]
				}
			}
			for k := 0; k < size; k++ {
				p := base + k*inner
				if logOut {
					gx[p] += gy[p] - float32(math.Exp(float64(y[p])))*s
				} else {
					gx[p] += y[p] * (gy[p] - s)
				}
			}
		}
	}
}

// gradAvgPool spreads each output gradient evenly over its window.
func gradAvgPool(gx, gy []float32, xs, ys []int, k, stride, pad int) {
	planes, h, w, oh, ow := xs[0]*xs[1], xs[2], xs[3], ys[2], ys[3]
	inv := 1 / float32(k*k)
	for p := 0; p < planes; p++ {
		base := p * h * w
		for i := 0; i < oh; i++ {
			h0, h1 := poolWindow(i, k, stride, pad, h)
			for j := 0; j < ow; j++ {
				w0, w1 := poolWindow(j, k, stride, pad, w)
				g := gy[(p*oh+i)*ow+j] * inv
				for r := h0; r < h1; r++ {
					row := gx[base+r*w+w0 : base+r*w+w1]
					for c := range row {
						row[c] += g
					}
				}
			}
		}
	}
}

// gradBatchNorm: with x̂ = (x-μ)·σ⁻¹ and y = γx̂ + β, dβ = Σdy, dγ = Σdy·x̂;
// in training dx = γσ⁻¹/M · (M·dy - Σdy - x̂·Σdy·x̂), in evaluation dx = γσ⁻¹·dy.
// For BatchNormReLU dy is the incoming gradient where the output is
// positive and 0 elsewhere, masked on the fly.
// The channels are independent, so they are split over the pool.
func gradBatchNorm(tp *Tape, nd *node) {
	x, gamma, betaV := nd.a, nd.b, nd.c
	nd.gx, nd.gGam, nd.gBeta, nd.alias = nil, nil, nil, false
	if x.needGrad {
		if nd.bn.training && tp.handGrad(x, nd) {
			// dx overwrites dy plane by plane, each plane's dy first
			// copied to the worker's part of nd.scratch.
			nd.gx, nd.alias = x.Grad.Data, true
		} else {
			nd.gx = tp.gradAcc(x)
		}
	}
	if gamma != nil && gamma.needGrad {
		nd.gGam = tp.gradAcc(gamma)
	}
	if betaV != nil && betaV.needGrad {
		nd.gBeta = tp.gradAcc(betaV)
	}
	n, c, plane := nd.bn.n, nd.bn.c, nd.bn.plane
	if nd.bn.relu && !nd.bn.training && nd.gx != nil {
		nd.scratch = tp.free.take(len(nd.gx)) // the masked gradient
	}
	if nd.alias {
		nd.scratch = tp.free.take(tp.pool.Workers() * plane)
	}
	nd.phase = parBatchNormGrad
	tp.pool.forTask(c, max(1, parGrain/max(n*plane, 1)), nd)
	if nd.scratch != nil {
		tp.free.give(nd.scratch)
		nd.scratch = nil
	}
}

// gradBatchNormChannels applies gradBatchNorm's rule to channels [c0, c1),
// adding into nd.gx (dx), nd.gGam (dγ) and nd.gBeta (dβ) where not nil. When
// nd.alias, dx is written over dy, with part's share of nd.scratch holding
// a copy of each plane of dy; the bits are those of adding into a cleared
// dx.
func gradBatchNormChannels(nd *node, part, c0, c1 int) {
	gamma := nd.b
	bn := &nd.bn
	n, c, plane := bn.n, bn.c, bn.plane
	training := bn.training
	mean, inv := bn.mean, bn.invStd
	xd, yd, gy := nd.a.Value.Data, nd.out.Value.Data, nd.out.Grad.Data
	gx, gg, gb := nd.gx, nd.gGam, nd.gBeta
	relu := bn.relu
	m := float32(n * plane)
	for ch := c0; ch < c1; ch++ {
		mu, is := mean[ch], inv[ch]
		sc, sh := bnAffine(nd, ch)
		var sdy, sdyx float64
		for i := 0; i < n; i++ {
			o := (i*c + ch) * plane
			sdy, sdyx = kern.bnGradSums(gy[o:o+plane], xd[o:o+plane], mu, is, sc, sh, relu, sdy, sdyx)
		}
		if gg != nil {
			gg[ch] += float32(sdyx)
		}
		if gb != nil {
			gb[ch] += float32(sdy)
		}
		if gx == nil {
			continue
		}
		gm := float32(1)
		if gamma != nil {
			gm = gamma.Value.Data[ch]
		}
		k := gm * is
		if !training {
			for i := 0; i < n; i++ {
				o := (i*c + ch) * plane
				if !relu {
					vecAxpy(k, gy[o:o+plane], gx[o:o+plane])
					continue
				}
				// Masked into scratch, then the same axpy as unfused.
				s := nd.scratch[o : o+plane]
				vecReluGrad(s, gy[o:o+plane], yd[o:o+plane])
				vecAxpy(k, s, gx[o:o+plane])
			}
			continue
		}
		mdy, mdyx := float32(sdy)/m, float32(sdyx)/m
		for i := 0; i < n; i++ {
			o := (i*c + ch) * plane
			g := gy[o : o+plane]
			if nd.alias {
				g = nd.scratch[part*plane : (part+1)*plane]
				copy(g, gy[o:o+plane])
				clear(gx[o : o+plane])
			}
			kern.bnGradApply(gx[o:o+plane], g, xd[o:o+plane], k, mu, is, mdy, mdyx, sc, sh, relu)
		}
	}
}

// gradMaxPool2x2 writes the input gradient of planes [p0, p1) of a 2×2,
// stride-2 max pooling of even-sized planes: gy at each window's maximum, 0
// elsewhere.
func gradMaxPool2x2(gx, gy []float32, arg []int32, p0, p1, h, w int) {
	oh, ow := h/2, w/2
	for p := p0; p < p1; p++ {
		for i := 0; i < oh; i++ {
			r0 := (p*h + 2*i) * w
			r1 := r0 + w
			yo := (p*oh + i) * ow
			kern.maxPool2x2Grad(gx[r0:r1+w], gy[yo:yo+ow], arg[yo:yo+ow], r0, w)
		}
	}
}

// gradMaxPoolPlanes adds (acc) or writes (!acc) the input gradient of
// planes [p0, p1) of any max pooling: each output's gradient goes to the
// position its argmax recorded, which lies in the output's own plane, so
// planes are independent.
//
// A plane is cleared just before its scatter, while it is still in cache.
func gradMaxPoolPlanes(gx, gy []float32, arg []int32, p0, p1, hw, ohw int, acc bool) {
	for p := p0; p < p1; p++ {
		if !acc {
			clear(gx[p*hw : (p+1)*hw])
		}
		g := gy[p*ohw : (p+1)*ohw]
		for i, k := range arg[p*ohw : (p+1)*ohw] {
			gx[k] += g[i]
		}
	}
}
