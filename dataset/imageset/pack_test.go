package imageset

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// packSource writes a synthetic image folder of 3 classes (5 training
// and 2 validation images each, 40×30) with ImageNet's outliers added to
// train/s001: a CMYK JPEG, a PNG named .JPEG and a grey JPEG.
func packSource(t *testing.T) string {
	dir := t.TempDir()
	if err := Synth(context.Background(), dir, SynthOptions{Classes: 3, PerClass: 5, ValPerClass: 2, Width: 40, Height: 30, Seed: 3}, nil); err != nil {
		t.Fatal(err)
	}
	cmyk, err := os.ReadFile("testdata/cmyk.jpg")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "train/s001/cmyk.JPEG"), cmyk)
	writeFile(t, filepath.Join(dir, "train/s001/png.JPEG"), encodePNG(t, gradient(50, 20)))
	src := SynthImage(40, 30, 1, 5, 0, 0)
	grey := image.NewGray(src.Bounds())
	for i := range grey.Pix {
		grey.Pix[i] = src.Pix[4*i+1]
	}
	writeFile(t, filepath.Join(dir, "train/s001/grey.JPEG"), encodeJPEG(t, grey, 90))
	return dir
}

// members reads a tar shard's members in order; every header must be
// plain USTAR.
func members(t *testing.T, path string) []member {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var ms []member
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Format != tar.FormatUSTAR {
			t.Fatalf("%s: member %s in format %v, want plain USTAR", path, hdr.Name, hdr.Format)
		}
		b, _ := io.ReadAll(tr)
		ms = append(ms, member{hdr.Name, b})
	}
}

func TestPack(t *testing.T) {
	src, dst := packSource(t), t.TempDir()
	var last, total int
	m, err := Pack(context.Background(), src, dst, PackOptions{PerShard: 4, Jobs: 2, Seed: 1}, func(d, n int) { last, total = max(last, d), n })
	if err != nil {
		t.Fatal(err)
	}
	if last != 24 || total != 24 {
		t.Fatalf("progress reached %d of %d, want 24 of 24", last, total)
	}
	if len(m.Splits["train"]) != 5 || len(m.Splits["val"]) != 2 || !slices.Equal(m.Classes, []string{"s000", "s001", "s002"}) {
		t.Fatalf("manifest %+v", m)
	}
	if m.Splits["train"][4].Samples != 2 || m.Splits["train"][0].Samples != 4 {
		t.Fatalf("train shards %+v, want 4 per shard and 2 in the last", m.Splits["train"])
	}
	fs0, err := OpenFolder(src, "train")
	if err != nil {
		t.Fatal(err)
	}
	ff := fs0.src.(*folder)
	// Every sample is there once, as WebDataset reads it: key.jpg, key.cls,
	// key.json in a row; a JPEG an RGB reader takes; the label its
	// folder's; copied byte for byte unless it was an outlier.
	seen := map[string]bool{}
	for k, info := range m.Splits["train"] {
		ms := members(t, filepath.Join(dst, info.Name))
		if len(ms) != 3*info.Samples {
			t.Fatalf("%s: %d members for %d samples", info.Name, len(ms), info.Samples)
		}
		for j := 0; j < len(ms); j += 3 {
			key := fmt.Sprintf("%08d", 4*k+j/3)
			if ms[j].name != key+".jpg" || ms[j+1].name != key+".cls" || ms[j+2].name != key+".json" {
				t.Fatalf("%s: members %s %s %s, want %s.jpg, .cls, .json", info.Name, ms[j].name, ms[j+1].name, ms[j+2].name, key)
			}
			var meta struct{ File, Class string }
			if err := json.Unmarshal(ms[j+2].data, &meta); err != nil {
				t.Fatal(err)
			}
			rel := strings.TrimPrefix(meta.File, "train/")
			i := slices.Index(ff.files, rel)
			if i < 0 || seen[rel] {
				t.Fatalf("%s names %q: not a training file, or seen twice", ms[j+2].name, meta.File)
			}
			seen[rel] = true
			if want := fmt.Sprint(ff.labels[i]); string(ms[j+1].data) != want || meta.Class != m.Classes[ff.labels[i]] {
				t.Fatalf("%s: label %s class %s, want %s %s", key, ms[j+1].data, meta.Class, want, m.Classes[ff.labels[i]])
			}
			_, cfg, err := DecodeConfig(ms[j].data, MaxPixels)
			if err != nil || Sniff(ms[j].data) != JPEG || cfg.ColorModel == color.CMYKModel {
				t.Fatalf("%s (%s): not a YCbCr or grey JPEG: %v %v", ms[j].name, rel, err, cfg.ColorModel)
			}
			orig, _ := os.ReadFile(filepath.Join(src, "train", rel))
			outlier := strings.HasPrefix(filepath.Base(rel), "cmyk") || strings.HasPrefix(filepath.Base(rel), "png")
			if copied := bytes.Equal(orig, ms[j].data); copied == outlier {
				t.Fatalf("%s: copied %v, outlier %v", rel, copied, outlier)
			}
		}
	}
	if len(seen) != ff.len() {
		t.Fatalf("%d of %d training files packed", len(seen), ff.len())
	}
	// The shards open with the folder's classes and read what the
	// folder reads (the copied JPEGs decode to the same pixels).
	shards, err := OpenShards(context.Background(), dst, "train", nil)
	if err != nil {
		t.Fatal(err)
	}
	if shards.Len() != fs0.Len() || !slices.Equal(shards.Classes(), fs0.Classes()) {
		t.Fatalf("shards: %d samples, classes %v", shards.Len(), shards.Classes())
	}
	if _, err := Verify(context.Background(), dst, 0, nil); err != nil {
		t.Fatal(err)
	}
}

