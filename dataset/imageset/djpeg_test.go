package imageset

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readPNM reads a binary PPM (P6) or PGM (P5) image of 8-bit samples as
// interleaved RGB (grey copied to the three channels).
func readPNM(t *testing.T, name string) (w, h int, rgb []uint8) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(b))
	var magic string
	var maxv int
	if _, err := fmt.Fscan(r, &magic, &w, &h, &maxv); err != nil || maxv != 255 || (magic != "P5" && magic != "P6") {
		t.Fatalf("%s: not an 8-bit binary PNM (%q %d×%d max %d): %v", name, magic, w, h, maxv, err)
	}
	r.ReadByte() // the one white-space byte after the header
	px, _ := io.ReadAll(r)
	if magic == "P6" {
		return w, h, px[:3*w*h]
	}
	rgb = make([]uint8, 3*w*h)
	for i, v := range px[:w*h] {
		rgb[3*i], rgb[3*i+1], rgb[3*i+2] = v, v, v
	}
	return w, h, rgb
}

// TestDecodeMatchesLibjpeg: testdata/djpeg holds a 51×33 image (odd
// sizes, so edge chroma samples are half used) as JPEGs written by
// libjpeg-turbo 2.1.5's cjpeg (4:2:0, 4:2:2, 4:4:4, progressive, restart
// markers every MCU row, grey) and each decoded by its djpeg with the
// default settings (islow IDCT, fancy upsampling: what Pillow uses). Our
// RGB, of the whole image and of regions, agrees within 3 levels per
// channel, 0.35 on average over the image (0.2 measured): the remaining
// differences are the IDCT's and the colour conversion's rounding.
// (Chroma replicated instead of upsampled would differ by up to 56.)
func TestDecodeMatchesLibjpeg(t *testing.T) {
	files, _ := filepath.Glob("testdata/djpeg/*.jpg")
	if len(files) < 6 {
		t.Fatalf("%d reference JPEGs in testdata/djpeg, want 6", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		img, err := Decode(data, MaxPixels)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		w, h, want := readPNM(t, strings.TrimSuffix(f, ".jpg")+".pnm")
		if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
			t.Fatalf("%s: %v, djpeg gives %d×%d", f, b, w, h)
		}
		for _, reg := range []image.Rectangle{img.Bounds(), image.Rect(7, 3, 50, 32), image.Rect(50, 32, 51, 33)} {
			got, err := rgbRegion(nil, img, reg)
			if err != nil {
				t.Fatal(err)
			}
			worst, sum, o := 0, 0, 0
			for y := reg.Min.Y; y < reg.Max.Y; y++ {
				for x := reg.Min.X; x < reg.Max.X; x++ {
					for c := range 3 {
						d := abs(int(got[o]) - int(want[3*(y*w+x)+c]))
						worst, sum = max(worst, d), sum+d
						o++
					}
				}
			}
			if worst > 3 {
				t.Errorf("%s, region %v: differs from djpeg by up to %d, want at most 3", f, reg, worst)
			}
			if reg == img.Bounds() {
				mean := float64(sum) / float64(len(got))
				t.Logf("%s: largest difference %d, mean %.3f", filepath.Base(f), worst, mean)
				if mean > 0.35 {
					t.Errorf("%s: differs from djpeg by %.3f on average, want at most 0.35", f, mean)
				}
			}
		}
	}
}
