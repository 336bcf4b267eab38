package tensorcore

import "fmt"

// Reshape returns x with a new shape of the same length (one -1 allowed).
// The output shares x's data.
func (tp *Tape) Reshape(x *Var, shape ...int) *Var {
	var sb [maxDims]int
	if len(shape) > maxDims {
		panic(fmt.Sprintf("tensorcore: Reshape %v to %v: rank above %d", x.Value.Shape, heapShape(shape), maxDims))
	}
	s := sb[:len(shape)]
	copy(s, shape)
	inferShape(s, shapeLen(x.Value.Shape), x.Value.Shape) // Data is nil while lent back (see Seal)
	nd := tp.push(opReshape, x, nil, nil, s, true)
	nd.out.Value.Data = x.Value.Data
	return nd.out
}

// Transpose returns x with its dimensions permuted: output dimension d is
// input dimension perm[d]. The data is copied.
func (tp *Tape) Transpose(x *Var, perm ...int) *Var {
	xs := x.Value.Shape
	if len(perm) != len(xs) || len(xs) > maxDims {
		panic(fmt.Sprintf("tensorcore: Transpose: permutation %v does not fit shape %v", heapShape(perm), xs))
	}
	var seen [maxDims]bool
	var shape, xst, ost, pst [maxDims]int
	contiguousStrides(xs, xst[:len(xs)])
	for d, p := range perm {
		if p < 0 || p >= len(xs) || seen[p] {
			panic(fmt.Sprintf("tensorcore: Transpose: permutation %v does not fit shape %v", heapShape(perm), xs))
		}
		seen[p] = true
		shape[d] = xs[p]
		pst[d] = xst[p]
	}
	r := len(xs)
	nd := tp.push(opTranspose, x, nil, nil, shape[:r], false)
	contiguousStrides(shape[:r], ost[:r])
	nd.bc.set(shape[:r], ost[:r], pst[:r], pst[:r])
	y, xd := nd.out.Value.Data, x.Value.Data
	bc := &nd.bc
	rows, n := bc.rows()
	ia := bc.sa[bc.rank-1]
	var it bcIter
	for i := 0; i < rows; i++ {
		yr := y[it.oo : it.oo+n]
		if ia == 1 {
			copy(yr, xd[it.oa:it.oa+n])
		} else {
			pa := it.oa
			for j := range yr {
				yr[j] = xd[pa]
				pa += ia
			}
		}
		bc.next(&it)
	}
	return nd.out
}

// Concat joins xs along dim; all other dimensions must agree.
func (tp *Tape) Concat(dim int, xs ...*Var) *Var {
	if len(xs) == 0 {
		panic("tensorcore: Concat: no inputs")
	}
	s0 := xs[0].Value.Shape
	dim = normDim("Concat", s0, dim)
	var shape [maxDims]int
	copy(shape[:], s0)
	total := 0
	need := false
	for _, v := range xs {
		s := v.Value.Shape
		if len(s) != len(s0) {
			panic(fmt.Sprintf("tensorcore: Concat: shapes %v and %v differ in rank", s0, s))
		}
		for d := range s {
			if d != dim && s[d] != s0[d] {
				panic(fmt.Sprintf("tensorcore: Concat along %d: shapes %v and %v do not fit", dim, s0, s))
			}
		}
		total += s[dim]
		need = need || v.needGrad
	}
	shape[dim] = total
	nd := tp.push(opConcat, nil, nil, nil, shape[:len(s0)], false)
	nd.out.needGrad = need
	nd.xs = append(nd.xs[:0], xs...)
	for _, v := range xs {
		tp.useInput(v, readsInputs(opConcat))
	}
	outer, _, inner := splitAt(shape[:len(s0)], dim)
	nd.concat = concatArgs{dim: dim, outer: outer, inner: inner, total: total}
	y := nd.out.Value.Data
	off := 0
	for _, v := range xs {
		k := v.Value.Shape[dim] * inner
		xd := v.Value.Data
		for o := 0; o < outer; o++ {
			copy(y[o*total*inner+off:o*total*inner+off+k], xd[o*k:(o+1)*k])
		}
		off += k
	}
	return nd.out
}

// Slice returns x[..., start:end, ...] along dim (a copy).
func (tp *Tape) Slice(x *Var, dim, start, end int) *Var {
	xs := x.Value.Shape
	dim = normDim("Slice", xs, dim)
	if start < 0 || end > xs[dim] || start > end {
		panic(fmt.Sprintf("tensorcore: Slice: [%d:%d] along %d out of range for shape %v", start, end, dim, xs))
	}
	var shape [maxDims]int
	copy(shape[:], xs)
	shape[dim] = end - start
	nd := tp.push(opSlice, x, nil, nil, shape[:len(xs)], false)
	outer, size, inner := splitAt(xs, dim)
	nd.slice = sliceArgs{axis: axisArgs{outer: outer, size: size, inner: inner}, start: start, end: end}
	y, xd := nd.out.Value.Data, x.Value.Data
	k := (end - start) * inner
	for o := 0; o < outer; o++ {
		copy(y[o*k:(o+1)*k], xd[(o*size+start)*inner:(o*size+start)*inner+k])
	}
	return nd.out
}

