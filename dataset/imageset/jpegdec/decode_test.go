package jpegdec

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// decodeWith decodes data with the given IDCT, with the coefficients'
// range checked: warn says the stream was malformed in a way decoders
// resolve differently, or had coefficients beyond an 8-bit image's range.
func decodeWith(data []byte, maxPixels int, idct func([]uint8, int, *[64]int32)) (img image.Image, warn bool, err error) {
	d := decoder{data: data, idct: idct, check: true}
	img, err = d.decode(maxPixels)
	return img, d.warn, err
}

// readPNM reads a binary PGM (P5) or PPM (P6) of 8-bit samples.
func readPNM(t testing.TB, name string) (w, h, ch int, pix []uint8) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(b))
	var magic string
	var maxv int
	if _, err := fmt.Fscan(r, &magic, &w, &h, &maxv); err != nil || maxv != 255 {
		t.Fatalf("%s: not an 8-bit PNM: %v", name, err)
	}
	r.ReadByte()
	pix, _ = io.ReadAll(r)
	ch = 1
	if magic == "P6" {
		ch = 3
	}
	if len(pix) < ch*w*h {
		t.Fatalf("%s: short", name)
	}
	return w, h, ch, pix[:ch*w*h]
}

// sample returns plane p (0 Y, 1 Cb, 2 Cr) of img at pixel (x, y).
func sample(img image.Image, p, x, y int) uint8 {
	switch m := img.(type) {
	case *image.Gray:
		return m.Pix[m.PixOffset(x, y)]
	case *image.YCbCr:
		switch p {
		case 0:
			return m.Y[m.YOffset(x, y)]
		case 1:
			return m.Cb[m.COffset(x, y)]
		}
		return m.Cr[m.COffset(x, y)]
	}
	panic("not a Gray or YCbCr")
}

func planesOf(img image.Image) int {
	if _, ok := img.(*image.Gray); ok {
		return 1
	}
	return 3
}

// maxDiff returns the largest difference of each plane between a and b
// over the image, which must be the same size.
func maxDiff(a, b image.Image) (d [3]int) {
	r := a.Bounds()
	for p := range planesOf(a) {
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				d[p] = max(d[p], abs(int(sample(a, p, x, y))-int(sample(b, p, x, y))))
			}
		}
	}
	return d
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// sameLayout checks that a is laid out as image/jpeg's b: same type,
// rectangle, subsample ratio, strides and plane lengths.
func sameLayout(t testing.TB, a, b image.Image) {
	t.Helper()
	switch m := b.(type) {
	case *image.Gray:
		g, ok := a.(*image.Gray)
		if !ok || g.Rect != m.Rect || g.Stride != m.Stride || len(g.Pix) != len(m.Pix) {
			t.Fatalf("got %T, image/jpeg %T %v stride %d", a, b, m.Rect, m.Stride)
		}
	case *image.YCbCr:
		c, ok := a.(*image.YCbCr)
		if !ok || c.Rect != m.Rect || c.SubsampleRatio != m.SubsampleRatio || c.YStride != m.YStride ||
			c.CStride != m.CStride || len(c.Y) != len(m.Y) || len(c.Cb) != len(m.Cb) || len(c.Cr) != len(m.Cr) {
			t.Fatalf("got %T, image/jpeg %T %v %v strides %d %d", a, b, m.Rect, m.SubsampleRatio, m.YStride, m.CStride)
		}
	default:
		t.Fatalf("image/jpeg gives %T", b)
	}
}

// TestMatchesDjpeg: the planes of testdata's JPEGs (every sampling image/jpeg
// reads, restart intervals, optimized tables, qualities 10-100, grey, 1×1)
// equal libjpeg-turbo's djpeg's with its islow IDCT, exactly, with each
// IDCT this build has: the Y plane as `djpeg -grayscale` gives it, the
// chroma planes as djpeg gives them unconverted (see testdata/gen.py).
func TestMatchesDjpeg(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.jpg")
	if len(files) < 13 {
		t.Fatalf("%d JPEGs in testdata, want 13", len(files))
	}
	for name, idct := range idctImpls {
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			img, warn, err := decodeWith(data, 1<<20, idct)
			if err != nil || warn {
				t.Fatalf("%s: %v (warn %v)", f, err, warn)
			}
			base := strings.TrimSuffix(f, ".jpg")
			w, h, _, ypix := readPNM(t, base+".y.pgm")
			if b := img.Bounds(); b != image.Rect(0, 0, w, h) {
				t.Fatalf("%s: %v, djpeg %d×%d", f, b, w, h)
			}
			var worst [3]int
			for y := range h {
				for x := range w {
					worst[0] = max(worst[0], abs(int(sample(img, 0, x, y))-int(ypix[y*w+x])))
				}
			}
			if planesOf(img) == 3 {
				_, _, _, pp := readPNM(t, base+".planes.ppm")
				for y := range h {
					for x := range w {
						for p := range 3 {
							worst[p] = max(worst[p], abs(int(sample(img, p, x, y))-int(pp[3*(y*w+x)+p])))
						}
					}
				}
			}
			if worst != [3]int{} {
				t.Errorf("%s (%s IDCT): differs from djpeg by up to %v (Y, Cb, Cr)", f, name, worst)
			}
		}
	}
}

