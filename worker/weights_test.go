package worker

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/safetensors"
)

func buildSized(t *testing.T, name string, seed uint64, classes int) *models.Model {
	t.Helper()
	m, err := models.BuildFor(name, seed, models.Config{Classes: classes, Input: []int{3, 32, 32}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// WriteModel then LoadWeights carries every parameter and buffer across;
// the file holds each BatchNorm's num_batches_tracked as an I64 scalar.
func TestWeightsRoundTrip(t *testing.T) {
	src, dst := buildSized(t, "resnet20", 1, 10), buildSized(t, "resnet20", 2, 10)
	for i := range src.Arena.Buffers {
		src.Arena.Buffers[i] = float32(i%7) + 0.5
	}
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteModel(src, 42, path); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if nb, ok := f.Tensor("bn1.num_batches_tracked"); !ok || nb.DType != "I64" || len(nb.Shape) != 0 || nb.Data[0] != 42 {
		t.Fatalf("bn1.num_batches_tracked = %+v, %v; want an I64 scalar 42", nb, ok)
	}
	rep, err := LoadWeights(dst, path)
	if err != nil || len(rep.NewHead) != 0 {
		t.Fatalf("LoadWeights: %+v, %v", rep, err)
	}
	if !slices.Equal(src.Arena.Data, dst.Arena.Data) || !slices.Equal(src.Arena.Buffers, dst.Arena.Buffers) {
		t.Fatal("loaded weights differ from the written ones")
	}
}

// Weights for another class count load all but the head, which keeps its
// fresh initialization and is reported.
func TestWeightsNewHead(t *testing.T) {
	src, dst := buildSized(t, "resnet20", 1, 100), buildSized(t, "resnet20", 2, 10)
	fresh := slices.Clone(dst.Arena.Data)
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteModel(src, 0, path); err != nil {
		t.Fatal(err)
	}
	rep, err := LoadWeights(dst, path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.NewHead, []string{"fc.weight", "fc.bias"}) {
		t.Fatalf("new head %v, want fc.weight, fc.bias", rep.NewHead)
	}
	for _, p := range dst.Arena.Params {
		got := dst.Arena.Data[p.Offset : p.Offset+p.Len()]
		want := fresh[p.Offset : p.Offset+p.Len()]
		if !strings.HasPrefix(p.Name, "fc.") {
			want = src.Arena.Value(p.Name).Data
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: not what it should hold after loading", p.Name)
		}
	}
}

// Files that do not fit the model are refused with the tensor named, and
// the model is left as it was.
func TestWeightsRefused(t *testing.T) {
	dir := t.TempDir()
	m := buildSized(t, "resnet20", 1, 10)
	good := filepath.Join(dir, "good.safetensors")
	if err := WriteModel(m, 0, good); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	tensors := func() map[string]safetensors.Tensor {
		ts := map[string]safetensors.Tensor{}
		for _, n := range f.Names() {
			ts[n], _ = f.Tensor(n)
		}
		return ts
	}
	write := func(name string, ts map[string]safetensors.Tensor) string {
		p := filepath.Join(dir, name)
		if err := safetensors.WriteFile(p, ts, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := tensors()
	delete(missing, "layer2.0.conv1.weight")
	extra := tensors()
	extra["layer9.conv.weight"] = safetensors.F32([]int{2}, []float32{1, 2})
	reshaped := tensors()
	reshaped["layer1.0.conv1.weight"] = safetensors.F32([]int{1}, []float32{1})
	halfHead := tensors()
	halfHead["fc.bias"] = safetensors.F32([]int{3}, []float32{1, 2, 3})
	ints := tensors()
	ints["bn1.weight"] = safetensors.Tensor{DType: "I64", Shape: []int{16}, Data: make([]byte, 16*8)}
	corrupt := filepath.Join(dir, "corrupt.safetensors")
	if err := os.WriteFile(corrupt, []byte("\xff\xff\xff\xff\xff\xff\xff\x7fnot a header"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{write("missing.safetensors", missing), `lack "layer2.0.conv1.weight"`},
		{write("extra.safetensors", extra), "layer9.conv.weight"},
		{write("reshaped.safetensors", reshaped), `"layer1.0.conv1.weight" has shape [1]`},
		{write("halfhead.safetensors", halfHead), "only part of model resnet20's head fc"},
		{write("ints.safetensors", ints), `"bn1.weight" is I64`},
		{corrupt, "corrupt.safetensors"},
		{filepath.Join(dir, "absent.safetensors"), "absent.safetensors"},
	} {
		before := slices.Clone(m.Arena.Data)
		_, err := LoadWeights(m, tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", filepath.Base(tc.path), err, tc.want)
		}
		if !slices.Equal(before, m.Arena.Data) {
			t.Errorf("%s: a refused file changed the model", filepath.Base(tc.path))
		}
	}
}
