package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/faults"
)

func newChaosCmd() *cobra.Command {
	var (
		seed      int64
		schedules int
		asJSON    bool
		out       string
		etcdBin   string
		kinds     string
		dataDir   string
		bound     time.Duration
	)
	all := make([]string, len(faults.Kinds))
	for i, k := range faults.Kinds {
		all[i] = string(k)
	}
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run a randomized fault campaign against a local cluster of processes and check its invariants",
		Long: `Runs schedules of faults against local clusters of real processes — a
3-member etcd cluster (the etcd server binary), 2 coordinators (each
reaching etcd through proxies of its own, so it can be cut off alone) and
4 workers of this binary, on loopback, training LeNet-1 on MNIST — and
checks after each that:

  the job ended within --bound (no hang);
  every worker ended with identical parameters, the same as those of an
  uninterrupted run of the job (run first);
  no committed checkpoint was lost, overwritten or half-visible (every
  change of the job's checkpoint keys in etcd is watched, each checkpoint's
  files verified when it is committed and again at the end);
  the step etcd's latest checkpoint names never went backwards.

Schedule i is drawn from seed --seed+i: a few timed faults, which may
overlap: SIGKILL of a worker, the leader, the standby or an etcd member
(restarted after a delay, as Kubernetes would); SIGSTOP/SIGCONT of any of
them; loss of etcd quorum; a coordinator cut off etcd; a full checkpoint
disk (a tmpfs, root only); or everything killed at once and restarted.
Each schedule prints its seed: --seed X --schedules 1 replays it.`,
		Example: `  ringtrain chaos --seed 1 --schedules 3
  ringtrain chaos --seed 1000 --schedules 100 --json --out /tmp/chaos
  ringtrain chaos --seed 42 --schedules 1 --faults pause,quorum-loss`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if schedules < 1 {
				return fmt.Errorf("--schedules %d: must be at least 1", schedules)
			}
			if bound < 10*time.Second {
				return fmt.Errorf("--bound %v: must be at least 10s", bound)
			}
			ks, err := faults.ParseKinds(kinds)
			if err != nil {
				return fmt.Errorf("--faults: %w", err)
			}
			logf := func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), f+"\n", a...) }
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			keep := out != ""
			if !keep {
				if out, err = os.MkdirTemp("", "ringtrain-chaos"); err != nil {
					return err
				}
			} else if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if etcdBin == "" {
				etcdBin = filepath.Join(out, "etcd")
				logf("building the etcd server into %s", etcdBin)
				if err := buildEtcd(cmd.Context(), etcdBin); err != nil {
					return err
				}
			} else if fi, err := os.Stat(etcdBin); err != nil || fi.IsDir() {
				return fmt.Errorf("--etcd-bin %s: not a file", etcdBin)
			}
			if dataDir == "" {
				dataDir = filepath.Join(dataset.DefaultDataDir(), "mnist")
			}
			if err := dataset.Ensure(cmd.Context(), "mnist", dataDir, logf); err != nil {
				return err
			}
			cfg := faults.Config{
				Exe: exe, Etcd: etcdBin, DataDir: dataDir, Dir: out,
				Shape: faults.DefaultShape, Kinds: ks, Job: faults.CampaignJob(faults.DefaultShape.Workers),
				Bound: bound, Status: chaosStatus, Root: os.Geteuid() == 0, Logf: logf,
			}
			w := cmd.OutOrStdout()
			rep, err := faults.Run(cmd.Context(), cfg, seed, schedules, func(res faults.Result) {
				if !asJSON {
					fmt.Fprint(w, res.Text())
				}
			})
			failed := err != nil || rep.Violations > 0
			if !keep && !failed {
				defer os.RemoveAll(out)
			} else {
				logf("run directories (logs) in %s", out)
			}
			if asJSON {
				b, jerr := json.Marshal(rep)
				if jerr != nil {
					return jerr
				}
				fmt.Fprintln(w, string(b))
			} else if len(rep.Results) > 0 {
				fmt.Fprint(w, rep.Text())
			}
			if err != nil {
				return err
			}
			if rep.Violations > 0 {
				return fmt.Errorf("chaos: %d violations", rep.Violations)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Int64Var(&seed, "seed", 1, "seed of the first schedule (schedule i uses seed+i)")
	f.IntVar(&schedules, "schedules", 1, "schedules to run, each on a fresh cluster")
	f.BoolVar(&asJSON, "json", false, "print the campaign as one JSON object")
	f.StringVar(&out, "out", "", "directory for the clusters' run directories, kept (default: a temporary one, removed unless something failed)")
	f.StringVar(&etcdBin, "etcd-bin", "", "etcd server binary (default: built from go.etcd.io/etcd/server/v3 with the go tool)")
	f.StringVar(&kinds, "faults", strings.Join(all, ","), "fault kinds to draw from, comma-separated")
	f.StringVar(&dataDir, "data-dir", "", "MNIST directory (default: the ringtrain cache)")
	f.DurationVar(&bound, "bound", 2*time.Minute, "longest a schedule may take from the start of training to the end of the job before it counts as a hang")
	return cmd
}

// chaosStatus is the leader's status, asked with the campaign's join token.
func chaosStatus(ctx context.Context, coords []string, token string) (*api.StatusReply, error) {
	return fetchStatus(api.WithToken(ctx, token), coords, dialOption(nil), time.Second)
}

// buildEtcd builds the etcd server binary at path with the go tool, from
// the module this binary was built with.
func buildEtcd(ctx context.Context, path string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "go.etcd.io/etcd/server/v3")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building etcd (from inside the ringtrain module, or pass --etcd-bin): %v: %s", err, strings.Join(strings.Fields(string(b)), " "))
	}
	return nil
}
