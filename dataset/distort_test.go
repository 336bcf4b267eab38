package dataset

import (
	"math"
	"testing"
)

// A pure translation by whole pixels moves the image and fills with the
// background; the identity leaves it unchanged.
func TestAffineWarp(t *testing.T) {
	const h, w = 5, 6
	src := make([]float32, h*w)
	for i := range src {
		src[i] = float32(i + 1)
	}
	dst := make([]float32, h*w)
	affine{a: 1, d: 1}.warp(dst, src, h, w, -1)
	for i := range src {
		if dst[i] != src[i] {
			t.Fatalf("identity: [%d] = %v, want %v", i, dst[i], src[i])
		}
	}
	// Sampling src at x−1, y+2 moves the picture right by 1 and up by 2.
	affine{a: 1, d: 1, tx: -1, ty: 2}.warp(dst, src, h, w, -1)
	for r := range h {
		for c := range w {
			want := float32(-1)
			if sr, sc := r+2, c-1; sr < h && sc >= 0 {
				want = src[sr*w+sc]
			}
			if got := dst[r*w+c]; got != want {
				t.Fatalf("shift: [%d,%d] = %v, want %v", r, c, got, want)
			}
		}
	}
	// Half a pixel: the mean of neighbours.
	affine{a: 1, d: 1, tx: 0.5}.warp(dst, src, h, w, 0)
	if got, want := dst[0], (src[0]+src[1])/2; math.Abs(float64(got-want)) > 1e-6 {
		t.Fatalf("half pixel: %v, want %v", got, want)
	}
}

// Distortions are drawn within their bounds, from (seed, epoch, index)
// alone; the inverse map undoes the forward one.
func TestDistortionDraw(t *testing.T) {
	ds := PaperDistortion
	if ds.draw(3, 1, 7) != ds.draw(3, 1, 7) {
		t.Fatal("same seed, epoch and index drew different distortions")
	}
	if ds.draw(3, 1, 7) == ds.draw(3, 2, 7) || ds.draw(3, 1, 7) == ds.draw(3, 1, 8) {
		t.Fatal("another epoch or index drew the same distortion")
	}
	if (Distortion{}).draw(3, 1, 7) != (affine{a: 1, d: 1}) {
		t.Fatalf("the zero distortion is %+v, not the identity", (Distortion{}).draw(3, 1, 7))
	}
	for i := range 1000 {
		m := ds.draw(1, 0, i)
		det := m.a*m.d - m.b*m.c
		// The inverse of a scaling within ±10% has a determinant within
		// 1/1.1² … 1/0.9²; the translation stays within √2·2/0.9·(1+shear).
		if det < 1/1.1/1.1-1e-9 || det > 1/0.9/0.9+1e-9 || math.Hypot(m.tx, m.ty) > 2*math.Sqrt2/0.81*1.2+1e-9 {
			t.Fatalf("sample %d: %+v out of bounds (det %v)", i, m, det)
		}
	}
}

// Fill distorts only with Train and a non-zero Distort, keeps the labels,
// and draws the same images for the same epoch.
func TestFillDistorts(t *testing.T) {
	m := NewSynthetic(5, 8)
	idx := []int{0, 3, 5}
	out := Shape{1, m.Rows, m.Cols}
	fill := func(tf Transform) ([]float32, []int) {
		x, y := make([]float32, len(idx)*out.Size()), make([]int, len(idx))
		if err := m.Fill(x, y, idx, tf); err != nil {
			t.Fatal(err)
		}
		return x, y
	}
	plain, py := fill(Transform{Out: out})
	evalD, _ := fill(Transform{Out: out, Distort: PaperDistortion})
	d1, dy := fill(Transform{Out: out, Train: true, Seed: 2, Epoch: 1, Distort: PaperDistortion})
	d1b, _ := fill(Transform{Out: out, Train: true, Seed: 2, Epoch: 1, Distort: PaperDistortion})
	d2, _ := fill(Transform{Out: out, Train: true, Seed: 2, Epoch: 2, Distort: PaperDistortion})
	eq := func(a, b []float32) bool {
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	switch {
	case !eq(plain, evalD):
		t.Error("distorted without Train")
	case eq(plain, d1):
		t.Error("Train with Distort changed nothing")
	case !eq(d1, d1b):
		t.Error("the same epoch drew other distortions")
	case eq(d1, d2):
		t.Error("another epoch drew the same distortions")
	}
	for i := range py {
		if py[i] != dy[i] {
			t.Errorf("label %d changed: %d → %d", i, py[i], dy[i])
		}
	}
	// Resampled output works too.
	small := Shape{1, 16, 16}
	x, y := make([]float32, len(idx)*small.Size()), make([]int, len(idx))
	if err := m.Fill(x, y, idx, Transform{Out: small, Train: true, Seed: 2, Distort: PaperDistortion}); err != nil {
		t.Fatal(err)
	}
}
