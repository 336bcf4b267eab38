package tensorcore

import "fmt"

// Mark is a position in a tape's sequence of ops, from Tape.Mark.
type Mark int

// Mark returns the position of the next op recorded, to give Seal.
func (tp *Tape) Mark() Mark {
	m := Mark(tp.n)
	tp.planOK = tp.plan.ok && tp.plan.from == tp.n
	return m
}

// Seal declares that the Values of the ops recorded since from, except
// out's, are the tape's own: the caller (and any op recorded after Seal)
// reads none of them, only out. It returns out, so that a model's forward
// pass reads
//
//	return tp.Seal(tp.Mark(), net.Forward(tp, x))
//
// (Go evaluates the Mark first).
//
// The tape then plans those values: one that no backward rule reads (the
// output of a BatchNorm, Add or Sub that only a ReLU, Add or Sub reads,
// say) needs to live only until its last reader has run. Seal gives such
// values' buffers to the tape's free list at once (backward's gradients
// reuse them). In the next step that records the same ops (kinds and
// wiring) between Mark and Seal, such a value is written into a buffer of
// the free list and given back as soon as its last reader has run, so
// those values share a few buffers with each other and with the
// gradients. A Var whose value was given back has a Value with no data
// (nil). A step whose ops depart from the plan keeps every value from the
// first op that departs on, and is planned afresh at its Seal; an op that
// reads a value already given back panics. Without Mark and Seal the tape
// keeps every value.
func (tp *Tape) Seal(from Mark, out *Var) *Var {
	n := tp.n
	p := &tp.plan
	if tp.planOK && (n != p.n || out.pos != p.out || !tp.planMatches(n-1)) {
		tp.planOK = false
	}
	if tp.planOK {
		tp.giveBackDue(n)
		tp.planOK = false
		return out
	}
	tp.makePlan(int(from), n, out)
	// Every forward reader has run: the values the plan lends are dead now.
	for i := p.from; i < n; i++ {
		if p.transient[i-p.from] {
			tp.giveBackValue(tp.nodes[i])
		}
	}
	return out
}

