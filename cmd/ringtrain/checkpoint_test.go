package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/safetensors"
)

// saveCheckpoint commits a one-tensor checkpoint at step, epoch and
// position into the store at dir.
func saveCheckpoint(t *testing.T, dir string, step, epoch, position int) {
	t.Helper()
	s, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Save(checkpoint.Manifest{Step: step, Epoch: epoch, Position: position, JobHash: "h", Model: "mlp"},
		[]checkpoint.Part{{Name: "model.safetensors", Tensors: map[string]safetensors.Tensor{"w": safetensors.F32([]int{1}, []float32{1})}}})
	if err != nil {
		t.Fatal(err)
	}
}

// `checkpoint … --dir` takes a cluster's --store as given and a run
// directory's checkpoints/ folder, and says where it looked when neither
// holds checkpoints.
func TestCheckpointDirIsAStoreOrARunDirectory(t *testing.T) {
	store := filepath.Join(t.TempDir(), "ringtrain-store") // a cluster's --store
	saveCheckpoint(t, store, 100, 0, 6400)
	run := t.TempDir() // a run directory of `ringtrain train`
	saveCheckpoint(t, filepath.Join(run, "checkpoints"), 938, 1, 0)
	for _, tc := range []struct{ dir, want string }{
		{store, checkpoint.NameForStep(100)},
		{run, checkpoint.NameForStep(938)},
		{filepath.Join(run, "checkpoints"), checkpoint.NameForStep(938)},
	} {
		for _, sub := range []string{"list", "verify", "inspect"} {
			out, err := runCLI(t, "checkpoint", sub, "--dir", tc.dir)
			if err != nil || !strings.Contains(out, tc.want) {
				t.Errorf("checkpoint %s --dir %s: %v\n%s", sub, tc.dir, err, out)
			}
		}
	}
	// A store that has only begun its first checkpoint is still the store.
	begun := t.TempDir()
	if err := os.Mkdir(filepath.Join(begun, checkpoint.NameForStep(40)+".parts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "checkpoint", "list", "--dir", begun); err != nil || !strings.Contains(out, "no committed checkpoints in "+begun+"\n") {
		t.Errorf("checkpoint list of a store without commits: %v\n%s", err, out)
	}

	empty := t.TempDir()
	for _, dir := range []string{empty, filepath.Join(empty, "typo")} {
		_, err := runCLI(t, "checkpoint", "list", "--dir", dir)
		if err == nil || !strings.Contains(err.Error(), dir+" nor "+filepath.Join(dir, "checkpoints")) {
			t.Errorf("checkpoint list --dir %s: %v, want an error naming both places looked at", dir, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "checkpoints")); err == nil {
			t.Errorf("checkpoint list --dir %s created checkpoints/", dir)
		}
	}
}

// `checkpoint list` counts epochs from 1, as the logs and status do: the
// final checkpoint of a 1-epoch run is "after epoch 1", not "epoch 2".
func TestCheckpointListCountsEpochsFromOne(t *testing.T) {
	dir := t.TempDir()
	saveCheckpoint(t, dir, 300, 0, 19200)
	saveCheckpoint(t, dir, 938, 1, 0)
	out, err := runCLI(t, "checkpoint", "list", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "PROGRESS") ||
		!strings.Contains(lines[1], "  epoch 1, 19200 samples in  ") || !strings.Contains(lines[2], "  after epoch 1  ") {
		t.Errorf("checkpoint list:\n%s", out)
	}
}

// Stores are separated per job: `checkpoint … --dir` of a store root (or
// a run directory) that holds one job's store shows it, and one that holds
// several asks for --job.
func TestCheckpointDirHoldsAStorePerJob(t *testing.T) {
	root := t.TempDir()
	save := func(job string, step int) {
		t.Helper()
		s, err := checkpoint.OpenJob(root, job, "hash-"+job)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Save(checkpoint.Manifest{Step: step, JobHash: "hash-" + job, Model: "mlp"},
			[]checkpoint.Part{{Name: "model.safetensors", Tensors: map[string]safetensors.Tensor{"w": safetensors.F32([]int{1}, []float32{1})}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	save("job-a", 100)
	for _, sub := range []string{"list", "verify", "inspect"} {
		if out, err := runCLI(t, "checkpoint", sub, "--dir", root); err != nil || !strings.Contains(out, checkpoint.NameForStep(100)) {
			t.Errorf("checkpoint %s --dir of a root with one job: %v\n%s", sub, err, out)
		}
	}
	save("job-b", 200)
	if _, err := runCLI(t, "checkpoint", "list", "--dir", root); err == nil || !strings.Contains(err.Error(), "--job") ||
		!strings.Contains(err.Error(), "job-a") || !strings.Contains(err.Error(), "job-b") {
		t.Errorf("checkpoint list of a root with two jobs: %v, want a request for --job naming both", err)
	}
	for job, want := range map[string]int{"job-a": 100, "job-b": 200} {
		for _, dir := range []string{root, filepath.Join(root, job)} {
			out, err := runCLI(t, "checkpoint", "list", "--dir", dir, "--job", job)
			if err != nil || !strings.Contains(out, checkpoint.NameForStep(want)) {
				t.Errorf("checkpoint list --dir %s --job %s: %v\n%s", dir, job, err, out)
			}
		}
	}
	if _, err := runCLI(t, "checkpoint", "list", "--dir", root, "--job", "job-c"); err == nil || !strings.Contains(err.Error(), "no store of job job-c") {
		t.Errorf("checkpoint list --job of a job not there: %v", err)
	}
}

// A store of the layout before per-job stores that has job stores beside
// it (another job started there since) is still the store --dir names;
// --job names the others.
func TestCheckpointDirOfTheLayoutBeforeWithJobsBeside(t *testing.T) {
	root := t.TempDir()
	saveCheckpoint(t, root, 300, 0, 19200) // the layout before
	s, err := checkpoint.OpenJob(root, "job-b", "hash-b")
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir() != filepath.Join(root, "job-b") {
		t.Fatalf("job-b's store is %s", s.Dir())
	}
	if _, err := s.Save(checkpoint.Manifest{Step: 7, JobHash: "hash-b"},
		[]checkpoint.Part{{Name: "model.safetensors", Tensors: map[string]safetensors.Tensor{"w": safetensors.F32([]int{1}, []float32{1})}}}); err != nil {
		t.Fatal(err)
	}
	for job, want := range map[string]string{"": checkpoint.NameForStep(300), "job-b": checkpoint.NameForStep(7)} {
		out, err := runCLI(t, "checkpoint", "list", "--dir", root, "--job", job)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("checkpoint list --job %q: %v\n%s", job, err, out)
		}
	}
}
