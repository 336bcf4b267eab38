package coordinator

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestRingOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []Member
		want    []string
	}{
		{"empty", nil, []string{}},
		{"by name", []Member{{"c", 3}, {"a", 1}, {"b", 2}}, []string{"a", "b", "c"}},
		{"name over join index", []Member{{"a", 9}, {"z", 1}, {"m", 5}}, []string{"a", "m", "z"}},
		{"numbers by value", []Member{{"w2", 1}, {"w10", 1}, {"w1", 1}}, []string{"w1", "w2", "w10"}},
		{"pod names", []Member{{"worker-11", 1}, {"worker-9", 2}, {"worker-0", 3}, {"worker-1", 4}}, []string{"worker-0", "worker-1", "worker-9", "worker-11"}},
		{"leading zeros", []Member{{"w01", 1}, {"w1", 2}, {"w001", 3}, {"w2", 4}}, []string{"w1", "w01", "w001", "w2"}},
		{"mixed runs", []Member{{"a10b2", 1}, {"a10b10", 2}, {"a9z", 3}, {"a", 4}, {"b", 5}}, []string{"a", "a9z", "a10b2", "a10b10", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RingOrder(tc.members)
			if !slices.Equal(got, tc.want) {
				t.Errorf("RingOrder(%v) = %v, want %v", tc.members, got, tc.want)
			}
			// Independent of the input order, and the input is left alone.
			in := slices.Clone(tc.members)
			rng := rand.New(rand.NewPCG(1, 2))
			for range 5 {
				rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				before := slices.Clone(in)
				if got := RingOrder(in); !slices.Equal(got, tc.want) {
					t.Errorf("RingOrder(%v) = %v, want %v", in, got, tc.want)
				}
				if !slices.Equal(in, before) {
					t.Errorf("RingOrder changed its input")
				}
			}
		})
	}
}