// goJPEGs returns JPEGs written by image/jpeg (4:2:0 and grey) of odd
// sizes and several qualities.
func goJPEGs(t testing.TB) [][]byte {
	var out [][]byte
	rng := rand.New(rand.NewPCG(1, 2))
	for i, sz := range []image.Point{{1, 1}, {7, 9}, {17, 16}, {33, 31}, {64, 48}, {101, 67}} {
		rgb := image.NewRGBA(image.Rect(0, 0, sz.X, sz.Y))
		for y := range sz.Y {
			for x := range sz.X {
				n := func() int { return rng.IntN(60) - 30 }
				c := color.RGBA{uint8(x*7 + n()), uint8(y*5 + n()), uint8((x ^ y) * 3), 255}
				if (x/5+y/4)%2 == 0 {
					c.R, c.B = 255-c.R, 255-c.B
				}
				rgb.Set(x, y, c)
			}
		}
		gray := image.NewGray(rgb.Rect)
		for j := range gray.Pix {
			gray.Pix[j] = rgb.Pix[4*j+1]
		}
		for _, q := range []int{5, 50, 90, 100} {
			for _, m := range []image.Image{rgb, gray} {
				var b bytes.Buffer
				if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: q}); err != nil {
					t.Fatal(err)
				}
				out = append(out, b.Bytes())
			}
		}
		_ = i
	}
	return out
}

// imageJPEGTolerance is the largest difference of a plane sample from
// image/jpeg's: its IDCT is another integer approximation (jfdctint-style
// with 11-bit constants, rounding differently), within 1 level of the
// exact transform for IEEE 1180's ranges; ours within 1 level too.
const imageJPEGTolerance = 2

// TestMatchesImageJPEG: on image/jpeg's own JPEGs and on testdata's, the
// same image layout as image/jpeg's and planes within
// imageJPEGTolerance.
func TestMatchesImageJPEG(t *testing.T) {
	all := goJPEGs(t)
	files, _ := filepath.Glob("testdata/*.jpg")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, data)
	}
	var worst [3]int
	for i, data := range all {
		want, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for name, idct := range idctImpls {
			got, warn, err := decodeWith(data, 1<<20, idct)
			if err != nil || warn {
				t.Fatalf("file %d: %v (warn %v)", i, err, warn)
			}
			sameLayout(t, got, want)
			d := maxDiff(got, want)
			for p := range d {
				worst[p] = max(worst[p], d[p])
			}
			if max(d[0], d[1], d[2]) > imageJPEGTolerance {
				t.Errorf("file %d (%s IDCT): differs from image/jpeg by %v", i, name, d)
			}
		}
	}
	t.Logf("%d files: largest difference from image/jpeg per plane %v", len(all), worst)
}

// TestUnsupported: what the package leaves to image/jpeg gives an error
// wrapping ErrUnsupported.
func TestUnsupported(t *testing.T) {
	for _, f := range []string{"../testdata/djpeg/420-progressive.jpg", "../testdata/cmyk.jpg"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(data, 1<<20); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", f, err)
		}
	}
	// Two scans of the whole frame.
	data, err := os.ReadFile("testdata/420.jpg")
	if err != nil {
		t.Fatal(err)
	}
	sos, eoi := bytes.Index(data, []byte{0xff, sosMarker}), len(data)-2
	twice := append(bytes.Clone(data[:eoi]), data[sos:]...)
	if _, err := Decode(twice, 1<<20); !errors.Is(err, ErrUnsupported) {
		t.Errorf("two scans: %v, want ErrUnsupported", err)
	}
	// A 12-bit frame header.
	data = []byte{0xff, 0xd8, 0xff, 0xc1, 0, 11, 12, 0, 8, 0, 8, 1, 1, 0x11, 0}
	if _, err := Decode(data, 1<<20); !errors.Is(err, ErrUnsupported) {
		t.Errorf("12-bit: %v, want ErrUnsupported", err)
	}
}

