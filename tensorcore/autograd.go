package tensorcore

import (
	"fmt"
	"slices"
	"time"
)

// Var is a value recorded on a Tape. Value is the forward result. Grad is
// the gradient of the loss with respect to Value: for a Param it is the
// buffer given to Param (or one the tape made), into which Backward
// accumulates. For an op's output it is a buffer the tape lends during
// Backward: from the first backward rule that adds to it until the rule of
// the op that produced the Var has run, and is nil otherwise. The tape then
// reuses the buffer for later gradients (and temporaries) of its size or
// up to half of it, so a backward pass holds only the gradients still
// being accumulated, not one per op; such a Grad.Data may have spare
// capacity.
// To read an op output's gradient after Backward, call Tape.KeepGrad on
// it before Backward. A Const never gets a Grad.
//
// The ops are methods of Tape (tp.Add(a, b), tp.Conv2D(x, w, b, cp), ...);
// each checks shapes, panics naming them when they do not fit, computes its
// output and records itself. NaN and Inf propagate through every op.
//
// A Var belongs to the tape that made it and is valid until the tape records
// over it after Reset; it must not be used across tapes.
type Var struct {
	Value, Grad *Tensor

	needGrad bool   // some Param lies upstream
	param    bool   // leaf whose Grad is accumulated into
	ownGrad  bool   // a Param whose Grad the tape allocated (grad nil)
	pooled   bool   // Grad is gradT, its data a buffer of the tape's free list
	handed   bool   // gradT's buffer was handed to an input's gradient (handGrad)
	keepGen  uint64 // == tape.gen when KeepGrad asked to keep the gradient of this Backward
	gradGen  uint64 // == tape.gen when Grad holds this Backward's gradient
	gradT    Tensor // the header Grad points to while pooled (kept for its Shape's capacity)
	pos      int32  // the producing op's position + 1; 0 for a leaf
	gone     bool   // Value's buffer went back to the tape (see Seal)
	readBack bool   // a backward rule reads Value (see Seal)
}

// Tape records a sequence of primitive ops and runs them backwards.
//
// Buffer reuse: Reset forgets the recorded ops but keeps every output and
// saved buffer, indexed by the op's position in the sequence. When the next
// step records the same ops with the same shapes, each op reuses the Var
// and buffers of the op at its position. Gradients of op outputs and the
// temporaries of backward rules come from one free list of buffers by
// length: a gradient is taken when backward first reaches it and given back
// once its producer's rule has run, so Backward holds only the gradients
// in flight, and, taking and giving in the same order each step, a
// training step allocates nothing once warm. Seal lets the values that no
// backward rule reads join the free list too. Because of this, a Var (and its Value and
// Grad) returned before Reset is overwritten by the op recorded at the same
// position after it: copy what must survive.
//
// A Tape is not safe for concurrent use. Its ops run their heavy kernels on
// the Pool given to NewTape (nil: the calling goroutine).
type Tape struct {
	pool     *Pool
	nodes    []*node // recorded ops; nodes[:n] are live
	n        int
	leaves   []*Var // Param/Const vars; leaves[:nl] are live
	nl       int
	gen      uint64
	uses     []paramUse // BackwardNotify's scratch
	free     freeList   // spare gradient and temporary buffers, by length
	kept     []*Var     // KeepGrad's vars, whose buffers the next Backward takes back
	sealFrom int        // position of the open Mark
	sealing  bool       // a Mark is open: values of ops since sealFrom may be lent
	prof     *Profile   // nil: no timing (see SetProfile)
}

// NewTape returns an empty tape whose kernels run on p (nil: the caller).
func NewTape(p *Pool) *Tape { return &Tape{pool: p} }

// Pool returns the pool the tape's kernels run on.
func (tp *Tape) Pool() *Pool { return tp.pool }

func (tp *Tape) leaf() *Var {
	if tp.nl < len(tp.leaves) {
		v := tp.leaves[tp.nl]
		tp.nl++
		return v
	}
	v := &Var{}
	tp.leaves = append(tp.leaves, v)
	tp.nl++
	return v
}

// Param records a trainable leaf. Backward accumulates d loss/d value into
// grad, which must have value's length (usually a view into the caller's
// flat gradient arena, zeroed by the caller before the step). A nil grad
// makes the tape allocate one, reachable as the Var's Grad; it is zeroed
// when allocated and, like any grad, accumulated into across steps (the
// Param recorded at the same position after Reset gets the same buffer).
func (tp *Tape) Param(value, grad *Tensor) *Var {
	v := tp.leaf()
	own := false
	if grad == nil {
		own = true
		if v.ownGrad && len(v.Grad.Data) == len(value.Data) {
			grad = v.Grad // the buffer this position allocated last step
		} else {
			grad = New(value.Shape...)
		}
	}
	if len(grad.Data) != len(value.Data) {
		panic(fmt.Sprintf("tensorcore: Param: value %v and grad %v differ in length", value.Shape, grad.Shape))
	}
	*v = Var{Value: value, Grad: grad, needGrad: true, param: true, ownGrad: own}
	return v
}