func TestPackDeterministicAndResumable(t *testing.T) {
	src := packSource(t)
	a, b := t.TempDir(), t.TempDir()
	o := PackOptions{PerShard: 5, Seed: 7}
	if _, err := Pack(context.Background(), src, a, o, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Pack(context.Background(), src, b, PackOptions{PerShard: 5, Seed: 7, Jobs: 1}, nil); err != nil {
		t.Fatal(err)
	}
	ta, tb := readTree(t, a), readTree(t, b)
	if len(ta) != len(tb) {
		t.Fatalf("%d and %d files", len(ta), len(tb))
	}
	for name, data := range ta {
		if !bytes.Equal(data, tb[name]) {
			t.Fatalf("%s differs between two packs of the same source", name)
		}
	}
	// A stopped pack: one shard lost, one lost its index, no manifest.
	os.Remove(filepath.Join(a, "train-000001.tar"))
	os.Remove(filepath.Join(a, "train-000002.tar.idx"))
	os.Remove(filepath.Join(a, ManifestName))
	kept := filepath.Join(a, "train-000000.tar")
	old := time.Unix(1e9, 0)
	os.Chtimes(kept, old, old)
	if _, err := Pack(context.Background(), src, a, o, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(kept); !st.ModTime().Equal(old) {
		t.Fatal("a finished shard was written again")
	}
	ta = readTree(t, a)
	for name, data := range tb {
		if !bytes.Equal(data, ta[name]) {
			t.Fatalf("%s differs after resuming", name)
		}
	}
	// Another seed deals samples differently.
	c := t.TempDir()
	if _, err := Pack(context.Background(), src, c, PackOptions{PerShard: 5, Seed: 8}, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(readTree(t, c)["train-000000.tar"], tb["train-000000.tar"]) {
		t.Fatal("seeds 7 and 8 give the same first shard")
	}
}

func TestPackMaxSideAndQuality(t *testing.T) {
	src, dst := packSource(t), t.TempDir()
	if _, err := Pack(context.Background(), src, dst, PackOptions{PerShard: 100, MaxSide: 16, Quality: 50}, nil); err != nil {
		t.Fatal(err)
	}
	for _, ms := range [][]member{members(t, filepath.Join(dst, "train-000000.tar")), members(t, filepath.Join(dst, "val-000000.tar"))} {
		for _, mem := range ms {
			if !strings.HasSuffix(mem.name, ".jpg") {
				continue
			}
			_, cfg, err := DecodeConfig(mem.data, MaxPixels)
			if err != nil {
				t.Fatal(err)
			}
			// 40×30 → 16×12; the 50×20 PNG → 16×6; the 48×32 CMYK → 16×11.
			ok := (cfg.Width == 16 && (cfg.Height == 12 || cfg.Height == 6 || cfg.Height == 11))
			if !ok {
				t.Fatalf("%s: %d×%d after --max-side 16", mem.name, cfg.Width, cfg.Height)
			}
		}
	}
}

func TestPackErrors(t *testing.T) {
	src := packSource(t)
	bad := filepath.Join(src, "train/s002/broken.JPEG")
	writeFile(t, bad, []byte("GIF89a..."))
	if _, err := Pack(context.Background(), src, t.TempDir(), PackOptions{}, nil); err == nil || !strings.Contains(err.Error(), bad+": not a JPEG or PNG") {
		t.Fatalf("a GIF named .JPEG: %v", err)
	}
	if _, err := Pack(context.Background(), t.TempDir(), t.TempDir(), PackOptions{}, nil); err == nil || !strings.Contains(err.Error(), "train/ folder") {
		t.Fatalf("no source: %v", err)
	}
	if _, err := Pack(context.Background(), src, t.TempDir(), PackOptions{Quality: 101}, nil); err == nil {
		t.Fatal("quality 101: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Pack(ctx, src, t.TempDir(), PackOptions{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled pack: %v", err)
	}
}

func TestVerify(t *testing.T) {
	src, dst := packSource(t), t.TempDir()
	if _, err := Pack(context.Background(), src, dst, PackOptions{PerShard: 6}, nil); err != nil {
		t.Fatal(err)
	}
	var read, total int64
	if _, err := Verify(context.Background(), dst, 2, func(d, n int64) { read, total = max(read, d), n }); err != nil {
		t.Fatal(err)
	}
	if read != total || total == 0 {
		t.Fatalf("progress %d of %d bytes", read, total)
	}
	shard := filepath.Join(dst, "train-000001.tar")
	data, _ := os.ReadFile(shard)
	data[2000] ^= 1
	writeFile(t, shard, data)
	if _, err := Verify(context.Background(), dst, 0, nil); err == nil || !strings.Contains(err.Error(), shard+": ") || !strings.Contains(err.Error(), "the manifest lists") {
		t.Fatalf("a corrupt shard: %v", err)
	}
	if _, err := VerifyQuick(context.Background(), dst, 0); err != nil {
		t.Fatalf("the quick check reads no shard, so passes a flipped bit: %v", err)
	}
	writeFile(t, shard, data[:len(data)-512])
	if _, err := VerifyQuick(context.Background(), dst, 0); err == nil || !strings.Contains(err.Error(), shard+": ") || !strings.Contains(err.Error(), "the manifest lists") {
		t.Fatalf("a truncated shard, quick check: %v", err)
	}
	data[2000] ^= 1
	writeFile(t, shard, data)
	if _, err := VerifyQuick(context.Background(), dst, 0); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(dst, "val-000000.tar.idx")
	os.Remove(idx)
	if _, err := Verify(context.Background(), dst, 0, nil); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), idx) {
		t.Fatalf("a missing index: %v", err)
	}
	if _, err := VerifyQuick(context.Background(), dst, 0); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), idx) {
		t.Fatalf("a missing index, quick check: %v", err)
	}
	os.Remove(filepath.Join(dst, ManifestName))
	if _, err := Verify(context.Background(), dst, 0, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no manifest: %v", err)
	}
}
