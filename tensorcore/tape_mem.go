package tensorcore

import "slices"

// TapeMemory is what a Tape holds, in bytes, by kind (see Tape.Memory).
type TapeMemory struct {
	Values  int64 // op outputs (a Reshape's output shares its input's)
	Grads   int64 // gradients the tape owns that are live: op outputs' and Params' it allocated
	Free    int64 // buffers the tape keeps for reuse by later gradients and temporaries
	Scratch int64 // per-op temporaries kept between steps
	Saved   int64 // per-op saved values: statistics, masks, probabilities, argmax positions
}

// Total is the sum of every kind.
func (m TapeMemory) Total() int64 { return m.Values + m.Grads + m.Free + m.Scratch + m.Saved }

// Memory reports the buffers the tape holds, recorded ops and those kept
// from longer earlier steps alike. Caller-owned memory (Params' gradients
// given to Param, Consts' values) is not counted. It allocates nothing.
func (tp *Tape) Memory() TapeMemory {
	var m TapeMemory
	for _, nd := range tp.nodes {
		if nd.kind != opReshape && !nd.out.gone {
			m.Values += 4 * int64(cap(nd.out.Value.Data))
		}
		if g := nd.out.Grad; g != nil {
			m.Grads += 4 * int64(cap(g.Data))
		}
		m.Scratch += 4 * int64(cap(nd.scratch))
		m.Saved += 4*int64(cap(nd.aux)) + 4*int64(cap(nd.iaux))
	}
	m.Free = tp.free.bytes()
	for _, v := range tp.leaves {
		if v.ownGrad && v.Grad != nil {
			m.Grads += 4 * int64(cap(v.Grad.Data))
		}
	}
	return m
}

// freeList keeps a tape's spare float buffers by capacity. Buffers are
// taken and given back in the order the recorded ops dictate, so a step
// that repeats the last one finds every buffer it needs and allocates
// nothing.
type freeList struct {
	bufs  map[int][][]float32 // capacity -> stack of buffers of that capacity
	sizes []int               // the capacities in bufs, ascending
}

// take returns a buffer of n elements, its contents unspecified: a spare
// one of the smallest capacity from n to 2n when there is one (the stages
// of a convolutional net halve their sizes, so the buffers of one serve
// the next), else a new one.
func (f *freeList) take(n int) []float32 {
	for _, c := range f.sizes {
		if c < n {
			continue
		}
		if c > 2*n {
			break
		}
		if s := f.bufs[c]; len(s) > 0 {
			b := s[len(s)-1]
			s[len(s)-1] = nil
			f.bufs[c] = s[:len(s)-1]
			return b[:n]
		}
	}
	return make([]float32, n)
}

// give keeps b (its whole capacity) for a later take.
func (f *freeList) give(b []float32) {
	if f.bufs == nil {
		f.bufs = make(map[int][][]float32)
	}
	c := cap(b)
	s, ok := f.bufs[c]
	if !ok {
		i, _ := slices.BinarySearch(f.sizes, c)
		f.sizes = slices.Insert(f.sizes, i, c)
	}
	f.bufs[c] = append(s, b[:c])
}

// bytes is what the spare buffers hold.
func (f *freeList) bytes() int64 {
	var n int64
	for _, s := range f.bufs {
		for _, b := range s {
			n += 4 * int64(cap(b))
		}
	}
	return n
}

// handGrad hands the gradient buffer of nd's output, holding dY, to nd's
// input v when v's gradient is yet untouched in this Backward and of the
// same length, so that nd's rule can turn dY into v's gradient in place;
// it reports whether it did. nd's output keeps reading the buffer until
// its rule is done, then lets go of it (releaseGrad) without giving it
// back.
func (tp *Tape) handGrad(v *Var, nd *node) bool {
	o := nd.out
	if v.param || !v.needGrad || v.gradGen == tp.gen || !o.pooled || o.handed || o.keepGen == tp.gen ||
		len(o.gradT.Data) != shapeLen(v.Value.Shape) {
		return false
	}
	tp.releaseGrad(v) // one kept from an earlier Backward
	v.gradT.Data = o.gradT.Data
	v.gradT.Shape = append(v.gradT.Shape[:0], v.Value.Shape...)
	v.Grad, v.pooled, v.gradGen = &v.gradT, true, tp.gen
	o.handed = true
	return true
}

// releaseGrad gives v's gradient buffer back to the free list, when the
// tape lent it, and leaves v without a gradient.
func (tp *Tape) releaseGrad(v *Var) {
	if !v.pooled {
		return
	}
	if !v.handed {
		tp.free.give(v.gradT.Data)
	}
	v.handed = false
	v.gradT.Data = nil
	v.Grad, v.pooled = nil, false
}

// releaseKept, at the start of a Backward (tp.gen already advanced), takes
// back the gradients KeepGrad kept from the last one and keeps in tp.kept
// only the vars asked to keep this one's.
func (tp *Tape) releaseKept() {
	k := tp.kept[:0]
	for _, v := range tp.kept {
		tp.releaseGrad(v)
		if v.keepGen == tp.gen {
			k = append(k, v)
		}
	}
	clear(tp.kept[len(k):])
	tp.kept = k
}
