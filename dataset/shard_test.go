package dataset

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestAdvancePosition(t *testing.T) {
	for _, tc := range []struct {
		p               Position
		n, world, batch int
		steps           int64
		want            Position
	}{
		{Position{0, 0}, 100, 3, 4, 0, Position{0, 0}},
		{Position{0, 0}, 100, 3, 4, 3, Position{0, 36}},
		{Position{0, 96}, 100, 3, 4, 1, Position{1, 0}}, // a short last step ends the epoch
		{Position{0, 88}, 100, 3, 4, 1, Position{1, 0}}, // exactly 12 left
		{Position{0, 88}, 100, 3, 4, 2, Position{1, 12}},
		{Position{0, 52}, 100, 3, 4, 8, Position{1, 48}},
		{Position{0, 100}, 100, 3, 4, 0, Position{1, 0}}, // normalized
		{Position{2, 0}, 10, 1, 1, 25, Position{4, 5}},
		{Position{0, 0}, 10, 4, 5, 3, Position{3, 0}}, // one step per epoch
		{Position{5, 7}, 10, 2, 1, 0, Position{5, 7}},
	} {
		got := AdvancePosition(tc.p, tc.n, tc.world, tc.batch, tc.steps)
		if got != tc.want {
			t.Errorf("AdvancePosition(%v, n %d, world %d, batch %d, steps %d) = %v, want %v",
				tc.p, tc.n, tc.world, tc.batch, tc.steps, got, tc.want)
		}
	}
}

// TestAdvancePositionMatchesStepping checks the closed form against a step
// by step count.
func TestAdvancePositionMatchesStepping(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		n, world, batch := 1+rng.IntN(50), 1+rng.IntN(6), 1+rng.IntN(8)
		p := Position{Epoch: rng.IntN(3), Consumed: rng.IntN(n + 1)}
		steps := int64(rng.IntN(40))
		want := p
		for range steps {
			if want.Consumed == n {
				want = Position{Epoch: want.Epoch + 1}
			}
			want.Consumed = min(n, want.Consumed+world*batch)
		}
		if want.Consumed == n {
			want = Position{Epoch: want.Epoch + 1}
		}
		if got := AdvancePosition(p, n, world, batch, steps); got != want {
			t.Fatalf("AdvancePosition(%v, n %d, world %d, batch %d, steps %d) = %v, want %v", p, n, world, batch, steps, got, want)
		}
	}
}

func TestEpochOrderMatchesSampler(t *testing.T) {
	for _, shuffle := range []bool{false, true} {
		s := NewSampler(37, 9, shuffle)
		s.NextEpoch()
		s.NextEpoch()
		want := make([]int, 37)
		s.Next(want)
		got, err := EpochOrder(ShardSpec{Samples: 37, Seed: 9, Shuffle: shuffle, Position: Position{Epoch: 2}, World: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("shuffle %v: EpochOrder = %v, sampler gives %v", shuffle, got, want)
		}
	}
}

func TestAssignShardErrors(t *testing.T) {
	ok := ShardSpec{Samples: 10, Seed: 1, World: 2}
	for _, tc := range []struct {
		spec ShardSpec
		rank int
	}{
		{ShardSpec{Samples: 0, World: 1}, 0},
		{ShardSpec{Samples: 10, World: 0}, 0},
		{ShardSpec{Samples: 10, World: 1, Position: Position{Epoch: -1}}, 0},
		{ShardSpec{Samples: 10, World: 1, Position: Position{Consumed: 11}}, 0},
		{ShardSpec{Samples: 10, World: 1, Position: Position{Consumed: -1}}, 0},
		{ok, 2},
		{ok, -1},
	} {
		if _, err := AssignShard(tc.spec, tc.rank); err == nil {
			t.Errorf("AssignShard(%+v, %d) succeeded", tc.spec, tc.rank)
		}
	}
	if _, err := AssignShards(ShardSpec{Samples: 10}); err == nil {
		t.Error("AssignShards with world 0 succeeded")
	}
	sh, err := AssignShard(ShardSpec{Samples: 10, World: 3, Position: Position{Consumed: 10}}, 1)
	if err != nil || len(sh) != 0 {
		t.Errorf("shard of a consumed epoch = %v, %v; want empty", sh, err)
	}
}

// TestAssignShardsCover: for random (n, world, consumed), the shards
// together with the consumed prefix hold every sample exactly once, the
// lengths differ by at most one, and AssignShard agrees with AssignShards.
func TestAssignShardsCover(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		spec := ShardSpec{
			Samples: 1 + rng.IntN(200), Seed: rng.Uint64(), Shuffle: rng.IntN(4) != 0,
			Position: Position{Epoch: rng.IntN(5)}, World: 1 + rng.IntN(9),
		}
		spec.Consumed = rng.IntN(spec.Samples + 1)
		order, err := EpochOrder(spec)
		if err != nil {
			t.Fatal(err)
		}
		shards, err := AssignShards(spec)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]int, spec.Samples)
		for _, s := range order[:spec.Consumed] {
			seen[s]++
		}
		lo, hi := spec.Samples, 0
		for r, sh := range shards {
			lo, hi = min(lo, len(sh)), max(hi, len(sh))
			for _, s := range sh {
				seen[s]++
			}
			one, err := AssignShard(spec, r)
			if err != nil || !slices.Equal(one, sh) {
				t.Fatalf("%+v: AssignShard(rank %d) = %v, %v; AssignShards gave %v", spec, r, one, err, sh)
			}
		}
		for s, k := range seen {
			if k != 1 {
				t.Fatalf("%+v: sample %d seen %d times", spec, s, k)
			}
		}
		if hi-lo > 1 {
			t.Fatalf("%+v: shard lengths from %d to %d", spec, lo, hi)
		}
	}
}

