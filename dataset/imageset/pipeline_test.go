package imageset

import (
	"context"
	"slices"
	"testing"
)

// TestPipelineIsFill: a Pipeline's Sample of a sample's bytes and index
// writes what a Set's Fill writes for it, for the training and the
// evaluation transform; DecodeRGB gives the image's size and 3 bytes a
// pixel.
func TestPipelineIsFill(t *testing.T) {
	dir := t.TempDir()
	if err := Synth(context.Background(), dir, SynthOptions{Classes: 2, PerClass: 3, ValPerClass: 1, Width: 50, Height: 30, Seed: 3}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFolder(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	var pl Pipeline
	for _, p := range []Params{{H: 24, W: 20, Train: true, Seed: 7, Epoch: 2}, {H: 24, W: 20}} {
		n := 3 * p.H * p.W
		for i := range s.Len() {
			want := make([]float32, n)
			if err := s.Fill(want, make([]int, 1), []int{i}, p); err != nil {
				t.Fatal(err)
			}
			data, _, err := s.src.read(i, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, n)
			if err := pl.Sample(got, data, p, i); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%+v, sample %d: Pipeline.Sample differs from Set.Fill", p, i)
			}
			rgb, w, h, err := pl.DecodeRGB(data)
			if err != nil || w != 50 || h != 30 || len(rgb) != 3*w*h {
				t.Fatalf("DecodeRGB: %d bytes, %d×%d, %v", len(rgb), w, h, err)
			}
		}
	}
	if err := pl.Sample(make([]float32, 10), nil, Params{H: 24, W: 20}, 0); err == nil {
		t.Fatal("Sample of nothing into a short destination succeeded")
	}
}
