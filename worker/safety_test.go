package worker

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
)

// runStoreDir is the checkpoint store of a single-node run directory.
func runStoreDir(t *testing.T, runDir string) string {
	t.Helper()
	root := filepath.Join(runDir, "checkpoints")
	if _, err := os.Stat(filepath.Join(root, "latest")); err == nil {
		return root // the layout before stores were separated per job
	}
	return filepath.Join(root, "ringtrain")
}

// A run resumed and interrupted before its first step has nothing new to
// commit: it rewrites no checkpoint, leaves the `latest` pointer alone and
// names the checkpoint that holds its position. Also when that is not the
// newest committed one (which failed its checksums and was skipped).
func TestResumeThenInterruptBeforeAStep(t *testing.T) {
	spec := smallSpec(t, "mlp")
	spec.CheckpointEvery, spec.KeepCheckpoints = 10, 10
	for _, tc := range []struct {
		name    string
		corrupt bool // the newest checkpoint fails its checksums
		holds   int  // the step of the checkpoint resumed from
	}{{"latest", false, 25}, {"fallback", true, 20}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := run(t, ctx, spec, dir, false, &stopAfter{n: 25, cancel: cancel}); !errors.Is(err, ErrInterrupted) {
				t.Fatalf("first run: %v", err)
			}
			store := runStoreDir(t, dir)
			if tc.corrupt {
				p := filepath.Join(store, checkpoint.NameForStep(25), checkpoint.ModelFile)
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)-1] ^= 0x10
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			holds := checkpoint.NameForStep(tc.holds)
			mpath := filepath.Join(store, holds, "manifest.json")
			before, err := os.Stat(mpath)
			if err != nil {
				t.Fatal(err)
			}
			pointer, err := os.ReadFile(filepath.Join(store, "latest"))
			if err != nil {
				t.Fatal(err)
			}

			// Ctrl-C right after the run says where it resumes from.
			ctx2, cancel2 := context.WithCancel(context.Background())
			defer cancel2()
			said := &logLines{t: t}
			logf := func(format string, a ...any) {
				said.logf(format, a...)
				if strings.HasPrefix(format, "resuming from") {
					cancel2()
				}
			}
			sum, err := Train(ctx2, Options{Spec: spec, RunDir: dir, Resume: true, Logf: logf})
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("resumed run: %v", err)
			}
			if line := said.find("resuming from "); !strings.HasPrefix(line, "resuming from "+holds+" (") {
				t.Fatalf("resumed from %q, want %s", line, holds)
			}
			if msg := err.Error(); !strings.Contains(msg, "checkpoint "+holds+" is committed") || !strings.Contains(msg, "no step since") {
				t.Errorf("the interrupt says %q; want it to name %s as holding the position, with nothing new committed", msg, holds)
			}
			if sum.Checkpoint != holds || sum.Steps != tc.holds {
				t.Errorf("summary: checkpoint %s at step %d, want %s at %d", sum.Checkpoint, sum.Steps, holds, tc.holds)
			}
			after, err := os.Stat(mpath)
			if err != nil || !os.SameFile(before, after) {
				t.Errorf("%s was written again (%v)", holds, err)
			}
			if now, err := os.ReadFile(filepath.Join(store, "latest")); err != nil || string(now) != string(pointer) {
				t.Errorf("the latest pointer moved from %q to %q (%v)", pointer, now, err)
			}
		})
	}
}

// enospc fails every write as a full disk does.
type enospc struct{}

func (enospc) Write([]byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "shard", Err: syscall.ENOSPC}
}

