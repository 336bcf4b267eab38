package imageset

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// member is one tar member of a test shard.
type member struct {
	name string
	data []byte
}

// tarOf returns a tar archive of the members (with a directory entry
// first, which readers skip).
func tarOf(t testing.TB, members []member) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755})
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Size: int64(len(m.data)), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sampleMembers returns the members of samples of the given labels,
// coloured by class, the first of each three a PNG, with a .json member
// on every other one and .cls sometimes before the image.
func sampleMembers(t testing.TB, first int, labels ...int) []member {
	colours := []string{"n01", "n02", "n03"}
	var ms []member
	for i, l := range labels {
		key := fmt.Sprintf("%08d", first+i)
		img := solid(30+i, 20, classColours[colours[l]])
		var m member
		if i%3 == 0 {
			m = member{key + ".png", encodePNG(t, img)}
		} else {
			m = member{key + ".jpg", encodeJPEG(t, img, 90)}
		}
		cls := member{key + ".cls", []byte(fmt.Sprintf("%d\n", l))}
		if i%2 == 0 {
			ms = append(ms, m, cls, member{key + ".json", []byte(`{"src":"x"}`)})
		} else {
			ms = append(ms, cls, m)
		}
	}
	return ms
}

func TestScanShardAndIndex(t *testing.T) {
	members := sampleMembers(t, 0, 0, 2, 1, 1)
	data := tarOf(t, members)
	ix, err := ScanShard(iotest.OneByteReader(bytes.NewReader(data)), "s.tar")
	if err != nil {
		t.Fatal(err)
	}
	if ix.TarBytes != int64(len(data)) || len(ix.Samples) != 4 {
		t.Fatalf("index of %d bytes, %d samples; want %d, 4", ix.TarBytes, len(ix.Samples), len(data))
	}
	labels := []int{0, 2, 1, 1}
	for k, e := range ix.Samples {
		var img []byte
		for _, m := range members {
			if m.name == e.Member {
				img = m.data
			}
		}
		if e.Label != labels[k] || !bytes.Equal(data[e.Offset:e.Offset+e.Size], img) {
			t.Fatalf("sample %d: %+v does not point at its image (label %d)", k, e, labels[k])
		}
	}
	again, err := ParseIndex(ix.AppendText(nil), "s.tar.idx")
	if err != nil {
		t.Fatal(err)
	}
	if again.TarBytes != ix.TarBytes || again.SHA256 != ix.SHA256 || !slices.Equal(again.Samples, ix.Samples) {
		t.Fatalf("index round trip: %+v, want %+v", again, ix)
	}
	if _, err := ScanShard(iotest.DataErrReader(bytes.NewReader(data)), "s.tar"); err != nil {
		t.Fatalf("a reader that returns EOF with its last data: %v", err)
	}
	if _, err := ScanShard(iotest.TimeoutReader(bytes.NewReader(data)), "s.tar"); err == nil || !strings.Contains(err.Error(), "s.tar") {
		t.Fatalf("a failing reader: %v", err)
	}
}

