// Package worker runs ringtrain's one training engine (engine.go): build
// the model, feed it batches from the input pipeline, reduce its gradients
// over the ring while backward runs, step the optimizer, evaluate,
// checkpoint and resume. Single-node training (`ringtrain train`, Train)
// is a ring of one, whose reduction does nothing; a cluster worker
// (ClusterWorker) runs the same engine in each generation's ring, its
// lifecycle an explicit state machine (lifecycle.go).
package worker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/timeline"
)

// Options configure one training run.
type Options struct {
	Spec job.Spec
	// RunDir receives metrics.jsonl, curves.png, summary.json and the
	// job's checkpoint store, checkpoints/<job name>/ (see openRunStore).
	RunDir string
	// Resume continues from the run directory's last committed checkpoint.
	Resume bool
	// Progress receives the run's progress; nil shows nothing.
	Progress Progress
	// Logf prints one-line notices (data download, resume, warnings).
	Logf func(format string, args ...any)
	// Now is the clock (time.Now when nil); tests may pass their own.
	Now func() time.Time
	// Timeline records the step timeline in RunDir/timeline/ (see
	// TimelineDir and package timeline).
	Timeline bool
}

// TimelineDir is the subdirectory of a run directory that holds its
// workers' timelines, one file per worker (timeline.File).
const TimelineDir = "timeline"

// SampleLogDir is the subdirectory of a cluster run directory that holds
// the workers' sample logs (see ClusterOptions.SampleLog), one file per
// worker named by SampleLogFile.
const SampleLogDir = "samples"

// SampleLogFile is the name of worker name's sample log.
func SampleLogFile(name string) string { return name + ".samples" }

// SoloName is the name of a single-node run's worker in its timeline.
const SoloName = "worker-0"

// openTimeline starts e's timeline in dir under name; failing, it says so
// and training goes on without one. The returned function closes it.
func openTimeline(e *engine, dir, name string, logf func(string, ...any)) func() {
	tl, err := timeline.Open(dir, name, timeline.Options{})
	if err != nil {
		logf("warning: %v; training goes on without a timeline", err)
		return func() {}
	}
	e.tl = tl
	return func() {
		if err := tl.Close(); err != nil {
			logf("warning: the timeline %s stopped early: %v", tl.Path(), err)
		}
		e.tl = nil
	}
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
	DataWaitSeconds        float64 // time the epoch's steps waited for their batches
}

// JobFile is the name of the job file a run directory keeps: the spec the
// run was started with, which --resume continues.
const JobFile = "job.yaml"

// ErrInterrupted is returned (wrapped) when the context ends a run early;
// the run's position is checkpointed first, so --resume continues it.
var ErrInterrupted = errors.New("interrupted")

// logWindow is how many steps one "train" metrics record covers.
const logWindow = 50

// Train runs a training job to completion (or until ctx is done) in a
// ring of one and returns its summary, which is also written to the run
// directory.
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
	store, err := openRunStore(o, spec)
	if err != nil {
		return runlog.Summary{}, err
	}
	e, err := newEngine(ctx, spec, spec.BatchSize, o.Logf)
	if err != nil {
		return runlog.Summary{}, err
	}
	defer e.Close()
	e.now = o.Now
	resumed := false
	var resumedFrom *checkpoint.Checkpoint
	if o.Resume {
		ck, err := store.LoadLatest(func(f string, a ...any) { o.Logf("warning: "+f, a...) })
		if err != nil {
			return runlog.Summary{}, err
		}
		if ck == nil {
			return runlog.Summary{}, fmt.Errorf("worker: nothing to resume in %s: no checkpoint there passes its checksums", o.RunDir)
		}
		if err := e.restore(ck); err != nil {
			return runlog.Summary{}, err
		}
		resumed, resumedFrom = true, ck
		o.Logf("resuming from %s (epoch %d, %d of %d samples done; step %d)", ck.Manifest.Name, e.pos.Epoch+1, e.pos.Consumed, e.train.Len(), e.step)
	}
	if err := writeJobFile(o.RunDir, spec); err != nil {
		return runlog.Summary{}, err
	}
	if o.Timeline {
		defer openTimeline(e, filepath.Join(o.RunDir, TimelineDir), SoloName, o.Logf)()
	}
	rlog, err := runlog.Open(o.RunDir)
	if err != nil {
		return runlog.Summary{}, err
	}
	defer rlog.Close()
	if err := rlog.TruncateAfter(int(e.step)); err != nil {
		return runlog.Summary{}, err
	}
	sum := runlog.Summary{
		Model: spec.Model, Dataset: spec.Dataset, Epochs: spec.Epochs, BatchSize: spec.BatchSize,
		Seed: spec.Seed, Threads: e.threads, Resumed: resumed,
	}
	s := &solo{e: e, o: o, store: store, rlog: rlog, sum: &sum, launch: launch, ckptStep: -1}
	if ck := resumedFrom; ck != nil {
		// The checkpoint resumed from holds the engine's position: until
		// a step is taken there is nothing new to commit.
		s.lastCheckpoint, s.ckptStep = ck.Manifest.Name, e.step
	}
	runErr := e.run(ctx, ring{rank: 0, world: 1}, s.hooks())
	if runErr != nil && ctx.Err() != nil && errors.Is(runErr, ctx.Err()) {
		runErr = s.interrupt(ctx)
	}
	if runErr == nil && s.lastCheckpoint != "" {
		// The final model as one file, as a cluster's coordinator leaves it.
		runErr = store.ExportModel(s.lastCheckpoint, filepath.Join(o.RunDir, checkpoint.ModelFile))
	}
	sum.Steps = int(e.step)
	sum.WallSeconds = o.Now().Sub(launch).Seconds()
	sum.PeakRSSBytes = runlog.PeakRSS()
	sum.Checkpoint = s.lastCheckpoint
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