// Const records a leaf that gets no gradient.
func (tp *Tape) Const(value *Tensor) *Var {
	v := tp.leaf()
	*v = Var{Value: value}
	return v
}

// KeepGrad makes Backward leave v's gradient in v.Grad (an op output's is
// otherwise taken back once used, see Var) until the next Backward or until
// v is recorded over. It applies to the next Backward only: call it again
// each step. On a Param or Const it does nothing.
func (tp *Tape) KeepGrad(v *Var) {
	if v.param || !v.needGrad || v.keepGen == tp.gen+1 {
		return
	}
	v.keepGen = tp.gen + 1 // the next Backward's
	tp.kept = append(tp.kept, v)
}

// Reset forgets the recorded ops and leaves but keeps their buffers for the
// next step (see Tape).
func (tp *Tape) Reset() {
	tp.n = 0
	tp.nl = 0
	tp.sealing = false
}

// Backward computes the gradient of loss, which must hold one element, with
// respect to every Param recorded on the tape, accumulating into the Params'
// Grad buffers. The gradient of an op's output is taken back once its op's
// rule has run; KeepGrad keeps one in the Var's Grad until the next
// Backward or until the Var is recorded over.
func (tp *Tape) Backward(loss *Var) { tp.BackwardNotify(loss, nil) }

// BackwardNotify is Backward that also tells final, as soon as it is so,
// that a parameter's gradient is complete: after the backward rule of the
// earliest recorded op that reads the parameter has run, nothing more is
// added to it. A parameter is identified by its gradient buffer, so one
// recorded several times (a weight shared across time steps) is reported
// once, after its earliest use; a Param no op reads is reported after the
// last op. Every Param recorded since Reset is reported exactly once, in
// the order the gradients become final, on the calling goroutine. From
// that call on, the tape neither reads nor writes the gradient: final may
// hand it to other goroutines (e.g. to send it while backward goes on). A
// nil final makes this Backward.
func (tp *Tape) BackwardNotify(loss *Var, final func(grad *Tensor)) {
	if len(loss.Value.Data) != 1 {
		panic(fmt.Sprintf("tensorcore: Backward: loss has shape %v, want one element", loss.Value.Shape))
	}
	tp.gen++
	tp.releaseKept()
	var due []paramUse
	if final != nil {
		due = tp.paramUses()
	}
	if loss.needGrad {
		g := tp.gradAcc(loss)
		g[0]++
		for i := tp.n - 1; i >= 0; i-- {
			nd := tp.nodes[i]
			if nd.out.gradGen == tp.gen { // else no gradient reached this op's output
				if p := tp.prof; p != nil {
					t := time.Now()
					p.stopForward(t)
					backward(tp, nd)
					p.Ops[i].Backward += time.Since(t)
				} else {
					backward(tp, nd)
				}
				if nd.out.keepGen != tp.gen {
					tp.releaseGrad(nd.out) // no rule reads it any more
				}
			}
			for len(due) > 0 && due[0].first >= i {
				final(due[0].grad)
				due = due[1:]
			}
		}
	}
	for _, u := range due {
		final(u.grad)
	}
}

// paramUse is a parameter (its gradient buffer) and the index of the
// earliest recorded op that reads it (-1: none).
type paramUse struct {
	grad  *Tensor
	first int
}

// paramUses lists the distinct Params recorded since Reset, latest first
// use first (the order backward completes them), in the tape's reused
// scratch.
func (tp *Tape) paramUses() []paramUse {
	u := tp.uses[:0]
	add := func(v *Var, i int) {
		if v == nil || !v.param {
			return
		}
		for k := range u {
			if sameBuffer(u[k].grad, v.Grad) {
				if i >= 0 {
					u[k].first = min(u[k].first, i)
				}
				return
			}
		}
		if i < 0 {
			i = -1
		}
		u = append(u, paramUse{grad: v.Grad, first: i})
	}
	for i, nd := range tp.nodes[:tp.n] {
		add(nd.a, i)
		add(nd.b, i)
		add(nd.c, i)
		for _, x := range nd.xs {
			add(x, i)
		}
	}
	for _, v := range tp.leaves[:tp.nl] {
		add(v, -1) // Params no op reads: reported after the last op
	}
	slices.SortStableFunc(u, func(x, y paramUse) int { return y.first - x.first })
	tp.uses = u
	return u
}