func TestScanShardRejects(t *testing.T) {
	jpg := encodeJPEG(t, solid(8, 8, classColours["n01"]), 90)
	big := make([]byte, maxClsBytes+1)
	for _, tc := range []struct {
		name    string
		members []member
		want    string
	}{
		{"no cls", []member{{"a.jpg", jpg}, {"b.jpg", jpg}, {"b.cls", []byte("1")}}, "sample a has no .cls member before b.jpg"},
		{"no image", []member{{"a.cls", []byte("1")}, {"a.json", nil}}, "sample a has no image member"},
		{"two images", []member{{"a.jpg", jpg}, {"a.png", jpg}}, "sample a has a second image member a.png"},
		{"bad label", []member{{"a.jpg", jpg}, {"a.cls", []byte("cat")}}, `member a.cls: label "cat" is not a non-negative number`},
		{"negative label", []member{{"a.jpg", jpg}, {"a.cls", []byte("-3")}}, "member a.cls: label"},
		{"long label", []member{{"a.jpg", jpg}, {"a.cls", big}}, "member a.cls: 65 bytes"},
		{"empty", nil, "no samples"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix, err := ScanShard(bytes.NewReader(tarOf(t, tc.members)), "s.tar")
			if err == nil || !strings.Contains(err.Error(), "s.tar: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ScanShard = %v, %v; want an error naming s.tar and %q", ix, err, tc.want)
			}
		})
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "a.jpg", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})
	tw.Close()
	if _, err := ScanShard(&b, "s.tar"); err == nil || !strings.Contains(err.Error(), "member a.jpg is not a regular file") {
		t.Fatalf("a symbolic link member: %v", err)
	}
	if _, err := ScanShard(strings.NewReader("not a tar file at all, just text that is long enough"), "s.tar"); err == nil {
		t.Fatal("text: no error")
	}
}

func TestParseIndexRejects(t *testing.T) {
	head := indexMagic + "\ntar 10240 " + strings.Repeat("ab", 32) + "\n"
	for _, tc := range []struct{ in, want string }{
		{"", "line 1: not a shard index"},
		{indexMagic + "\ntar x y\n", "line 2: bad shard size"},
		{indexMagic + "\ntar 10 abc\n", "line 2: bad SHA-256"},
		{head + "samples 11\n", "line 3: 11 samples cannot fit in a shard of 10240 bytes"},
		{head + "samples 1\n", "0 samples listed, the header says 1"},
		{head + "samples 1\n512 10 0 a.jpg\nextra\n", "more than the 1 samples"},
		{head + "samples 1\n100 10 0 a.jpg\n", "not after the previous member's data and a header"},
		{head + "samples 2\n512 10 0 a.jpg\n512 10 0 b.jpg\n", "line 5: member b.jpg at offset 512"},
		{head + "samples 1\n512 99999 0 a.jpg\n", "runs past the shard's 10240 bytes"},
		{head + "samples 1\n512 10 -1 a.jpg\n", "negative label"},
		{head + "samples 1\n512 10 0\n", "want <offset> <size> <label> <member>"},
		{head + "samples 1\n512 1e3 0 a.jpg\n", "bad number"},
	} {
		ix, err := ParseIndex([]byte(tc.in), "x.idx")
		if err == nil || !strings.Contains(err.Error(), "x.idx line") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseIndex(%q) = %v, %v; want %q", tc.in, ix, err, tc.want)
		}
	}
	if ix, err := ParseIndex([]byte(head+"samples 2\n512 10 0 a b.jpg\n1536 10 3 c.jpg\n"), "x.idx"); err != nil || ix.Samples[0].Member != "a b.jpg" {
		t.Fatalf("a good index: %v, %v", ix, err)
	}
}

// writeShards writes shards of the given labels (one slice per shard)
// named split-000000.tar, … into dir.
func writeShards(t *testing.T, dir, split string, shards ...[]int) {
	n := 0
	for k, labels := range shards {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("%s-%06d.tar", split, k)), tarOf(t, sampleMembers(t, n, labels...)))
		n += len(labels)
	}
}

