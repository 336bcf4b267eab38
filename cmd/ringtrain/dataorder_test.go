package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset/imageset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/worker"
)

// packedShards writes a synthetic image set of classes×perClass small
// training JPEGs and packs it into shards of perShard samples.
func packedShards(t *testing.T, classes, perClass, perShard int) string {
	t.Helper()
	src, shards := t.TempDir(), t.TempDir()
	o := imageset.SynthOptions{Classes: classes, PerClass: perClass, ValPerClass: 4, Width: 48, Height: 36, Seed: 9}
	if err := imageset.Synth(context.Background(), src, o, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := imageset.Pack(context.Background(), src, shards, imageset.PackOptions{PerShard: perShard}, nil); err != nil {
		t.Fatal(err)
	}
	return shards
}

// sampleHistory reads a cluster run's sample logs and returns, for each
// step number, the records of the run's history: those of the highest
// generation that took the step (a step a ring began and never finished is
// taken again by the next one).
func sampleHistory(t *testing.T, run string) map[int64][]worker.SampleRecord {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(run, worker.SampleLogDir, "*"))
	if len(files) == 0 {
		t.Fatalf("no sample logs in %s", run)
	}
	steps := map[int64][]worker.SampleRecord{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := worker.ReadSampleLog(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range recs {
			cur := steps[r.Step]
			switch {
			case len(cur) == 0 || r.Generation > cur[0].Generation:
				steps[r.Step] = []worker.SampleRecord{r}
			case r.Generation == cur[0].Generation:
				steps[r.Step] = append(cur, r)
			}
		}
	}
	return steps
}

// checkExactlyOnce checks a run's history of epochs epochs of n samples
// in global batches of batch: steps 1, 2, … each taken once, in order of
// position; every step's records one per rank of its ring, together the
// step's min(batch, samples left) samples; every sample of every epoch
// trained on exactly once. It returns the generations the history holds,
// in step order, each as "gen G: world W, steps A–B".
func checkExactlyOnce(t *testing.T, steps map[int64][]worker.SampleRecord, n, batch, epochs int) []string {
	t.Helper()
	per := (n + batch - 1) / batch
	if len(steps) != epochs*per {
		t.Fatalf("the history holds %d steps, want %d epochs of %d", len(steps), epochs, per)
	}
	var gens []string
	var gen uint64
	var first int64
	for e := range epochs {
		seen := make([]int, n)
		for k := range per {
			step := int64(e*per + k + 1)
			recs := steps[step]
			if len(recs) == 0 {
				t.Fatalf("step %d: no record", step)
			}
			world := recs[0].World
			ranks := make([]bool, world)
			got := 0
			for _, r := range recs {
				if r.World != world || r.Rank < 0 || r.Rank >= world || ranks[r.Rank] {
					t.Fatalf("step %d: records %+v are not one per rank of one ring", step, recs)
				}
				ranks[r.Rank] = true
				if r.Epoch != e || r.Consumed != k*batch {
					t.Fatalf("step %d: rank %d took it at epoch %d consumed %d, want epoch %d consumed %d", step, r.Rank, r.Epoch, r.Consumed, e, k*batch)
				}
				for _, i := range r.Samples {
					if i < 0 || i >= n {
						t.Fatalf("step %d: sample %d outside [0, %d)", step, i, n)
					}
					seen[i]++
				}
				got += len(r.Samples)
			}
			if len(recs) != world {
				t.Fatalf("step %d: %d records of a ring of %d", step, len(recs), world)
			}
			if want := min(batch, n-k*batch); got != want {
				t.Fatalf("step %d: %d samples, want %d", step, got, want)
			}
			if g := recs[0].Generation; g != gen || len(gens) == 0 {
				gen, first = g, step
				gens = append(gens, "")
			}
			gens[len(gens)-1] = fmt.Sprintf("gen %d: world %d, steps %d–%d", gen, world, first, step)
		}
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("epoch %d: sample %d trained on %d times, want once", e, i, c)
			}
		}
	}
	return gens
}

