package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ringtrain/ringtrain/dashboard"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/worker"
)

func newTrainCmd() *cobra.Command {
	var (
		file        string
		out         string
		resume      bool
		maxRestarts int
		ui          string
		record      bool
		sampleLogs  bool
		spec        = job.Default()
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a model on this machine",
		Long: `Train a model on this machine (single-node mode).

The job is described by flags, or by a YAML job file (-f job.yaml) that the
flags override; the same job file runs unchanged on a cluster. The run
directory (--out) receives metrics.jsonl, curves.png, summary.json,
checkpoints/<job name>/ (checkpoints/ringtrain/ for a job without a name)
and timeline/, each worker's step timeline ('ringtrain trace --dir' turns
it into a trace for Perfetto). Ctrl-C stops the run after checkpointing
where it stood; --resume continues it (also a run directory of earlier
versions, with its checkpoints directly in checkpoints/).

--ui ADDR serves a live, read-only dashboard of the run (curves, the ring
and its generations, checkpoints, the job file) while it trains; with
--workers it is the local cluster's coordinator's. A port alone (8080 or
:8080) listens on the loopback interface only (127.0.0.1): only this
machine sees it. Name a host to open it to others, e.g. --ui 0.0.0.0:8080.`,
		Example: `  ringtrain train --model lenet5 --dataset mnist --epochs 3 --out runs/lenet5
  ringtrain train -f job.yaml --epochs 12
  ringtrain train --out runs/lenet5 --resume
  ringtrain train --workers 3 --ui 127.0.0.1:8080   # then open http://127.0.0.1:8080/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := spec
			if resume && file == "" {
				if out == "" {
					out = filepath.Join("runs", spec.Model)
				}
				// Continue the job the run directory recorded, unless told otherwise.
				if saved := filepath.Join(out, worker.JobFile); fileExists(saved) {
					file = saved
				}
			}
			if file != "" {
				fromFile, err := job.Load(file)
				if err != nil {
					return err
				}
				s = overrideChanged(cmd, fromFile, spec)
			}
			if out == "" {
				out = filepath.Join("runs", s.Model)
			}
			stdout := cmd.OutOrStdout()
			progress := newProgress(stdout, s.Evaluated())
			logf := func(f string, a ...any) { progress.notice(fmt.Sprintf(f, a...)) }
			bind := ""
			if ui != "" {
				var err error
				if bind, err = dashboard.BindAddr(ui); err != nil {
					return fmt.Errorf("--ui: %w", err)
				}
			}
			var sum runlog.Summary
			var err error
			if s.Workers > 1 {
				if maxRestarts < 0 {
					return fmt.Errorf("--max-restarts must not be negative, got %d", maxRestarts)
				}
				sum, err = localcluster.Run(cmd.Context(), localcluster.Options{
					Spec: s, Dir: out, Resume: resume, MaxRestarts: maxRestarts, Progress: progress, Logf: logf, UI: bind, Timeline: record, SampleLogs: sampleLogs,
				})
			} else {
				var p worker.Progress = progress
				var solo *soloUI
				if bind != "" {
					solo = newSoloUI(progress, s, out)
					ctx, stopUI := context.WithCancel(cmd.Context())
					defer stopUI()
					addr, err := dashboard.Serve(ctx, bind, dashboard.Handler(solo))
					if err != nil {
						return fmt.Errorf("--ui: %w", err)
					}
					logf("dashboard: http://%s/", addr)
					p = solo
				}
				sum, err = worker.Train(cmd.Context(), worker.Options{Spec: s, RunDir: out, Resume: resume, Progress: p, Logf: logf, Timeline: record})
				if solo != nil {
					solo.finish(err)
				}
			}
			progress.finish()
			if err != nil {
				if errors.Is(err, worker.ErrInterrupted) {
					fmt.Fprintf(stdout, "stopped; continue with: ringtrain train --out %s --resume\n", out)
				}
				return err
			}
			fmt.Fprintf(stdout, "done: %[1]s accuracy %.2[2]f%%, %[1]s loss %.4[3]f, %.0[4]f images/s, %.1[5]f s; run in %[6]s\n",
				s.Evaluated(), 100*sum.TestAccuracy, sum.TestLoss, sum.ImagesPerSecond, sum.WallSeconds, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "job file (YAML); flags given as well override it")
	f.StringVar(&out, "out", "", "run directory (default runs/<model>)")
	f.BoolVar(&resume, "resume", false, "continue from the run directory's last committed checkpoint")
	f.StringVar(&spec.Model, "model", spec.Model, "model zoo name (see 'ringtrain models')")
	f.StringVar(&spec.Dataset, "dataset", spec.Dataset, "data set name")
	f.StringVar(&spec.DataDir, "data-dir", "", "where the data set's files are (default: the ringtrain cache)")
	f.IntVar(&spec.Epochs, "epochs", spec.Epochs, "number of epochs")
	f.IntVar(&spec.BatchSize, "batch-size", spec.BatchSize, "images per step")
	f.Uint64Var(&spec.Seed, "seed", spec.Seed, "random seed (initialization and data order)")
	f.StringVar(&spec.Optimizer.Name, "optimizer", spec.Optimizer.Name, "sgd, adam, adamw or rmsprop")
	f.Float64Var(&spec.Optimizer.LR, "lr", spec.Optimizer.LR, "learning rate")
	f.Float64Var(&spec.Optimizer.Momentum, "momentum", spec.Optimizer.Momentum, "momentum (sgd, rmsprop)")
	f.BoolVar(&spec.Optimizer.Nesterov, "nesterov", false, "Nesterov momentum (sgd)")
	f.Float64Var(&spec.Optimizer.WeightDecay, "weight-decay", 0, "weight decay")
	f.StringVar(&spec.Schedule.Name, "schedule", spec.Schedule.Name, "learning-rate schedule: constant, step or cosine")
	f.IntVar(&spec.Schedule.WarmupSteps, "warmup-steps", 0, "linear learning-rate warm-up steps")
	f.IntVar(&spec.Threads, "threads", 0, "compute threads (0: all cores; with --workers, per worker: cores / workers)")
	f.IntVar(&spec.Workers, "workers", spec.Workers, "data-parallel workers: above 1, a local cluster (embedded etcd, a coordinator, worker processes)")
	f.StringVar(&ui, "ui", "", "serve the live dashboard at this address, e.g. 127.0.0.1:8080 (a port alone binds loopback only; name a host such as 0.0.0.0:8080 to open it to others; default: none)")
	f.BoolVar(&sampleLogs, "sample-log", false, "with --workers: each worker logs the sample indices of every step it takes in the run directory's samples/ (for checking the data order)")
	f.BoolVar(&record, "timeline", true, "record each worker's step timeline in the run directory's timeline/ (see 'ringtrain trace')")
	f.IntVar(&maxRestarts, "max-restarts", 3, "with --workers: times a worker that dies while the job runs is started again")
	f.StringVar(&spec.Codec, "codec", "", "gradient codec between workers: fp32 (default), bf16 or fp16 (optionally +zstd or +s2), or powersgd-rN (rank N, e.g. powersgd-r4)")
	f.IntVar(&spec.CheckpointEvery, "checkpoint-every", 0, "steps between checkpoints (0: every epoch)")
	f.IntVar(&spec.KeepCheckpoints, "keep-checkpoints", spec.KeepCheckpoints, "committed checkpoints to keep")
	f.IntVar(&spec.Validation, "validation", 0, "hold out the last N training samples and evaluate on them instead of the test set (choosing a recipe)")
	f.IntVar(&spec.TrainLimit, "train-limit", 0, "use only the first N training samples (0: all)")
	f.IntVar(&spec.TestLimit, "test-limit", 0, "use only the first N test samples (0: all)")
	f.IntVar(&spec.Accumulate, "accumulate", 0, "compute each worker's share of a step in this many micro-batches, their gradients summed (a larger batch than memory holds at once)")
	f.IntVar(&spec.ImageSize, "image-size", 0, "side of the images an ImageNet or CIFAR net is built for (0: the model's default)")
	f.StringVar(&spec.Precision, "precision", "", "products of convolutions and matrix multiplications in fp32 (default) or bf16 (where the CPU has AVX512_BF16; elsewhere fp32, said at start)")
	f.Float64Var(&spec.LabelSmoothing, "label-smoothing", 0, "label smoothing of the training loss (e.g. 0.1)")
	f.BoolVar(&spec.Distort, "distort", false, "distort the training digits with random affine maps, anew each epoch (LeCun et al. 1998)")
	f.StringVar(&spec.Loss, "loss", "", "training loss: cross_entropy (default) or mse (±1 targets, for convnet1989)")
	f.StringVar(&spec.InitFrom, "init-from", "", "start from the weights of this safetensors file (a PyTorch state_dict, a checkpoint's or an export's model file); a head for another class count is started afresh")
	return cmd
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// overrideChanged returns the job file's spec with the fields whose flags
// were given on the command line taken from the flags.
func overrideChanged(cmd *cobra.Command, file, flags job.Spec) job.Spec {
	set := func(name string, apply func()) {
		if cmd.Flags().Changed(name) {
			apply()
		}
	}
	set("model", func() { file.Model = flags.Model })
	set("dataset", func() { file.Dataset = flags.Dataset })
	set("data-dir", func() { file.DataDir = flags.DataDir })
	set("epochs", func() { file.Epochs = flags.Epochs })
	set("batch-size", func() { file.BatchSize = flags.BatchSize })
	set("seed", func() { file.Seed = flags.Seed })
	set("optimizer", func() { file.Optimizer.Name = flags.Optimizer.Name })
	set("lr", func() { file.Optimizer.LR = flags.Optimizer.LR })
	set("momentum", func() { file.Optimizer.Momentum = flags.Optimizer.Momentum })
	set("nesterov", func() { file.Optimizer.Nesterov = flags.Optimizer.Nesterov })
	set("weight-decay", func() { file.Optimizer.WeightDecay = flags.Optimizer.WeightDecay })
	set("schedule", func() { file.Schedule.Name = flags.Schedule.Name })
	set("warmup-steps", func() { file.Schedule.WarmupSteps = flags.Schedule.WarmupSteps })
	set("threads", func() { file.Threads = flags.Threads })
	set("workers", func() { file.Workers = flags.Workers })
	set("codec", func() { file.Codec = flags.Codec })
	set("checkpoint-every", func() { file.CheckpointEvery = flags.CheckpointEvery })
	set("keep-checkpoints", func() { file.KeepCheckpoints = flags.KeepCheckpoints })
	set("validation", func() { file.Validation = flags.Validation })
	set("train-limit", func() { file.TrainLimit = flags.TrainLimit })
	set("test-limit", func() { file.TestLimit = flags.TestLimit })
	set("image-size", func() { file.ImageSize = flags.ImageSize })
	set("accumulate", func() { file.Accumulate = flags.Accumulate })
	set("label-smoothing", func() { file.LabelSmoothing = flags.LabelSmoothing })
	set("loss", func() { file.Loss = flags.Loss })
	set("distort", func() { file.Distort = flags.Distort })
	set("precision", func() { file.Precision = flags.Precision })
	set("init-from", func() { file.InitFrom = flags.InitFrom })
	return file
}

// progress shows a run: a progress bar on a terminal, plain log lines
// otherwise (a pipe, a file, a container log).
type progress struct {
	w        io.Writer
	tty      bool
	bar      *progressbar.ProgressBar
	steps    int
	lastLine time.Time
	epoch    int
	epochs   int
	// evaluated names the split evaluated each epoch ("test", "validation").
	evaluated string
}

func newProgress(w io.Writer, evaluated string) *progress {
	p := &progress{w: w, evaluated: evaluated}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *progress) EpochStart(epoch, epochs, steps, done int) {
	p.epoch, p.epochs, p.steps = epoch, epochs, steps
	if !p.tty {
		fmt.Fprintf(p.w, "epoch %d/%d: %d steps\n", epoch+1, epochs, steps)
		p.lastLine = time.Now()
		return
	}
	p.bar = progressbar.NewOptions(steps,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(fmt.Sprintf("epoch %d/%d", epoch+1, epochs)),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionSetRenderBlankState(true),
	)
	p.bar.Set(done)
}

func (p *progress) Step(s worker.StepStats) {
	desc := fmt.Sprintf("epoch %d/%d loss %.4f acc %.2f%% %6.0f img/s", s.Epoch+1, p.epochs, s.Loss, 100*s.Accuracy, s.ImagesPerSecond)
	if p.tty {
		p.bar.Describe(desc)
		p.bar.Set(s.EpochStep)
		return
	}
	if time.Since(p.lastLine) >= 5*time.Second || s.EpochStep == p.steps {
		fmt.Fprintf(p.w, "%s step %d/%d lr %.4g\n", desc, s.EpochStep, p.steps, s.LR)
		p.lastLine = time.Now()
	}
}

func (p *progress) EpochEnd(e worker.EvalStats) {
	p.finish()
	took := "" // a cluster's evaluation is spread over its workers, untimed
	if e.Seconds > 0 {
		took = fmt.Sprintf(" (%.1f s)", e.Seconds)
	}
	fmt.Fprintf(p.w, "epoch %d/%d: %[3]s accuracy %.2[4]f%%, %[3]s loss %.4[5]f%[6]s\n", e.Epoch+1, p.epochs, p.evaluated, 100*e.Accuracy, e.Loss, took)
}

func (p *progress) notice(msg string) {
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintln(p.w, msg)
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}
