package imageset

import (
	"image"
	"math"
	"slices"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

// goldenEval reads testdata/eval_transform.safetensors: a 500×375 RGB
// image and torchvision's evaluation transform of it (see
// testdata/README.md).
func goldenEval(t *testing.T) (*image.NRGBA, []float32) {
	t.Helper()
	f, err := safetensors.ReadFile("testdata/eval_transform.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	in, _ := f.Tensor("image_hwc_uint8")
	out, _ := f.Tensor("out_chw")
	if len(in.Shape) != 3 || in.Shape[2] != 3 || len(out.Shape) != 3 || out.Shape[0] != 3 {
		t.Fatalf("golden shapes %v and %v, want (H, W, 3) and (3, H, W)", in.Shape, out.Shape)
	}
	px, err := in.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	want, err := out.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	h, w := in.Shape[0], in.Shape[1]
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range h * w {
		for c := range 3 {
			img.Pix[4*i+c] = uint8(px[3*i+c])
		}
		img.Pix[4*i+3] = 255
	}
	return img, want
}

// TestEvalTransformMatchesTorchvision: the evaluation transform of the
// golden 500×375 image to 224×224 is torchvision's Resize(256),
// CenterCrop(224), ToTensor, Normalize on Pillow, to float32 rounding:
// the resampled 8-bit pixels are the same (an error of 1/255 would show
// as 0.017 after normalization), and the normalization differs by at most
// 2e-6 (torchvision normalizes in float32, this package in float64).
func TestEvalTransformMatchesTorchvision(t *testing.T) {
	img, want := goldenEval(t)
	p := Params{H: 224, W: 224}
	got := make([]float32, 3*224*224)
	var sc scratch
	if err := transform(got, img, p, 0, &sc); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("golden output has %d values, want %d", len(want), len(got))
	}
	var worst float64
	at := 0
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > worst {
			worst, at = d, i
		}
	}
	t.Logf("largest difference from torchvision: %.3g at %d", worst, at)
	if worst > 2e-6 {
		t.Fatalf("output[%d] = %v, torchvision gives %v (difference %.3g)", at, got[at], want[at], worst)
	}
}

// TestRandomResizedCrop: crops lie in the image, keep torchvision's area
// and aspect ranges (up to rounding), are spread over the image, are a
// pure function of (seed, epoch, index), and fall back to a centre crop of
// the nearest allowed ratio when no try fits.
func TestRandomResizedCrop(t *testing.T) {
	const w, h = 500, 375
	var minScale, maxScale = 1.0, 0.0
	var left, right int
	for i := range 5000 {
		r := sampleRNG(7, 3, i)
		c := RandomResizedCrop(w, h, &r)
		if c.X < 0 || c.Y < 0 || c.W < 1 || c.H < 1 || c.X+c.W > w || c.Y+c.H > h {
			t.Fatalf("sample %d: crop %+v outside %d×%d", i, c, w, h)
		}
		s := float64(c.W*c.H) / (w * h)
		ratio := float64(c.W) / float64(c.H)
		if s < 0.079 || ratio < 0.74 || ratio > 1.345 {
			t.Fatalf("sample %d: crop %+v has scale %.3f, ratio %.3f", i, c, s, ratio)
		}
		minScale, maxScale = min(minScale, s), max(maxScale, s)
		if c.X == 0 {
			left++
		}
		if c.X+c.W == w {
			right++
		}
		r2 := sampleRNG(7, 3, i)
		if c2 := RandomResizedCrop(w, h, &r2); c2 != c {
			t.Fatalf("sample %d: crop %+v, then %+v from the same stream", i, c, c2)
		}
	}
	if minScale > 0.1 || maxScale < 0.95 || left == 0 || right == 0 {
		t.Fatalf("scales %.3f–%.3f, %d crops at the left edge and %d at the right: not spread as torchvision's", minScale, maxScale, left, right)
	}
	// A 1000×10 image fits no try; the fallback keeps the whole height
	// and a width of 10·4/3, rounded half to even: 13, centred.
	r := sampleRNG(1, 0, 0)
	if c := RandomResizedCrop(1000, 10, &r); c != (Crop{X: 493, Y: 0, W: 13, H: 10}) {
		t.Fatalf("1000×10 fallback crop %+v, want {493 0 13 10}", c)
	}
	r = sampleRNG(1, 0, 0)
	if c := RandomResizedCrop(10, 1000, &r); c != (Crop{X: 0, Y: 493, W: 10, H: 13}) {
		t.Fatalf("10×1000 fallback crop %+v, want {0 493 10 13}", c)
	}
}

