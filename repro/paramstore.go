package repro

import (
	"fmt"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// paramStore holds the parameters of a hand-built net (the experiments
// that drive tensorcore directly): models.Builder initializes them from
// rng in the order add is called and lays them out in one arena, whose
// flat values and gradients an optimizer from models steps; each tensor is
// known by the index add returned.
type paramStore struct {
	b           *models.Builder
	vals, grads []*tensorcore.Tensor
	data, grad  []float32 // the arena's, set by build
}

func newParamStore(rng *rand.Rand) paramStore { return paramStore{b: models.NewBuilder(rng)} }

// add reserves a tensor of the given shape initialized by init and
// returns its index, for value and gradient.
func (s *paramStore) add(init models.Initializer, shape ...int) int {
	v, g := s.b.Param(fmt.Sprintf("p%d", len(s.vals)), shape, init)
	s.vals, s.grads = append(s.vals, v), append(s.grads, g)
	return len(s.vals) - 1
}

// build lays the tensors out in the arena. Call it once, after the last
// add.
func (s *paramStore) build() error {
	a, err := s.b.Build()
	if err != nil {
		return fmt.Errorf("repro: %w", err)
	}
	s.data, s.grad = a.Data, a.Grad
	return nil
}

// param records tensor i on tp as a trainable leaf.
func (s *paramStore) param(tp *tensorcore.Tape, i int) *tensorcore.Var {
	return tp.Param(s.vals[i], s.grads[i])
}
