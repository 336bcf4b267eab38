package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/timeline"
	"github.com/ringtrain/ringtrain/worker"
)

func newTraceCmd() *cobra.Command {
	var dir, out string
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Write a run's step timelines as a trace for Perfetto or chrome://tracing",
		Long: `Write a run's step timelines as one trace in the Chrome trace event format.

Every worker of a run records the phases of each step — data wait, forward,
backward, each gradient bucket's all-reduce, the wait for the reduction, the
optimizer — and evaluations, checkpoints and state syncs between steps, in
RUN/timeline/<worker>.jsonl (ringtrain train, with or without --workers), or
in the directory a cluster worker's --timeline names. trace reads them all
and writes one trace: a process per worker, a "steps" track and a "comm"
track each, on one time axis. Open it in https://ui.perfetto.dev or
chrome://tracing.`,
		Example: `  ringtrain trace --dir runs/lenet5                  # writes runs/lenet5/trace.json
  ringtrain trace --dir /shared/timeline -o trace.json   # the --timeline DIR of cluster workers`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return fmt.Errorf("--dir is required: a run directory, or a directory of timelines")
			}
			src := filepath.Join(dir, worker.TimelineDir)
			if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
				if _, err := os.Stat(filepath.Join(dir, worker.JobFile)); err == nil {
					return fmt.Errorf("no timelines in %s: the run recorded none (it ran with --timeline=false)", src)
				}
				src = dir // a --timeline DIR itself
			}
			workers, err := timeline.ReadDir(src)
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join(dir, "trace.json")
			}
			if out == "-" {
				_, err = timeline.WriteChrome(cmd.OutOrStdout(), workers)
				return err
			}
			f, err := renameio.NewPendingFile(out, renameio.WithPermissions(0o644), renameio.WithExistingPermissions())
			if err != nil {
				return err
			}
			defer f.Cleanup()
			st, err := timeline.WriteChrome(f, workers)
			if err != nil {
				return err
			}
			if err := f.CloseAtomicallyReplace(); err != nil {
				return err
			}
			workersWord := "workers"
			if st.Workers == 1 {
				workersWord = "worker"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d events of %d %s from %s; open it in https://ui.perfetto.dev or chrome://tracing\n",
				out, st.Events, st.Workers, workersWord, src)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "run directory (its timeline/ is read), or a directory of timelines")
	f.StringVarP(&out, "output", "o", "", "trace file to write, - for standard output (default DIR/trace.json)")
	return cmd
}
