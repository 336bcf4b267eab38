package imageset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// SynthOptions says what Synth draws.
type SynthOptions struct {
	Classes     int    // number of classes, 1 … 1000
	PerClass    int    // training images per class
	ValPerClass int    // validation images per class (0: PerClass/5, at least 1)
	Width       int    // image size (0: 500×375, ImageNet's typical size)
	Height      int    //
	Seed        uint64 // the same seed draws the same pixels
	Quality     int    // JPEG quality (0: 90)
}

// withDefaults fills in the zero fields and checks the rest.
func (o SynthOptions) withDefaults() (SynthOptions, error) {
	if o.ValPerClass == 0 {
		o.ValPerClass = max(1, o.PerClass/5)
	}
	if o.Width == 0 && o.Height == 0 {
		o.Width, o.Height = 500, 375
	}
	if o.Quality == 0 {
		o.Quality = 90
	}
	switch {
	case o.Classes < 1 || o.Classes > 1000:
		return o, fmt.Errorf("imageset: synth: %d classes, want 1 … 1000", o.Classes)
	case o.PerClass < 1 || o.ValPerClass < 0:
		return o, fmt.Errorf("imageset: synth: %d training and %d validation images per class, want at least 1 and 0", o.PerClass, o.ValPerClass)
	case o.Width < 8 || o.Height < 8 || o.Width*o.Height > 1<<24:
		return o, fmt.Errorf("imageset: synth: size %d×%d, want at least 8×8 and at most 2²⁴ pixels", o.Width, o.Height)
	case o.Quality < 1 || o.Quality > 100:
		return o, fmt.Errorf("imageset: synth: JPEG quality %d, want 1 … 100", o.Quality)
	}
	return o, nil
}

// SynthClassName is the name (folder) of synthetic class k: s000, s001, …,
// so that name order is label order.
func SynthClassName(k int) string { return fmt.Sprintf("s%03d", k) }

// Synth writes a learnable image folder of real JPEGs into dir:
// train/<class>/<class>_<i>.JPEG and val/<class>/…, PerClass and
// ValPerClass per class. Class k is an object of one of six shapes
// (disk, square, triangle, ring, cross, diamond: k/6 mod 6) filled with
// stripes at one of six angles (k mod 6, 30° apart, jittered by up to
// ±8°) and one of three densities (k/36 mod 3); each image draws the
// object's size (35–80% of the short side), position and two stripe
// colours, a background gradient between two colours at any angle,
// distracting blobs and per-pixel noise at random, so that no pixel and
// no colour tells the class. Image i of a class and split is a pure
// function of (Seed, split, class, i): the same options give the same
// bytes, and a set with more images per class extends one with fewer.
// Files already present are kept (a stopped run resumes), and each file
// appears whole. progress, if not nil, is told the images done so far
// and the total, one call at a time, from the goroutines Synth runs
// (which end before it returns).
func Synth(ctx context.Context, dir string, o SynthOptions, progress func(done, total int)) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	type job struct {
		split      string
		class, img int
	}
	var jobs []job
	for _, sp := range []struct {
		name string
		n    int
	}{{"train", o.PerClass}, {"val", o.ValPerClass}} {
		for k := range o.Classes {
			if err := os.MkdirAll(filepath.Join(dir, sp.name, SynthClassName(k)), 0o755); err != nil {
				return fmt.Errorf("imageset: synth: %w", err)
			}
			for i := range sp.n {
				jobs = append(jobs, job{sp.name, k, i})
			}
		}
	}
	done := &counter[int]{total: len(jobs), progress: progress}
	return forEach(ctx, len(jobs), func(n int) error {
		j := jobs[n]
		name := filepath.Join(dir, j.split, SynthClassName(j.class), fmt.Sprintf("%s_%d.JPEG", SynthClassName(j.class), j.img))
		if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
			split := uint64(0)
			if j.split == "val" {
				split = 1
			}
			img := SynthImage(o.Width, o.Height, j.class, o.Seed, split, uint64(j.img))
			var b bytes.Buffer
			if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: o.Quality}); err != nil {
				return fmt.Errorf("imageset: synth: %s: %w", name, err)
			}
			if err := renameio.WriteFile(name, b.Bytes(), 0o644); err != nil {
				return fmt.Errorf("imageset: synth: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("imageset: synth: %w", err)
		}
		done.add(1)
		return nil
	})
}

