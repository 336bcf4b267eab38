// Package worker runs ringtrain's training loop: build the model, feed it
// batches from the sampler, step the optimizer, evaluate, checkpoint and
// resume. Single-node training (`ringtrain train`) runs this loop alone; a
// cluster worker runs the same loop with the all-reduce between backward
// and the optimizer step.
package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// Options configure one training run.
type Options struct {
	Spec job.Spec
	// RunDir receives metrics.jsonl, curves.png, summary.json and the
	// checkpoints/ store.
	RunDir string
	// Resume continues from the run directory's last committed checkpoint.
	Resume bool
	// Progress receives the run's progress; nil shows nothing.
	Progress Progress
	// Logf prints one-line notices (data download, resume, warnings).
	Logf func(format string, args ...any)
	// Now is the clock (time.Now when nil); tests may pass their own.
	Now func() time.Time
	// TrainLimit and TestLimit, when positive, use only the first that
	// many samples of each split (quick trials and tests).
	TrainLimit, TestLimit int
}

// Progress is told what the loop is doing, for a progress bar or log lines.
type Progress interface {
	// EpochStart is called at the start (or resumption) of an epoch with
	// the number of steps it has and how many of them are already done.
	EpochStart(epoch, epochs, steps, done int)
	// Step reports the running figures of the epoch after a step.
	Step(s StepStats)
	// EpochEnd reports the test-set evaluation of an epoch.
	EpochEnd(e EvalStats)
}

// StepStats are the running figures of the epoch in progress.
type StepStats struct {
	Epoch, Step, EpochStep int
	LR                     float64
	Loss, Accuracy         float64 // means over the epoch so far
	ImagesPerSecond        float64 // training throughput over the epoch so far
}

// EvalStats are the figures of one evaluation on the test set.
type EvalStats struct {
	Epoch          int
	Loss, Accuracy float64
	Seconds        float64
}

// JobFile is the name of the job file a run directory keeps: the spec the
// run was started with, which --resume continues.
const JobFile = "job.yaml"

// ErrInterrupted is returned (wrapped) when the context ends a run early;
// the run's position is checkpointed first, so --resume continues it.
var ErrInterrupted = errors.New("interrupted")

// logWindow is how many steps one "train" metrics record covers.
const logWindow = 50

// Train runs a training job to completion (or until ctx is done) and
// returns its summary, which is also written to the run directory.
func Train(ctx context.Context, o Options) (runlog.Summary, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	launch := o.Now()
	spec := o.Spec
	if err := CheckJob(spec); err != nil {
		return runlog.Summary{}, err
	}
	su, err := newSetup(ctx, spec, o.Logf, o.TrainLimit, o.TestLimit)
	if err != nil {
		return runlog.Summary{}, err
	}
	defer su.Close()
	model, train, opt := su.model, su.train, su.opt
	stepsPerEpoch := (train.N + spec.BatchSize - 1) / spec.BatchSize
	sched := newSchedule(spec, stepsPerEpoch)

	store, err := checkpoint.Open(filepath.Join(o.RunDir, "checkpoints"))
	if err != nil {
		return runlog.Summary{}, err
	}
	sampler := dataset.NewSampler(train.N, spec.Seed, true)
	step := 0
	resumed := false
	if o.Resume {
		ck, err := store.LoadLatest(func(f string, a ...any) { o.Logf("warning: "+f, a...) })
		if err != nil {
			return runlog.Summary{}, err
		}
		if ck == nil {
			o.Logf("no checkpoint in %s: starting from the beginning", store.Dir())
		} else {
			if sampler, err = restore(ck, spec, model, opt, train.N); err != nil {
				return runlog.Summary{}, err
			}
			step = ck.Manifest.Step
			resumed = true
			o.Logf("resuming from %s (epoch %d, step %d)", ck.Manifest.Name, ck.Manifest.Epoch+1, step)
		}
	} else if latest, err := store.Latest(); err != nil || latest != "" {
		if err != nil {
			return runlog.Summary{}, err
		}
		return runlog.Summary{}, fmt.Errorf("worker: %s already holds a run (checkpoint %s); pass --resume to continue it or choose another --out", o.RunDir, latest)
	}
	if err := writeJobFile(o.RunDir, spec); err != nil {
		return runlog.Summary{}, err
	}
	rlog, err := runlog.Open(o.RunDir)
	if err != nil {
		return runlog.Summary{}, err
	}
	defer rlog.Close()
	if err := rlog.TruncateAfter(step); err != nil {
		return runlog.Summary{}, err
	}

	l := &loop{
		spec: spec, runDir: o.RunDir, model: model, opt: opt, sched: sched, store: store, rlog: rlog,
		train: train, test: su.test, in: su.in, sampler: sampler, step: step,
		compute: su.compute, evalTape: tensorcore.NewTape(su.pool),
		progress: o.Progress, now: o.Now, stepsPerEpoch: stepsPerEpoch,
	}
	sum := runlog.Summary{
		Model: spec.Model, Dataset: spec.Dataset, Epochs: spec.Epochs, BatchSize: spec.BatchSize,
		Seed: spec.Seed, Threads: su.threads, Resumed: resumed,
	}
	runErr := l.run(ctx, launch, &sum)
	sum.Steps = l.step
	sum.WallSeconds = o.Now().Sub(launch).Seconds()
	sum.PeakRSSBytes = runlog.PeakRSS()
	sum.Checkpoint = l.lastCheckpoint
	if errors.Is(runErr, ErrInterrupted) {
		sum.Interrupted = true
	}
	if err := runlog.WriteSummary(o.RunDir, sum); err != nil && runErr == nil {
		runErr = err
	}
	if err := rlog.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return sum, runErr
}

