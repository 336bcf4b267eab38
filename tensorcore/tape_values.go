package tensorcore

import "fmt"

// Mark is a position in a tape's sequence of ops, from Tape.Mark.
type Mark int

// Mark starts a stretch of ops whose values are the tape's own (see Seal)
// and returns its position, to give Seal.
func (tp *Tape) Mark() Mark {
	tp.sealFrom, tp.sealing = tp.n, true
	return Mark(tp.n)
}

// Seal ends the stretch of ops Mark started: their Values, except out's,
// are the tape's own. The caller reads none of them, from Mark on, and no op
// recorded after Seal reads them; only out. It returns out, so that a
// model's forward pass reads
//
//	return tp.Seal(tp.Mark(), net.Forward(tp, x))
//
// (Go evaluates the Mark first).
//
// Within the stretch, the output of a BatchNorm (not fused with ReLU), Add
// or Sub, which its own backward rule does not read, is written into a
// buffer of the tape's free list and given back as soon as the op reading
// it has run, unless a backward rule reads it (as a convolution's reads its
// input; a ReLU's, Add's or Sub's does not). In a ResNet every BatchNorm
// and Add output is read once, by a ReLU or an Add, so those values, a
// third of the activations, share a few buffers with each other and with
// backward's gradients. An op that reads such a value after it was given
// back (a second reader) gets it recomputed, bit for bit, from the op's
// saved inputs and statistics, so any graph gives the same results as
// without Seal. A Var whose value was given back has a Value with no data
// (nil). Without Mark and Seal the tape keeps every value.
func (tp *Tape) Seal(from Mark, out *Var) *Var {
	if !tp.sealing || int(from) != tp.sealFrom {
		panic(fmt.Sprintf("tensorcore: Seal: mark %d is not the tape's open mark", from))
	}
	tp.materialize(out)
	for _, nd := range tp.nodes[tp.sealFrom:tp.n] {
		if nd.out != out && tp.lendable(nd) && !nd.out.readBack {
			tp.giveBackValue(nd)
		}
	}
	tp.sealing = false
	return out
}

// lendable reports whether nd's output may be lent: recorded between Mark
// and Seal, its own rule does not read it, and materialize can recompute it.
func (tp *Tape) lendable(nd *node) bool {
	if !tp.sealing || int(nd.out.pos)-1 < tp.sealFrom {
		return false
	}
	switch nd.kind {
	case opAdd, opSub:
		return true
	case opBatchNorm:
		return !readsOutput(nd)
	}
	return false
}

// readsInputs reports whether the backward rule of an op of this kind reads
// its inputs' Values (conservatively: yes unless known not to).
func readsInputs(k opKind) bool {
	switch k {
	case opAdd, opSub, opAddScalar, opMulScalar, opNeg, opReLU, opSum,
		opMaxPool2D, opAvgPool2D, opGlobalAvgPool, opDropout, opCrossEntropy:
		return false
	}
	return true
}

// readsOutput reports whether nd's backward rule reads nd's own Value.
func readsOutput(nd *node) bool {
	switch nd.kind {
	case opAdd, opSub, opAddScalar, opMulScalar, opNeg, opSum,
		opMaxPool2D, opAvgPool2D, opGlobalAvgPool, opDropout, opCrossEntropy:
		return false
	case opBatchNorm:
		return nd.bn.relu
	}
	return true
}

// useInputs runs at the push of nd (position i, its inputs a, b, c set;
// a Concat's xs come later, through useInput): it gives back the lent
// values the op before read, unless nd reads them too, then makes sure nd's
// inputs hold their values.
func (tp *Tape) useInputs(nd *node, i int) {
	if tp.sealing && i > tp.sealFrom {
		prev := tp.nodes[i-1]
		for _, v := range [...]*Var{prev.a, prev.b, prev.c} {
			if v != nil && v != nd.a && v != nd.b && v != nd.c {
				tp.giveBackInput(v)
			}
		}
		for _, v := range prev.xs {
			if v != nd.a && v != nd.b && v != nd.c {
				tp.giveBackInput(v)
			}
		}
	}
	ri := readsInputs(nd.kind)
	for _, v := range [...]*Var{nd.a, nd.b, nd.c} {
		if v != nil {
			tp.useInput(v, ri)
		}
	}
}

