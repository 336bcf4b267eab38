package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/worker"
)

func newBenchTrainCmd() *cobra.Command {
	var (
		spec    = job.Default()
		steps   int
		repeats int
		asJSON  bool
		record  bool
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Measure training throughput (images/s) of a model on real batches",
		Example: `  ringtrain bench train --model lenet5 --batch-size 64
  ringtrain bench train --model mlp --threads 1 --json
  ringtrain bench train --threads 1 --timeline --json   # the cost of the step timeline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := worker.BenchOptions{Steps: steps, Repeats: repeats}
			if record {
				dir, err := os.MkdirTemp("", "ringtrain-bench-timeline")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				o.TimelineDir = dir
			}
			res, err := worker.Bench(cmd.Context(), spec, o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.Marshal(res)
				fmt.Fprintln(out, string(b))
				return nil
			}
			fmt.Fprintf(out, "%s, batch %d, %d threads: %.0f images/s median (min %.0f, max %.0f over %d × %d steps), %.2f ms/step\n",
				res.Model, res.BatchSize, res.Threads, res.Median, res.Min, res.Max, res.Repeats, res.Steps, res.StepMillis)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Model, "model", spec.Model, "model zoo name")
	f.StringVar(&spec.DataDir, "data-dir", "", "where the data set's files are (default: the ringtrain cache)")
	f.IntVar(&spec.BatchSize, "batch-size", spec.BatchSize, "images per step")
	f.IntVar(&spec.Threads, "threads", 0, "compute threads (0: all cores)")
	f.StringVar(&spec.Optimizer.Name, "optimizer", spec.Optimizer.Name, "optimizer")
	f.IntVar(&steps, "steps", 200, "timed steps per repeat")
	f.IntVar(&repeats, "repeat", 5, "timed repeats (the median is reported)")
	f.BoolVar(&asJSON, "json", false, "print one JSON line")
	f.BoolVar(&record, "timeline", false, "record the steps' timeline as training does (in a temporary directory, removed after)")
	return cmd
}
