package main

import (
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/safetensors"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// models export writes what models run loads, and run's logits are the
// model's own in evaluation mode; a sized model takes the input's shape.
func TestModelsExportAndRun(t *testing.T) {
	dir := t.TempDir()
	w, in, out := filepath.Join(dir, "w.safetensors"), filepath.Join(dir, "in.safetensors"), filepath.Join(dir, "out.safetensors")
	if _, err := runCLI(t, "models", "export", "--model", "resnet20", "--classes", "7", "--seed", "3", "--out", w); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 2*3*32*32)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	if err := safetensors.WriteFile(in, map[string]safetensors.Tensor{"input": safetensors.F32([]int{2, 3, 32, 32}, x)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "models", "run", "--model", "resnet20", "--classes", "7", "--weights", w, "--input", in, "--out", out, "--threads", "1"); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lt, _ := f.Tensor("logits")
	got, err := lt.Float32s()
	if err != nil || !slices.Equal(lt.Shape, []int{2, 7}) {
		t.Fatalf("logits %v, %v", lt.Shape, err)
	}
	m, err := models.BuildFor("resnet20", 3, models.Config{Classes: 7, Input: []int{3, 32, 32}})
	if err != nil {
		t.Fatal(err)
	}
	tp := tensorcore.NewTape(nil)
	want := m.Forward(tp, tp.Const(tensorcore.FromSlice(x, 2, 3, 32, 32)), false).Value.Data
	if !slices.Equal(got, want) {
		t.Fatalf("run's logits %v, the model's %v", got, want)
	}
	// Weights for 7 classes do not run as the default 10.
	_, err = runCLI(t, "models", "run", "--model", "resnet20", "--weights", w, "--input", in, "--out", out)
	if err == nil || !strings.Contains(err.Error(), "give --classes") {
		t.Fatalf("a head of another width: error %v", err)
	}
}

// train --init-from starts from an export's weights and, the class count
// being another, gives the model a new head, saying so.
func TestTrainInitFrom(t *testing.T) {
	bin, data := binary(t)
	dir := t.TempDir()
	w := filepath.Join(dir, "r20-100.safetensors")
	if _, err := runCLI(t, "models", "export", "--model", "resnet20", "--classes", "100", "--channels", "1", "--image-size", "28", "--out", w); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "train", "--model", "resnet20", "--data-dir", filepath.Join(data, "mnist"), "--epochs", "1",
		"--batch-size", "32", "--train-limit", "64", "--test-limit", "32", "--init-from", w, "--out", filepath.Join(dir, "run"), "--timeline=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"started from the weights of " + w, "a new head for 10 classes (fc.weight, fc.bias start afresh)", "done: test accuracy"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("train output lacks %q:\n%s", want, out)
		}
	}
	cmd = exec.Command(bin, "train", "--model", "resnet20", "--data-dir", filepath.Join(data, "mnist"), "--epochs", "1",
		"--train-limit", "64", "--init-from", filepath.Join(dir, "absent.safetensors"), "--out", filepath.Join(dir, "run2"))
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "absent.safetensors") {
		t.Fatalf("a missing --init-from file: %v\n%s", err, out)
	}
}
