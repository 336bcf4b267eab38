package repro

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/dataset"
)

// A hand case: positives 0.9, 0.8, 0.4 against negatives 0.5, 0.3, 0.8
// win 3 + 2.5 (a tie) + 1 of 9 pairs.
func TestROCAUC(t *testing.T) {
	got, err := rocAUC([]float64{0.9, 0.8, 0.4}, []float64{0.5, 0.3, 0.8})
	if err != nil || math.Abs(got-6.5/9) > 1e-12 {
		t.Errorf("auc = %v, %v; want %v", got, err, 6.5/9)
	}
	for _, c := range []struct {
		pos, neg []float64
		want     float64
	}{
		{[]float64{2, 3}, []float64{0, 1}, 1},
		{[]float64{0, 1}, []float64{2, 3}, 0},
		{[]float64{1, 1}, []float64{1}, 0.5},
	} {
		if got, err := rocAUC(c.pos, c.neg); err != nil || got != c.want {
			t.Errorf("auc(%v, %v) = %v, %v; want %v", c.pos, c.neg, got, err, c.want)
		}
	}
	if _, err := rocAUC(nil, []float64{1}); err == nil {
		t.Error("no positives gave no error")
	}
	if _, err := rocAUC([]float64{math.NaN()}, []float64{1}); err == nil {
		t.Error("a NaN score gave no error")
	}
}

func TestMaskIoU(t *testing.T) {
	logits := []float32{1, 1, -1, 2, -3}
	target := []float32{1, 0, 1, 1, 0}
	// predicted {0,1,3}, target {0,2,3}: 2 shared of 4.
	if got := maskIoU(logits, target); got != 0.5 {
		t.Errorf("iou = %v, want 0.5", got)
	}
	if got := maskIoU([]float32{-1}, []float32{0}); got != 1 {
		t.Errorf("iou of two empty masks = %v, want 1", got)
	}
}

// Scenes are made from rng alone; a centred window's mask is the digit's
// own ink, and negative centres keep their distance.
func TestScenes(t *testing.T) {
	set := dataset.NewSynthetic(1, 50)
	a, b := newScene(set, rand.New(rand.NewPCG(3, 4))), newScene(set, rand.New(rand.NewPCG(3, 4)))
	if a.pixels != b.pixels || len(a.digits) != len(b.digits) || len(a.digits) < 1 || len(a.digits) > 3 {
		t.Fatalf("scenes from one seed differ or hold %d digits", len(a.digits))
	}
	d := a.digits[0]
	cr, cc := d.centre()
	m := make([]float32, windowSize*windowSize)
	a.mask(m, set, 0, cr, cc)
	ink := 0
	for _, p := range set.Pixels[d.index*784 : (d.index+1)*784] {
		if p > 127 {
			ink++
		}
	}
	var sum float32
	for _, v := range m {
		sum += v
	}
	if int(sum) != ink { // the 28×28 box lies inside a centred 32×32 window
		t.Errorf("centred mask holds %v pixels, the digit %d", sum, ink)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 50 {
		r, c, err := a.negativeCentre(rng, 8, i%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range a.digits {
			dr, dc := d.centre()
			if dist := math.Hypot(float64(r-dr), float64(c-dc)); dist <= 8 {
				t.Fatalf("negative centre %d,%d lies within 8 of digit centre %d,%d", r, c, dr, dc)
			}
		}
	}
}