// valuePlan is the plan of the values of ops [from, n) that Seal made: per
// position (less from) its kind, the positions (Var.pos) its forward pass
// read, whether its own rule reads its output, whether its value is lent,
// and which lent values fall due (are read for the last time) before each
// position.
type valuePlan struct {
	ok        bool
	from, n   int
	out       int32
	kind      []opKind
	readsOut  []bool
	insOff    []int32 // ins[insOff[i]:insOff[i+1]]: the inputs of position from+i
	ins       []int32
	transient []bool
	dueOff    []int32 // due[dueOff[i]:dueOff[i+1]]: positions given back at push of from+i
	due       []int32
	last      []int32 // scratch: the last forward reader of each position
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

// numInputs is the number of inputs of nd, which input(k) returns in order:
// a, b, c where not nil, then xs.
func (nd *node) numInputs() int {
	k := len(nd.xs)
	for _, v := range [3]*Var{nd.a, nd.b, nd.c} {
		if v != nil {
			k++
		}
	}
	return k
}

func (nd *node) input(k int) *Var {
	for _, v := range [3]*Var{nd.a, nd.b, nd.c} {
		if v != nil {
			if k == 0 {
				return v
			}
			k--
		}
	}
	return nd.xs[k]
}

// makePlan plans the values of ops [from, n) with out kept.
func (tp *Tape) makePlan(from, n int, out *Var) {
	p := &tp.plan
	m := n - from
	*p = valuePlan{ok: m > 0, from: from, n: n, out: out.pos,
		kind: p.kind[:0], readsOut: p.readsOut[:0], insOff: append(p.insOff[:0], 0), ins: p.ins[:0],
		transient: p.transient[:0], dueOff: p.dueOff[:0], due: p.due[:0], last: p.last[:0]}
	for i := range m {
		p.transient = append(p.transient, true)
		p.last = append(p.last, int32(from+i)) // no reader: due right after itself
	}
	inRange := func(pos int32) bool { return int(pos) > from && int(pos) <= n } // pos is position+1
	for i := range m {
		nd := tp.nodes[from+i]
		p.kind = append(p.kind, nd.kind)
		ro := readsOutput(nd)
		p.readsOut = append(p.readsOut, ro)
		if ro || nd.kind == opReshape || nd.out.pos != int32(from+i+1) {
			p.transient[i] = false
		}
		ri := readsInputs(nd.kind)
		for k := range nd.numInputs() {
			pos := nd.input(k).pos
			p.ins = append(p.ins, pos)
			if !inRange(pos) {
				continue
			}
			j := int(pos) - 1 - from
			p.last[j] = int32(from + i)
			if ri {
				p.transient[j] = false
			}
		}
		p.insOff = append(p.insOff, int32(len(p.ins)))
	}
	if inRange(out.pos) {
		p.transient[int(out.pos)-1-from] = false
	}
	// The lent values by the position whose push gives them back (the last
	// reader's + 1, from+1 to n; n: at Seal), a counting sort into due.
	for range m + 2 {
		p.dueOff = append(p.dueOff, 0)
	}
	total := 0
	for i, t := range p.transient {
		if t {
			p.dueOff[int(p.last[i])+1-from+1]++
			total++
		}
	}
	for i := 1; i < len(p.dueOff); i++ {
		p.dueOff[i] += p.dueOff[i-1]
	}
	for range total {
		p.due = append(p.due, 0)
	}
	for i, t := range p.transient {
		if t {
			d := int(p.last[i]) + 1 - from
			p.due[p.dueOff[d+1]-1] = int32(from + i)
			p.dueOff[d+1]--
		}
	}
	// dueOff[d+1] was moved down to dueOff[d]'s end...: recount the offsets.
	clear(p.dueOff)
	for i, t := range p.transient {
		if t {
			p.dueOff[int(p.last[i])+1-from+1]++
		}
	}
	for i := 1; i < len(p.dueOff); i++ {
		p.dueOff[i] += p.dueOff[i-1]
	}
}

// planMatches reports whether the op at position i records what the plan
// holds for it (kind, inputs, whether its rule reads its output).
func (tp *Tape) planMatches(i int) bool {
	p := &tp.plan
	if i < p.from || i >= p.n || i >= tp.n {
		return false
	}
	k := i - p.from
	nd := tp.nodes[i]
	if nd.kind != p.kind[k] || readsOutput(nd) != p.readsOut[k] {
		return false
	}
	want := p.ins[p.insOff[k]:p.insOff[k+1]]
	if nd.numInputs() != len(want) {
		return false
	}
	for j, pos := range want {
		if nd.input(j).pos != pos {
			return false
		}
	}
	return true
}

// giveBackDue gives back the lent values whose last reader is the op
// before position q (q == plan.n: the last op before Seal).
func (tp *Tape) giveBackDue(q int) {
	p := &tp.plan
	d := q - p.from
	for _, i := range p.due[p.dueOff[d]:p.dueOff[d+1]] {
		tp.giveBackValue(tp.nodes[i])
	}
}

// giveBackValue gives nd's output buffer to the free list, leaving its
// Value without data, and marks the node's output as lent from then on.
func (tp *Tape) giveBackValue(nd *node) {
	v := nd.out
	if v.gone {
		return
	}
	tp.free.give(v.Value.Data)
	v.Value.Data = nil
	v.gone = true
	nd.lent = true
}

// planStep, at the push of position i, checks the op before i against the
// plan and gives back the values that fall due at i.
func (tp *Tape) planStep(i int) {
	p := &tp.plan
	if !tp.planOK || i <= p.from {
		return
	}
	if i >= p.n || !tp.planMatches(i-1) {
		tp.planOK = false
		return
	}
	tp.giveBackDue(i)
}

// planValue settles the output buffer of nd, just pushed at position i
// (not a view): lent from the free list when the plan says so, else its
// own.
func (tp *Tape) planValue(nd *node, i int) {
	p := &tp.plan
	lend := tp.planOK && tp.planMatches(i) && p.transient[i-p.from]
	// planMatches(i) compared what push knows: the kind and inputs.
	v := nd.out
	n := shapeLen(v.Value.Shape)
	switch {
	case nd.lent && !v.gone: // still lent from an earlier step
		tp.free.give(v.Value.Data)
		v.Value.Data = nil
	case !nd.lent && lend: // its own buffer joins the free list
		tp.free.give(v.Value.Data)
		v.Value.Data = nil
	}
	v.gone = false
	if lend {
		v.Value.Data = tp.free.take(n)
		nd.lent = true
	} else if nd.lent || v.Value.Data == nil {
		v.Value.Data = make([]float32, n)
		nd.lent = false
	}
}

// checkLive panics when v's value went back to the tape.
func checkLive(v *Var) {
	if v.gone {
		panic(fmt.Sprintf("tensorcore: an op reads the value %v that Seal let the tape reuse", v.Value.Shape))
	}
}
