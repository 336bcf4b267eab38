package dataset

import "fmt"

// Position is a point in a job's data order: the epoch, counting from 0, and
// how many samples of that epoch's order have been consumed.
//
// The order of epoch e is the permutation Sampler gives for
// (seed, e), so single-node training and the ring visit the same samples in
// the same global order. Consumed counts a prefix of that order: the
// sharding below keeps it a prefix whatever the ring size, so a position is
// independent of how many generations the epoch went through.
type Position struct {
	Epoch    int
	Consumed int // in [0, n] for an epoch of n samples
}

// String formats p as "epoch E consumed C".
func (p Position) String() string {
	return fmt.Sprintf("epoch %d consumed %d", p.Epoch, p.Consumed)
}

// ShardSpec names the remainder of one epoch to split among a ring.
type ShardSpec struct {
	Samples  int    // n, the samples per epoch; > 0
	Seed     uint64 // the job's data seed
	Shuffle  bool   // false visits 0, 1, …, n−1 every epoch
	Position        // where the epoch stands; Consumed in [0, Samples]
	World    int    // ranks in the ring; ≥ 1
	Batch    int    // the job's global batch, samples per step; ≥ 1
}

func (s ShardSpec) validate() error {
	switch {
	case s.Samples <= 0:
		return fmt.Errorf("dataset: shard: sample count %d, want > 0", s.Samples)
	case s.Epoch < 0:
		return fmt.Errorf("dataset: shard: negative epoch %d", s.Epoch)
	case s.Consumed < 0 || s.Consumed > s.Samples:
		return fmt.Errorf("dataset: shard: consumed %d outside [0, %d]", s.Consumed, s.Samples)
	}
	return nil
}

// EpochOrder returns the order in which the job visits its samples in
// spec's epoch: Sampler's permutation for (Seed, Epoch).
func EpochOrder(spec ShardSpec) ([]int, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	s, err := NewSamplerFromState(spec.Samples, SamplerState{Seed: spec.Seed, Epoch: spec.Epoch}, spec.Shuffle)
	if err != nil {
		return nil, fmt.Errorf("dataset: shard: %w", err)
	}
	order := make([]int, spec.Samples)
	if k := s.Next(order); k != spec.Samples {
		return nil, fmt.Errorf("dataset: shard: sampler gave %d of %d samples", k, spec.Samples)
	}
	return order, nil
}

// AppendShard appends to dst the sample indices rank visits, in order, for
// the rest of the epoch whose order is order, after consumed samples of it,
// in a ring of world ranks taking steps of batch samples: the
// concatenation of its AppendStepShare of every remaining step. Every
// remaining sample goes to exactly one rank and nothing is dropped; after
// any number of whole steps the samples visited are a prefix of order,
// which AdvancePosition locates, so a re-deal from there among any ring
// continues with exactly the samples not yet visited.
//
// The generation is deliberately not an input: the epoch's order depends on
// (seed, epoch) alone, so which samples a position has consumed does not
// depend on the ring's history. Arguments out of range are programmer
// errors and panic.
func AppendShard(dst []int, order []int, consumed, batch, rank, world int) []int {
	for c := consumed; c < len(order); c += batch {
		dst = AppendStepShare(dst, order, c, batch, rank, world)
	}
	if consumed == len(order) {
		AppendStepShare(nil, order, consumed, batch, rank, world) // the same argument checks
	}
	return dst
}

// validateRing checks spec as the split of an epoch among a ring.
func (s ShardSpec) validateRing() error {
	switch {
	case s.World < 1:
		return fmt.Errorf("dataset: shard: world %d, want ≥ 1", s.World)
	case s.Batch < 1:
		return fmt.Errorf("dataset: shard: batch %d, want ≥ 1", s.Batch)
	}
	return s.validate()
}

