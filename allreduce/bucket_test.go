package allreduce

import (
	"reflect"
	"testing"
)

func TestPlanBuckets(t *testing.T) {
	const MiB = 1 << 20
	f := MiB / 4 // floats per MiB
	tests := []struct {
		name  string
		sizes []int
		lim   BucketLimits
		want  []Bucket
	}{
		{"empty", nil, BucketLimits{}, nil},
		{"one small", []int{10}, BucketLimits{}, []Bucket{{Span{0, 10}, []int{0}}}},
		{
			"first bucket small, then cap",
			[]int{f, f, f, f, f},
			BucketLimits{First: MiB, Cap: 2 * MiB},
			[]Bucket{
				{Span{4 * f, f}, []int{4}},
				{Span{2 * f, 2 * f}, []int{3, 2}},
				{Span{0, 2 * f}, []int{1, 0}},
			},
		},
		{
			"a large parameter closes the open bucket",
			[]int{10, 30 * f, 10},
			BucketLimits{},
			[]Bucket{{Span{10, 30*f + 10}, []int{2, 1}}, {Span{0, 10}, []int{0}}},
		},
		{
			"defaults: 1 MiB first, 25 MiB after",
			[]int{13 * f, 13 * f, 13 * f, f / 2, f / 2},
			BucketLimits{},
			[]Bucket{
				{Span{39 * f, f}, []int{4, 3}},
				{Span{13 * f, 26 * f}, []int{2, 1}},
				{Span{0, 13 * f}, []int{0}},
			},
		},
		{
			"zero-sized parameters ride along",
			[]int{0, 5, 0},
			BucketLimits{First: 4, Cap: 4},
			[]Bucket{{Span{0, 5}, []int{2, 1}}, {Span{0, 0}, []int{0}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanBuckets(tc.sizes, tc.lim)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("PlanBuckets(%v, %+v) =\n%+v\nwant\n%+v", tc.sizes, tc.lim, got, tc.want)
			}
		})
	}
	if _, err := PlanBuckets([]int{-1}, BucketLimits{}); err == nil {
		t.Fatal("negative size accepted")
	}
}

// TestPlanBucketsCovers checks that buckets tile the arena exactly, in
// reverse order, for many random layouts.
func TestPlanBucketsCovers(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		sizes := randSizes(seed)
		bs, err := PlanBuckets(sizes, BucketLimits{First: 64, Cap: 512})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, s := range sizes {
			total += s
		}
		end := total
		next := len(sizes) - 1
		for _, b := range bs {
			if b.Span.End() != end {
				t.Fatalf("seed %d: bucket %+v does not end at %d", seed, b, end)
			}
			for _, p := range b.Params {
				if p != next {
					t.Fatalf("seed %d: bucket %+v: parameter %d, want %d", seed, b, p, next)
				}
				next--
			}
			end = b.Span.Off
		}
		if end != 0 || next != -1 {
			t.Fatalf("seed %d: buckets stop at %d, parameter %d", seed, end, next)
		}
	}
}

func randSizes(seed uint64) []int {
	r := newTestRand(seed)
	sizes := make([]int, r.IntN(20))
	for i := range sizes {
		sizes[i] = r.IntN(300)
	}
	return sizes
}
