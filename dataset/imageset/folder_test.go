package imageset

import (
	"image"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// solid returns a w×h image of one colour.
func solid(w, h int, c color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
	}
	return img
}

// classColours are the colours of the test folders' classes, far apart.
var classColours = map[string]color.RGBA{"n01": {250, 10, 10, 255}, "n02": {10, 250, 10, 255}, "n03": {10, 10, 250, 255}}

func writeFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testFolder writes an image folder: train/n01, n02, n03 with two images
// each (n02's second a PNG named .JPEG, n03's first in a sub-folder), and
// val/ flat with four images; it returns the val file names.
func testFolder(t *testing.T) (string, []string) {
	dir := t.TempDir()
	for _, c := range []string{"n01", "n02", "n03"} {
		img := solid(60, 40, classColours[c])
		writeFile(t, filepath.Join(dir, "train", c, c+"_1.JPEG"), encodeJPEG(t, img, 90))
		second := filepath.Join(dir, "train", c, c+"_2.JPEG")
		if c == "n02" {
			writeFile(t, second, encodePNG(t, img))
		} else {
			writeFile(t, second, encodeJPEG(t, img, 90))
		}
	}
	os.Rename(filepath.Join(dir, "train/n03/n03_1.JPEG"), filepath.Join(dir, "train/n03/n03_0.JPEG"))
	writeFile(t, filepath.Join(dir, "train/n03/sub/n03_1.jpg"), encodeJPEG(t, solid(30, 50, classColours["n03"]), 90))
	writeFile(t, filepath.Join(dir, "train/n01/notes.txt"), []byte("not an image"))
	val := []string{"ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000003.png", "ILSVRC2012_val_00000004.JPEG"}
	for i, name := range val {
		c := []string{"n03", "n01", "n02", "n03"}[i]
		writeFile(t, filepath.Join(dir, "val", name), encodeJPEG(t, solid(50, 50, classColours[c]), 90))
	}
	return dir, val
}

// fillAll fills every sample of s at 8×8 and returns the images and labels.
func fillAll(t *testing.T, s *Set, p Params) ([]float32, []int) {
	t.Helper()
	idx := make([]int, s.Len())
	for i := range idx {
		idx[i] = i
	}
	x := make([]float32, len(idx)*3*p.H*p.W)
	y := make([]int, len(idx))
	if err := s.Fill(x, y, idx, p); err != nil {
		t.Fatal(err)
	}
	return x, y
}

// dominant returns the class whose colour sample k of x (3×h×w) shows.
func dominant(x []float32, k, hw int) string {
	img := x[k*3*hw : (k+1)*3*hw]
	var best string
	bestV := float32(-1e9)
	for c, name := range []string{"n01", "n02", "n03"} {
		if v := img[c*hw]; v > bestV {
			best, bestV = name, v
		}
	}
	return best
}

func TestOpenFolderTrain(t *testing.T) {
	dir, _ := testFolder(t)
	s, err := OpenFolder(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Classes(), []string{"n01", "n02", "n03"}) {
		t.Fatalf("classes %v", s.Classes())
	}
	f := s.src.(*folder)
	want := []string{"n01/n01_1.JPEG", "n01/n01_2.JPEG", "n02/n02_1.JPEG", "n02/n02_2.JPEG", "n03/n03_0.JPEG", "n03/n03_2.JPEG", "n03/sub/n03_1.jpg"}
	if !slices.Equal(f.files, want) {
		t.Fatalf("files %v, want %v", f.files, want)
	}
	for _, p := range []Params{{H: 8, W: 8}, {H: 8, W: 8, Train: true, Seed: 3}} {
		x, y := fillAll(t, s, p)
		if !slices.Equal(y, []int{0, 0, 1, 1, 2, 2, 2}) {
			t.Fatalf("labels %v", y)
		}
		for k := range y {
			if got := dominant(x, k, 64); got != s.Classes()[y[k]] {
				t.Fatalf("%+v: sample %d (%s) shows %s's colour", p, k, f.files[k], got)
			}
		}
	}
}

func TestOpenFolderFlatVal(t *testing.T) {
	want := []int{2, 0, 1, 2}
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"csv", map[string]string{ValLabelsCSV: "file,label\nILSVRC2012_val_00000001.JPEG,n03\nILSVRC2012_val_00000002.JPEG,0\nILSVRC2012_val_00000003.png,n02\nILSVRC2012_val_00000004.JPEG,n03\n"}},
		{"kaggle", map[string]string{KaggleValSolution: "ImageId,PredictionString\nILSVRC2012_val_00000004,n03 1 2 3 4 n03 5 6 7 8\nILSVRC2012_val_00000002,n01 1 2 3 4\nILSVRC2012_val_00000001,n03 1 1 1 1\nILSVRC2012_val_00000003,n02 0 0 9 9\n"}},
		{"devkit", map[string]string{ILSVRCGroundTruth: "1\n2\n3\n1\n", ILSVRCSynsets: "n03 third\nn01 first\nn02 second\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := testFolder(t)
			for n, text := range tc.files {
				writeFile(t, filepath.Join(dir, n), []byte(text))
			}
			s, err := OpenFolder(dir, "test")
			if err != nil {
				t.Fatal(err)
			}
			x, y := fillAll(t, s, Params{H: 8, W: 8})
			if !slices.Equal(y, want) {
				t.Fatalf("labels %v, want %v", y, want)
			}
			for k := range y {
				if got := dominant(x, k, 64); got != s.Classes()[y[k]] {
					t.Fatalf("val sample %d shows %s's colour, labelled %s", k, got, s.Classes()[y[k]])
				}
			}
		})
	}
}

