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
