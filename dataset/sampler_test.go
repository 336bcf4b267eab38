package dataset

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// drain returns the rest of the sampler's epoch, read in batches of b.
func drain(s *Sampler, b int) []int {
	var out []int
	buf := make([]int, b)
	for {
		k := s.Next(buf)
		if k == 0 {
			return out
		}
		out = append(out, buf[:k]...)
	}
}

func TestSamplerDeterministic(t *testing.T) {
	for _, c := range []struct {
		name    string
		n       int
		seed    uint64
		shuffle bool
	}{
		{"shuffled", 100, 7, true},
		{"in order", 37, 7, false},
		{"one", 1, 3, true},
		{"empty", 0, 3, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := NewSampler(c.n, c.seed, c.shuffle), NewSampler(c.n, c.seed, c.shuffle)
			for epoch := range 3 {
				ea, eb := drain(a, 8), drain(b, 13) // batch size does not change the order
				if !reflect.DeepEqual(ea, eb) {
					t.Fatalf("epoch %d: two samplers with seed %d differ", epoch, c.seed)
				}
				sorted := slices.Clone(ea)
				slices.Sort(sorted)
				for i, v := range sorted {
					if v != i {
						t.Fatalf("epoch %d is not a permutation of [0, %d): %v", epoch, c.n, ea)
					}
				}
				if len(ea) != c.n {
					t.Fatalf("epoch %d has %d samples, want %d", epoch, len(ea), c.n)
				}
				if !c.shuffle {
					for i, v := range ea {
						if v != i {
							t.Fatalf("unshuffled epoch %d out of order at %d: %v", epoch, i, ea)
						}
					}
				}
				if a.Epoch() != epoch {
					t.Fatalf("Epoch() = %d, want %d", a.Epoch(), epoch)
				}
				a.NextEpoch()
				b.NextEpoch()
			}
		})
	}
}

func TestSamplerEpochsAndSeedsDiffer(t *testing.T) {
	a := NewSampler(50, 1, true)
	e0 := drain(a, 50)
	a.NextEpoch()
	e1 := drain(a, 50)
	if reflect.DeepEqual(e0, e1) {
		t.Error("epochs 0 and 1 have the same order")
	}
	if reflect.DeepEqual(e0, drain(NewSampler(50, 2, true), 50)) {
		t.Error("seeds 1 and 2 give the same order")
	}
	// An epoch's order depends only on (seed, epoch): epoch 1 restored
	// directly equals epoch 1 reached by iterating.
	r, err := NewSamplerFromState(50, SamplerState{Seed: 1, Epoch: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(drain(r, 7), e1) {
		t.Error("epoch 1 from state differs from epoch 1 by iteration")
	}
}

func TestSamplerBatchesAndEpochEnd(t *testing.T) {
	s := NewSampler(10, 5, true)
	buf := make([]int, 4)
	for i, want := range []int{4, 4, 2, 0, 0} {
		if k := s.Next(buf); k != want {
			t.Fatalf("Next #%d = %d, want %d", i, k, want)
		}
	}
	s.NextEpoch()
	if k := s.Next(buf); k != 4 || s.Epoch() != 1 {
		t.Fatalf("after NextEpoch: Next = %d, epoch %d", k, s.Epoch())
	}
	if k := s.Next(nil); k != 0 {
		t.Fatalf("Next(nil) = %d", k)
	}
}

func TestSamplerResumeMidEpoch(t *testing.T) {
	for _, shard := range []struct{ rank, world int }{{0, 1}, {1, 3}} {
		s := NewSampler(103, 42, true)
		if err := s.Shard(shard.rank, shard.world); err != nil {
			t.Fatal(err)
		}
		s.NextEpoch()
		s.NextEpoch()
		buf := make([]int, 5)
		s.Next(buf)
		s.Next(buf)
		st := s.State()
		blob, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		var back SamplerState
		if err := json.Unmarshal(blob, &back); err != nil {
			t.Fatal(err)
		}
		if back != (SamplerState{Seed: 42, Epoch: 2, Position: 10}) {
			t.Fatalf("state %+v (JSON %s)", back, blob)
		}
		r, err := NewSamplerFromState(103, back, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Shard(shard.rank, shard.world); err != nil {
			t.Fatal(err)
		}
		for epoch := range 2 {
			if got, want := drain(r, 3), drain(s, 4); !reflect.DeepEqual(got, want) {
				t.Fatalf("shard %v epoch +%d: resumed %v, original %v", shard, epoch, got, want)
			}
			r.NextEpoch()
			s.NextEpoch()
		}
	}
}

func TestSamplerShardsPartition(t *testing.T) {
	for _, c := range []struct{ n, world int }{{100, 4}, {103, 4}, {10, 3}, {5, 8}, {64, 1}} {
		for epoch := range 2 {
			full := NewSampler(c.n, 9, true)
			for range epoch {
				full.NextEpoch()
			}
			perm := drain(full, c.n)
			seen := map[int]int{}
			per := c.n / c.world
			for rank := range c.world {
				s := NewSampler(c.n, 9, true)
				if err := s.Shard(rank, c.world); err != nil {
					t.Fatal(err)
				}
				for range epoch {
					s.NextEpoch()
				}
				if s.Len() != per {
					t.Fatalf("n=%d world=%d: Len = %d, want %d", c.n, c.world, s.Len(), per)
				}
				got := drain(s, 3)
				if len(got) != per {
					t.Fatalf("n=%d world=%d rank %d: %d samples, want %d", c.n, c.world, rank, len(got), per)
				}
				for j, v := range got {
					if want := perm[rank+j*c.world]; v != want {
						t.Fatalf("rank %d sample %d = %d, want position %d of the epoch (%d)", rank, j, v, rank+j*c.world, want)
					}
					seen[v]++
				}
			}
			if len(seen) != per*c.world {
				t.Fatalf("n=%d world=%d: shards cover %d samples, want %d", c.n, c.world, len(seen), per*c.world)
			}
			for v, k := range seen {
				if k != 1 {
					t.Fatalf("sample %d seen %d times in one epoch", v, k)
				}
			}
			// Exactly the tail of the epoch's permutation is dropped.
			for _, v := range perm[per*c.world:] {
				if seen[v] != 0 {
					t.Fatalf("dropped sample %d was served", v)
				}
			}
		}
	}
}

func TestSamplerRejectsBadState(t *testing.T) {
	for _, st := range []SamplerState{{Epoch: -1}, {Position: -1}, {Position: 11}} {
		if _, err := NewSamplerFromState(10, st, true); err == nil {
			t.Errorf("state %+v accepted", st)
		}
	}
	if _, err := NewSamplerFromState(-1, SamplerState{}, true); err == nil {
		t.Error("negative n accepted")
	}
	s, err := NewSamplerFromState(10, SamplerState{Position: 6}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shard(0, 2); err == nil {
		t.Error("position 6 accepted for a shard of 5")
	}
	for _, sh := range [][2]int{{0, 0}, {2, 2}, {-1, 2}} {
		if err := s.Shard(sh[0], sh[1]); err == nil {
			t.Errorf("Shard(%d, %d) accepted", sh[0], sh[1])
		}
	}
}

func TestSamplerNextAllocatesNothing(t *testing.T) {
	s := NewSampler(1000, 1, true)
	buf := make([]int, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if s.Next(buf) == 0 {
			s.NextEpoch()
		}
	})
	if allocs != 0 {
		t.Errorf("Next/NextEpoch allocate %.1f times per call", allocs)
	}
}