// TestTrainImageShardsWorkerKilledExactlyOnce: `train --workers 4` on
// shards (min_workers 3, no restarts), one worker SIGKILLed a few steps
// into the first epoch: the job ends in a ring of the 3 survivors, and its
// history (the workers' sample logs) trains every sample of every epoch
// exactly once, across the rings of 4 and of 3.
func TestTrainImageShardsWorkerKilledExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a four-worker cluster")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the worker's process through /proc")
	}
	const n, batch, epochs = 240, 8, 2
	shards := packedShards(t, 4, n/4, 50)
	run := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // catches hangs only
	defer cancel()
	// The ring may shrink to 3, and the killed worker is not started
	// again: the epoch goes on in a ring of the survivors, dealt anew.
	jobFile := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(jobFile, []byte("min_workers: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(run, worker.SampleLogDir, worker.SampleLogFile("worker-2"))
	killed := make(chan int, 1)
	text, err := runUntil(t, ctx, "epoch 1/2:", func(cmd *exec.Cmd) {
		go func() {
			// Once worker-2 has taken its sixth step of the 30.
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for range tick.C {
				if b, _ := os.ReadFile(victim); bytes.Count(b, []byte("\n")) >= 6 {
					if pid := childWorker(cmd.Process.Pid, "worker-2"); pid > 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
						killed <- bytes.Count(b, []byte("\n"))
						return
					}
				}
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}, "train", "-f", jobFile, "--workers", "4", "--model", "convnet64", "--dataset", "shards:"+shards, "--epochs", strconv.Itoa(epochs),
		"--batch-size", strconv.Itoa(batch), "--max-restarts", "0", "--sample-log", "--out", run)
	var at int
	select {
	case at = <-killed:
	default:
		t.Fatalf("worker-2 was never killed; output:\n%s", text)
	}
	if err != nil {
		t.Fatalf("the job did not end after the kill: %v\n%s", err, text)
	}
	gens := checkExactlyOnce(t, sampleHistory(t, run), n, batch, epochs)
	if len(gens) < 2 || !strings.Contains(gens[1], "world 3") || at >= n/batch {
		t.Fatalf("killed after worker-2's step %d; the history: %v: the kill was not mid-epoch or made no ring of the 3 survivors", at, gens)
	}
	t.Logf("worker-2 killed after taking %d steps; every sample of %d epochs trained once, over %s", at, epochs, strings.Join(gens, "; "))
}

// TestTrainFewerShardsThanWorkers: 2 shards, 4 workers: no hang, every
// rank takes every step (the last step's 4 samples one each), and every
// sample is trained on once.
func TestTrainFewerShardsThanWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a four-worker cluster")
	}
	const n, batch = 60, 8
	shards := packedShards(t, 3, n/3, 30)
	if m, err := imageset.ReadManifest(shards); err != nil || len(m.Splits["train"]) != 2 {
		t.Fatalf("want 2 training shards: %v", err)
	}
	bin, _ := binary(t)
	run := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // catches hangs only
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "train", "--workers", "4", "--model", "convnet64", "--dataset", "shards:"+shards,
		"--epochs", "1", "--batch-size", strconv.Itoa(batch), "--sample-log", "--out", run).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	steps := sampleHistory(t, run)
	checkExactlyOnce(t, steps, n, batch, 1)
	for s, recs := range steps {
		if len(recs) != 4 || recs[0].World != 4 {
			t.Fatalf("step %d taken by %d ranks of a ring of %d, want 4 of 4", s, len(recs), recs[0].World)
		}
	}
}

// TestTrainImageShardsKillEverythingResumesBitIdentical: `train --workers
// 4` on shards, checkpointing every 5 steps, SIGKILLed whole (the
// coordinator and etcd in the train process, and every worker) once two
// checkpoints are committed; `train --resume` then ends with parameters
// identical to the bit to an uninterrupted run's.
func TestTrainImageShardsKillEverythingResumesBitIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a four-worker cluster three times")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the workers' processes through /proc")
	}
	const n, batch, epochs, every = 240, 8, 2, 5
	shards := packedShards(t, 4, n/4, 50)
	bin, data := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // catches hangs only
	defer cancel()
	train := func(out string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, "train", "--workers", "4", "--model", "convnet64", "--dataset", "shards:"+shards,
			"--epochs", strconv.Itoa(epochs), "--batch-size", strconv.Itoa(batch), "--checkpoint-every", strconv.Itoa(every), "--out", out)
		cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
		return cmd
	}
	whole := filepath.Join(t.TempDir(), "whole")
	if o, err := train(whole).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, o)
	}

	out := filepath.Join(t.TempDir(), "killed")
	store, err := checkpoint.OpenShared(filepath.Join(out, "checkpoints", job.DefaultName))
	if err != nil {
		t.Fatal(err)
	}
	cmd := train(out)
	var text bytes.Buffer
	cmd.Stdout, cmd.Stderr = &text, &text
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var pids []int
wait:
	for {
		select {
		case err := <-exited:
			t.Fatalf("the run ended before two checkpoints were seen: %v\n%s", err, text.String())
		case <-tick.C:
			if name, err := store.Latest(); err == nil && name >= checkpoint.NameForStep(2*every) {
				for w := range 4 {
					if pid := childWorker(cmd.Process.Pid, "worker-"+strconv.Itoa(w)); pid > 0 {
						pids = append(pids, pid)
					}
				}
				cmd.Process.Kill()
				for _, pid := range pids {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				<-exited
				break wait
			}
		}
	}
	if len(pids) != 4 {
		t.Fatalf("found %d of the 4 workers to kill", len(pids))
	}
	newest, err := store.Latest()
	if err != nil || newest == "" {
		t.Fatalf("no committed checkpoint after the kill: %v", err)
	}
	man, err := store.ReadManifest(newest)
	if err != nil {
		t.Fatal(err)
	}
	if man.Step >= epochs*n/batch {
		t.Fatalf("killed after the last step (%s)", newest)
	}
	sum, said := resumeRun(t, ctx, out)
	if !sum.Resumed || sum.Steps != epochs*n/batch {
		t.Fatalf("resumed summary %+v\n%s", sum, said)
	}
	a, err := os.ReadFile(filepath.Join(whole, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("killed at %s (step %d) and resumed: the final model differs from the uninterrupted run's", newest, man.Step)
	}
	t.Logf("killed with %s (step %d) committed; resumed to the uninterrupted run's model, bit for bit", newest, man.Step)
}
