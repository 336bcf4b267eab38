package jpegdec

import (
	"bytes"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// relabelRGB returns a copy of the JPEG data with its APP0 segments
// dropped and an Adobe APP14 segment of transform 0 added, so that
// libjpeg reads its components as RGB and writes the decoded planes
// unconverted (testdata/gen.py's relabel_rgb).
func relabelRGB(data []byte) []byte {
	out := append([]byte{}, data[:2]...)
	out = append(out, 0xff, 0xee, 0, 14, 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 0)
	for i := 2; i+4 <= len(data); {
		m, n := data[i+1], int(data[i+2])<<8|int(data[i+3])
		if m == sosMarker {
			return append(out, data[i:]...)
		}
		if m != app0Marker {
			out = append(out, data[i:min(i+2+n, len(data))]...)
		}
		i += 2 + n
	}
	return out
}

// djpegPlanes runs djpeg (islow) on data and returns its Y plane and, for
// colour, its unconverted planes with chroma replicated (PPM).
func djpegPlanes(t *testing.T, data []byte, colour bool) (y, planes []uint8) {
	run := func(in []byte, args ...string) []uint8 {
		cmd := exec.Command("djpeg", append([]string{"-dct", "int", "-pnm"}, args...)...)
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("djpeg %v: %v", args, err)
		}
		f := filepath.Join(t.TempDir(), "x.pnm")
		os.WriteFile(f, out, 0o644)
		_, _, _, pix := readPNM(t, f)
		return pix
	}
	y = run(data, "-grayscale")
	if colour {
		planes = run(relabelRGB(data), "-nosmooth")
	}
	return y, planes
}

// TestMatchesDjpegDir compares the planes of every JPEG under
// $JPEGDEC_DJPEG_DIR with djpeg's (which must be installed) and with
// image/jpeg's, and logs the largest difference per plane. It is skipped
// without the variable.
func TestMatchesDjpegDir(t *testing.T) {
	dir := os.Getenv("JPEGDEC_DJPEG_DIR")
	if dir == "" {
		t.Skip("JPEGDEC_DJPEG_DIR not set")
	}
	if _, err := exec.LookPath("djpeg"); err != nil {
		t.Skip("no djpeg")
	}
	var files []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	var vsDjpeg, vsGo [3]int
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) < 2 || data[0] != 0xff || data[1] != 0xd8 {
			continue
		}
		img, err := Decode(data, 1<<26)
		if err != nil {
			t.Logf("%s: %v", f, err)
			continue
		}
		n++
		_, colour := img.(*image.YCbCr)
		ypix, pp := djpegPlanes(t, data, colour)
		b := img.Bounds()
		w := b.Dx()
		var d [3]int
		for y := range b.Dy() {
			for x := range w {
				d[0] = max(d[0], abs(int(sample(img, 0, x, y))-int(ypix[y*w+x])))
				if colour {
					for p := range 3 {
						d[p] = max(d[p], abs(int(sample(img, p, x, y))-int(pp[3*(y*w+x)+p])))
					}
				}
			}
		}
		want, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		g := maxDiff(img, want)
		for p := range 3 {
			vsDjpeg[p], vsGo[p] = max(vsDjpeg[p], d[p]), max(vsGo[p], g[p])
		}
		if d != [3]int{} {
			t.Errorf("%s: differs from djpeg by %v", f, d)
		}
		if max(g[0], g[1], g[2]) > imageJPEGTolerance {
			t.Errorf("%s: differs from image/jpeg by %v", f, g)
		}
	}
	t.Logf("%d files: largest difference per plane (Y, Cb, Cr) from djpeg %v, from image/jpeg %v", n, vsDjpeg, vsGo)
}