func TestOpenShards(t *testing.T) {
	dir := t.TempDir()
	writeShards(t, dir, "train", []int{0, 1, 2}, []int{2}, []int{1, 0})
	var notes []string
	logf := func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }
	s, err := OpenShards(context.Background(), dir, "train", logf)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 6 || !slices.Equal(s.Classes(), []string{"0", "1", "2"}) {
		t.Fatalf("%d samples, classes %v; want 6 and [0 1 2]", s.Len(), s.Classes())
	}
	for k := range 3 {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("train-%06d.tar.idx", k))); err != nil {
			t.Fatalf("shard %d not indexed on first use: %v", k, err)
		}
	}
	x, y := fillAll(t, s, Params{H: 8, W: 8, Train: true, Seed: 2})
	if !slices.Equal(y, []int{0, 1, 2, 2, 1, 0}) {
		t.Fatalf("labels %v", y)
	}
	for k := range y {
		if got := dominant(x, k, 64); got != []string{"n01", "n02", "n03"}[y[k]] {
			t.Fatalf("sample %d shows %s, labelled %d", k, got, y[k])
		}
	}
	// The index is used from now on: a changed index changes what is read.
	idx1 := filepath.Join(dir, "train-000001.tar.idx")
	b, _ := os.ReadFile(idx1)
	writeFile(t, idx1, bytes.Replace(b, []byte(" 2 00000003"), []byte(" 1 00000003"), 1))
	s, err = OpenShards(context.Background(), dir, "train", logf)
	if err != nil {
		t.Fatal(err)
	}
	if _, y := fillAll(t, s, Params{H: 4, W: 4}); y[3] != 1 {
		t.Fatalf("label of sample 3 is %d: the index file was not read", y[3])
	}
	// A shard that changed size is indexed again.
	writeShards(t, dir, "train", []int{0, 1, 2}, []int{2, 2})
	s, err = OpenShards(context.Background(), dir, "train", logf)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 7 || !strings.Contains(strings.Join(notes, "\n"), "indexing it again") {
		t.Fatalf("%d samples after a shard grew, want 7; notes %q", s.Len(), notes)
	}
	// With a manifest, its classes name the labels and its shards are the
	// set: a shard it does not list is left out, and a shard must hold
	// the samples it lists.
	manifest := func(classes string, samples ...int) {
		var shards []string
		for k, n := range samples {
			shards = append(shards, fmt.Sprintf(`{"name":"train-%06d.tar","samples":%d}`, k, n))
		}
		writeFile(t, filepath.Join(dir, ManifestName), []byte(`{"format":"ringtrain-shards 1","classes":[`+classes+`],"splits":{"train":[`+strings.Join(shards, ",")+`]}}`))
	}
	manifest(`"n01","n02","n03"`, 3)
	if s, err = OpenShards(context.Background(), dir, "train", nil); err != nil || s.Len() != 3 || !slices.Equal(s.Classes(), []string{"n01", "n02", "n03"}) {
		t.Fatalf("a manifest listing the first shard: %v, %v", s, err)
	}
	manifest(`"n01","n02","n03"`, 3, 3)
	if _, err = OpenShards(context.Background(), dir, "train", nil); err == nil || !strings.Contains(err.Error(), "train-000001.tar: 2 samples, manifest.json lists 3") {
		t.Fatalf("a shard holding other samples than listed: %v", err)
	}
	manifest(`"n01","n02"`, 3, 2)
	if _, err = OpenShards(context.Background(), dir, "train", nil); err == nil || !strings.Contains(err.Error(), "label 2, but manifest.json lists 2 classes") {
		t.Fatalf("labels beyond the manifest's classes: %v", err)
	}
}

func TestOpenShardsErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenShards(context.Background(), dir, "train", nil); err == nil || !strings.Contains(err.Error(), "no train-*.tar shards") {
		t.Fatalf("no shards: %v", err)
	}
	if _, err := OpenShards(context.Background(), dir, "dev", nil); err == nil || !strings.Contains(err.Error(), `unknown split "dev"`) {
		t.Fatalf("bad split: %v", err)
	}
	writeShards(t, dir, "val", []int{0}, []int{1})
	bad := filepath.Join(dir, "val-000001.tar")
	writeFile(t, bad, tarOf(t, []member{{"a.jpg", []byte("x")}}))
	if _, err := OpenShards(context.Background(), dir, "test", nil); err == nil || !strings.Contains(err.Error(), bad+": sample a has no .cls member") {
		t.Fatalf("a bad shard: %v", err)
	}
	// A corrupt image fails Fill with the shard and member.
	writeFile(t, bad, tarOf(t, []member{{"a.jpg", []byte("\xff\xd8junk")}, {"a.cls", []byte("1")}}))
	s, err := OpenShards(context.Background(), dir, "val", nil)
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]float32, 2*3*16), make([]int, 2)
	if err := s.Fill(x, y, []int{0, 1}, Params{H: 4, W: 4}); err == nil || !strings.Contains(err.Error(), bad+": member a.jpg: bad JPEG") {
		t.Fatalf("a corrupt member: %v", err)
	}
}

