package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
)

func newStatusCmd() *cobra.Command {
	var (
		p            processFlags
		coordinators string
		asJSON       bool
		timeout      time.Duration
		watch        bool
		interval     time.Duration
		statusFile   string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a training cluster's state",
		Long: `Show a training cluster's state: the job, the leading coordinator, the
generation of the ring and its workers (step, loss, images/s, milliseconds
per step and the part of it spent computing, waiting for data and waiting
for the all-reduce, and whether the coordinator flags it as a straggler),
the last committed checkpoint and evaluation, and, when the job is waiting,
why.

With --watch it refreshes every --interval until interrupted: in place on a
terminal, else one status after another, separated by a blank line.

The coordinator tells its status only to a caller that shows a token: the
job's status token (--status-token-file; it reads the status and cannot
join), else the join token (--token-file, else $` + tokenEnv + `).`,
		Example: `  ringtrain status --coordinator localhost:7070 --token-file join-token
  ringtrain status --coordinator localhost:7070 --status-token-file status-token --json
  ringtrain status --coordinator localhost:7070 --watch --interval 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			coords := splitList(coordinators)
			if len(coords) == 0 {
				return fmt.Errorf("--coordinator is required")
			}
			if watch && interval <= 0 {
				return fmt.Errorf("--interval must be positive, not %v", interval)
			}
			creds, err := p.creds("")
			if err != nil {
				return err
			}
			token, err := statusToken(statusFile, p.tokenFile)
			if err != nil {
				return err
			}
			render := func(ctx context.Context, w io.Writer) error {
				st, err := fetchStatus(api.WithToken(ctx, token), coords, dialOption(creds), timeout)
				if err != nil {
					return err
				}
				if asJSON {
					b, err := json.Marshal(st)
					if err != nil {
						return err
					}
					fmt.Fprintln(w, string(b))
					return nil
				}
				printStatus(w, st)
				return nil
			}
			out := cmd.OutOrStdout()
			if !watch {
				return render(cmd.Context(), out)
			}
			return watchStatus(cmd.Context(), out, isTerminal(out), interval, render)
		},
	}
	f := cmd.Flags()
	f.StringVar(&coordinators, "coordinator", "localhost:7070", "coordinator control address(es), HOST:PORT[,HOST:PORT]")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for an answer")
	f.BoolVar(&watch, "watch", false, "refresh until interrupted (Ctrl-C)")
	f.DurationVar(&interval, "interval", 2*time.Second, "time between refreshes with --watch")
	f.StringVar(&p.tlsCert, "tls-cert", "", "client certificate (PEM) for mutual TLS")
	f.StringVar(&p.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&p.tlsCA, "tls-ca", "", "CA certificate (PEM) of the cluster")
	f.StringVar(&statusFile, "status-token-file", "", "file holding the job's status token (default: the join token)")
	f.StringVar(&p.tokenFile, "token-file", "", "file holding the job's join token (default: $"+tokenEnv+")")
	return cmd
}

// statusToken is the token `ringtrain status` shows: the status token of
// statusFile, else the join token of joinFile, else of the environment;
// "" when there is none (the coordinator then refuses, saying why).
func statusToken(statusFile, joinFile string) (string, error) {
	if statusFile != "" {
		return readToken(statusFile, "status token")
	}
	if joinFile != "" {
		return readToken(joinFile, "join token")
	}
	return strings.TrimSpace(os.Getenv(tokenEnv)), nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ANSI escapes of the terminal refresh: cursor home, clear the screen.
const clearScreen = "\x1b[H\x1b[2J"

// watchStatus renders the status every interval until ctx ends (nil:
// Ctrl-C is how a watch ends). On a terminal each refresh clears the
// screen and redraws it whole; elsewhere refreshes follow one another,
// separated by a blank line. A status that cannot be had is shown as its
// error, and the watch goes on.
func watchStatus(ctx context.Context, w io.Writer, tty bool, interval time.Duration, render func(context.Context, io.Writer) error) error {
	for first := true; ; first = false {
		var b bytes.Buffer
		if err := render(ctx, &b); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fmt.Fprintf(&b, "status: %v\n", err)
		}
		switch {
		case tty:
			fmt.Fprintf(w, "%s%s\n(every %v; Ctrl-C to stop)\n", clearScreen, b.Bytes(), interval)
		case first:
			w.Write(b.Bytes())
		default:
			fmt.Fprintf(w, "\n%s", b.Bytes())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// fetchStatus asks each coordinator in turn and returns the leader's
// answer. When only standbys answer, it asks the leader at the address a
// standby names; if that does not answer either, it returns the standby's
// answer, saying so in its Reason.
func fetchStatus(ctx context.Context, coords []string, cred grpc.DialOption, timeout time.Duration) (*api.StatusReply, error) {
	var standby *api.StatusReply
	var errs []string
	asked := map[string]bool{}
	for i := 0; i < len(coords); i++ {
		addr := coords[i]
		asked[addr] = true
		st, err := askStatus(ctx, addr, cred, timeout)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s: %v", addr, err))
			if standby != nil && addr == standby.LeaderAddr {
				standby.Reason += fmt.Sprintf("; the leader at %s did not answer (%v)", addr, err)
			}
		case st.State == "standby":
			if standby == nil {
				standby = st
			}
			if a := st.LeaderAddr; a != "" && !asked[a] {
				coords = append(coords, a)
			}
		default:
			return st, nil
		}
	}
	if standby != nil {
		return standby, nil
	}
	return nil, fmt.Errorf("status: no coordinator answered: %s", strings.Join(errs, "; "))
}

// askStatus asks the coordinator at addr for its status.
func askStatus(ctx context.Context, addr string, cred grpc.DialOption, timeout time.Duration) (*api.StatusReply, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, cred)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := api.NewControlClient(cc).Status(cctx, &api.StatusRequest{})
	if err != nil {
		if s, ok := status.FromError(err); ok {
			switch s.Code() {
			case codes.DeadlineExceeded, codes.Unavailable:
				return nil, errors.New("unreachable: " + s.Message())
			case codes.Unauthenticated:
				return nil, fmt.Errorf("%s (pass --status-token-file or --token-file, or set %s)", s.Message(), tokenEnv)
			}
			return nil, errors.New(s.Message())
		}
		return nil, err
	}
	return st, nil
}

func printStatus(w io.Writer, st *api.StatusReply) {
	codec := ""
	if st.Codec != "" && st.Codec != "fp32" {
		codec = ", gradients as " + st.Codec
	}
	fmt.Fprintf(w, "job %s (%s on %s%s, hash %s)\n", st.Job, st.Model, st.Dataset, codec, st.JobHash)
	if st.State == "standby" {
		// Only the leader knows the job's state; a standby knows who
		// leads.
		fmt.Fprintln(w, st.Reason)
		return
	}
	fmt.Fprintf(w, "coordinator %s: %s", st.Coordinator, st.State)
	if st.Reason != "" {
		fmt.Fprintf(w, " (%s)", st.Reason)
	}
	fmt.Fprintln(w)
	ring := fmt.Sprintf("generation %d, ring of %d workers", st.Generation, len(st.Ring))
	switch {
	case len(st.Ring) == 0 && st.State == "done":
		ring = "no ring"
	case len(st.Ring) == 0:
		// The job waits or settles: the workers that joined so far.
		ring = fmt.Sprintf("no ring yet, %d workers joined", len(st.Workers))
	}
	fmt.Fprintf(w, "%s (min %d, max %d); %s, step %d, %.0f images/s\n",
		ring, st.MinWorkers, st.MaxWorkers, epochProgress(st), st.Step, st.ImagesPerSecond)
	if st.LastCheckpoint != "" {
		fmt.Fprintf(w, "last committed checkpoint %s\n", st.LastCheckpoint)
	}
	if e := st.LastEval; e != nil {
		fmt.Fprintf(w, "last evaluation %s: test accuracy %.2f%%, test loss %.4f\n",
			checkpoint.DescribePosition(e.Epoch+1, 0, 0), 100*e.Accuracy, e.Loss)
	}
	if len(st.Workers) == 0 {
		return
	}
	// The phases are milliseconds per step over the steps of the
	// worker's last heartbeat.
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tRANK\tSTEP\tLOSS\tIMAGES/S\tMS/STEP\tCOMPUTE\tDATA\tREDUCE\tSTRAGGLER\tLAST SEEN")
	for _, m := range st.Workers {
		rank := "-"
		if m.Rank >= 0 {
			rank = fmt.Sprint(m.Rank)
		}
		loss, ips := "-", "-"
		phases := []string{"-", "-", "-", "-"}
		if s := m.Stats; s != nil {
			loss, ips = fmt.Sprintf("%.4f", s.Loss), fmt.Sprintf("%.0f", s.ImagesPerSecond)
			if s.PhaseSteps > 0 {
				for i, x := range []float64{s.StepSeconds, s.ComputeSeconds, s.DataWaitSeconds, s.ReduceSeconds} {
					phases[i] = fmt.Sprintf("%.1f", 1e3*x)
				}
			}
		}
		straggler := "-"
		if s := m.Straggler; s != nil {
			straggler = fmt.Sprintf("%s %.1f×", s.Phase, s.Factor)
		}
		seen := "-"
		if !m.LastSeen.IsZero() {
			seen = time.Since(m.LastSeen).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.Name, rank, m.Step, loss, ips, strings.Join(phases, "\t"), straggler, seen)
	}
	tw.Flush()
	// Checkpoints a worker skipped because its shard could not be written.
	for _, m := range st.Workers {
		if s := m.Stats; s != nil && s.CheckpointFailures > 0 {
			fmt.Fprintf(w, "%s: %d checkpoint shards not written (those checkpoints were skipped); the last: %s\n",
				m.Name, s.CheckpointFailures, s.LastCheckpointError)
		}
	}
}

// epochProgress is the status's epoch, counted from 1 as everywhere:
// "epoch 2 of 3" while it runs, "after epoch 3 of 3" once the job is done.
// (st.Epoch is the 0-based epoch in progress; the job's final checkpoint
// stands at epoch Epochs.)
func epochProgress(st *api.StatusReply) string {
	if st.State == "done" || st.Epoch >= st.Epochs {
		return fmt.Sprintf("%s of %d", checkpoint.DescribePosition(st.Epochs, 0, 0), st.Epochs)
	}
	return fmt.Sprintf("epoch %d of %d", st.Epoch+1, st.Epochs)
}