func TestSampleRNGStreamsDiffer(t *testing.T) {
	base := sampleRNG(1, 2, 3)
	seen := map[uint64]string{base.next(): "base"}
	for name, r := range map[string]rng{"seed": sampleRNG(2, 2, 3), "epoch": sampleRNG(1, 3, 3), "index": sampleRNG(1, 2, 4)} {
		v := r.next()
		if other, dup := seen[v]; dup {
			t.Fatalf("changing the %s gives the stream of %s", name, other)
		}
		seen[v] = name
	}
}

func TestEvalResize(t *testing.T) {
	for _, tc := range []struct{ w, h, ow, oh, rw, rh int }{
		{500, 375, 224, 224, 341, 256}, // torchvision: int(256·500/375)
		{375, 500, 224, 224, 256, 341},
		{256, 256, 224, 224, 256, 256},
		{500, 375, 64, 64, 97, 73}, // 64·256/224 = 73.1
		{100, 100, 32, 32, 37, 37},
		{1000, 10, 224, 224, 25600, 256},
		{100, 100, 224, 100, 224, 224}, // the crop must fit: 114×114 grows to 224×224
	} {
		if rw, rh := EvalResize(tc.w, tc.h, tc.ow, tc.oh); rw != tc.rw || rh != tc.rh {
			t.Errorf("EvalResize(%d, %d, %d, %d) = %d×%d, want %d×%d", tc.w, tc.h, tc.ow, tc.oh, rw, rh, tc.rw, tc.rh)
		}
	}
	if centreOffset(341, 224) != 58 || centreOffset(256, 224) != 16 || centreOffset(343, 224) != 60 {
		t.Fatalf("centre offsets %d %d %d, want Python's round half to even: 58 16 60",
			centreOffset(341, 224), centreOffset(256, 224), centreOffset(343, 224))
	}
}

// TestResampleAxis: weights sum to one in fixed point (to rounding), reads
// stay inside the source span, an equal size is the identity, and halving
// averages pairs of pixels (an antialiasing filter, not point sampling).
func TestResampleAxis(t *testing.T) {
	for _, tc := range []struct{ origin, n, size int }{{0, 500, 224}, {37, 120, 224}, {5, 7, 3}, {0, 10, 10}, {3, 1, 224}} {
		a := resampleAxis(tc.origin, tc.n, tc.size, 0, tc.size)
		for k := range tc.size {
			var sum int32
			for _, w := range a.w[k] {
				sum += w
			}
			if d := sum - 1<<precisionBits; d < -int32(len(a.w[k])) || d > int32(len(a.w[k])) {
				t.Fatalf("%+v: weights of pixel %d sum to %d, want %d", tc, k, sum, 1<<precisionBits)
			}
			if a.start[k] < tc.origin || a.start[k]+len(a.w[k]) > tc.origin+tc.n {
				t.Fatalf("%+v: pixel %d reads %d…%d, outside the source", tc, k, a.start[k], a.start[k]+len(a.w[k])-1)
			}
		}
	}
	id := resampleAxis(0, 10, 10, 0, 10)
	for k := range 10 {
		if id.start[k] != k || id.w[k][0] != 1<<precisionBits {
			t.Fatalf("identity pixel %d: start %d weights %v", k, id.start[k], id.w[k])
		}
	}
	half := resampleAxis(0, 8, 4, 0, 4)
	src := []uint8{0, 0, 0, 100, 100, 100, 0, 0, 0, 100, 100, 100, 0, 0, 0, 100, 100, 100, 0, 0, 0, 100, 100, 100}
	dst := make([]uint8, 3*4)
	resampleRGB(dst, half, resampleAxis(0, 1, 1, 0, 1), src, 8, 0, 0, nil)
	for i, v := range dst[3:9] {
		if v != 50 {
			t.Fatalf("halving a 0,100 pattern: channel value %d = %d, want 50 (got %v)", i, v, dst)
		}
	}
}