// solo is what single-node training does around the engine's steps: the
// run directory's records, progress and committed checkpoints.
type solo struct {
	e     *engine
	o     Options
	store *checkpoint.Store
	rlog  *runlog.Log
	sum   *runlog.Summary
	// lastCheckpoint is the committed checkpoint that holds the newest
	// position of this run, and ckptStep its step (-1: none yet).
	lastCheckpoint string
	ckptStep       int64
	launch         time.Time
	trainLoss      float64
	epoch          tally // the epoch in progress
	window         tally // the current metrics window
}

// tally accumulates the running figures of steps.
type tally struct {
	steps             int
	images, correct   int
	lossSum           float64 // sum over images of the per-image loss
	seconds, dataWait float64
	compute, reduce   float64
}

func (t *tally) add(r stepReport) {
	t.steps++
	t.images += r.Images
	t.correct += r.Correct
	t.lossSum += r.Loss * float64(r.Images)
	t.seconds += r.Seconds
	t.dataWait += r.DataWait
	t.compute += r.Compute
	t.reduce += r.Reduce
}

func (s *solo) hooks() hooks {
	e, spe := s.e, s.e.stepsPerEpoch
	return hooks{
		step: func(r stepReport) {
			if s.epoch.images == 0 && s.o.Progress != nil {
				s.o.Progress.EpochStart(r.Epoch, e.spec.Epochs, spe, r.EpochStep-1)
			}
			s.epoch.add(r)
			s.window.add(r)
			if s.window.images >= logWindow*e.spec.BatchSize || r.LastOfEpoch {
				w := s.window
				s.rlog.Add(runlog.Record{
					Kind: "train", Time: s.o.Now().UTC(), Step: int(r.Step), Epoch: r.Epoch,
					Progress: float64(r.Epoch) + float64(r.EpochStep)/float64(spe),
					LR:       r.LR, Loss: w.lossSum / float64(w.images), Accuracy: float64(w.correct) / float64(w.images),
					ImagesPerSecond: float64(w.images) / w.seconds, DataWaitSeconds: w.dataWait,
				})
				// Each record reaches the file at once, for a dashboard
				// or tail -f (an error is kept for Close).
				s.rlog.Flush()
				s.window = tally{}
			}
			if s.o.Progress != nil {
				t := s.epoch
				s.o.Progress.Step(StepStats{
					Epoch: r.Epoch, Step: int(r.Step), EpochStep: r.EpochStep, LR: r.LR,
					Loss: t.lossSum / float64(t.images), Accuracy: float64(t.correct) / float64(t.images),
					ImagesPerSecond: float64(t.images) / t.seconds, DataWaitSeconds: t.dataWait,
				})
			}
			if r.LastOfEpoch {
				s.trainLoss = s.epoch.lossSum / float64(s.epoch.images)
				s.sum.TrainLoss = s.trainLoss
				s.sum.ImagesPerSecond = float64(s.epoch.images) / s.epoch.seconds
				s.epoch = tally{}
			}
		},
		checkpointDue: func(step int64) bool {
			k := int64(e.spec.CheckpointEvery)
			return k > 0 && step%k == 0
		},
		checkpoint: func(_ context.Context, ev *EvalStats) error { return s.checkpoint(ev) },
		evaluated: func(ev EvalStats) {
			s.sum.TestAccuracy, s.sum.TestLoss = ev.Accuracy, ev.Loss
			if ev.Accuracy >= 0.99 && s.sum.SecondsTo99 == 0 {
				s.sum.SecondsTo99 = s.o.Now().Sub(s.launch).Seconds()
			}
			s.rlog.Add(runlog.Record{
				Kind: "eval", Time: s.o.Now().UTC(), Step: int(e.step), Epoch: ev.Epoch, Progress: float64(ev.Epoch + 1),
				Loss: ev.Loss, Accuracy: ev.Accuracy,
			})
			s.rlog.Flush()
			if s.o.Progress != nil {
				s.o.Progress.EpochEnd(ev)
			}
			if err := runlog.WritePlot(s.o.RunDir, e.spec.Model, s.rlog.Records()); err != nil {
				s.o.Logf("warning: %v", err)
			}
		},
	}
}

