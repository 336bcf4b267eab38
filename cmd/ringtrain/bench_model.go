package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/worker"
)

func newBenchModelCmd() *cobra.Command {
	var (
		spec           = job.Default()
		classes, ch    int
		steps, repeats int
		warmup         int
		asJSON         bool
		layers         bool
		peak           float64
	)
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Measure a model's training steps (images/s) on a fixed random batch in memory",
		Long: `Times whole training steps (forward, cross-entropy, backward, the
gradient summed over the cores, the optimizer step) of a zoo model on one
batch of random images held in memory: no data set is read, so the figure
is the compute alone, as bench/torchside compares it with PyTorch's.`,
		Example: `  ringtrain bench model --model resnet18 --batch-size 32 --steps 3 --repeat 5
  ringtrain bench model --model resnet50 --image-size 128 --threads 2 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := models.Config{Classes: classes, Input: []int{ch, spec.ImageSize, spec.ImageSize}}
			res, err := worker.BenchModel(cmd.Context(), spec, cfg, worker.BenchOptions{Steps: steps, Repeats: repeats, Warmup: warmup, Layers: layers,
				Logf: func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), f+"\n", a...) }})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.Marshal(res)
				fmt.Fprintln(out, string(b))
				return nil
			}
			fmt.Fprintf(out, "%s, batch %d, %d threads, %s: %.2f images/s median (min %.2f, max %.2f over %d × %d steps), %.1f ms/step\n",
				res.Model, res.BatchSize, res.Threads, res.Precision, res.Median, res.Min, res.Max, res.Repeats, res.Steps, res.StepMillis)
			if layers {
				printLayers(out, res, peak)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Model, "model", spec.Model, "model zoo name")
	f.IntVar(&spec.BatchSize, "batch-size", spec.BatchSize, "images per step")
	f.IntVar(&spec.ImageSize, "image-size", 0, "image side of an ImageNet or CIFAR net (0: its default)")
	f.IntVar(&classes, "classes", 0, "classes of an ImageNet or CIFAR net (0: its default)")
	f.IntVar(&ch, "channels", 0, "input channels of an ImageNet or CIFAR net (0: its default)")
	f.IntVar(&spec.Threads, "threads", 0, "compute threads (0: all cores)")
	f.IntVar(&spec.Accumulate, "accumulate", 0, "micro-batches per step (gradient accumulation)")
	f.StringVar(&spec.Precision, "precision", "", "products in fp32 (default) or bf16 (where the CPU has AVX512_BF16)")
	f.StringVar(&spec.Optimizer.Name, "optimizer", "sgd", "optimizer")
	f.Float64Var(&spec.Optimizer.LR, "lr", 0.01, "learning rate")
	f.Float64Var(&spec.Optimizer.Momentum, "momentum", 0.9, "momentum")
	f.IntVar(&steps, "steps", 5, "timed steps per repeat")
	f.IntVar(&repeats, "repeat", 5, "timed repeats (the median is reported)")
	f.IntVar(&warmup, "warmup", 1, "untimed steps first")
	f.BoolVar(&asJSON, "json", false, "print one JSON line")
	f.BoolVar(&layers, "layers", false, "also time each op of the first core's tape and print where a step's time goes")
	f.Float64Var(&peak, "peak", 0, "with --layers: a core's fp32 peak in GFLOP/s, to print each op's share of it (FMA units × lanes × 2 × GHz: about 217 on Zen 5 at 3.4 GHz; about 115 on Zen 4, whose 512-bit FMAs run on 256-bit units)")
	return cmd
}

// printLayers prints where a step's time goes, by op and shape, on one core.
func printLayers(w io.Writer, res worker.BenchResult, peak float64) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tshape\tcount\tforward ms\tbackward ms\tshare\tGFLOP/s\t% of peak\t")
	var total, flop float64
	for _, l := range res.Layers {
		total += l.FwdMs + l.BwdMs
		flop += l.GFLOP
	}
	for _, l := range res.Layers {
		pct := "-"
		if peak > 0 && l.GFLOP > 0 {
			pct = fmt.Sprintf("%.0f%%", 100*l.Rate/peak)
		}
		rate := "-"
		if l.GFLOP > 0 {
			rate = fmt.Sprintf("%.1f", l.Rate)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f%%\t%s\t%s\t\n", l.Op, l.Detail, l.Count, l.FwdMs, l.BwdMs, 100*(l.FwdMs+l.BwdMs)/total, rate, pct)
	}
	tw.Flush()
	per := res.StepMillis
	if res.Threads > 1 {
		per = res.StepMillis // each core runs its own slice for the whole step
	}
	fmt.Fprintf(w, "ops on one core: %.0f ms a step of %.0f ms; GEMM arithmetic %.1f GFLOP a step (%.2f GFLOP an image), %.1f GFLOP/s over the ops",
		total, per, flop, res.TrainFLOP/1e9, flop/(total/1e3))
	if peak > 0 {
		fmt.Fprintf(w, ", %.0f%% of a core's peak over the whole step", 100*flop/(per/1e3)/peak)
	}
	fmt.Fprintln(w)
}