// sameBuffer reports whether two gradients are the same buffer.
func sameBuffer(a, b *Tensor) bool {
	if len(a.Data) == 0 || len(b.Data) == 0 {
		return a == b
	}
	return &a.Data[0] == &b.Data[0] && len(a.Data) == len(b.Data)
}

// gradAcc returns v's gradient buffer for accumulation: zeroed on the first
// touch in this Backward (or the caller's Param buffer, as is).
func (tp *Tape) gradAcc(v *Var) []float32 {
	if v.param {
		v.gradGen = tp.gen
		return v.Grad.Data
	}
	if v.gradGen != tp.gen {
		tp.ensureGrad(v)
		clear(v.Grad.Data)
		v.gradGen = tp.gen
	}
	return v.Grad.Data
}

// gradOut returns v's gradient buffer and whether the caller must add to it
// (acc) rather than overwrite all of it: kernels that overwrite their
// destination write straight into a fresh intermediate gradient.
func (tp *Tape) gradOut(v *Var) (g []float32, acc bool) {
	if v.param {
		v.gradGen = tp.gen
		return v.Grad.Data, true
	}
	if v.gradGen != tp.gen {
		tp.ensureGrad(v)
		v.gradGen = tp.gen
		return v.Grad.Data, false
	}
	return v.Grad.Data, true
}

// ensureGrad gives v, an op output reached for the first time in this
// Backward, a gradient buffer from the free list; its contents are
// unspecified.
func (tp *Tape) ensureGrad(v *Var) {
	if v.pooled { // kept from an earlier Backward and recorded over
		tp.releaseGrad(v)
	}
	v.gradT.Data = tp.free.take(shapeLen(v.Value.Shape)) // Value.Data is nil once lent back
	v.gradT.Shape = append(v.gradT.Shape[:0], v.Value.Shape...)
	v.Grad, v.pooled = &v.gradT, true
}

// opKind names a primitive op; backward (autograd_grad.go) holds the one
// gradient rule of each.
type opKind uint8

const (
	opInvalid opKind = iota
	opMatMul
	opLinear
	opConv2D
	opConvT2D
	opMaxPool2D
	opAvgPool2D
	opAdd
	opSub
	opMul
	opDiv
	opAddScalar
	opMulScalar
	opReLU
	opLeakyReLU
	opTanh
	opSigmoid
	opSoftplus
	opExp
	opLog
	opNeg
	opSquare
	opSqrt
	opAbs
	opSoftmax
	opLogSoftmax
	opSum // also Mean, SumAll, MeanAll (scale in scalar)
	opMax
	opReshape
	opTranspose
	opConcat
	opSlice
	opPad2D
	opBatchNorm
	opDropout
	opGather
	opIndexSelect
	opCrossEntropy
	opMSE
	opBCEWithLogits
	opGlobalAvgPool
)

// node is one recorded op: its inputs, output and whatever the backward rule
// needs. Nodes are reused position by position after Reset, so every slice
// here keeps its capacity across steps.
//
// Op arguments are named, typed fields, one per family of ops (the table
// below). Contract: an op's constructor sets the whole field of its family
// (a struct literal, so nothing of an earlier step survives) and the op's
// forward, run and backward code reads its arguments from that field only,
// by name. A node is reused only by an op of the same kind, so a field that
// another family owns is never read. The fields are plain values (bn's
// slices are views of the node's own aux), so setting them allocates
// nothing.
//
//	field   ops
//	scalar  AddScalar (addend), MulScalar (factor), LeakyReLU (slope),
//	        Sum and Mean (scale of the sum), CrossEntropy (label smoothing)
//	mm      MatMul
//	lin     Linear
//	geom    Conv2D, ConvTranspose2D
//	pool    MaxPool2D, AvgPool2D (GlobalAvgPool has no arguments)
//	axis    Softmax, LogSoftmax, Max, Gather, IndexSelect
//	concat  Concat
//	slice   Slice
//	pad     Pad2D
//	bn      BatchNorm, BatchNormReLU
//	bc      Add, Sub, Mul, Div, Sum, Transpose (the broadcast walk)
type node struct {
	kind    opKind
	out     *Var
	a, b, c *Var
	xs      []*Var // Concat inputs (owned copy)

	scalar float32
	mm     matMulArgs
	lin    linearArgs
	geom   ConvGeom
	pool   poolArgs
	axis   axisArgs
	concat concatArgs
	slice  sliceArgs
	pad    padArgs
	bn     bnArgs
	bc     bcast

	idx     []int     // borrowed indices (labels); must not change before Backward
	aux     []float32 // saved floats: Dropout's mask, CrossEntropy's softmax, BatchNorm's statistics (bn's views)
	iaux    []int32   // saved positions: MaxPool2D's and Max's argmax
	scratch []float32 // backward's temporary

	phase parPhase  // what run does when the node is handed to the pool
	gx    []float32 // the input gradient run writes in backward phases
	acc   bool      // whether run adds into gx rather than overwriting it
	lent  bool      // out's Value buffer is lent from the free list (see Seal)
	alias bool      // BatchNorm's gx is its gy's buffer, handed on (gradBatchNorm)
	gGam  []float32 // BatchNorm's gamma gradient run adds to (nil: none)
	gBeta []float32 // BatchNorm's beta gradient run adds to (nil: none)
}