// TestElasticEpochs simulates lock-step training through random membership
// changes: after each change the ring re-shards from the position
// AdvancePosition computes, each rank visits up to batch samples of its
// shard per step, and every epoch must visit every sample exactly once, in
// the epoch's global order.
func TestElasticEpochs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := range 200 {
		n, batch := 1+rng.IntN(120), 1+rng.IntN(6)
		seed, shuffle := rng.Uint64(), rng.IntN(3) != 0
		pos := Position{}
		const epochs = 3
		visited := map[int][]int{} // per epoch, in visiting order
		for pos.Epoch < epochs {
			world := 1 + rng.IntN(7)
			steps := int64(rng.IntN(12))
			spec := ShardSpec{Samples: n, Seed: seed, Shuffle: shuffle, Position: pos, World: world}
			shards, err := AssignShards(spec)
			if err != nil {
				t.Fatal(err)
			}
			// Run the generation step by step, crossing into later epochs
			// with fresh shards of the same world.
			p := pos
			for range steps {
				if p.Consumed == n {
					p = Position{Epoch: p.Epoch + 1}
					spec.Position = p
					if shards, err = AssignShards(spec); err != nil {
						t.Fatal(err)
					}
				}
				taken := (p.Consumed - spec.Consumed) / world // per rank, from the shard start
				for _, sh := range shards {
					lo, hi := min(len(sh), taken), min(len(sh), taken+batch)
					visited[p.Epoch] = append(visited[p.Epoch], sh[lo:hi]...)
				}
				p.Consumed = min(n, p.Consumed+world*batch)
			}
			if p.Consumed == n {
				p = Position{Epoch: p.Epoch + 1}
			}
			next := AdvancePosition(pos, n, world, batch, steps)
			if next != p {
				t.Fatalf("trial %d: AdvancePosition(%v, n %d, world %d, batch %d, %d steps) = %v, simulation reached %v",
					trial, pos, n, world, batch, steps, next, p)
			}
			pos = next
			// What the epoch has visited so far is exactly its order's
			// consumed prefix, whatever rings it went through.
			if pos.Epoch < epochs {
				order, err := EpochOrder(ShardSpec{Samples: n, Seed: seed, Shuffle: shuffle, Position: Position{Epoch: pos.Epoch}, World: 1})
				if err != nil {
					t.Fatal(err)
				}
				got, want := slices.Sorted(slices.Values(visited[pos.Epoch])), slices.Sorted(slices.Values(order[:pos.Consumed]))
				if !slices.Equal(got, want) {
					t.Fatalf("trial %d: at %v visited %v, want the prefix %v", trial, pos, got, want)
				}
			}
		}
		for e := range epochs {
			order, err := EpochOrder(ShardSpec{Samples: n, Seed: seed, Shuffle: shuffle, Position: Position{Epoch: e}, World: 1})
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Clone(visited[e])
			slices.Sort(got)
			want := slices.Clone(order)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("trial %d: epoch %d visited %d samples (sorted %v), want each of %d once", trial, e, len(got), got, n)
			}
		}
	}
}

func TestAppendShardAllocatesNothing(t *testing.T) {
	order, err := EpochOrder(ShardSpec{Samples: 1000, Seed: 1, Shuffle: true, World: 1})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]int, 0, 1000)
	if a := testing.AllocsPerRun(20, func() { dst = AppendShard(dst[:0], order, 17, 2, 5) }); a != 0 {
		t.Errorf("AppendShard into a large enough dst: %v allocations", a)
	}
}