func TestOpenFolderValInClassFolders(t *testing.T) {
	dir, _ := testFolder(t)
	os.RemoveAll(filepath.Join(dir, "val"))
	writeFile(t, filepath.Join(dir, "val/n02/a.jpeg"), encodeJPEG(t, solid(20, 20, classColours["n02"]), 90))
	s, err := OpenFolder(dir, "val")
	if err != nil {
		t.Fatal(err)
	}
	if _, y := fillAll(t, s, Params{H: 4, W: 4}); !slices.Equal(y, []int{1}) {
		t.Fatalf("labels %v, want [1]", y)
	}
	writeFile(t, filepath.Join(dir, "val/n09/b.jpeg"), encodeJPEG(t, solid(20, 20, classColours["n02"]), 90))
	if _, err := OpenFolder(dir, "val"); err == nil || !strings.Contains(err.Error(), "folder n09 is not one of the 3 classes") {
		t.Fatalf("val folder of an unknown class: %v", err)
	}
}

func TestOpenFolderErrors(t *testing.T) {
	dir, val := testFolder(t)
	for _, tc := range []struct {
		name, split string
		setup       func()
		want        string
	}{
		{"no train", "train", func() { os.RemoveAll(filepath.Join(dir, "train")) }, "the class list comes from its train/ folder"},
		{"bad split", "dev", func() {}, `unknown split "dev"`},
		{"no label file", "val", func() {}, "has images but no class folders"},
		{"missing label", "val", func() {
			writeFile(t, filepath.Join(dir, ValLabelsCSV), []byte(val[0]+",n01\n"))
		}, filepath.Join("val", "ILSVRC2012_val_00000002.JPEG")},
		{"unknown class", "val", func() {
			writeFile(t, filepath.Join(dir, ValLabelsCSV), []byte("a,n01\nb,n07\n"))
		}, "val_labels.csv line 2: label \"n07\" is neither one of the 3 classes"},
		{"devkit count", "val", func() {
			writeFile(t, filepath.Join(dir, ILSVRCGroundTruth), []byte("1\n2\n"))
			writeFile(t, filepath.Join(dir, ILSVRCSynsets), []byte("n01\nn02\nn03\n"))
		}, "has 2 labels for the 4 images"},
		{"devkit without synsets", "val", func() {
			writeFile(t, filepath.Join(dir, ILSVRCGroundTruth), []byte("1\n2\n"))
		}, "needs ILSVRC2012_synsets.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, val = testFolder(t)
			tc.setup()
			s, err := OpenFolder(dir, tc.split)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenFolder = %v, %v; want an error containing %q", s, err, tc.want)
			}
		})
	}
}

// TestFillErrorsNameTheFile: a corrupt image fails Fill with its path,
// bad arguments fail before anything is read, and nothing panics.
func TestFillErrorsNameTheFile(t *testing.T) {
	dir, _ := testFolder(t)
	bad := filepath.Join(dir, "train/n02/n02_1.JPEG")
	writeFile(t, bad, []byte("\xff\xd8garbage"))
	s, err := OpenFolder(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]float32, 2*3*16), make([]int, 2)
	if err := s.Fill(x, y, []int{0, 2}, Params{H: 4, W: 4}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Fill of a corrupt JPEG: %v, want its path %s", err, bad)
	}
	for _, tc := range []struct {
		idx  []int
		p    Params
		x    int
		want string
	}{
		{[]int{7}, Params{H: 4, W: 4}, 48, "index 7 (position 0 of 1) outside [0, 7)"},
		{[]int{-1}, Params{H: 4, W: 4}, 48, "index -1"},
		{[]int{0}, Params{H: 0, W: 4}, 48, "empty"},
		{[]int{0, 1}, Params{H: 4, W: 4}, 48, "needs 96 floats and 2 labels, got 48"},
	} {
		if err := s.Fill(make([]float32, tc.x), y, tc.idx, tc.p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Fill(%v, %+v): %v, want %q", tc.idx, tc.p, err, tc.want)
		}
	}
}

// TestFillConcurrent: goroutines filling at once get what one gets alone.
func TestFillConcurrent(t *testing.T) {
	dir, _ := testFolder(t)
	s, err := OpenFolder(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	p := Params{H: 12, W: 12, Train: true, Seed: 1}
	want, _ := fillAll(t, s, p)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			idx := []int{0, 1, 2, 3, 4, 5, 6}
			x, y := make([]float32, len(want)), make([]int, 7)
			for range 5 {
				if err := s.Fill(x, y, idx, p); err != nil {
					errs <- err.Error()
					return
				}
				if !slices.Equal(x, want) {
					errs <- "concurrent Fill differs from a lone one"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
