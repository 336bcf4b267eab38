package repro

import (
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// paramStore is the flat parameter and gradient slices of a hand-built
// net, with one view of each per tensor, for the experiments that drive
// tensorcore directly: an optimizer from models steps the two slices.
// Tensors are laid out in the order add is called.
type paramStore struct {
	data, grad  []float32
	views       []storedParam
	vals, grads []*tensorcore.Tensor // views into data and grad, made by build
}

type storedParam struct {
	shape []int
	off   int
	init  models.Initializer
}

// add reserves a tensor of the given shape initialized by init and
// returns its index, for value and gradient.
func (s *paramStore) add(init models.Initializer, shape ...int) int {
	s.views = append(s.views, storedParam{shape: shape, off: len(s.data), init: init})
	s.data = append(s.data, make([]float32, shapeSize(shape))...)
	return len(s.views) - 1
}

// build allocates the gradient slice and initializes every tensor from
// rng, in order. Call it once, after the last add.
func (s *paramStore) build(rng *rand.Rand) {
	s.grad = make([]float32, len(s.data))
	for _, p := range s.views {
		end := p.off + shapeSize(p.shape)
		v := tensorcore.FromSlice(s.data[p.off:end], p.shape...)
		p.init(v.Data, v.Shape, rng)
		s.vals = append(s.vals, v)
		s.grads = append(s.grads, tensorcore.FromSlice(s.grad[p.off:end], p.shape...))
	}
}

// param records tensor i on tp as a trainable leaf.
func (s *paramStore) param(tp *tensorcore.Tape, i int) *tensorcore.Var {
	return tp.Param(s.vals[i], s.grads[i])
}

func shapeSize(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