// FuzzScanShard: any bytes give an index whose images lie inside them,
// or an error naming the shard; never a panic.
func FuzzScanShard(f *testing.F) {
	f.Add(tarOf(f, sampleMembers(f, 0, 0, 1)))
	f.Add(tarOf(f, []member{{"a.jpg", []byte("x")}, {"a.cls", []byte("7")}}))
	f.Add(tarOf(f, []member{{"a.b.c/d.e.jpg", []byte("x")}, {"a.b.c/d.cls", []byte("7")}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := ScanShard(bytes.NewReader(data), "s.tar")
		if err != nil {
			if !strings.Contains(err.Error(), "s.tar") {
				t.Fatalf("error without the shard's name: %v", err)
			}
			return
		}
		if ix.TarBytes != int64(len(data)) {
			t.Fatalf("index says %d bytes, the shard has %d", ix.TarBytes, len(data))
		}
		if _, err := ParseIndex(ix.AppendText(nil), "s.tar.idx"); err != nil {
			t.Fatalf("the index of a shard that scans does not parse: %v", err)
		}
	})
}

// FuzzParseIndex: any bytes give an index whose members lie inside the
// shard it describes and that round-trips, or an error naming the file;
// never a panic.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(indexMagic + "\ntar 10240 " + strings.Repeat("ab", 32) + "\nsamples 2\n512 10 0 a.jpg\n1536 10 3 c.jpg\n"))
	f.Add([]byte(indexMagic + "\ntar 1024 " + strings.Repeat("0", 64) + "\nsamples 1\n512 512 1 a b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := ParseIndex(data, "x.idx")
		if err != nil {
			if !strings.Contains(err.Error(), "x.idx") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		for _, e := range ix.Samples {
			if e.Offset < 512 || e.Size < 0 || e.Offset+e.Size > ix.TarBytes {
				t.Fatalf("member %+v outside a shard of %d bytes", e, ix.TarBytes)
			}
		}
		again, err := ParseIndex(ix.AppendText(nil), "x.idx")
		if err != nil || !slices.Equal(again.Samples, ix.Samples) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzFill: a shard whose one image member holds any bytes fills a
// sample or fails with an error that names the shard and the member;
// never a panic.
func FuzzFill(f *testing.F) {
	f.Add(encodeJPEG(f, gradient(24, 16), 75))
	f.Add(encodePNG(f, gradient(5, 9)))
	f.Add([]byte("\xff\xd8\xff\xdb"))
	f.Add(pngHeader(70000, 70000))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, img []byte) {
		shard := filepath.Join(dir, "train-000000.tar")
		if err := os.WriteFile(shard, tarOf(t, []member{{"k.jpg", img}, {"k.cls", []byte("0")}}), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := OpenShards(context.Background(), dir, "train", nil)
		if err != nil {
			t.Fatal(err)
		}
		x, y := make([]float32, 3*6*6), []int{-1}
		for _, p := range []Params{{H: 6, W: 6}, {H: 6, W: 6, Train: true, Epoch: 2}} {
			err := s.Fill(x, y, []int{0}, p)
			if err != nil && !strings.Contains(err.Error(), shard+": member k.jpg: ") {
				t.Fatalf("error without the shard and member: %v", err)
			}
			if err == nil && y[0] != 0 {
				t.Fatalf("label %d, want 0", y[0])
			}
		}
	})
}
