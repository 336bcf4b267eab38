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
}

func (s ShardSpec) validate() error {
	switch {
	case s.Samples <= 0:
		return fmt.Errorf("dataset: shard: sample count %d, want > 0", s.Samples)
	case s.World < 1:
		return fmt.Errorf("dataset: shard: world %d, want ≥ 1", s.World)
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

// AppendShard appends to dst the sample indices rank must visit, in order,
// for the rest of the epoch whose order is order, after consumed samples of
// it, in a ring of world ranks, and returns the extended slice.
//
// Rank r gets the positions consumed+r, consumed+r+world, consumed+r+2·world,
// … of order: every remaining sample goes to exactly one rank, nothing is
// dropped, and shard lengths differ by at most one (the first
// (n−consumed) mod world ranks get the extra sample). Because the split is
// strided, when every rank has visited its first k samples (or all of them,
// where its shard is shorter), the samples visited are exactly the positions
// [consumed, min(n, consumed+k·world)) of order, a prefix; AdvancePosition
// computes the new consumed count, and a re-shard from there among any ring
// continues with exactly the samples not yet visited.
//
// The generation is deliberately not an input: the epoch's order depends on
// (seed, epoch) alone, so which samples a position has consumed does not
// depend on the ring's history. rank and world out of range, or consumed
// outside [0, len(order)], are programmer errors and panic.
func AppendShard(dst []int, order []int, consumed, rank, world int) []int {
	if world < 1 || rank < 0 || rank >= world || consumed < 0 || consumed > len(order) {
		panic(fmt.Sprintf("dataset: AppendShard: rank %d of world %d, consumed %d of %d", rank, world, consumed, len(order)))
	}
	for i := consumed + rank; i < len(order); i += world {
		dst = append(dst, order[i])
	}
	return dst
}

// AssignShard returns the sample indices rank of spec.World visits for the
// rest of spec's epoch (see AppendShard). It fails if spec or rank is out of
// range.
func AssignShard(spec ShardSpec, rank int) ([]int, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if rank < 0 || rank >= spec.World {
		return nil, fmt.Errorf("dataset: shard: rank %d outside [0, %d)", rank, spec.World)
	}
	order, err := EpochOrder(spec)
	if err != nil {
		return nil, err
	}
	return AppendShard(nil, order, spec.Consumed, rank, spec.World), nil
}

// AssignShards returns the shards of every rank of spec.World, indexed by
// rank (see AppendShard).
func AssignShards(spec ShardSpec) ([][]int, error) {
	order, err := EpochOrder(spec)
	if err != nil {
		return nil, err
	}
	shards := make([][]int, spec.World)
	for r := range shards {
		shards[r] = AppendShard(nil, order, spec.Consumed, r, spec.World)
	}
	return shards, nil
}

// AdvancePosition returns the position after steps lock-step training steps
// from p, in a ring of world ranks that each take up to batch samples of
// their shard per step, over epochs of n samples.
//
// One step consumes min(world·batch, what is left of the epoch) samples; the
// step that consumes the epoch's last sample ends the epoch, and the next
// step begins epoch p.Epoch+1 at its start (every new epoch is split afresh
// with consumed 0). A result never has Consumed == n: an epoch fully
// consumed is reported as the start of the next. Arguments out of range
// (n, world, batch < 1, steps < 0, p outside [0, n]) are programmer errors
// and panic.
func AdvancePosition(p Position, n, world, batch int, steps int64) Position {
	if n < 1 || world < 1 || batch < 1 || steps < 0 || p.Epoch < 0 || p.Consumed < 0 || p.Consumed > n {
		panic(fmt.Sprintf("dataset: AdvancePosition: %v, n %d, world %d, batch %d, steps %d", p, n, world, batch, steps))
	}
	per := int64(world) * int64(batch) // samples one full step consumes
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
