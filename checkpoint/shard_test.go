package checkpoint

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/safetensors"
)

// commitShards writes, seals and commits the sharded checkpoint of step
// as the env's leader, and returns its sealed manifest.
func (e *etcdEnv) commitShards(t *testing.T, step int) Manifest {
	t.Helper()
	sealed, err := e.store.Seal(writeShards(t, e.store, step, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.Commit(e.ctx, sealed, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	return sealed
}

// writeShards writes rank r's shard of a world-2 checkpoint at step, as two
// workers of a ring would, and returns the manifest the coordinator builds
// from their reports.
func writeShards(t *testing.T, s *Store, step int, v float32) Manifest {
	t.Helper()
	name := NameForStep(step)
	m := Manifest{Name: name, JobHash: "h", Model: "mlp", Step: step, WorldSize: 2, Generation: 1}
	for r := range 2 {
		fi, err := s.WriteShard(name, Part{
			Name:    []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[r],
			Tensors: map[string]safetensors.Tensor{[]string{"a", "b"}[r]: safetensors.F32([]int{2}, []float32{v, float32(r)})},
		})
		if err != nil {
			t.Fatal(err)
		}
		m.Files = append(m.Files, fi)
	}
	return m
}

func TestWriteShardSealCommit(t *testing.T) {
	e := newEtcdEnv(t)
	m := writeShards(t, e.store, 10, 1.5)
	// Unsealed shards are not a checkpoint.
	if names, err := e.store.List(); err != nil || len(names) != 0 {
		t.Fatalf("List before seal = %v, %v", names, err)
	}
	// A stray file nobody reported is dropped by Seal.
	stray := filepath.Join(e.store.Dir(), m.Name+partsSuffix, "model-00003-of-00003.safetensors")
	if err := os.WriteFile(stray, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	sealed, err := e.store.Seal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.store.Dir(), m.Name, "model-00003-of-00003.safetensors")); !os.IsNotExist(err) {
		t.Errorf("stray file survived Seal: %v", err)
	}
	if err := e.c.Commit(e.ctx, sealed, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	ck, err := e.c.LoadLatest(e.ctx, nil)
	if err != nil || ck == nil {
		t.Fatalf("LoadLatest = %v, %v", ck, err)
	}
	if len(ck.Files) != 2 || ck.Manifest.WorldSize != 2 {
		t.Fatalf("loaded %d files, world %d", len(ck.Files), ck.Manifest.WorldSize)
	}
	tb, ok := ck.Files["model-00002-of-00002.safetensors"].Tensor("b")
	if !ok {
		t.Fatal("tensor b missing")
	}
	if xs, _ := tb.Float32s(); xs[0] != 1.5 || xs[1] != 1 {
		t.Errorf("b = %v", xs)
	}
}

func TestSealRefusesBadShards(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := writeShards(t, s, 20, 2)
	for _, tc := range []struct {
		name   string
		modify func(Manifest) Manifest
		want   string
	}{
		{"wrong name", func(m Manifest) Manifest { m.Name = NameForStep(21); return m }, "want"},
		{"no files", func(m Manifest) Manifest { m.Files = nil; return m }, "no files"},
		{"twice", func(m Manifest) Manifest { m.Files = append(m.Files, m.Files[0]); return m }, "twice"},
		{"bad checksum", func(m Manifest) Manifest {
			m.Files = append([]FileInfo(nil), m.Files...)
			m.Files[1].SHA256 = strings.Repeat("0", 64)
			return m
		}, "SHA-256"},
		{"missing", func(m Manifest) Manifest {
			m.Files = append(append([]FileInfo(nil), m.Files...), FileInfo{Name: "optimizer.safetensors", Size: 1, SHA256: "x"})
			return m
		}, "no such file"},
		{"bad file name", func(m Manifest) Manifest {
			m.Files = append(append([]FileInfo(nil), m.Files...), FileInfo{Name: "../x"})
			return m
		}, "invalid part name"},
	} {
		if _, err := s.Seal(tc.modify(m)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Seal error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := s.WriteShard("../evil", Part{Name: "x"}); err == nil {
		t.Error("WriteShard accepted a bad checkpoint name")
	}
	if _, err := s.WriteShard(NameForStep(1), Part{Name: "../x"}); err == nil {
		t.Error("WriteShard accepted a bad part name")
	}
	// After all the refusals the shards still seal.
	if _, err := s.Seal(m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(m.Name); err != nil {
		t.Fatal(err)
	}
}

func TestRetainRemovesOldStaging(t *testing.T) {
	e := newEtcdEnv(t)
	writeShards(t, e.store, 5, 1) // a ring broke before sealing step 5
	for _, step := range []int{10, 20} {
		e.commitShards(t, step)
	}
	writeShards(t, e.store, 30, 1) // being written now: must survive
	if err := e.c.Retain(e.ctx, 1, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		NameForStep(5) + partsSuffix:  false,
		NameForStep(10):               false,
		NameForStep(20):               true,
		NameForStep(30) + partsSuffix: true,
	} {
		_, err := os.Stat(filepath.Join(e.store.Dir(), name))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v", name, got, want)
		}
	}
}

// WriteShard replaces a part written before (a retry) whole, leaves no
// temporary file, and gives it the mode of a file created 0644, as Save
// gives its files and the latest pointer.
func TestWriteShardReplacesWithDataFileMode(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(t.TempDir(), "ref")
	if err := os.WriteFile(ref, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	want := fileMode(t, ref)
	name := NameForStep(8)
	var fi FileInfo
	for _, v := range []float32{1, 2} {
		if fi, err = s.WriteShard(name, Part{Name: "model-00001-of-00001.safetensors",
			Tensors: map[string]safetensors.Tensor{"a": safetensors.F32([]int{1}, []float32{v})}}); err != nil {
			t.Fatal(err)
		}
	}
	staging := filepath.Join(s.Dir(), name+partsSuffix)
	ents, err := os.ReadDir(staging)
	if err != nil || len(ents) != 1 {
		t.Fatalf("staging holds %v, %v; want the one part", ents, err)
	}
	path := filepath.Join(staging, fi.Name)
	if err := verifyFile(path, fi); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if tn, _ := f.Tensor("a"); !bytes.Equal(tn.Data, safetensors.F32([]int{1}, []float32{2}).Data) {
		t.Errorf("the retry did not replace the part: %v", tn.Data)
	}
	if got := fileMode(t, path); got != want {
		t.Errorf("part: mode %v, want %v", got, want)
	}

	saveSteps(t, s, 9)
	for _, p := range []string{latestName, filepath.Join(NameForStep(9), "model.safetensors")} {
		if got := fileMode(t, filepath.Join(s.Dir(), p)); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	ents, err = os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("store holds a temporary file %s", e.Name())
		}
	}
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// A store whose checkpoints are committed in etcd describes itself too:
// its latest pointer follows the commits.
func TestCommitMirrorsLatestInTheStore(t *testing.T) {
	e := newEtcdEnv(t)
	for _, step := range []int{10, 20} {
		sealed := e.commitShards(t, step)
		if latest, err := e.store.Latest(); err != nil || latest != sealed.Name {
			t.Fatalf("store latest = %q, %v; want %s", latest, err, sealed.Name)
		}
	}
	// Sealed but never committed.
	if _, err := e.store.Seal(writeShards(t, e.store, 30, 1)); err != nil {
		t.Fatal(err)
	}
	names, err := e.store.List()
	if err != nil || len(names) != 2 || names[1] != NameForStep(20) {
		t.Fatalf("List = %v, %v; want the two committed checkpoints", names, err)
	}
}

// OpenShared changes nothing in the store: a worker opening it must not
// remove the owner's writes in progress (here a pointer being moved and a
// checkpoint being written). Open removes them as leftovers, and nothing
// else.
func TestOpenSharedLeavesWritesInProgress(t *testing.T) {
	dir := t.TempDir()
	inProgress := []string{
		filepath.Join(dir, "."+latestName+"8046925711254791346"),
		filepath.Join(dir, NameForStep(3)+tmpSuffix),
	}
	keep := []string{
		filepath.Join(dir, "."+latestName+"-notes"),
		filepath.Join(dir, latestName+"8046"),
	}
	for _, p := range append(inProgress, keep...) {
		if err := os.WriteFile(p, []byte("ckpt-"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenShared(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range inProgress {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("OpenShared removed a write in progress: %v", err)
		}
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range inProgress {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("Open left the leftover %s: %v", p, err)
		}
	}
	for _, p := range keep {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("Open removed %s, which is no leftover: %v", p, err)
		}
	}
}
