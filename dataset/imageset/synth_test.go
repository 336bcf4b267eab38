package imageset

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// readTree returns every file under dir with its bytes.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSynthDeterministic(t *testing.T) {
	o := SynthOptions{Classes: 3, PerClass: 2, ValPerClass: 1, Width: 40, Height: 30, Seed: 9}
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	var last, total int
	if err := Synth(context.Background(), a, o, func(d, n int) { last, total = max(last, d), n }); err != nil {
		t.Fatal(err)
	}
	if last != 9 || total != 9 {
		t.Fatalf("progress reached %d of %d, want 9 of 9", last, total)
	}
	if err := Synth(context.Background(), b, o, nil); err != nil {
		t.Fatal(err)
	}
	fa, fb := readTree(t, a), readTree(t, b)
	if len(fa) != 9 || fa["train/s002/s002_1.JPEG"] == nil || fa["val/s000/s000_0.JPEG"] == nil {
		t.Fatalf("files %v", slices.Sorted(func(yield func(string) bool) {
			for k := range fa {
				yield(k)
			}
		}))
	}
	for name, data := range fa {
		if !bytes.Equal(data, fb[name]) {
			t.Fatalf("%s differs between two runs of the same options", name)
		}
		if Sniff(data) != JPEG {
			t.Fatalf("%s is not a JPEG", name)
		}
	}
	// More images per class extend the set; another seed changes it.
	o2 := o
	o2.PerClass = 3
	if err := Synth(context.Background(), c, o2, nil); err != nil {
		t.Fatal(err)
	}
	fc := readTree(t, c)
	if len(fc) != 12 || !bytes.Equal(fc["train/s001/s001_1.JPEG"], fa["train/s001/s001_1.JPEG"]) {
		t.Fatalf("%d files; a larger set does not extend the smaller one", len(fc))
	}
	if bytes.Equal(SynthImage(40, 30, 1, 9, 0, 0).Pix, SynthImage(40, 30, 1, 10, 0, 0).Pix) {
		t.Fatal("seeds 9 and 10 draw the same image")
	}
	// A stopped run resumes: files present are kept, missing ones drawn.
	os.Remove(filepath.Join(a, "train/s000/s000_0.JPEG"))
	writeFile(t, filepath.Join(a, "train/s000/s000_1.JPEG"), []byte("kept"))
	if err := Synth(context.Background(), a, o, nil); err != nil {
		t.Fatal(err)
	}
	fa = readTree(t, a)
	if !bytes.Equal(fa["train/s000/s000_0.JPEG"], fb["train/s000/s000_0.JPEG"]) || string(fa["train/s000/s000_1.JPEG"]) != "kept" {
		t.Fatal("a resumed run did not redraw the missing file and keep the present one")
	}
	// The folder opens with the synthetic classes.
	s, err := OpenFolder(b, "val")
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 || !slices.Equal(s.Classes(), []string{"s000", "s001", "s002"}) {
		t.Fatalf("val: %d samples, classes %v", s.Len(), s.Classes())
	}
}

// TestSynthNotOnePixel: the class cannot be read off one pixel's colour:
// over many images, the mean colour of every class is about the same.
func TestSynthNotOnePixel(t *testing.T) {
	const n = 60
	var means [4][3]float64
	for k := range 4 {
		for i := range n {
			img := SynthImage(32, 24, k, 1, 0, uint64(i))
			for p := 0; p < len(img.Pix); p += 4 {
				for c := range 3 {
					means[k][c] += float64(img.Pix[p+c]) / float64(n*32*24)
				}
			}
		}
	}
	for k := range 4 {
		for c := range 3 {
			if d := means[k][c] - means[0][c]; d > 15 || d < -15 {
				t.Fatalf("class %d's mean channel %d is %.1f, class 0's %.1f", k, c, means[k][c], means[0][c])
			}
		}
	}
}

func TestSynthRejects(t *testing.T) {
	for _, tc := range []struct {
		o    SynthOptions
		want string
	}{
		{SynthOptions{Classes: 0, PerClass: 1}, "0 classes"},
		{SynthOptions{Classes: 1001, PerClass: 1}, "1001 classes"},
		{SynthOptions{Classes: 2, PerClass: 0}, "0 training"},
		{SynthOptions{Classes: 2, PerClass: 1, Width: 4, Height: 4}, "size 4×4"},
		{SynthOptions{Classes: 2, PerClass: 1, Quality: 101}, "quality 101"},
	} {
		if err := Synth(context.Background(), t.TempDir(), tc.o, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}
