package main

import (
	"encoding/json"
	"fmt"

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
			res, err := worker.BenchModel(cmd.Context(), spec, cfg, worker.BenchOptions{Steps: steps, Repeats: repeats, Warmup: warmup})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.Marshal(res)
				fmt.Fprintln(out, string(b))
				return nil
			}
			fmt.Fprintf(out, "%s, batch %d, %d threads: %.2f images/s median (min %.2f, max %.2f over %d × %d steps), %.1f ms/step\n",
				res.Model, res.BatchSize, res.Threads, res.Median, res.Min, res.Max, res.Repeats, res.Steps, res.StepMillis)
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
	f.StringVar(&spec.Optimizer.Name, "optimizer", "sgd", "optimizer")
	f.Float64Var(&spec.Optimizer.LR, "lr", 0.01, "learning rate")
	f.Float64Var(&spec.Optimizer.Momentum, "momentum", 0.9, "momentum")
	f.IntVar(&steps, "steps", 5, "timed steps per repeat")
	f.IntVar(&repeats, "repeat", 5, "timed repeats (the median is reported)")
	f.IntVar(&warmup, "warmup", 1, "untimed steps first")
	f.BoolVar(&asJSON, "json", false, "print one JSON line")
	return cmd
}
