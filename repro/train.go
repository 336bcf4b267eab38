package repro

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/worker"
)

// TrainJob runs spec as a training job in env.Dir/runs/name, as `ringtrain
// train` would: in this process when env.Workers is 1, else on a local
// cluster of env.Workers worker processes. env's seed, threads, workers
// and data directory override spec's. It is resumable: a run that
// finished with the same job file is not run again (its summary is
// returned), and one that was stopped continues from its last checkpoint.
// share is the part of the experiment this job is, for progress.
func TrainJob(ctx context.Context, env *Env, name string, spec job.Spec, done, share float64) (runlog.Summary, error) {
	if env.Seed != 0 {
		spec.Seed = env.Seed
	}
	spec.Workers = max(env.Workers, 1)
	if spec.Workers > 1 {
		spec.Threads = 0 // the local cluster gives each worker its share of the cores
	} else if env.Threads > 0 {
		spec.Threads = env.Threads
	}
	if env.DataDir != "" {
		spec.DataDir = env.DataDir
	}
	if spec.Name == "" {
		spec.Name = name
	}
	if err := spec.Validate(); err != nil {
		return runlog.Summary{}, fmt.Errorf("%s: %w", name, err)
	}
	dir := filepath.Join(env.Dir, "runs", name)
	want, err := spec.YAML()
	if err != nil {
		return runlog.Summary{}, err
	}
	resume := false
	if have, err := os.ReadFile(filepath.Join(dir, worker.JobFile)); err == nil {
		if !bytes.Equal(have, want) {
			env.Logf("%s: the job changed; starting %s afresh", name, dir)
			if err := os.RemoveAll(dir); err != nil {
				return runlog.Summary{}, err
			}
		} else if sum, err := runlog.ReadSummary(dir); err == nil && !sum.Interrupted && sum.Steps > 0 {
			env.Logf("%s: finished earlier in %s (test accuracy %.2f%%)", name, dir, 100*sum.TestAccuracy)
			return sum, nil
		} else {
			resume = true
		}
	}
	p := &jobProgress{env: env, done: done, share: share, epochs: spec.Epochs}
	run := func(resume bool) (runlog.Summary, error) {
		if spec.Workers > 1 {
			return localcluster.Run(ctx, localcluster.Options{
				Spec: spec, Dir: dir, Resume: resume, MaxRestarts: 3, Executable: env.Executable, Progress: p, Logf: env.Logf,
			})
		}
		return worker.Train(ctx, worker.Options{Spec: spec, RunDir: dir, Resume: resume, Progress: p, Logf: env.Logf})
	}
	sum, err := run(resume)
	if resume && err != nil && !errors.Is(err, worker.ErrInterrupted) && ctx.Err() == nil {
		// Nothing committed to resume from: the run stopped before its
		// first checkpoint. Start it again.
		env.Logf("%s: cannot resume (%v); starting afresh", name, err)
		if err := os.RemoveAll(dir); err != nil {
			return runlog.Summary{}, err
		}
		sum, err = run(false)
	}
	if err != nil {
		return sum, fmt.Errorf("%s: %w", name, err)
	}
	return sum, nil
}

// jobProgress maps a job's epochs and steps onto the experiment's share.
type jobProgress struct {
	env              *Env
	done, share      float64
	epoch, epochs    int
	steps, stepsDone int
}

func (p *jobProgress) EpochStart(epoch, epochs, steps, done int) {
	p.epoch, p.epochs, p.steps = epoch, epochs, steps
	p.report(done)
}

func (p *jobProgress) Step(s worker.StepStats) { p.report(s.EpochStep) }

func (p *jobProgress) EpochEnd(worker.EvalStats) {}

func (p *jobProgress) report(step int) {
	if p.epochs <= 0 || p.steps <= 0 {
		return
	}
	f := (float64(p.epoch) + float64(step)/float64(p.steps)) / float64(p.epochs)
	p.env.progress(p.done + p.share*f)
}
