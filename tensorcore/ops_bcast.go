package tensorcore

import "fmt"

// maxDims is the highest tensor rank the broadcasting and permuting ops
// handle.
const maxDims = 8

// bcast is the geometry of a strided walk over an output shape reading two
// operands a and b with their own element strides (0 along broadcast
// dimensions). Adjacent dimensions that are contiguous in all three are
// merged, so the innermost run is as long as possible.
type bcast struct {
	rank       int
	shape      [maxDims]int
	so, sa, sb [maxDims]int
}

// bcIter is a position in a bcast walk: the counters of the outer
// dimensions and the flat offsets into out, a and b.
type bcIter struct {
	ctr        [maxDims]int
	oo, oa, ob int
}

// rows returns the number of innermost runs and their length.
func (bc *bcast) rows() (rows, n int) {
	n = bc.shape[bc.rank-1]
	rows = 1
	for d := 0; d < bc.rank-1; d++ {
		rows *= bc.shape[d]
	}
	return rows, n
}

// next moves it to the start of the next innermost run.
func (bc *bcast) next(it *bcIter) {
	for d := bc.rank - 2; d >= 0; d-- {
		it.ctr[d]++
		it.oo += bc.so[d]
		it.oa += bc.sa[d]
		it.ob += bc.sb[d]
		if it.ctr[d] < bc.shape[d] {
			return
		}
		it.oo -= bc.so[d] * bc.shape[d]
		it.oa -= bc.sa[d] * bc.shape[d]
		it.ob -= bc.sb[d] * bc.shape[d]
		it.ctr[d] = 0
	}
}

// seek sets it to the start of innermost run number row.
func (bc *bcast) seek(it *bcIter, row int) {
	*it = bcIter{}
	for d := bc.rank - 2; d >= 0; d-- {
		k := row % bc.shape[d]
		row /= bc.shape[d]
		it.ctr[d] = k
		it.oo += k * bc.so[d]
		it.oa += k * bc.sa[d]
		it.ob += k * bc.sb[d]
	}
}

// full reports whether the strides st map the walk's positions to distinct
// elements (no broadcast dimension), so that disjoint ranges of the walk
// write disjoint elements.
func (bc *bcast) full(st *[maxDims]int) bool {
	for d := 0; d < bc.rank; d++ {
		if st[d] == 0 && bc.shape[d] > 1 {
			return false
		}
	}
	return true
}

// set fills bc from a shape and three stride vectors of the same rank,
// dropping size-1 dimensions and merging dimensions that are contiguous in
// all three operands.
func (bc *bcast) set(shape, so, sa, sb []int) {
	r := 0
	for d := range shape {
		if shape[d] == 1 {
			continue
		}
		if r > 0 && bc.so[r-1] == so[d]*shape[d] && bc.sa[r-1] == sa[d]*shape[d] && bc.sb[r-1] == sb[d]*shape[d] {
			bc.shape[r-1] *= shape[d]
			bc.so[r-1], bc.sa[r-1], bc.sb[r-1] = so[d], sa[d], sb[d]
			continue
		}
		bc.shape[r], bc.so[r], bc.sa[r], bc.sb[r] = shape[d], so[d], sa[d], sb[d]
		r++
	}
	if r == 0 {
		bc.shape[0], bc.so[0], bc.sa[0], bc.sb[0] = 1, 1, 1, 1
		r = 1
	}
	bc.rank = r
}

// contiguousStrides writes the row-major strides of shape into st.
func contiguousStrides(shape []int, st []int) {
	s := 1
	for d := len(shape) - 1; d >= 0; d-- {
		st[d] = s
		s *= shape[d]
	}
}

// broadcastShapes computes the numpy broadcast of a and b into out (which
// must have room for maxDims) and the strides of a and b aligned to it; it
// returns the output rank. It panics naming both shapes when they do not
// broadcast.
func broadcastShapes(a, b []int, out, sa, sb *[maxDims]int) int {
	r := max(len(a), len(b))
	if r > maxDims {
		panic(fmt.Sprintf("tensorcore: broadcast %v with %v: rank above %d", a, b, maxDims))
	}
	var ast, bst [maxDims]int
	contiguousStrides(a, ast[:len(a)])
	contiguousStrides(b, bst[:len(b)])
	for d := 0; d < r; d++ {
		da, db := 1, 1
		ia, ib := d-(r-len(a)), d-(r-len(b))
		if ia >= 0 {
			da = a[ia]
		}
		if ib >= 0 {
			db = b[ib]
		}
		switch {
		case da == db:
			out[d] = da
		case da == 1:
			out[d] = db
		case db == 1:
			out[d] = da
		default:
			panic(fmt.Sprintf("tensorcore: shapes %v and %v do not broadcast", a, b))
		}
		sa[d], sb[d] = 0, 0
		if ia >= 0 && da != 1 {
			sa[d] = ast[ia]
		}
		if ib >= 0 && db != 1 {
			sb[d] = bst[ib]
		}
	}
	return r
}
