package checkpoint

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

func vec32(vs ...float32) safetensors.Tensor { return safetensors.F32([]int{len(vs)}, vs) }

// The model of a checkpoint, whole or in the shards of a ring's ranks,
// exports as one file with every tensor under its own name.
func TestExportModel(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{"model": "lenet5", "format": "pt"}
	sharded, err := s.Save(Manifest{Step: 20, JobHash: "j"}, []Part{
		{Name: "model-00001-of-00002.safetensors", Tensors: map[string]safetensors.Tensor{"conv1.weight": vec32(1, 2), "fc.bias": vec32(3)}, Metadata: meta},
		{Name: "model-00002-of-00002.safetensors", Tensors: map[string]safetensors.Tensor{"conv1.bias": vec32(4)}, Metadata: meta},
		{Name: "optimizer-00001-of-00002.safetensors", Tensors: map[string]safetensors.Tensor{"momentum": vec32(9)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	whole, err := s.Save(Manifest{Step: 30, JobHash: "j"}, parts(5))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, tc := range []struct {
		name  string
		want  map[string][]float32
		model string
	}{
		{sharded.Name, map[string][]float32{"conv1.weight": {1, 2}, "fc.bias": {3}, "conv1.bias": {4}}, "lenet5"},
		{whole.Name, map[string][]float32{"w": {5, 6, 7, 8}}, ""},
	} {
		path := filepath.Join(out, tc.name+".safetensors")
		if err := s.ExportModel(tc.name, path); err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Names(); len(got) != len(tc.want) {
			t.Errorf("%s: exported tensors %v, want %d", tc.name, got, len(tc.want))
		}
		for name, want := range tc.want {
			tn, ok := f.Tensor(name)
			got, _ := tn.Float32s()
			if !ok || !slices.Equal(got, want) {
				t.Errorf("%s: tensor %s = %v, want %v", tc.name, name, got, want)
			}
		}
		if f.Metadata["model"] != tc.model {
			t.Errorf("%s: metadata %v", tc.name, f.Metadata)
		}
	}

	// A shard that fails its checksum is not exported, and nothing is left
	// at the path.
	flip := filepath.Join(s.Dir(), sharded.Name, "model-00002-of-00002.safetensors")
	b, _ := os.ReadFile(flip)
	b[len(b)-1] ^= 1
	os.WriteFile(flip, b, 0o644)
	bad := filepath.Join(out, "bad.safetensors")
	if err := s.ExportModel(sharded.Name, bad); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("export of a corrupt shard: %v", err)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("a failed export left a file")
	}

	// Two shards holding one tensor are an error, not a silent choice.
	dup, err := s.Save(Manifest{Step: 40, JobHash: "j"}, []Part{
		{Name: "model-00001-of-00002.safetensors", Tensors: map[string]safetensors.Tensor{"w": vec32(1)}},
		{Name: "model-00002-of-00002.safetensors", Tensors: map[string]safetensors.Tensor{"w": vec32(2)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ExportModel(dup.Name, bad); err == nil || !strings.Contains(err.Error(), "two files") {
		t.Errorf("export of a tensor in two shards: %v", err)
	}
	noModel, err := s.Save(Manifest{Step: 50, JobHash: "j"}, parts(1)[1:])
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ExportModel(noModel.Name, bad); err == nil || !strings.Contains(err.Error(), "has no model.safetensors") {
		t.Errorf("export of a checkpoint without a model: %v", err)
	}
}