// matMulArgs: y[p] = op(a[p])·op(b[p]) for p < batch, op(a) (m, k), op(b)
// (k, n); op transposes the stored matrix when transA (transB).
type matMulArgs struct {
	batch, m, n, k int
	transA, transB bool
}

// linearArgs: y (n, out) = x (n, in) · wᵀ + b.
type linearArgs struct{ n, in, out int }

// poolArgs: a k×k window moved by stride over each plane, padded by pad on
// every side.
type poolArgs struct{ k, stride, pad int }

// axisArgs views a tensor as (outer, size, inner) around the dimension an
// op works along.
type axisArgs struct{ outer, size, inner int }

// concatArgs: inputs joined along dim of the output, viewed as (outer,
// total, inner).
type concatArgs struct{ dim, outer, inner, total int }

// sliceArgs: positions [start, end) of the middle dimension of the input
// viewed as axis.
type sliceArgs struct {
	axis       axisArgs
	start, end int
}

// padArgs: planes of h×w placed at row top, column left of the output planes.
type padArgs struct{ planes, h, w, top, left int }

// bnArgs: batch normalization of x viewed as (n, c, plane), per channel.
// mean and invStd (each c) are views of the node's aux: the statistics
// forward normalized with, which backward reuses. relu marks BatchNormReLU:
// the output is max(·, 0) of the normalized one.
type bnArgs struct {
	n, c, plane     int
	momentum, eps   float32
	training, relu  bool
	runMean, runVar *Tensor // nil when not given
	mean, invStd    []float32
}

// push records an op of the given kind with inputs a, b, c (nil when
// absent) and output shape, reusing the node at the current position when
// it has the same kind and output shape. view means the output shares the
// input's data (the caller sets out.Value.Data) and gets no buffer.
func (tp *Tape) push(kind opKind, a, b, c *Var, shape []int, view bool) *node {
	var nd *node
	if tp.n < len(tp.nodes) {
		nd = tp.nodes[tp.n]
		if nd.kind != kind || !slices.Equal(nd.out.Value.Shape, shape) || (!view && !nd.lent && len(nd.out.Value.Data) != shapeLen(shape)) {
			nd = nil
		}
	}
	if nd == nil {
		nd = &node{kind: kind, out: &Var{}}
		nd.out.Value = &Tensor{Shape: append([]int(nil), shape...)} // data: the view's, or lendValue's
		if tp.n < len(tp.nodes) {
			tp.nodes[tp.n] = nd
		} else {
			tp.nodes = append(tp.nodes, nd)
		}
	}
	if tp.prof != nil {
		tp.profileRecord(tp.n, nd)
	}
	tp.n++
	nd.a, nd.b, nd.c = a, b, c
	nd.idx = nil
	need := (a != nil && a.needGrad) || (b != nil && b.needGrad) || (c != nil && c.needGrad)
	o := nd.out
	o.needGrad, o.param, o.ownGrad, o.keepGen, o.gradGen, o.readBack = need, false, false, 0, 0, false
	o.pos = int32(tp.n)
	tp.useInputs(nd, tp.n-1)
	if !view {
		tp.lendValue(nd)
	}
	return nd
}

// growF returns buf resized to n elements, reusing its capacity.
func growF(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// growI returns buf resized to n elements, reusing its capacity.
func growI(buf []int32, n int) []int32 {
	if cap(buf) < n {
		return make([]int32, n)
	}
	return buf[:n]
}

// addTo adds src into dst (acc) or copies it (!acc).
func addTo(dst, src []float32, acc bool) {
	if acc {
		vecAxpy(1, src, dst)
	} else {
		copy(dst, src)
	}
}
