package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/dataset/imageset"
	"github.com/ringtrain/ringtrain/runlog"
)

// TestDataSynthPackVerify: synth writes an image folder, pack turns it
// into shards (and resumes), verify checks them and finds a corrupt one.
func TestDataSynthPackVerify(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	out, err := runCLI(t, "data", "synth", src, "--classes", "3", "--per-class", "4", "--size", "40x30", "--seed", "2")
	if err != nil || !strings.Contains(out, "3 classes of 40×30 JPEGs; train with --dataset imagefolder:"+src) {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(src, "val/s002/s002_0.JPEG")); err != nil {
		t.Fatalf("synth wrote no validation images: %v", err)
	}
	out, err = runCLI(t, "data", "pack", src, dst, "--per-shard", "5", "--jobs", "2")
	if err != nil || !strings.Contains(out, "train: 12 samples in 3 shards") || !strings.Contains(out, "val: 3 samples in 1 shards") ||
		!strings.Contains(out, "pack: 15/15") || !strings.Contains(out, "--dataset shards:"+dst) {
		t.Fatalf("pack: %v\n%s", err, out)
	}
	first := filepath.Join(dst, "train-000000.tar")
	old := time.Unix(1e9, 0)
	os.Chtimes(first, old, old)
	if out, err := runCLI(t, "data", "pack", src, dst, "--per-shard", "5"); err != nil {
		t.Fatalf("pack again: %v\n%s", err, out)
	}
	if st, _ := os.Stat(first); !st.ModTime().Equal(old) {
		t.Fatal("pack run again rewrote a finished shard")
	}
	out, err = runCLI(t, "data", "verify", "shards:"+dst)
	if err != nil || !strings.Contains(out, "shards:"+dst+": 4 shards, 15 samples, 3 classes verified") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(first)
	data[len(data)/2] ^= 0xff
	os.WriteFile(first, data, 0o644)
	if out, err := runCLI(t, "data", "verify", "shards:"+dst); err == nil || !strings.Contains(err.Error(), first) {
		t.Fatalf("verify of a corrupt shard: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "data", "synth", src, "--size", "big"); err == nil || !strings.Contains(err.Error(), "want WIDTHxHEIGHT") {
		t.Fatalf("synth --size big: %v", err)
	}
}

// TestDataVerifyWait: --wait fails after the time given when no data
// appears, and succeeds once a pack running meanwhile writes its manifest.
func TestDataVerifyWait(t *testing.T) {
	empty := t.TempDir()
	start := time.Now()
	_, err := runCLI(t, "data", "verify", "shards:"+empty, "--wait", "300ms")
	if err == nil || !strings.Contains(err.Error(), "waited 300ms for the data to appear") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("verify --wait on an empty folder: %v", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("gave up after %v, before the 300ms wait", took)
	}
	if _, err := runCLI(t, "data", "verify", "shards:"+empty); err == nil || strings.Contains(err.Error(), "waited") {
		t.Fatalf("verify without --wait: %v", err)
	}
	src, dst := t.TempDir(), t.TempDir()
	if err := imageset.Synth(context.Background(), src, imageset.SynthOptions{Classes: 2, PerClass: 3, Width: 32, Height: 24}, nil); err != nil {
		t.Fatal(err)
	}
	packed := make(chan error, 1)
	verified := make(chan string, 1)
	go func() {
		out, err := runCLI(t, "data", "verify", "shards:"+dst, "--wait", "1m")
		verified <- fmt.Sprint(out, err)
	}()
	go func() {
		_, err := imageset.Pack(context.Background(), src, dst, imageset.PackOptions{PerShard: 2}, nil)
		packed <- err
	}()
	if err := <-packed; err != nil {
		t.Fatal(err)
	}
	if out := <-verified; !strings.Contains(out, "4 shards, 8 samples, 2 classes verified") {
		t.Fatalf("verify --wait while packing: %s", out)
	}
	if out, err := runCLI(t, "data", "verify", "shards:"+dst, "--quick", "--wait", "1m"); err != nil || !strings.Contains(out, "4 shards, 8 samples, 2 classes present with their sizes and indexes") {
		t.Fatalf("verify --quick: %s, %v", out, err)
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	err := waitFor(context.Background(), time.Minute, time.Millisecond, t.Logf, func() error {
		calls++
		if calls < 3 {
			return fs.ErrNotExist
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("waitFor: %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	other := errors.New("SHA-256 mismatch")
	if err := waitFor(context.Background(), time.Minute, time.Millisecond, t.Logf, func() error { calls++; return other }); err != other || calls != 1 {
		t.Fatalf("waitFor on another error: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitFor(ctx, time.Minute, time.Hour, t.Logf, func() error { return fs.ErrNotExist }); !errors.Is(err, context.Canceled) {
		t.Fatalf("waitFor after cancel: %v", err)
	}
}

// readSummary returns a run directory's summary.json.
func readSummary(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, runlog.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var sum map[string]any
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestTrainImageSets: `train` learns a synthetic image folder of 4
// classes (chance 25%) with the colour ConvNet at 64×64, through the
// training transform (random resized crops and flips of 80×60 JPEGs) and
// the evaluation one; a job file trains on the same set packed as shards.
func TestTrainImageSets(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a ConvNet on JPEGs for 6 epochs (about 25 s)")
	}
	src := t.TempDir()
	o := imageset.SynthOptions{Classes: 4, PerClass: 80, ValPerClass: 25, Width: 80, Height: 60, Seed: 1}
	if err := imageset.Synth(context.Background(), src, o, nil); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "folder")
	out, err := runCLI(t, "train", "--model", "convnet64", "--dataset", "imagefolder:"+src, "--epochs", "6",
		"--batch-size", "16", "--lr", "0.05", "--out", run)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	sum := readSummary(t, run)
	if acc := sum["test_accuracy"].(float64); acc < 0.5 {
		t.Fatalf("test accuracy %.3f after 6 epochs, want at least 0.5 (chance is 0.25)\n%s", acc, out)
	}
	t.Logf("image folder: test accuracy %.3f, %.0f images/s", sum["test_accuracy"], sum["images_per_second"])

	shards := t.TempDir()
	if _, err := imageset.Pack(context.Background(), src, shards, imageset.PackOptions{PerShard: 100}, nil); err != nil {
		t.Fatal(err)
	}
	jobFile := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(jobFile, []byte("model: convnet64\ndataset: shards:"+shards+"\nepochs: 1\nbatch_size: 16\noptimizer:\n  name: sgd\n  lr: 0.05\n  momentum: 0.9\n"), 0o644)
	run = filepath.Join(t.TempDir(), "shards")
	if out, err := runCLI(t, "train", "-f", jobFile, "--out", run); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if sum := readSummary(t, run); sum["dataset"] != "shards:"+shards || sum["steps"].(float64) != 20 {
		t.Fatalf("summary of the run on shards: %v", sum)
	}
}

// TestTrainImageShardsCluster: a local cluster of two workers trains on
// shards: the coordinator counts the samples from the shards' indexes and
// each worker reads its share.
func TestTrainImageShardsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a two-worker cluster")
	}
	bin, _ := binary(t)
	src, shards := t.TempDir(), t.TempDir()
	o := imageset.SynthOptions{Classes: 3, PerClass: 20, ValPerClass: 5, Width: 48, Height: 36, Seed: 4}
	if err := imageset.Synth(context.Background(), src, o, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := imageset.Pack(context.Background(), src, shards, imageset.PackOptions{PerShard: 25}, nil); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "cluster")
	cmd := exec.Command(bin, "train", "--workers", "2", "--model", "convnet64", "--dataset", "shards:"+shards,
		"--epochs", "1", "--batch-size", "12", "--out", run)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "epoch 1/1: 5 steps") {
		t.Fatalf("want 60 samples in 5 steps of 12:\n%s", out)
	}
	if sum := readSummary(t, run); sum["dataset"] != "shards:"+shards {
		t.Fatalf("summary %v", sum)
	}
}

// TestBenchImagepipe: `bench imagepipe --json` reads a folder's JPEGs and
// reports a positive rate for each stage and round.
func TestBenchImagepipe(t *testing.T) {
	dir := t.TempDir()
	if err := imageset.Synth(context.Background(), dir, imageset.SynthOptions{Classes: 2, PerClass: 2, Width: 40, Height: 30}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "bench", "imagepipe", "--dir", dir, "--size", "16", "--repeat", "2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r imagepipeResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Files != 6 || r.Size != 16 || len(r.Pipeline) != 2 || len(r.Decode) != 2 || len(r.DecodeRGB) != 2 || r.PipelineMedian <= 0 || r.DecodeMedian <= 0 || r.DecodeRGBMedian <= 0 {
		t.Fatalf("result %+v", r)
	}
	if _, err := runCLI(t, "bench", "imagepipe", "--dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .jpg") {
		t.Fatalf("an empty folder: %v", err)
	}
}
