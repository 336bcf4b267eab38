package repro

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/ringtrain/ringtrain/dataset"
)

// Synthetic "MNIST scenes" for deepmask: digits pasted on a blank canvas,
// each with its own mask, and the 32×32 windows the net looks at.

const (
	sceneSize  = 48 // canvas side
	windowSize = 32 // window side
	digitSize  = 28 // MNIST digit side
)

// placedDigit is one digit of a scene: which MNIST image, where its 28×28
// box's top-left corner lies on the canvas.
type placedDigit struct {
	index, row, col int
}

// centre returns the canvas position of the middle of the digit's box.
func (d placedDigit) centre() (int, int) { return d.row + digitSize/2, d.col + digitSize/2 }

// scene is a canvas of digits: pixel values in [0, 1], the brighter
// digit wins where two overlap.
type scene struct {
	pixels [sceneSize * sceneSize]float32
	digits []placedDigit
}

// newScene draws a scene of 1 to 3 digits of set, at random positions
// whose centres lie at least minCentreGap pixels apart (Euclidean), from
// rng alone.
func newScene(set *dataset.MNIST, rng *rand.Rand) *scene {
	const minCentreGap = 10
	s := &scene{}
	want := 1 + rng.IntN(3)
	for tries := 0; len(s.digits) < want && tries < 100; tries++ {
		d := placedDigit{index: rng.IntN(set.N), row: rng.IntN(sceneSize - digitSize + 1), col: rng.IntN(sceneSize - digitSize + 1)}
		cr, cc := d.centre()
		if slices.ContainsFunc(s.digits, func(o placedDigit) bool {
			or, oc := o.centre()
			return math.Hypot(float64(cr-or), float64(cc-oc)) < minCentreGap
		}) {
			continue
		}
		s.digits = append(s.digits, d)
	}
	img := set.Rows * set.Cols
	for _, d := range s.digits {
		src := set.Pixels[d.index*img : (d.index+1)*img]
		for r := range digitSize {
			for c := range digitSize {
				p := &s.pixels[(d.row+r)*sceneSize+d.col+c]
				*p = max(*p, float32(src[r*digitSize+c])/255)
			}
		}
	}
	return s
}

// window copies the 32×32 window of the canvas centred at (cr, cc) (its
// top-left corner at cr-16, cc-16) into dst, normalized as MNIST pixels
// are; canvas outside the scene is background.
func (s *scene) window(dst []float32, cr, cc int) {
	bg := dataset.NormalizePixel(0)
	for r := range windowSize {
		for c := range windowSize {
			y, x := cr-windowSize/2+r, cc-windowSize/2+c
			v := bg
			if y >= 0 && y < sceneSize && x >= 0 && x < sceneSize {
				v = (s.pixels[y*sceneSize+x] - dataset.MNISTMean) / dataset.MNISTStd
			}
			dst[r*windowSize+c] = v
		}
	}
}

// mask writes into dst the mask of digit i of the scene (its own pixels
// above 0.5, whatever other digits cover) within the window centred at
// (cr, cc): 1 inside, 0 outside.
func (s *scene) mask(dst []float32, set *dataset.MNIST, i, cr, cc int) {
	d := s.digits[i]
	img := set.Rows * set.Cols
	src := set.Pixels[d.index*img : (d.index+1)*img]
	for r := range windowSize {
		for c := range windowSize {
			y, x := cr-windowSize/2+r-d.row, cc-windowSize/2+c-d.col
			v := float32(0)
			if y >= 0 && y < digitSize && x >= 0 && x < digitSize && src[y*digitSize+x] > 127 {
				v = 1 // > 0.5 after /255
			}
			dst[r*windowSize+c] = v
		}
	}
}

// offCentre reports whether (cr, cc) lies more than margin pixels
// (Euclidean) from every digit's centre.
func (s *scene) offCentre(cr, cc int, margin float64) bool {
	for _, d := range s.digits {
		r, c := d.centre()
		if math.Hypot(float64(cr-r), float64(cc-c)) <= margin {
			return false
		}
	}
	return true
}

// negativeCentre draws a window centre on the canvas more than margin
// pixels from every digit's centre. A near miss (near set) lies between
// margin and 2·margin pixels from one digit's centre, so that the window
// holds much of that digit; otherwise the centre is anywhere on the
// canvas.
func (s *scene) negativeCentre(rng *rand.Rand, margin float64, near bool) (int, int, error) {
	for range 1000 {
		r, c := rng.IntN(sceneSize), rng.IntN(sceneSize)
		if near {
			d := s.digits[rng.IntN(len(s.digits))]
			dr, dc := d.centre()
			a, rad := 2*math.Pi*rng.Float64(), margin*(1+rng.Float64())
			r, c = dr+int(math.Round(rad*math.Sin(a))), dc+int(math.Round(rad*math.Cos(a)))
		}
		if s.offCentre(r, c, margin) {
			return r, c, nil
		}
	}
	return 0, 0, fmt.Errorf("no window centre %.0f pixels off the scene's %d digits", margin, len(s.digits))
}

// maskIoU returns the intersection over union of the thresholded logits
// (> 0) and the binary target; 1 when both are empty.
func maskIoU(logits, target []float32) float64 {
	inter, union := 0, 0
	for i, l := range logits {
		p, t := l > 0, target[i] > 0.5
		if p && t {
			inter++
		}
		if p || t {
			union++
		}
	}
	if union == 0 {
		return 1
	}
	return float64(inter) / float64(union)
}

// rocAUC returns the area under the ROC curve of scores that should rank
// pos above neg: the probability that a random positive outscores a
// random negative, ties counting one half (the Mann–Whitney statistic).
func rocAUC(pos, neg []float64) (float64, error) {
	if len(pos) == 0 || len(neg) == 0 {
		return 0, fmt.Errorf("roc auc: %d positives, %d negatives", len(pos), len(neg))
	}
	type scored struct {
		v   float64
		pos bool
	}
	all := make([]scored, 0, len(pos)+len(neg))
	for _, v := range pos {
		all = append(all, scored{v, true})
	}
	for _, v := range neg {
		all = append(all, scored{v, false})
	}
	for _, s := range all {
		if math.IsNaN(s.v) {
			return 0, fmt.Errorf("roc auc: NaN score")
		}
	}
	slices.SortFunc(all, func(a, b scored) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	// Walk groups of tied scores upwards: each positive beats the
	// negatives below its group and half those inside it.
	var wins float64
	below := 0
	for i := 0; i < len(all); {
		j, p, n := i, 0, 0
		for ; j < len(all) && all[j].v == all[i].v; j++ {
			if all[j].pos {
				p++
			} else {
				n++
			}
		}
		wins += float64(p) * (float64(below) + 0.5*float64(n))
		below += n
		i = j
	}
	return wins / (float64(len(pos)) * float64(len(neg))), nil
}
