package dataset

import (
	"math"
	"math/rand/v2"
)

// The synthetic set Open("synthetic", …) returns: a train and a test split
// drawn from the same distribution with different seeds.
const (
	SyntheticTrainSize = 1000
	SyntheticTestSize  = 200
	SyntheticTrainSeed = 1
	SyntheticTestSeed  = 2
)

// The normalization of the synthetic images: the mean and standard
// deviation of their pixels (/255), measured on the training split.
const (
	syntheticMean = 0.1730
	syntheticStd  = 0.2394
)

var syntheticNorm = normTable(syntheticMean, syntheticStd)

// barDir holds the direction of each class's bar, (cos θ, sin θ) with
// θ = class·18°, in units of 1/1024, so that rendering is integer
// arithmetic and gives the same bytes on every platform.
var barDir = func() (d [10][2]int) {
	for k := range d {
		a := float64(k) * math.Pi / 10
		d[k] = [2]int{int(math.Round(1024 * math.Cos(a))), int(math.Round(1024 * math.Sin(a)))}
	}
	return d
}()

// NewSynthetic returns n 1×28×28 images of 10 classes generated from seed,
// for tests that need a data set a small network learns in seconds but no
// files: image i has label i mod 10 and shows a bar 20 pixels long and
// about 4 wide through the centre at the angle label·18°, shifted by up to 2
// pixels each way, with random contrast, over uniform noise. The same (seed,
// n) gives the same bytes everywhere, and image i does not depend on n. Its
// Name is "synthetic". It stands in for no real data set.
func NewSynthetic(seed uint64, n int) *MNIST {
	const rows, cols = 28, 28
	m := &MNIST{N: n, Rows: rows, Cols: cols, Pixels: make([]uint8, n*rows*cols), Labels: make([]uint8, n),
		name: "synthetic", norm: syntheticNorm}
	rng := rand.New(rand.NewPCG(seed, 0x73796e7468)) // "synth"
	for i := range n {
		label := i % 10
		m.Labels[i] = uint8(label)
		dx, dy := rng.IntN(5)-2, rng.IntN(5)-2
		contrast := 160 + rng.IntN(96)
		c, s := barDir[label][0], barDir[label][1]
		img := m.Pixels[i*rows*cols : (i+1)*rows*cols]
		for r := range rows {
			// Coordinates of the pixel's centre relative to the bar's, in
			// half pixels.
			y := 2*(r-dy) + 1 - rows
			for col := range cols {
				x := 2*(col-dx) + 1 - cols
				along := x*c + y*s  // in 1/2048 pixel
				across := y*c - x*s // in 1/2048 pixel
				v := 0              // coverage, 0..256
				if abs(along) <= 10*2048 {
					v = min(256, max(0, (5*1024-abs(across))*256/2048))
				}
				noise := rng.IntN(48)
				img[r*cols+col] = uint8(min(255, v*contrast/256+noise))
			}
		}
	}
	return m
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
