package jpegdec

import (
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScaledMatchesDjpeg: DecodeScaled at 1/2, 1/4 and 1/8 gives djpeg
// -scale's size and, exactly, its Y plane (every testdata file) and its
// chroma planes (the 4:4:4 files; see DecodeScaled for subsampled
// chroma), at 1/1 Decode's image.
func TestScaledMatchesDjpeg(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.jpg")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		full, _ := Decode(data, 1<<20)
		same, err := DecodeScaled(data, 1<<20, 1)
		if err != nil || maxDiff(same, full) != [3]int{} {
			t.Fatalf("%s at 1/1: %v", f, err)
		}
		base := strings.TrimSuffix(f, ".jpg")
		for _, denom := range []int{2, 4, 8} {
			img, err := DecodeScaled(data, 1<<20, denom)
			if err != nil {
				t.Fatalf("%s 1/%d: %v", f, denom, err)
			}
			w, h, _, ypix := readPNM(t, fmt.Sprintf("%s.s%d.y.pgm", base, denom))
			if b := img.Bounds(); b != image.Rect(0, 0, w, h) {
				t.Fatalf("%s 1/%d: %v, djpeg %d×%d", f, denom, b, w, h)
			}
			var worst [3]int
			planes := fmt.Sprintf("%s.s%d.planes.ppm", base, denom)
			_, statErr := os.Stat(planes)
			var pp []uint8
			if statErr == nil {
				_, _, _, pp = readPNM(t, planes)
			}
			for y := range h {
				for x := range w {
					worst[0] = max(worst[0], abs(int(sample(img, 0, x, y))-int(ypix[y*w+x])))
					for p := 0; pp != nil && p < 3; p++ {
						worst[p] = max(worst[p], abs(int(sample(img, p, x, y))-int(pp[3*(y*w+x)+p])))
					}
				}
			}
			if worst != [3]int{} {
				t.Errorf("%s at 1/%d: differs from djpeg by %v (Y, Cb, Cr)", f, denom, worst)
			}
		}
	}
	if _, err := DecodeScaled(nil, 1, 3); err == nil {
		t.Error("scale 1/3 accepted")
	}
}