// Pad2D pads the last two dimensions of x (rank >= 2) with zeros: top and
// bottom rows, left and right columns.
func (tp *Tape) Pad2D(x *Var, top, bottom, left, right int) *Var {
	xs := x.Value.Shape
	if len(xs) < 2 || len(xs) > maxDims || top < 0 || bottom < 0 || left < 0 || right < 0 {
		panic(fmt.Sprintf("tensorcore: Pad2D: shape %v with padding %d,%d,%d,%d", xs, top, bottom, left, right))
	}
	var shape [maxDims]int
	r := len(xs)
	copy(shape[:], xs)
	h, w := xs[r-2], xs[r-1]
	oh, ow := h+top+bottom, w+left+right
	shape[r-2], shape[r-1] = oh, ow
	nd := tp.push(opPad2D, x, nil, nil, shape[:r], false)
	planes := shapeLen(xs[:r-2])
	nd.pad = padArgs{planes: planes, h: h, w: w, top: top, left: left}
	y, xd := nd.out.Value.Data, x.Value.Data
	clear(y)
	for p := 0; p < planes; p++ {
		for i := 0; i < h; i++ {
			copy(y[(p*oh+i+top)*ow+left:(p*oh+i+top)*ow+left+w], xd[(p*h+i)*w:(p*h+i+1)*w])
		}
	}
	return nd.out
}

// Gather picks one element along dim for every position of the other
// dimensions: the output has x's shape without dim, and out[o, i] =
// x[o, idx[o*inner+i], i], where o runs over the dimensions before dim and
// i over those after. It is PyTorch's gather with an index of size 1 along
// dim, squeezed (e.g. picking each row's label column). idx must not change
// before Backward.
func (tp *Tape) Gather(x *Var, dim int, idx []int) *Var {
	xs := x.Value.Shape
	dim = normDim("Gather", xs, dim)
	outer, size, inner := splitAt(xs, dim)
	if len(idx) != outer*inner {
		panic(fmt.Sprintf("tensorcore: Gather: %d indices for shape %v along %d, want %d", len(idx), xs, dim, outer*inner))
	}
	var shape [maxDims]int
	r := 0
	for d, n := range xs {
		if d != dim {
			shape[r] = n
			r++
		}
	}
	s := shape[:r]
	if r == 0 {
		shape[0] = 1
		s = shape[:1]
	}
	nd := tp.push(opGather, x, nil, nil, s, false)
	nd.axis = axisArgs{outer: outer, size: size, inner: inner}
	nd.idx = idx
	y, xd := nd.out.Value.Data, x.Value.Data
	for o := 0; o < outer; o++ {
		for i := 0; i < inner; i++ {
			k := idx[o*inner+i]
			if k < 0 || k >= size {
				panic(fmt.Sprintf("tensorcore: Gather: index %d out of range [0, %d) for shape %v along %d", k, size, xs, dim))
			}
			y[o*inner+i] = xd[(o*size+k)*inner+i]
		}
	}
	return nd.out
}

// IndexSelect returns the slices of x at positions idx along dim, in that
// order (repeats allowed): the output has x's shape with dim of size
// len(idx). idx must not change before Backward.
func (tp *Tape) IndexSelect(x *Var, dim int, idx []int) *Var {
	xs := x.Value.Shape
	dim = normDim("IndexSelect", xs, dim)
	outer, size, inner := splitAt(xs, dim)
	var shape [maxDims]int
	copy(shape[:], xs)
	shape[dim] = len(idx)
	nd := tp.push(opIndexSelect, x, nil, nil, shape[:len(xs)], false)
	nd.axis = axisArgs{outer: outer, size: size, inner: inner}
	nd.idx = idx
	y, xd := nd.out.Value.Data, x.Value.Data
	m := len(idx)
	for j, k := range idx {
		if k < 0 || k >= size {
			panic(fmt.Sprintf("tensorcore: IndexSelect: index %d out of range [0, %d) for shape %v along %d", k, size, xs, dim))
		}
		for o := 0; o < outer; o++ {
			copy(y[(o*m+j)*inner:(o*m+j+1)*inner], xd[(o*size+k)*inner:(o*size+k+1)*inner])
		}
	}
	return nd.out
}
