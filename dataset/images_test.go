package dataset

import (
	"context"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/dataset/imageset"
)

// synthFolder writes a small synthetic image folder: 3 classes, 4
// training and 2 validation images each, 48×36.
func synthFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	o := imageset.SynthOptions{Classes: 3, PerClass: 4, ValPerClass: 2, Width: 48, Height: 36, Seed: 1}
	if err := imageset.Synth(context.Background(), dir, o, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenImageFolder(t *testing.T) {
	dir := synthFolder(t)
	name := ImageFolderPrefix + dir
	if err := CheckName(name); err != nil {
		t.Fatal(err)
	}
	train, err := Open(context.Background(), name, "/unused", "train", nil)
	if err != nil {
		t.Fatal(err)
	}
	test, err := Open(context.Background(), name, "", "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if train.Name() != name || train.Len() != 12 || test.Len() != 6 || train.Classes() != 3 || train.Shape() != (Shape{C: 3}) {
		t.Fatalf("train %s: %d samples, %d classes, shape %v; test %d samples", train.Name(), train.Len(), train.Classes(), train.Shape(), test.Len())
	}
	if n, err := TrainSamples(name, 0, 0); n != 12 || err != nil {
		t.Fatalf("TrainSamples = %d, %v; want 12", n, err)
	}
	if n, err := TrainSamples(name, 0, 5); n != 5 || err != nil {
		t.Fatalf("TrainSamples with limit 5 = %d, %v", n, err)
	}
	// Images of any size are made, larger than stored too; the channel
	// count must match.
	for _, out := range []Shape{{3, 224, 224}, {3, 64, 64}, {3, 20, 30}} {
		if err := CheckTransform(train, out); err != nil {
			t.Errorf("CheckTransform(%v): %v", out, err)
		}
	}
	if err := CheckTransform(train, Shape{1, 28, 28}); err == nil || !strings.Contains(err.Error(), "(1 channels); "+name+" gives 3×0×0 images (3 channels)") {
		t.Errorf("a 1-channel model on colour images: %v", err)
	}
	out := Shape{3, 16, 16}
	idx := []int{11, 0, 5}
	x, y := make([]float32, len(idx)*out.Size()), make([]int, len(idx))
	tf := Transform{Out: out, Train: true, Seed: 4, Epoch: 2}
	if err := train.Fill(x, y, idx, tf); err != nil {
		t.Fatal(err)
	}
	if y[0] != 2 || y[1] != 0 || y[2] != 1 {
		t.Fatalf("labels %v, want [2 0 1]", y)
	}
	x2 := make([]float32, len(x))
	if err := train.Fill(x2, y, idx, tf); err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if x[i] != x2[i] {
			t.Fatal("the same transform twice gives different inputs")
		}
	}
	if err := train.Fill(x, y, []int{12}, tf); err == nil || !strings.Contains(err.Error(), "index 12") {
		t.Fatalf("index out of range: %v", err)
	}
	if err := Head(train, 4).Fill(x, y, []int{4}, tf); err == nil {
		t.Fatal("Head(4) filled index 4")
	}
}

func TestImageSetNames(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"imagefolder:", `data set "imagefolder:" names no directory (want imagefolder:DIR)`},
		{"shards:", `names no directory (want shards:DIR)`},
		{"imagenet", `unknown data set "imagenet" (known: fashion-mnist, mnist, synthetic, imagefolder:DIR, shards:DIR)`},
	} {
		if err := CheckName(tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckName(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := Files(ImageFolderPrefix + "/x"); err == nil || !strings.Contains(err.Error(), "is an image set: it has no pinned files") {
		t.Errorf("Files of an image set: %v", err)
	}
	if err := Ensure(context.Background(), ShardsPrefix+"/x", "", nil); err != nil {
		t.Errorf("Ensure of an image set, which is read where it is: %v", err)
	}
	dir := t.TempDir()
	if _, err := Open(context.Background(), ImageFolderPrefix+dir, "", "train", nil); err == nil || !strings.Contains(err.Error(), "dataset: imagefolder:"+dir+": imageset:") {
		t.Fatalf("an empty folder: %v", err)
	}
	if _, err := Open(context.Background(), ShardsPrefix+dir, "", "train", nil); err == nil || !strings.Contains(err.Error(), "no train-*.tar shards") {
		t.Fatalf("no shards: %v", err)
	}
	if _, err := TrainSamples(ShardsPrefix+dir, 0, 0); err == nil {
		t.Fatal("TrainSamples of an empty shard set: no error")
	}
}