// checkpoint writes and commits the state at the engine's step, then
// applies retention. A step already checkpointed is not written again. A
// checkpoint the store refuses because one of its name exists that it
// keeps (committed, but failing its checksums: the run resumed from an
// older one) is skipped with a warning, unless it is the run's last.
func (s *solo) checkpoint(ev *EvalStats) error {
	err := s.save(ev)
	if errors.Is(err, checkpoint.ErrExists) && s.e.pos.Epoch < s.e.spec.Epochs {
		s.o.Logf("warning: the checkpoint of step %d is skipped: %v", s.e.step, err)
		return nil
	}
	return err
}

// save commits the state at the engine's step, unless the checkpoint that
// holds it is committed already.
func (s *solo) save(ev *EvalStats) error {
	if s.e.step == s.ckptStep {
		return nil
	}
	m, err := s.store.Save(s.e.manifest(ev, s.trainLoss, 1), s.e.state(nil).Parts(0, 1))
	if err != nil {
		return err
	}
	s.lastCheckpoint, s.ckptStep = m.Name, s.e.step
	return s.store.Retain(s.e.spec.KeepCheckpoints)
}

// interrupt checkpoints the position reached so --resume continues from
// it, and says which checkpoint holds it. A run that took no step since
// its checkpoint (resumed and stopped at once, or stopped right after a
// checkpoint) commits nothing new: a committed checkpoint is never
// written again.
func (s *solo) interrupt(ctx context.Context) error {
	cause := context.Cause(ctx)
	if s.e.step == s.ckptStep {
		return fmt.Errorf("worker: %w at step %d (%v); checkpoint %s is committed and holds this position (no step since it: nothing new is written)",
			ErrInterrupted, s.e.step, cause, s.lastCheckpoint)
	}
	if err := s.save(nil); err != nil {
		from := "the start"
		if s.lastCheckpoint != "" {
			from = s.lastCheckpoint
		}
		return fmt.Errorf("worker: %w at step %d (and its checkpoint was not written: %v; --resume continues from %s)", ErrInterrupted, s.e.step, err, from)
	}
	return fmt.Errorf("worker: %w at step %d (%v); checkpoint %s is committed", ErrInterrupted, s.e.step, cause, s.lastCheckpoint)
}

// openRunStore opens the checkpoint store of a single-node run: the job's
// store under the run directory's checkpoints/ (checkpoint.OpenJob), after
// checking what the directory holds. A run directory holding a committed
// checkpoint (of any job) is refused without o.Resume; with it, the job
// must have committed checkpoints there. A run directory of the layout
// before stores were separated per job (checkpoints/ckpt-…) continues in
// place.
func openRunStore(o Options, spec job.Spec) (*checkpoint.Store, error) {
	root := filepath.Join(o.RunDir, "checkpoints")
	name, hash := spec.JobName(), spec.Hash()
	found, err := checkpoint.FindStores(root)
	if err != nil {
		return nil, err
	}
	dir, _, err := checkpoint.JobDir(root, name, hash)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if err := checkpoint.CheckJob(dir, name, hash); err != nil {
		return nil, err
	}
	latest := ""
	var others []string
	for _, f := range found {
		fs, err := checkpoint.OpenShared(f.Dir) // it exists: this creates nothing
		if err != nil {
			return nil, err
		}
		l, err := fs.Latest()
		if err != nil {
			return nil, err
		}
		switch {
		case l == "":
		case !o.Resume:
			return nil, fmt.Errorf("worker: %s already holds a run (checkpoint %s); pass --resume to continue it or choose another --out", o.RunDir, l)
		case f.Dir == dir:
			latest = l
		case f.Job == "":
			others = append(others, fmt.Sprintf("%s holds checkpoints of job hash %s, this job's is %s", f.Dir, f.JobHash, hash))
		default:
			others = append(others, fmt.Sprintf("it holds checkpoints of job %s", f.Job))
		}
	}
	if o.Resume && latest == "" {
		msg := fmt.Sprintf("worker: nothing to resume in %s: it holds no committed checkpoint of job %s", o.RunDir, name)
		if len(others) > 0 {
			msg += " (" + strings.Join(others, "; ") + ")"
		}
		return nil, errors.New(msg + " (run without --resume to start a new run there)")
	}
	store, err := checkpoint.OpenJob(root, name, hash)
	if err != nil {
		return nil, err
	}
	if store.Legacy() {
		o.Logf("%s has the layout before checkpoint stores were separated per job: the run continues there", store.Dir())
	}
	return store, nil
}

// writeJobFile records the run's job spec in its directory.
func writeJobFile(dir string, spec job.Spec) error {
	b, err := spec.YAML()
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return runlog.WriteFile(dir, JobFile, b)
}
