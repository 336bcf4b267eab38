package dataset

import (
	"fmt"
	"math/rand/v2"
)

// Sampler yields the sample indices of each epoch in a deterministic order.
//
// With shuffling, epoch e visits the samples in a permutation that depends
// only on (seed, e): a Fisher–Yates shuffle driven by math/rand/v2's PCG
// seeded with (seed, e). Without shuffling every epoch is 0, 1, …, n−1.
//
// Sharding for data parallelism (Shard) keeps, of each epoch's permutation,
// the positions i < world·⌊n/world⌋ with i ≡ rank (mod world): the tail of
// n mod world positions is dropped, so every rank gets the same number of
// samples, ⌊n/world⌋, and no sample is seen twice in an epoch. Which samples
// are dropped changes from epoch to epoch when shuffling; without shuffling
// it is always the last n mod world.
//
// A Sampler is not safe for concurrent use. Next allocates nothing.
type Sampler struct {
	n           int
	seed        uint64
	shuffle     bool
	rank, world int
	epoch       int
	pos         int   // samples of this shard already returned in this epoch
	perm        []int // the epoch's permutation of [0, n)
	pcg         rand.PCG
	rng         *rand.Rand // draws from pcg
}

// SamplerState is what a Sampler needs to resume: the seed, the current
// epoch and the number of this shard's samples already returned in it.
type SamplerState struct {
	Seed     uint64 `json:"seed"`
	Epoch    int    `json:"epoch"`
	Position int    `json:"position"`
}

// NewSampler returns a sampler over n samples at the start of epoch 0,
// unsharded (rank 0 of 1). n < 0 panics.
func NewSampler(n int, seed uint64, shuffle bool) *Sampler {
	if n < 0 {
		panic(fmt.Sprintf("dataset: NewSampler: negative sample count %d", n))
	}
	s := &Sampler{n: n, seed: seed, shuffle: shuffle, world: 1, perm: make([]int, n)}
	s.rng = rand.New(&s.pcg)
	s.permute()
	return s
}

// NewSamplerFromState returns an unsharded sampler over n samples positioned
// at st. Call Shard afterwards to restore a shard; st.Position then counts
// that shard's samples. It fails if st is not a state of such a sampler.
func NewSamplerFromState(n int, st SamplerState, shuffle bool) (*Sampler, error) {
	switch {
	case n < 0:
		return nil, fmt.Errorf("dataset: sampler state: negative sample count %d", n)
	case st.Epoch < 0:
		return nil, fmt.Errorf("dataset: sampler state: negative epoch %d", st.Epoch)
	case st.Position < 0 || st.Position > n:
		return nil, fmt.Errorf("dataset: sampler state: position %d outside [0, %d]", st.Position, n)
	}
	s := &Sampler{n: n, seed: st.Seed, shuffle: shuffle, world: 1, epoch: st.Epoch, pos: st.Position, perm: make([]int, n)}
	s.rng = rand.New(&s.pcg)
	s.permute()
	return s, nil
}

// Shard restricts the sampler to rank's share of each epoch among world
// ranks (see Sampler). The current epoch and position are kept; an error
// is returned, and nothing changed, if rank or world are out of range or the
// position lies beyond the shard's length.
func (s *Sampler) Shard(rank, world int) error {
	if world < 1 || rank < 0 || rank >= world {
		return fmt.Errorf("dataset: sampler: bad shard rank %d of world %d", rank, world)
	}
	if l := s.n / world; s.pos > l {
		return fmt.Errorf("dataset: sampler: position %d beyond the %d samples of shard %d/%d", s.pos, l, rank, world)
	}
	s.rank, s.world = rank, world
	return nil
}

// Len returns the number of samples this sampler returns per epoch.
func (s *Sampler) Len() int { return s.n / s.world }

// Epoch returns the current epoch, counting from 0.
func (s *Sampler) Epoch() int { return s.epoch }

// Next fills dst with the next indices of the current epoch and returns how
// many it wrote: len(dst) while enough remain, then a short final batch, then
// 0 until NextEpoch is called.
func (s *Sampler) Next(dst []int) int {
	k := min(len(dst), s.Len()-s.pos)
	for j := range k {
		dst[j] = s.perm[s.rank+(s.pos+j)*s.world]
	}
	s.pos += k
	return k
}

// NextEpoch moves to the start of the following epoch.
func (s *Sampler) NextEpoch() {
	s.epoch++
	s.pos = 0
	s.permute()
}

// State returns the sampler's resumable state.
func (s *Sampler) State() SamplerState {
	return SamplerState{Seed: s.seed, Epoch: s.epoch, Position: s.pos}
}

// permute computes the current epoch's permutation into s.perm.
func (s *Sampler) permute() {
	for i := range s.perm {
		s.perm[i] = i
	}
	if !s.shuffle {
		return
	}
	s.pcg.Seed(s.seed, uint64(s.epoch))
	s.rng.Shuffle(len(s.perm), func(i, j int) { s.perm[i], s.perm[j] = s.perm[j], s.perm[i] })
}
