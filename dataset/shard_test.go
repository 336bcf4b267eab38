package dataset

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestAdvancePosition(t *testing.T) {
	for _, tc := range []struct {
		p        Position
		n, batch int
		steps    int64
		want     Position
	}{
		{Position{0, 0}, 100, 12, 0, Position{0, 0}},
		{Position{0, 0}, 100, 12, 3, Position{0, 36}},
		{Position{0, 96}, 100, 12, 1, Position{1, 0}}, // a short last step ends the epoch
		{Position{0, 88}, 100, 12, 1, Position{1, 0}}, // exactly 12 left
		{Position{0, 88}, 100, 12, 2, Position{1, 12}},
		{Position{0, 52}, 100, 12, 8, Position{1, 48}},
		{Position{0, 100}, 100, 12, 0, Position{1, 0}}, // normalized
		{Position{2, 0}, 10, 1, 25, Position{4, 5}},
		{Position{0, 0}, 10, 20, 3, Position{3, 0}}, // one step per epoch
		{Position{5, 7}, 10, 2, 0, Position{5, 7}},
	} {
		got := AdvancePosition(tc.p, tc.n, tc.batch, tc.steps)
		if got != tc.want {
			t.Errorf("AdvancePosition(%v, n %d, batch %d, steps %d) = %v, want %v",
				tc.p, tc.n, tc.batch, tc.steps, got, tc.want)
		}
	}
}

// TestAdvancePositionMatchesStepping checks the closed form against a step
// by step count.
func TestAdvancePositionMatchesStepping(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		n, batch := 1+rng.IntN(50), 1+rng.IntN(30)
		p := Position{Epoch: rng.IntN(3), Consumed: rng.IntN(n + 1)}
		steps := int64(rng.IntN(40))
		want := p
		for range steps {
			if want.Consumed == n {
				want = Position{Epoch: want.Epoch + 1}
			}
			want.Consumed = min(n, want.Consumed+batch)
		}
		if want.Consumed == n {
			want = Position{Epoch: want.Epoch + 1}
		}
		if got := AdvancePosition(p, n, batch, steps); got != want {
			t.Fatalf("AdvancePosition(%v, n %d, batch %d, steps %d) = %v, want %v", p, n, batch, steps, got, want)
		}
	}
}

// TestStepShareDealsTheGlobalBatch: for random (n, batch, world, consumed),
// the ranks' shares of a step are disjoint, together exactly the step's
// positions of the order, and differ in length by at most one; a ring of
// one takes the whole batch.
func TestStepShareDealsTheGlobalBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		n, batch, world := 1+rng.IntN(60), 1+rng.IntN(20), 1+rng.IntN(7)
		consumed := rng.IntN(n + 1)
		order := rng.Perm(n)
		want := order[consumed:min(n, consumed+batch)]
		var all []int
		lo, hi := n+1, -1
		for r := range world {
			sh := AppendStepShare(nil, order, consumed, batch, r, world)
			lo, hi = min(lo, len(sh)), max(hi, len(sh))
			all = append(all, sh...)
		}
		if len(want) >= world && hi-lo > 1 {
			t.Fatalf("n %d batch %d world %d consumed %d: share lengths from %d to %d", n, batch, world, consumed, lo, hi)
		}
		slices.Sort(all)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(all, w) {
			t.Fatalf("n %d batch %d world %d consumed %d: shares cover %v, the step is %v", n, batch, world, consumed, all, w)
		}
		if one := AppendStepShare(nil, order, consumed, batch, 0, 1); !slices.Equal(one, want) {
			t.Fatalf("a ring of one takes %v, the step is %v", one, want)
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
	ok := ShardSpec{Samples: 10, Seed: 1, World: 2, Batch: 4}
	for _, tc := range []struct {
		spec ShardSpec
		rank int
	}{
		{ShardSpec{Samples: 0, World: 1, Batch: 1}, 0},
		{ShardSpec{Samples: 10, World: 0, Batch: 1}, 0},
		{ShardSpec{Samples: 10, World: 1, Batch: 0}, 0},
		{ShardSpec{Samples: 10, World: 1, Batch: 1, Position: Position{Epoch: -1}}, 0},
		{ShardSpec{Samples: 10, World: 1, Batch: 1, Position: Position{Consumed: 11}}, 0},
		{ShardSpec{Samples: 10, World: 1, Batch: 1, Position: Position{Consumed: -1}}, 0},
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
	sh, err := AssignShard(ShardSpec{Samples: 10, World: 3, Batch: 2, Position: Position{Consumed: 10}}, 1)
	if err != nil || len(sh) != 0 {
		t.Errorf("shard of a consumed epoch = %v, %v; want empty", sh, err)
	}
}

// TestAssignShardsCover: for random (n, world, batch, consumed), the shards
// together with the consumed prefix hold every sample exactly once, no
// shard is longer than another by more than one sample a step, and
// AssignShard agrees with AssignShards.
func TestAssignShardsCover(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		spec := ShardSpec{
			Samples: 1 + rng.IntN(200), Seed: rng.Uint64(), Shuffle: rng.IntN(4) != 0,
			Position: Position{Epoch: rng.IntN(5)}, World: 1 + rng.IntN(9), Batch: 1 + rng.IntN(40),
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
		if steps := StepsPerEpoch(spec.Samples-spec.Consumed, spec.Batch); hi-lo > steps {
			t.Fatalf("%+v: shard lengths from %d to %d over %d steps", spec, lo, hi, steps)
		}
	}
}

// TestElasticEpochs simulates lock-step training through random membership
// changes: each step deals the global batch among the ring of the moment
// (AppendStepShare), AdvancePosition moves past it, and every epoch must
// visit every sample exactly once, in the epoch's global order.
func TestElasticEpochs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := range 200 {
		n, batch := 1+rng.IntN(120), 1+rng.IntN(20)
		seed, shuffle := rng.Uint64(), rng.IntN(3) != 0
		pos := Position{}
		const epochs = 3
		visited := map[int][]int{} // per epoch, in visiting order
		for pos.Epoch < epochs {
			world := 1 + rng.IntN(7)
			steps := int64(rng.IntN(12))
			p := pos
			for range steps {
				if p.Consumed == n {
					p = Position{Epoch: p.Epoch + 1}
				}
				order, err := EpochOrder(ShardSpec{Samples: n, Seed: seed, Shuffle: shuffle, Position: Position{Epoch: p.Epoch}, World: 1})
				if err != nil {
					t.Fatal(err)
				}
				for r := range world {
					visited[p.Epoch] = AppendStepShare(visited[p.Epoch], order, p.Consumed, batch, r, world)
				}
				p.Consumed = min(n, p.Consumed+batch)
			}
			if p.Consumed == n {
				p = Position{Epoch: p.Epoch + 1}
			}
			next := AdvancePosition(pos, n, batch, steps)
			if next != p {
				t.Fatalf("trial %d: AdvancePosition(%v, n %d, batch %d, %d steps) = %v, simulation reached %v",
					trial, pos, n, batch, steps, next, p)
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
	if a := testing.AllocsPerRun(20, func() { dst = AppendShard(dst[:0], order, 17, 64, 2, 5) }); a != 0 {
		t.Errorf("AppendShard into a large enough dst: %v allocations", a)
	}
	if a := testing.AllocsPerRun(20, func() { dst = AppendStepShare(dst[:0], order, 17, 64, 2, 5) }); a != 0 {
		t.Errorf("AppendStepShare into a large enough dst: %v allocations", a)
	}
}