// TestTrainTransform: the training transform is a pure function of (seed,
// epoch, index): the same arguments give the same floats, another index
// another crop; a flipped sample is the mirror of the unflipped one.
func TestTrainTransform(t *testing.T) {
	img, _ := goldenEval(t)
	p := Params{H: 32, W: 32, Train: true, Seed: 5, Epoch: 1}
	run := func(p Params, i int) []float32 {
		out := make([]float32, 3*32*32)
		if err := transform(out, img, p, i, &scratch{}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b := run(p, 10), run(p, 10)
	if !slices.Equal(a, b) {
		t.Fatal("same (seed, epoch, index), different output")
	}
	if slices.Equal(a, run(p, 11)) {
		t.Fatal("indices 10 and 11 give the same output")
	}
	// Find a flipped and an unflipped sample with the same crop by
	// comparing against a transform with the flip undone.
	flips := 0
	for i := range 40 {
		r := sampleRNG(p.Seed, p.Epoch, i)
		c := RandomResizedCrop(500, 375, &r)
		flipped := r.next()>>63 == 1
		xs, ys := resampleAxis(c.X, c.W, 32, 0, 32), resampleAxis(c.Y, c.H, 32, 0, 32)
		got := run(p, i)
		var sc scratch
		x0, x1 := xs.span()
		y0, y1 := ys.span()
		sc.rgb, _ = rgbRegion(nil, img, image.Rect(x0, y0, x1, y1))
		out := make([]uint8, 3*32*32)
		resampleRGB(out, xs, ys, sc.rgb, x1-x0, x0, y0, nil)
		want := make([]float32, 3*32*32)
		normalize(want, out, 32, 32, flipped)
		if !slices.Equal(got, want) {
			t.Fatalf("sample %d: output is not crop %+v, flip %v", i, c, flipped)
		}
		if flipped {
			flips++
			normalize(want, out, 32, 32, false)
			for y := range 32 {
				if want[y*32] != got[y*32+31] {
					t.Fatalf("sample %d row %d: flipped output does not mirror the unflipped one", i, y)
				}
			}
		}
	}
	if flips < 10 || flips > 30 {
		t.Fatalf("%d of 40 samples flipped, want about half", flips)
	}
}

// TestCropThenResize: resampling a crop box of an image in place is what
// torchvision does, cropping (a copy) and then resizing the copy: the
// filter never reads outside the box.
func TestCropThenResize(t *testing.T) {
	img, _ := goldenEval(t)
	full, err := rgbRegion(nil, img, img.Bounds())
	if err != nil {
		t.Fatal(err)
	}
	const w = 500
	for i := range 30 {
		r := sampleRNG(3, 0, i)
		c := RandomResizedCrop(500, 375, &r)
		out := 24 + 17*(i%5)
		inPlace := make([]uint8, 3*out*out)
		resampleRGB(inPlace, resampleAxis(c.X, c.W, out, 0, out), resampleAxis(c.Y, c.H, out, 0, out), full, w, 0, 0, nil)
		crop := make([]uint8, 0, 3*c.W*c.H)
		for y := c.Y; y < c.Y+c.H; y++ {
			crop = append(crop, full[3*(y*w+c.X):3*(y*w+c.X+c.W)]...)
		}
		copied := make([]uint8, 3*out*out)
		resampleRGB(copied, resampleAxis(0, c.W, out, 0, out), resampleAxis(0, c.H, out, 0, out), crop, c.W, 0, 0, nil)
		if !slices.Equal(inPlace, copied) {
			t.Fatalf("crop %+v to %d×%d: resampling in place differs from resampling the cropped copy", c, out, out)
		}
	}
}
