package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

func parts(v float32) []Part {
	return []Part{
		{Name: "model.safetensors", Tensors: map[string]safetensors.Tensor{
			"w": safetensors.F32([]int{2, 2}, []float32{v, v + 1, v + 2, v + 3}),
		}},
		{Name: "optimizer.safetensors", Tensors: map[string]safetensors.Tensor{
			"momentum": safetensors.F32([]int{4}, []float32{-v, 0, 0, 0}),
		}, Metadata: map[string]string{"optimizer": "sgd"}},
	}
}

func saveSteps(t *testing.T, s *Store, steps ...int) {
	t.Helper()
	for _, step := range steps {
		if _, err := s.Save(Manifest{Step: step, JobHash: "j", Epoch: step / 10, Position: step % 10}, parts(float32(step))); err != nil {
			t.Fatal(err)
		}
	}
}

func modelValue(t *testing.T, ck *Checkpoint) float32 {
	t.Helper()
	tn, ok := ck.Files["model.safetensors"].Tensor("w")
	if !ok {
		t.Fatal("model.safetensors has no tensor w")
	}
	xs, err := tn.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return xs[0]
}

func TestSaveLoadRoundTrip(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if ck, err := s.LoadLatest(nil); ck != nil || err != nil {
		t.Fatalf("empty store: LoadLatest = %v, %v", ck, err)
	}
	saveSteps(t, s, 10, 25)
	ck, err := s.LoadLatest(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := ck.Manifest
	if m.Step != 25 || m.Epoch != 2 || m.Position != 5 || m.Name != NameForStep(25) || len(m.Files) != 2 {
		t.Fatalf("manifest %+v", m)
	}
	if v := modelValue(t, ck); v != 25 {
		t.Fatalf("model w[0] = %v, want 25", v)
	}
	if got := ck.Files["optimizer.safetensors"].Metadata["optimizer"]; got != "sgd" {
		t.Fatalf("metadata lost: %q", got)
	}
}

func TestRetainKeepsNewest(t *testing.T) {
	s, _ := Open(t.TempDir())
	saveSteps(t, s, 1, 2, 3, 4, 5)
	if err := s.Retain(2); err != nil {
		t.Fatal(err)
	}
	names, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0] != NameForStep(4) || names[1] != NameForStep(5) {
		t.Fatalf("after Retain(2): %v", names)
	}
	if err := s.Retain(0); err == nil {
		t.Fatal("Retain(0) accepted")
	}
}

func TestCorruptCheckpointFallsBack(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	saveSteps(t, s, 10, 20)
	path := filepath.Join(dir, NameForStep(20), "model.safetensors")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(NameForStep(20)); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("Verify of a flipped file = %v, want a checksum error", err)
	}
	var warnings []string
	ck, err := s.LoadLatest(func(f string, a ...any) { warnings = append(warnings, f) })
	if err != nil {
		t.Fatal(err)
	}
	if ck.Manifest.Step != 10 || modelValue(t, ck) != 10 {
		t.Fatalf("loaded step %d, want the previous checkpoint (10)", ck.Manifest.Step)
	}
	if len(warnings) != 1 {
		t.Fatalf("warnings = %v, want one", warnings)
	}
	// With every checkpoint bad, loading fails rather than starting afresh.
	os.Remove(filepath.Join(dir, NameForStep(10), "optimizer.safetensors"))
	if ck, err := s.LoadLatest(nil); err == nil {
		t.Fatalf("all checkpoints corrupt: loaded %+v", ck.Manifest)
	}
}

func TestUncommittedWritesAreInvisible(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	saveSteps(t, s, 10)
	// A crash mid-save leaves a .tmp directory; one after the rename but
	// before the pointer moved leaves a directory newer than latest.
	if err := os.Mkdir(filepath.Join(dir, NameForStep(20)+tmpSuffix), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, NameForStep(30)), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, NameForStep(20)+tmpSuffix)); !os.IsNotExist(err) {
		t.Fatal("Open left an unfinished write behind")
	}
	names, _ := s.List()
	if len(names) != 1 || names[0] != NameForStep(10) {
		t.Fatalf("List = %v, want only the committed checkpoint", names)
	}
	ck, err := s.LoadLatest(nil)
	if err != nil || ck.Manifest.Step != 10 {
		t.Fatalf("LoadLatest = %v, %v", ck, err)
	}
}

func TestHostileManifestAndPointer(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	saveSteps(t, s, 10)
	name := NameForStep(10)
	mpath := filepath.Join(dir, name, manifestNam)
	good, _ := os.ReadFile(mpath)
	for _, tc := range []struct{ manifest, want string }{
		{`{"version": 1, "name": "` + name + `", "surprise": 1}`, "surprise"},
		{`{"version": 99, "name": "` + name + `"}`, "version 99"},
		{`{"version": 1, "name": "` + name + `", "files": [{"name": "../../etc/passwd"}]}`, "invalid part name"},
		{`{"version": 1, "name": "` + name, "unexpected EOF"},
	} {
		os.WriteFile(mpath, []byte(tc.manifest), 0o644)
		if _, err := s.Verify(name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("manifest %s: err = %v, want %q", tc.manifest, err, tc.want)
		}
	}
	os.WriteFile(mpath, good, 0o644)
	os.WriteFile(filepath.Join(dir, latestName), []byte("../elsewhere\n"), 0o644)
	if _, err := s.Latest(); err == nil {
		t.Fatal("a pointer outside the store was accepted")
	}
}

func TestSaveRejectsBadPartNames(t *testing.T) {
	s, _ := Open(t.TempDir())
	for _, n := range []string{"", "manifest.json", "../x", ".hidden"} {
		if _, err := s.Save(Manifest{Step: 1}, []Part{{Name: n}}); err == nil {
			t.Errorf("part name %q accepted", n)
		}
	}
	if names, _ := s.List(); len(names) != 0 {
		t.Fatalf("a failed save committed %v", names)
	}
}

// FuzzManifest feeds arbitrary manifests to Verify and LoadLatest: each
// must be an error or a verified checkpoint, never a panic or a read
// outside the store.
func FuzzManifest(f *testing.F) {
	name := NameForStep(10)
	f.Add([]byte(`{"version": 1, "name": "` + name + `", "step": 10, "files": []}`))
	f.Add([]byte(`{"version": 1, "name": "` + name + `", "files": [{"name": "model.safetensors", "size": 5, "sha256": "00"}]}`))
	f.Add([]byte(`{"version": 1, "name": "` + name + `", "files": [{"name": "..", "size": -1}]}`))
	f.Add([]byte(`[]`))
	dir := f.TempDir()
	s, err := Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.Save(Manifest{Step: 10}, parts(1)); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if err := os.WriteFile(filepath.Join(dir, name, manifestNam), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Verify(name); err != nil {
			return
		}
		if _, err := s.LoadLatest(nil); err != nil {
			return
		}
	})
}
