package imageset

import (
	"image"
	"math"
	"math/bits"
)

// ImageNet's per-channel mean and standard deviation (R, G, B), of pixels
// scaled to [0, 1]: the normalization torchvision's ImageNet recipes use.
var (
	ImageNetMean = [3]float64{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float64{0.229, 0.224, 0.225}
)

// normTables maps each channel's 8-bit value to its normalized float32,
// (v/255 − mean)/std computed in float64 and rounded once.
var normTables = func() (t [3][256]float32) {
	for c := range t {
		for v := range t[c] {
			t[c][v] = float32((float64(v)/255 - ImageNetMean[c]) / ImageNetStd[c])
		}
	}
	return t
}()

// Params says how a Set's Fill turns a stored image into a model input.
type Params struct {
	H, W  int  // the output size
	Train bool // the training transform (else the evaluation one)
	// Seed and Epoch, with the sample's index, decide the training
	// transform's random crop and flip.
	Seed  uint64
	Epoch int
}

// Crop is a rectangle of a source image: its top-left pixel (X, Y) and
// its size W×H.
type Crop struct{ X, Y, W, H int }

// rng is splitmix64, the sample's random stream: small, and defined by its
// few lines here, so the same (seed, epoch, index) gives the same crops on
// every platform and Go version.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// uniform returns a float64 uniform in [lo, hi).
func (r *rng) uniform(lo, hi float64) float64 {
	return lo + (hi-lo)*float64(r.next()>>11)/(1<<53)
}

// intn returns an int uniform in [0, n), n > 0 (Lemire's multiply, whose
// bias is below 2⁻³² for any image size).
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int(hi)
}

// sampleRNG returns the random stream of sample index in epoch of a run
// seeded with seed.
func sampleRNG(seed uint64, epoch, index int) rng {
	r := rng{s: seed}
	r.s = r.next() ^ uint64(epoch)
	r.s = r.next() ^ uint64(index)
	r.next()
	return r
}

// roundHalfEven is Python's round() on a float, as torchvision uses it.
func roundHalfEven(x float64) int { return int(math.RoundToEven(x)) }

// RandomResizedCrop returns torchvision's RandomResizedCrop crop of a
// w×h image, with its scale (0.08, 1) and ratio (3/4, 4/3): up to ten
// tries of an area fraction uniform in [0.08, 1) and an aspect ratio
// log-uniform in [3/4, 4/3), rounded to whole pixels (half to even),
// taking the first that fits at a uniform position; else the whole image
// cropped to the nearest ratio in range, centred.
func RandomResizedCrop(w, h int, r *rng) Crop {
	area := float64(w * h)
	logLo, logHi := math.Log(3.0/4), math.Log(4.0/3)
	for range 10 {
		target := area * r.uniform(0.08, 1)
		ratio := math.Exp(r.uniform(logLo, logHi))
		cw := roundHalfEven(math.Sqrt(target * ratio))
		ch := roundHalfEven(math.Sqrt(target / ratio))
		if 0 < cw && cw <= w && 0 < ch && ch <= h {
			y := r.intn(h - ch + 1)
			x := r.intn(w - cw + 1)
			return Crop{X: x, Y: y, W: cw, H: ch}
		}
	}
	cw, ch := w, h
	switch in := float64(w) / float64(h); {
	case in < 3.0/4:
		ch = roundHalfEven(float64(w) / (3.0 / 4))
	case in > 4.0/3:
		cw = roundHalfEven(float64(h) * (4.0 / 3))
	}
	return Crop{X: (w - cw) / 2, Y: (h - ch) / 2, W: cw, H: ch}
}

// EvalResize returns the size a w×h image is resized to before the
// evaluation transform's centre crop of outW×outH: torchvision's
// Resize(s) with s = round(min(outW, outH)·256/224) (256 for 224): the
// short side becomes s, the long one s·long/short rounded down. Where
// that leaves a side shorter than the crop (a very elongated image), the
// image is resized just enough to cover it.
func EvalResize(w, h, outW, outH int) (rw, rh int) {
	s := (min(outW, outH)*256 + 112) / 224
	if w <= h {
		rw, rh = s, int(float64(s)*float64(h)/float64(w))
	} else {
		rw, rh = int(float64(s)*float64(w)/float64(h)), s
	}
	if rw < outW || rh < outH {
		if outW*h >= outH*w {
			rw, rh = outW, max(outH, (outW*h+w-1)/w)
		} else {
			rw, rh = max(outW, (outH*w+h-1)/h), outH
		}
	}
	return rw, rh
}

// centreOffset is torchvision's CenterCrop offset of a crop of c pixels
// from n: round((n−c)/2), half to even.
func centreOffset(n, c int) int { return roundHalfEven(float64(n-c) / 2) }

// scratch is the working memory of one sample's transform, reused from
// sample to sample.
type scratch struct {
	data []byte  // the encoded image
	rgb  []uint8 // the source region, interleaved RGB
	rs   resampleBuf
	out  []uint8 // the output, interleaved RGB
}

// geometry returns the resampling of a w×h image to p's output for
// sample index, and whether the output is flipped horizontally.
func geometry(w, h int, p Params, index int) (xs, ys axis, flip bool) {
	if p.Train {
		r := sampleRNG(p.Seed, p.Epoch, index)
		c := RandomResizedCrop(w, h, &r)
		flip = r.next()>>63 == 1
		return resampleAxis(c.X, c.W, p.W, 0, p.W), resampleAxis(c.Y, c.H, p.H, 0, p.H), flip
	}
	rw, rh := EvalResize(w, h, p.W, p.H)
	xs = resampleAxis(0, w, rw, centreOffset(rw, p.W), p.W)
	ys = resampleAxis(0, h, rh, centreOffset(rh, p.H), p.H)
	return xs, ys, false
}

// transform writes image img of sample index, transformed by p, into dst
// (3·p.H·p.W floats, CHW, normalized).
func transform(dst []float32, img image.Image, p Params, index int, sc *scratch) error {
	b := img.Bounds()
	xs, ys, flip := geometry(b.Dx(), b.Dy(), p, index)
	x0, x1 := xs.span()
	y0, y1 := ys.span()
	var err error
	sc.rgb, err = rgbRegion(sc.rgb, img, image.Rect(b.Min.X+x0, b.Min.Y+y0, b.Min.X+x1, b.Min.Y+y1))
	if err != nil {
		return err
	}
	n := p.H * p.W
	if cap(sc.out) < 3*n {
		sc.out = make([]uint8, 3*n)
	}
	sc.out = sc.out[:3*n]
	resampleRGB(sc.out, xs, ys, sc.rgb, x1-x0, x0, y0, &sc.rs)
	normalize(dst, sc.out, p.H, p.W, flip)
	return nil
}

// normalize writes the interleaved RGB image src (h×w) into dst as CHW
// float32 normalized with ImageNet's mean and standard deviation, mirrored
// left to right when flip is set.
func normalize(dst []float32, src []uint8, h, w int, flip bool) {
	n := h * w
	r, g, b := dst[:n:n], dst[n:2*n:2*n], dst[2*n:3*n:3*n]
	for y := range h {
		row := src[3*y*w : 3*(y+1)*w]
		for x := range w {
			o := y*w + x
			if flip {
				o = y*w + w - 1 - x
			}
			r[o] = normTables[0][row[3*x]]
			g[o] = normTables[1][row[3*x+1]]
			b[o] = normTables[2][row[3*x+2]]
		}
	}
}