// A worker that cannot write its shard of a checkpoint (the disk is full)
// skips that checkpoint with a warning, reports the failure in its
// heartbeats and trains on; the next checkpoint commits. The job's final
// checkpoint, which ends the job, is tried again until it is written.
func TestClusterWorkerSkipsAShardItCannotWrite(t *testing.T) {
	spec := clusterSpec(t) // checkpoints at steps 10 (epoch 1) and 20 (the end)
	f, addr := newFake(t, spec, 2, api.Generation{})
	full, final := checkpoint.NameForStep(10), checkpoint.NameForStep(20)
	var failed, finalTries atomic.Int32
	rec := &stepRecord{params: map[string]map[int64][]float32{}}
	runClusterWith(t, f, addr, rec, func(o *ClusterOptions) {
		if o.Name != "w1" {
			return
		}
		o.storeFilter = func(path string, w io.Writer) io.Writer {
			switch {
			case strings.Contains(path, full):
				failed.Add(1)
				return enospc{}
			case strings.Contains(path, final) && finalTries.Add(1) == 1:
				return enospc{}
			}
			return w
		}
	})
	if failed.Load() == 0 {
		t.Fatal("no shard write failed")
	}
	if len(f.sealed) != 1 || f.sealed[0].Name != checkpoint.NameForStep(20) {
		t.Fatalf("sealed %v, want only the final checkpoint", f.sealed)
	}
	for _, name := range []string{"w0", "w1"} {
		if got := len(rec.params[name]); got != 20 {
			t.Errorf("%s took %d steps, want 20", name, got)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.stats["w1"]; st.CheckpointFailures != 2 || !strings.Contains(st.LastCheckpointError, final) || !strings.Contains(st.LastCheckpointError, "no space left on device") {
		t.Errorf("w1's heartbeats report %d failed checkpoint writes, the last %q; want 2, the last of %s for lack of space", st.CheckpointFailures, st.LastCheckpointError, final)
	}
	if st := f.stats["w0"]; st.CheckpointFailures != 0 {
		t.Errorf("w0's heartbeats report %d failed checkpoint writes", st.CheckpointFailures)
	}
}

// hung blocks every write, as a hung NFS server does, until released, and
// then fails it.
type hung struct{ release <-chan struct{} }

func (h hung) Write([]byte) (int, error) {
	<-h.release
	return 0, &os.PathError{Op: "write", Path: "shard", Err: syscall.EIO}
}

// A shard write that hangs (a hung file system) does not hang the worker:
// it is abandoned after FileTimeout and the checkpoint skipped, as when
// the disk is full, and training goes on; the next checkpoint commits.
func TestClusterWorkerAbandonsAShardWriteThatHangs(t *testing.T) {
	spec := clusterSpec(t) // checkpoints at steps 10 (epoch 1) and 20 (the end)
	f, addr := newFake(t, spec, 2, api.Generation{})
	hangs := checkpoint.NameForStep(10)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var blocked atomic.Int32
	rec := &stepRecord{params: map[string]map[int64][]float32{}}
	runClusterWith(t, f, addr, rec, func(o *ClusterOptions) {
		// Well within the ring's timeout (3 s): the other rank waits in
		// the next all-reduce meanwhile.
		o.FileTimeout = 300 * time.Millisecond
		if o.Name != "w1" {
			return
		}
		o.storeFilter = func(path string, w io.Writer) io.Writer {
			if strings.Contains(path, hangs) {
				blocked.Add(1)
				return hung{release}
			}
			return w
		}
	})
	if blocked.Load() == 0 {
		t.Fatal("no shard write hung")
	}
	if len(f.sealed) != 1 || f.sealed[0].Name != checkpoint.NameForStep(20) {
		t.Fatalf("sealed %v, want only the final checkpoint", f.sealed)
	}
	for _, name := range []string{"w0", "w1"} {
		if got := len(rec.params[name]); got != 20 {
			t.Errorf("%s took %d steps, want 20", name, got)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.stats["w1"]; st.CheckpointFailures != 1 || !strings.Contains(st.LastCheckpointError, hangs) || !strings.Contains(st.LastCheckpointError, "timed out after 300ms") {
		t.Errorf("w1's heartbeats report %d failed checkpoint writes, the last %q; want 1, of %s, timed out", st.CheckpointFailures, st.LastCheckpointError, hangs)
	}
}

// withDeadline returns what the operation returns in time, and abandons
// one that blocks.
func TestWithDeadline(t *testing.T) {
	v, err := withDeadline(time.Second, "reading", func() (int, error) { return 7, nil })
	if v != 7 || err != nil {
		t.Errorf("got %v, %v; want 7, nil", v, err)
	}
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	_, err = withDeadline(50*time.Millisecond, "loading checkpoint ckpt-1", func() (int, error) { <-block; return 1, nil })
	if !errors.Is(err, ErrFileTimeout) || !strings.Contains(err.Error(), "loading checkpoint ckpt-1") {
		t.Errorf("error %v, want ErrFileTimeout naming the operation", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %v", d)
	}
}

// A run directory of the layout before checkpoint stores were separated
// per job (checkpoints/ckpt-…, checkpoints/latest) resumes, and the run
// continues there.
func TestResumeARunDirectoryOfTheLayoutBefore(t *testing.T) {
	spec := smallSpec(t, "mlp")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := run(t, ctx, spec, dir, false, &stopAfter{n: 40, cancel: cancel}); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("first run: %v", err)
	}
	// Move the store to where ringtrain kept it before.
	root := filepath.Join(dir, "checkpoints")
	jobDir := filepath.Join(root, "ringtrain")
	entries, err := os.ReadDir(jobDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "job.json" {
			if err := os.Rename(filepath.Join(jobDir, e.Name()), filepath.Join(root, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.RemoveAll(jobDir); err != nil {
		t.Fatal(err)
	}
	said := &logLines{t: t}
	sum, err := Train(context.Background(), Options{Spec: spec, RunDir: dir, Resume: true, Logf: said.logf})
	if err != nil {
		t.Fatal(err)
	}
	if line := said.find("resuming from "); !strings.HasPrefix(line, "resuming from "+checkpoint.NameForStep(40)+" (") {
		t.Errorf("resumed run says %q", line)
	}
	if !sum.Resumed || sum.Steps != 64 || sum.Checkpoint != checkpoint.NameForStep(64) {
		t.Errorf("summary %+v", sum)
	}
	if _, err := os.Stat(filepath.Join(root, checkpoint.NameForStep(64), "manifest.json")); err != nil {
		t.Errorf("the final checkpoint is not in the old store: %v", err)
	}
	if _, err := os.Stat(jobDir); !os.IsNotExist(err) {
		t.Errorf("a store of the new layout was made beside the old one: %v", err)
	}
}

// --resume with a job that differs (another hash) from the run
// directory's is refused before anything runs, naming both hashes; so is
// a new run in a directory that holds one.
func TestResumeRefusesAnotherJob(t *testing.T) {
	spec := smallSpec(t, "mlp")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := run(t, ctx, spec, dir, false, &stopAfter{n: 5, cancel: cancel}); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("first run: %v", err)
	}
	other := spec
	other.Optimizer.LR = 0.5
	_, err := run(t, context.Background(), other, dir, true, nil)
	if err == nil || !strings.Contains(err.Error(), spec.Hash()) || !strings.Contains(err.Error(), other.Hash()) {
		t.Errorf("resuming another job: %v, want an error naming both hashes", err)
	}
	named := spec
	named.Name = "another-name"
	if _, err := run(t, context.Background(), named, dir, false, nil); err == nil || !strings.Contains(err.Error(), "already holds a run") {
		t.Errorf("a new run in a used run directory: %v", err)
	}
	_, err = run(t, context.Background(), named, dir, true, nil)
	if err == nil || !strings.Contains(err.Error(), "nothing to resume") || !strings.Contains(err.Error(), "job ringtrain") {
		t.Errorf("resuming a job the run directory does not hold: %v", err)
	}
}
