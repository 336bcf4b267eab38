package tensorcore

import (
	"fmt"
	"math"
)

// normDim returns dim counted from the front (a negative dim counts from
// the back), panicking when it is out of range for shape.
func normDim(name string, shape []int, dim int) int {
	if dim < 0 {
		dim += len(shape)
	}
	if dim < 0 || dim >= len(shape) {
		panic(fmt.Sprintf("tensorcore: %s: dimension %d out of range for shape %v", name, dim, shape))
	}
	return dim
}

// splitAt returns the products of shape before dim, at dim and after it.
func splitAt(shape []int, dim int) (outer, size, inner int) {
	outer, inner = 1, 1
	for d := 0; d < dim; d++ {
		outer *= shape[d]
	}
	for d := dim + 1; d < len(shape); d++ {
		inner *= shape[d]
	}
	return outer, shape[dim], inner
}

// Sum returns the sum of x over dims (all dimensions when dims is empty;
// negative dims count from the back). With keepdim the reduced dimensions
// stay with size 1; otherwise they are removed, and a result with no
// dimensions left has shape (1).
func (tp *Tape) Sum(x *Var, dims []int, keepdim bool) *Var { return tp.reduce(x, dims, keepdim, false) }

// Mean is Sum divided by the number of elements summed.
func (tp *Tape) Mean(x *Var, dims []int, keepdim bool) *Var { return tp.reduce(x, dims, keepdim, true) }

// SumAll returns the sum of all elements of x, shape (1).
func (tp *Tape) SumAll(x *Var) *Var { return tp.reduce(x, nil, false, false) }

// MeanAll returns the mean of all elements of x, shape (1).
func (tp *Tape) MeanAll(x *Var) *Var { return tp.reduce(x, nil, false, true) }

func (tp *Tape) reduce(x *Var, dims []int, keepdim, mean bool) *Var {
	xs := x.Value.Shape
	if len(xs) > maxDims {
		panic(fmt.Sprintf("tensorcore: Sum: shape %v has rank above %d", xs, maxDims))
	}
	var red [maxDims]bool
	if len(dims) == 0 {
		for d := range xs {
			red[d] = true
		}
	}
	for _, d := range dims {
		red[normDim("Sum", xs, d)] = true
	}
	var keep, outShape, xst, kst [maxDims]int
	count := 1
	for d, n := range xs {
		keep[d] = n
		if red[d] {
			keep[d] = 1
			count *= n
		}
	}
	os := reducedShape(&outShape, xs, &red, keepdim)
	nd := tp.push(opSum, x, nil, nil, os, false)
	contiguousStrides(xs, xst[:len(xs)])
	contiguousStrides(keep[:len(xs)], kst[:len(xs)])
	for d := range xs {
		if red[d] {
			kst[d] = 0
		}
	}
	nd.bc.set(xs, xst[:len(xs)], xst[:len(xs)], kst[:len(xs)])
	scale := float32(1)
	if mean {
		scale = 1 / float32(count)
	}
	nd.scalar = scale
	y := nd.out.Value.Data
	clear(y)
	bc := &nd.bc
	rows, n := bc.rows()
	ib := bc.sb[bc.rank-1]
	xd := x.Value.Data
	var it bcIter
	for i := 0; i < rows; i++ {
		if ib == 0 {
			y[it.ob] += vecSum(xd[it.oa : it.oa+n])
		} else {
			vecAdd(y[it.ob:it.ob+n], y[it.ob:it.ob+n], xd[it.oa:it.oa+n])
		}
		bc.next(&it)
	}
	if mean {
		vecScale(y, scale, y)
	}
	return nd.out
}

// Max returns the maximum of x along dim (NaN if any element is NaN), with
// the dimension kept as size 1 when keepdim; the position of each maximum
// is kept for backward, which routes the gradient to it alone.
func (tp *Tape) Max(x *Var, dim int, keepdim bool) *Var {
	xs := x.Value.Shape
	dim = normDim("Max", xs, dim)
	var shape [maxDims]int
	var red [maxDims]bool
	red[dim] = true
	s := reducedShape(&shape, xs, &red, keepdim)
	nd := tp.push(opMax, x, nil, nil, s, false)
	outer, size, inner := splitAt(xs, dim)
	nd.axis = axisArgs{outer: outer, size: size, inner: inner}
	nd.iaux = growI(nd.iaux, outer*inner)
	xd, y, arg := x.Value.Data, nd.out.Value.Data, nd.iaux
	for o := 0; o < outer; o++ {
		for in := 0; in < inner; in++ {
			base := o*size*inner + in
			m, bi := xd[base], 0
			for k := 1; k < size && m == m; k++ {
				if v := xd[base+k*inner]; v > m || v != v {
					m, bi = v, k
				}
			}
			y[o*inner+in] = m
			arg[o*inner+in] = int32(bi)
		}
	}
	return nd.out
}

// Softmax returns exp(x) / sum(exp(x)) along dim, computed stably.
func (tp *Tape) Softmax(x *Var, dim int) *Var { return tp.softmax(opSoftmax, x, dim) }

// LogSoftmax returns x - log(sum(exp(x))) along dim, computed stably.
func (tp *Tape) LogSoftmax(x *Var, dim int) *Var { return tp.softmax(opLogSoftmax, x, dim) }

func (tp *Tape) softmax(kind opKind, x *Var, dim int) *Var {
	xs := x.Value.Shape
	dim = normDim("Softmax", xs, dim)
	nd := tp.push(kind, x, nil, nil, xs, false)
	outer, size, inner := splitAt(xs, dim)
	nd.axis = axisArgs{outer: outer, size: size, inner: inner}
	softmaxForward(x.Value.Data, nd.out.Value.Data, outer, size, inner, kind == opLogSoftmax)
	return nd.out
}

// softmaxForward computes the (log-)softmax of x along the middle dimension
// of an (outer, size, inner) array into y.
func softmaxForward(x, y []float32, outer, size, inner int, logOut bool) {
	for o := 0; o < outer; o++ {
		for in := 0; in < inner; in++ {
			base := o*size*inner + in
			m := x[base]
			for k := 1; k < size; k++ {
				if v := x[base+k*inner]; v > m || v != v {
					m = v
				}
			}
			if math.IsInf(float64(m), -1) {
				m = 0 // all -Inf: keep exp finite so the result is NaN-free where PyTorch's is
			}
			var s float64
			for k := 0; k < size; k++ {
				e := math.Exp(float64(x[base+k*inner] - m))
				s += e
				if !logOut {
					y[base+k*inner] = float32(e)
				}
			}
			if logOut {
				lse := m + float32(math.Log(s))
				for k := 0; k < size; k++ {
					y[base+k*inner] = x[base+k*inner] - lse
				}
			} else {
				inv := float32(1 / s)
				for k := 0; k < size; k++ {
					y[base+k*inner] *= inv
				}
			}
		}
	}
}

// reducedShape writes into dst the shape of xs reduced over the dimensions
// marked in red (kept as size 1 when keepdim) and returns it; a reduction
// that leaves no dimension has shape (1).
func reducedShape(dst *[maxDims]int, xs []int, red *[maxDims]bool, keepdim bool) []int {
	r := 0
	for d, n := range xs {
		switch {
		case !red[d]:
			dst[r] = n
		case keepdim:
			dst[r] = 1
		default:
			continue
		}
		r++
	}
	if r == 0 {
		dst[0] = 1
		r = 1
	}
	return dst[:r]
}