// SynthImage draws image (seed, split, i) of class k (see Synth).
func SynthImage(w, h, class int, seed, split, i uint64) *image.RGBA {
	r := rng{s: seed}
	for _, v := range []uint64{split, uint64(class), i} {
		r.s = r.next() ^ v
	}
	r.next()
	colour := func() [3]float64 { return [3]float64{r.uniform(0, 255), r.uniform(0, 255), r.uniform(0, 255)} }
	// The background: a gradient between two colours, at any angle.
	bg0, bg1 := colour(), colour()
	ga := r.uniform(0, 2*math.Pi)
	gx, gy := math.Cos(ga)/float64(max(w, h)), math.Sin(ga)/float64(max(w, h))
	// Distracting blobs: up to four discs of random colours.
	type blob struct {
		x, y, r2 float64
		c        [3]float64
	}
	blobs := make([]blob, r.intn(5))
	for b := range blobs {
		rad := r.uniform(0.03, 0.12) * float64(min(w, h))
		blobs[b] = blob{r.uniform(0, float64(w)), r.uniform(0, float64(h)), rad * rad, colour()}
	}
	// The object: its class's shape and stripes, its own size, place and
	// colours (two that differ in brightness, so the stripes show).
	shape, angle, density := (class/6)%6, class%6, (class/36)%3
	size := r.uniform(0.35, 0.8) * float64(min(w, h))
	rad := size / 2
	cx, cy := r.uniform(rad, float64(w)-rad), r.uniform(rad, float64(h)-rad)
	theta := float64(angle)*math.Pi/6 + r.uniform(-8, 8)*math.Pi/180
	ct, st := math.Cos(theta), math.Sin(theta)
	freq := float64(3 + 2*density) // stripe pairs across the object
	fg0, fg1 := colour(), colour()
	for math.Abs(luma(fg0)-luma(fg1)) < 60 {
		fg1 = colour()
	}
	noise := r.uniform(4, 24)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			fx, fy := float64(x)+0.5, float64(y)+0.5
			t := 0.5 + (fx-float64(w)/2)*gx + (fy-float64(h)/2)*gy
			var c [3]float64
			for ch := range 3 {
				c[ch] = bg0[ch] + (bg1[ch]-bg0[ch])*t
			}
			for _, b := range blobs {
				if dx, dy := fx-b.x, fy-b.y; dx*dx+dy*dy <= b.r2 {
					c = b.c
				}
			}
			u, v := (fx-cx)/rad, (fy-cy)/rad
			if inShape(shape, u, v) {
				if s := (u*ct + v*st + 1) * freq; int(math.Floor(s))%2 == 0 {
					c = fg0
				} else {
					c = fg1
				}
			}
			o := img.PixOffset(x, y)
			for ch := range 3 {
				img.Pix[o+ch] = uint8(math.Max(0, math.Min(255, c[ch]+r.uniform(-noise, noise))))
			}
			img.Pix[o+3] = 255
		}
	}
	return img
}

// luma is a colour's brightness.
func luma(c [3]float64) float64 { return 0.299*c[0] + 0.587*c[1] + 0.114*c[2] }

// inShape reports whether (u, v), in units of the object's radius from
// its centre, lies in shape 0 … 5: disk, square, triangle, ring, cross,
// diamond.
func inShape(shape int, u, v float64) bool {
	au, av := math.Abs(u), math.Abs(v)
	switch shape {
	case 0:
		return u*u+v*v <= 1
	case 1:
		return max(au, av) <= 0.8
	case 2:
		return v >= -0.8 && v <= 0.8 && au <= 0.55*(v+0.8)
	case 3:
		d := u*u + v*v
		return d >= 0.4 && d <= 1
	case 4:
		return (au <= 0.3 && av <= 0.9) || (av <= 0.3 && au <= 0.9)
	default:
		return au+av <= 1
	}
}