// AssignShard returns the sample indices rank of spec.World visits for the
// rest of spec's epoch (see AppendShard). It fails if spec or rank is out of
// range.
func AssignShard(spec ShardSpec, rank int) ([]int, error) {
	if err := spec.validateRing(); err != nil {
		return nil, err
	}
	if rank < 0 || rank >= spec.World {
		return nil, fmt.Errorf("dataset: shard: rank %d outside [0, %d)", rank, spec.World)
	}
	order, err := EpochOrder(spec)
	if err != nil {
		return nil, err
	}
	return AppendShard(nil, order, spec.Consumed, spec.Batch, rank, spec.World), nil
}

// AssignShards returns the shards of every rank of spec.World, indexed by
// rank (see AppendShard).
func AssignShards(spec ShardSpec) ([][]int, error) {
	if err := spec.validateRing(); err != nil {
		return nil, err
	}
	order, err := EpochOrder(spec)
	if err != nil {
		return nil, err
	}
	shards := make([][]int, spec.World)
	for r := range shards {
		shards[r] = AppendShard(nil, order, spec.Consumed, spec.Batch, r, spec.World)
	}
	return shards, nil
}

// AppendStepShare appends to dst rank's share of one training step that
// starts consumed samples into the epoch whose order is order, in a ring of
// world ranks, and returns the extended slice.
//
// A step takes the job's global batch: positions [consumed, min(n,
// consumed+batch)) of order, whatever the ring's size. They are dealt
// round-robin, so rank r gets positions consumed+r, consumed+r+world, …:
// every sample of the step goes to exactly one rank and shares differ by
// at most one. A ring of one takes the whole batch; a rank beyond the
// batch's size takes nothing. Because the step's samples depend only on
// (order, consumed, batch), a membership change between steps changes who
// computes which sample but neither the samples nor the global batch.
// Arguments out of range are programmer errors and panic.
func AppendStepShare(dst []int, order []int, consumed, batch, rank, world int) []int {
	if world < 1 || rank < 0 || rank >= world || batch < 1 || consumed < 0 || consumed > len(order) {
		panic(fmt.Sprintf("dataset: AppendStepShare: rank %d of world %d, batch %d, consumed %d of %d", rank, world, batch, consumed, len(order)))
	}
	end := min(len(order), consumed+batch)
	for i := consumed + rank; i < end; i += world {
		dst = append(dst, order[i])
	}
	return dst
}

// StepsPerEpoch is the number of steps of batch samples an epoch of n
// samples takes (the last one may be short).
func StepsPerEpoch(n, batch int) int { return (n + batch - 1) / batch }

// AdvancePosition returns the position after steps training steps from p,
// each taking the job's global batch of samples (the last step of an epoch
// takes what is left), over epochs of n samples.
//
// The step that consumes the epoch's last sample ends the epoch, and the
// next step begins epoch p.Epoch+1 at its start. A result never has
// Consumed == n: an epoch fully consumed is reported as the start of the
// next. Arguments out of range (n, batch < 1, steps < 0, p outside
// [0, n]) are programmer errors and panic.
func AdvancePosition(p Position, n, batch int, steps int64) Position {
	if n < 1 || batch < 1 || steps < 0 || p.Epoch < 0 || p.Consumed < 0 || p.Consumed > n {
		panic(fmt.Sprintf("dataset: AdvancePosition: %v, n %d, batch %d, steps %d", p, n, batch, steps))
	}
	per := int64(batch) // samples one full step consumes
	if p.Consumed == n {
		p = Position{Epoch: p.Epoch + 1}
	}
	// Finish the current epoch, if steps reach that far.
	left := int64(n - p.Consumed)
	toEnd := (left + per - 1) / per
	if steps < toEnd {
		return Position{Epoch: p.Epoch, Consumed: p.Consumed + int(steps*per)}
	}
	steps -= toEnd
	// Whole epochs from their start, then a part of one.
	full := (int64(n) + per - 1) / per
	return Position{Epoch: p.Epoch + 1 + int(steps/full), Consumed: int(steps % full * per)}
}
