package tensorcore

import (
	"fmt"
	"math"
)

// Tensor is a contiguous row-major float32 array with a shape. Images are
// NCHW. A view (Reshape) shares Data with the tensor it was taken from. A
// tensor with an empty Shape holds one element.
type Tensor struct {
	Shape []int
	Data  []float32
}

// New returns a zeroed tensor of the given shape. It panics on a negative
// dimension.
func New(shape ...int) *Tensor {
	n := shapeLen(shape)
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// FromSlice wraps data (not copied) as a tensor of the given shape. It
// panics, naming the shape and the length, when len(data) does not match.
func FromSlice(data []float32, shape ...int) *Tensor {
	if n := shapeLen(shape); n != len(data) {
		panic(fmt.Sprintf("tensorcore: FromSlice: shape %v needs %d elements, data has %d", shape, n, len(data)))
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}
}

// Len returns the number of elements, the product of Shape.
func (t *Tensor) Len() int { return len(t.Data) }

// Reshape returns a view of t with a new shape of the same length; at most
// one dimension may be -1 and is then inferred. It panics when the shapes do
// not fit.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	s := append([]int(nil), shape...)
	inferShape(s, len(t.Data), t.Shape)
	return &Tensor{Shape: s, Data: t.Data}
}

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// HasNaNOrInf reports whether any element of xs is NaN or ±Inf.
func HasNaNOrInf(xs []float32) bool {
	// x-x is 0 for finite x and NaN for NaN and ±Inf; summing keeps any NaN.
	var acc float32
	for _, v := range xs {
		acc += v - v
	}
	return acc != 0 || math.IsNaN(float64(acc))
}

// shapeLen returns the product of shape, panicking on a negative dimension.
func shapeLen(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("tensorcore: negative dimension in shape %v", heapShape(shape)))
		}
		n *= d
	}
	return n
}

// inferShape replaces a single -1 in s so that s holds n elements, panicking
// (naming the old shape) when that is impossible.
func inferShape(s []int, n int, old []int) {
	neg, prod := -1, 1
	for i, d := range s {
		switch {
		case d == -1 && neg < 0:
			neg = i
		case d < 0:
			panic(fmt.Sprintf("tensorcore: reshape %v to %v: bad dimension", heapShape(old), heapShape(s)))
		default:
			prod *= d
		}
	}
	if neg >= 0 {
		if prod == 0 || n%prod != 0 {
			panic(fmt.Sprintf("tensorcore: reshape %v to %v: cannot infer -1", heapShape(old), heapShape(s)))
		}
		s[neg] = n / prod
		prod = n
	}
	if prod != n {
		panic(fmt.Sprintf("tensorcore: reshape %v (%d elements) to %v", heapShape(old), n, heapShape(s)))
	}
}

// heapShape copies a shape for a panic message, so that shapes built in
// stack arrays on hot paths do not escape to the heap.
func heapShape(s []int) []int { return append([]int(nil), s...) }