// TestHostile: every truncation and many corruptions of the test files
// give an image or an error, never a panic; a header over the pixel
// bound is refused before the image is allocated.
func TestHostile(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.jpg")
	rng := rand.New(rand.NewPCG(3, 4))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for n := range len(data) {
			img, err := Decode(data[:n], 1<<20)
			if err == nil && img == nil {
				t.Fatalf("%s[:%d]: no image and no error", f, n)
			}
		}
		for range 300 {
			c := bytes.Clone(data)
			for range 1 + rng.IntN(4) {
				c[rng.IntN(len(c))] = uint8(rng.Uint32())
			}
			Decode(c, 1<<20)
		}
	}
	// A 65535×65535 frame, refused with a bound of 2^25 pixels.
	data, _ := os.ReadFile("testdata/444.jpg")
	i := bytes.Index(data, []byte{0xff, 0xc0})
	big := bytes.Clone(data)
	big[i+5], big[i+6], big[i+7], big[i+8] = 0xff, 0xff, 0xff, 0xff
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err := Decode(big, 1<<25)
	runtime.ReadMemStats(&m1)
	if err == nil || m1.TotalAlloc-m0.TotalAlloc > 1<<20 {
		t.Errorf("65535×65535 frame: %v, %d bytes allocated", err, m1.TotalAlloc-m0.TotalAlloc)
	}
}

// FuzzDecode: any input gives an image or an error, never a panic; when
// it gives an image, DecodeScaled gives one of the scaled size; when
// image/jpeg decodes it too, the images have the same layout and, for a
// well-formed stream of an 8-bit image's coefficients (see decodeWith),
// planes within imageJPEGTolerance.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jpg")
	for _, name := range files {
		data, _ := os.ReadFile(name)
		f.Add(data)
	}
	const bound = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		got, warn, err := decodeWith(data, bound, bestIDCT)
		if err != nil {
			return
		}
		if b := got.Bounds(); b.Empty() || b.Dx()*b.Dy() > bound {
			t.Fatalf("decoded %v", b)
		}
		for _, denom := range []int{2, 8} {
			s, err := DecodeScaled(data, bound, denom)
			b, w := got.Bounds(), image.Rect(0, 0, (got.Bounds().Dx()+denom-1)/denom, (got.Bounds().Dy()+denom-1)/denom)
			if err != nil || s.Bounds() != w {
				t.Fatalf("1/%d of %v: %v, %v", denom, b, s, err)
			}
		}
		want, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		sameLayout(t, got, want)
		if d := maxDiff(got, want); !warn && max(d[0], d[1], d[2]) > imageJPEGTolerance {
			t.Fatalf("differs from image/jpeg by %v", d)
		}
	})
}

// TestMalformed: how the damaged streams of the fuzz corpus come out,
// each as image/jpeg has them.
func TestMalformed(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"truncated-mid-scan", false},          // entropy data ends: no grey fill
		{"no-eoi", false},                      // complete scan, no EOI marker
		{"restart-marker-out-of-order", false}, // RST3 where RST1 is due
		{"411-ac-run-without-value", true},     // decoded as libjpeg does, warned
	} {
		b, err := os.ReadFile("testdata/fuzz/FuzzDecode/" + c.name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 3)
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Decode([]byte(s), 1<<20)
		_, goErr := jpeg.Decode(strings.NewReader(s))
		if (err == nil) != c.ok || (goErr == nil) != c.ok {
			t.Errorf("%s: %v (image/jpeg: %v), want success %v", c.name, err, goErr, c.ok)
		}
	}
}

// TestAdobe: an Adobe APP14 segment without JFIF marks RGB components
// (transform 0: left to image/jpeg) or YCbCr ones (transform 1: decoded,
// as image/jpeg decodes them).
func TestAdobe(t *testing.T) {
	data, err := os.ReadFile("testdata/420.jpg")
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := Decode(data, 1<<20)
	rgb := relabelRGB(data) // transform 0
	if _, err := Decode(rgb, 1<<20); !errors.Is(err, ErrUnsupported) {
		t.Errorf("transform 0: %v, want ErrUnsupported", err)
	}
	ycc := bytes.Clone(rgb)
	ycc[2+4+11] = 1 // the transform byte of the segment relabelRGB puts first
	img, err := Decode(ycc, 1<<20)
	if err != nil || maxDiff(img, plain) != [3]int{} {
		t.Errorf("transform 1: %v", err)
	}
	want, err := jpeg.Decode(bytes.NewReader(ycc))
	if _, ok := want.(*image.YCbCr); !ok || err != nil {
		t.Errorf("image/jpeg reads transform 1 as %T, %v", want, err)
	}
}