// useInput makes sure v holds its value for an op about to read it, and
// marks it as read by a backward rule when readBack.
func (tp *Tape) useInput(v *Var, readBack bool) {
	tp.materialize(v)
	v.readBack = v.readBack || readBack
}

// giveBackInput gives back v's value when it is lent and no backward rule
// reads it.
func (tp *Tape) giveBackInput(v *Var) {
	if v.gone {
		v.Value.Data = nil // an Add or Sub may have taken it over
		return
	}
	if tp.dying(v) {
		tp.giveBackValue(tp.nodes[v.pos-1])
	}
}

// dying reports whether v holds a lent value that no backward rule reads:
// one the tape may give back once the op reading it now has run.
func (tp *Tape) dying(v *Var) bool {
	if v.pos == 0 || v.readBack || v.gone || !tp.sealing {
		return false
	}
	nd := tp.nodes[v.pos-1]
	return nd.out == v && nd.lent
}

// giveBackValue gives nd's output buffer to the free list, leaving its
// Value without data.
func (tp *Tape) giveBackValue(nd *node) {
	v := nd.out
	if v.gone {
		v.Value.Data = nil
		return
	}
	tp.free.give(v.Value.Data)
	v.Value.Data = nil
	v.gone = true
	nd.lent = true
}

// lendValue settles the output buffer of nd, just pushed (not a view):
// from the free list when it may be lent, else its own.
func (tp *Tape) lendValue(nd *node) {
	v := nd.out
	n := shapeLen(v.Value.Shape)
	if nd.lent && !v.gone { // still lent from the last step
		tp.free.give(v.Value.Data)
		v.Value.Data = nil
	}
	v.gone = false
	switch {
	case tp.lendable(nd):
		if !nd.lent && v.Value.Data != nil { // its own buffer joins the free list
			tp.free.give(v.Value.Data)
		}
		if u := nd.a; (nd.kind == opAdd || nd.kind == opSub) && u != nd.b && tp.dying(u) && len(u.Value.Data) == n {
			// In place: the output takes over a's buffer (the kernels allow
			// dst to alias a), and a counts as given back; a's Value shows
			// the buffer to the op's kernel until the next push drops it.
			v.Value.Data, u.gone = u.Value.Data, true
		} else {
			v.Value.Data = tp.free.take(n)
		}
		nd.lent = true
	case nd.lent || v.Value.Data == nil:
		v.Value.Data = make([]float32, n)
		nd.lent = false
	}
}

// materialize gives v its value back when it was given back: it recomputes
// the op that produced v from its inputs (materialized first) and saved
// statistics, with the forward kernels, so the bits are the same.
func (tp *Tape) materialize(v *Var) {
	if !v.gone {
		return
	}
	nd := tp.nodes[v.pos-1]
	if nd.out != v {
		panic(fmt.Sprintf("tensorcore: a value %v of an earlier step was read after the tape reused it", v.Value.Shape))
	}
	v.Value.Data = tp.free.take(shapeLen(v.Value.Shape))
	v.gone = false
	switch nd.kind {
	case opAdd, opSub:
		tp.materialize(nd.a)
		tp.materialize(nd.b)
		nd.phase = parBinary
		tp.forRuns(&nd.bc, nd)
	case opBatchNorm: // the normalization with the saved statistics, not the statistics' pass
		bn := &nd.bn
		xd, y := nd.a.Value.Data, v.Value.Data
		for ch := 0; ch < bn.c; ch++ {
			sc, sh := bnAffine(nd, ch)
			for i := 0; i < bn.n; i++ {
				o := (i*bn.c + ch) * bn.plane
				kern.bnScaleShift(y[o:o+bn.plane], xd[o:o+bn.plane], sc, sh, bn.relu)
			}
		}
	default:
		panic("tensorcore: materialize: op kind cannot be recomputed")
	}
}
