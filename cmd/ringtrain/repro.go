package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/repro"
)

// reproUnits is the progress of one experiment, in bar units.
const reproUnits = 1000

func newReproCmd() *cobra.Command {
	var (
		out   string
		quick bool
		env   repro.Env
	)
	cmd := &cobra.Command{
		Use:   "repro NAME | list | all",
		Short: "Reproduce an experiment of the talk and write its report (paper's figure, ours, verdict)",
		Long: "Run one of the talk's experiments on this machine, on real MNIST (or data it\n" +
			"generates), and write DIR/report.md (the paper's figure beside ours, the verdict,\n" +
			"the wall time and the command), DIR/result.json and the figures. `repro list`\n" +
			"shows every experiment with its last result; `repro all` runs them in sequence.\n" +
			"A run stopped part-way continues where it stopped when run again with the same --out.",
		Example: `  ringtrain repro list
  ringtrain repro backprop-mlp --out runs/repro/backprop-mlp
  ringtrain repro lenet5-1998 --workers 2
  ringtrain repro all --out runs/repro`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			lastDir := repro.LastDir(dataset.DefaultDataDir())
			if args[0] == "list" {
				return reproList(cmd, lastDir)
			}
			var todo []repro.Experiment
			if args[0] == "all" {
				todo = repro.All()
			} else {
				e, err := repro.Lookup(args[0])
				if err != nil {
					return err
				}
				todo = []repro.Experiment{e}
			}
			if env.Workers < 1 {
				return fmt.Errorf("--workers must be at least 1, got %d", env.Workers)
			}
			if env.Threads < 0 {
				return fmt.Errorf("--threads must not be negative, got %d", env.Threads)
			}
			env.Quick = quick
			env.Logf = func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), f+"\n", a...) }
			if out == "" {
				out = filepath.Join("runs", "repro")
				if len(todo) == 1 {
					out = filepath.Join(out, todo[0].Name)
				}
			}
			bar := newCountProgress(cmd.ErrOrStderr(), "repro", int64(reproUnits*len(todo)))
			failed := 0
			for i, e := range todo {
				run := env
				run.Dir = out
				if args[0] == "all" {
					run.Dir = filepath.Join(out, e.Name)
				}
				base := int64(reproUnits * i)
				run.Progress = func(f float64) { bar.update(base+int64(f*reproUnits), int64(reproUnits*len(todo))) }
				command := reproCommand(e.Name, run, quick)
				rec, err := repro.Run(cmd.Context(), e, run, command)
				if err != nil {
					if cmd.Context().Err() != nil {
						bar.finish()
						fmt.Fprintf(w, "stopped; continue with: %s\n", command)
						return err
					}
					failed++
					fmt.Fprintf(w, "%s: failed: %v\n", e.Name, err)
					continue
				}
				if !quick {
					if err := repro.SaveLast(lastDir, rec); err != nil {
						env.Logf("warning: %v", err)
					}
				}
				fmt.Fprintf(w, "%s: %s in %s; report %s\n", e.Name, rec.Verdict,
					time.Duration(rec.WallSeconds*float64(time.Second)).Round(time.Second), filepath.Join(run.Dir, "report.md"))
			}
			bar.finish()
			if failed > 0 {
				return fmt.Errorf("%d of %d experiments failed", failed, len(todo))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "output directory (default runs/repro/NAME, or runs/repro for all)")
	f.BoolVar(&quick, "quick", false, "the shortened form: checks the machinery in seconds; its numbers mean nothing")
	f.Uint64Var(&env.Seed, "seed", 1, "seed of every random choice")
	f.IntVar(&env.Workers, "workers", 1, "data-parallel workers for the experiments that are plain supervised training (above 1: a local cluster)")
	f.IntVar(&env.Threads, "threads", 0, "compute threads (0: all cores)")
	f.StringVar(&env.DataDir, "data-dir", "", "where the data sets' files are (default: the ringtrain cache)")
	return cmd
}

// reproCommand is the command line that reproduces run.
func reproCommand(name string, run repro.Env, quick bool) string {
	c := []string{"ringtrain", "repro", name, "--out", run.Dir}
	if quick {
		c = append(c, "--quick")
	}
	if run.Seed != 1 {
		c = append(c, fmt.Sprintf("--seed %d", run.Seed))
	}
	if run.Workers > 1 {
		c = append(c, fmt.Sprintf("--workers %d", run.Workers))
	}
	return strings.Join(c, " ")
}

func reproList(cmd *cobra.Command, lastDir string) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tLAST RESULT\tWHEN\tWALL\tWHAT")
	for _, e := range repro.All() {
		rec, err := repro.LoadLast(lastDir, e.Name)
		last, when, wall := "never run", "-", "-"
		switch {
		case err != nil:
			last = "unreadable record"
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v\n", err)
		case rec != nil:
			var ours []string
			for _, c := range rec.Claims {
				if !c.Stretch {
					ours = append(ours, brief(c.Ours))
				}
			}
			last = rec.Verdict
			if len(ours) > 0 {
				last += " (" + strings.Join(ours, ", ") + ")"
			}
			when = rec.Started.Format("2006-01-02 15:04")
			wall = time.Duration(rec.WallSeconds * float64(time.Second)).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, last, when, wall, e.Title)
	}
	return tw.Flush()
}

// brief is a claim's figure for the list: what comes before its first
// parenthesis, at most 24 characters.
func brief(ours string) string {
	if i := strings.Index(ours, " ("); i > 0 {
		ours = ours[:i]
	}
	if r := []rune(ours); len(r) > 24 {
		ours = string(r[:23]) + "…"
	}
	return ours
}