func loadData(ctx context.Context, spec job.Spec, logf func(string, ...any)) (train, test *dataset.MNIST, err error) {
	if spec.Dataset != "mnist" {
		return nil, nil, fmt.Errorf("worker: unknown dataset %q (known: mnist)", spec.Dataset)
	}
	dir := spec.DataDir
	if dir == "" {
		dir = filepath.Join(dataset.DefaultDataDir(), "mnist")
	}
	if err := dataset.EnsureMNIST(ctx, dir, logf); err != nil {
		return nil, nil, err
	}
	if train, err = dataset.LoadMNIST(dir, "train"); err != nil {
		return nil, nil, err
	}
	if test, err = dataset.LoadMNIST(dir, "test"); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// writeJobFile records the run's job spec in its directory.
func writeJobFile(dir string, spec job.Spec) error {
	b, err := spec.YAML()
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return runlog.WriteFile(dir, JobFile, b)
}

// head is d limited to its first n samples (all of them when n <= 0).
func head(d *dataset.MNIST, n int) *dataset.MNIST {
	if n <= 0 || n >= d.N {
		return d
	}
	c := *d
	c.N = n
	c.Pixels = d.Pixels[:n*d.Rows*d.Cols]
	c.Labels = d.Labels[:n]
	return &c
}

func newOptimizer(o job.Optimizer, a *models.Arena) (models.Optimizer, error) {
	switch strings.ToLower(o.Name) {
	case "sgd", "":
		return models.NewSGD(a.Data, a.Grad, models.SGDConfig{Momentum: float32(o.Momentum), Nesterov: o.Nesterov, WeightDecay: float32(o.WeightDecay)})
	case "adam", "adamw":
		cfg := models.DefaultAdam()
		if strings.EqualFold(o.Name, "adamw") {
			cfg = models.DefaultAdamW()
		}
		if o.Beta1 != 0 {
			cfg.Beta1 = float32(o.Beta1)
		}
		if o.Beta2 != 0 {
			cfg.Beta2 = float32(o.Beta2)
		}
		if o.Eps != 0 {
			cfg.Eps = float32(o.Eps)
		}
		if o.WeightDecay != 0 {
			cfg.WeightDecay = float32(o.WeightDecay)
		}
		return models.NewAdam(a.Data, a.Grad, cfg)
	case "rmsprop":
		cfg := models.DefaultRMSProp()
		cfg.Momentum = float32(o.Momentum)
		cfg.WeightDecay = float32(o.WeightDecay)
		if o.Eps != 0 {
			cfg.Eps = float32(o.Eps)
		}
		return models.NewRMSProp(a.Data, a.Grad, cfg)
	}
	return nil, fmt.Errorf("worker: unknown optimizer %q (known: sgd, adam, adamw, rmsprop)", o.Name)
}

func newSchedule(spec job.Spec, stepsPerEpoch int) models.Schedule {
	base := spec.Optimizer.LR
	total := spec.Epochs * stepsPerEpoch
	var s models.Schedule
	switch spec.Schedule.Name {
	case "step":
		s = models.StepDecay{Base: base, Every: spec.Schedule.StepEpochs * stepsPerEpoch, Gamma: spec.Schedule.Gamma}
	case "cosine":
		s = models.Cosine{Base: base, Min: spec.Schedule.MinLR, Steps: total - spec.Schedule.WarmupSteps}
	default:
		s = models.ConstantLR{Base: base}
	}
	if spec.Schedule.WarmupSteps > 0 {
		s = models.Warmup{Steps: spec.Schedule.WarmupSteps, Start: 1.0 / 3, Then: s}
	}
	return s
}

// isFinite reports whether a loss is a number a run can go on from.
func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
