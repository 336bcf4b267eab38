package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
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
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a training cluster's state",
		Long: `Show a training cluster's state: the job, the leading coordinator, the
generation of the ring and its workers (step, loss, images/s), the last
committed checkpoint and evaluation, and, when the job is waiting, why.`,
		Example: `  ringtrain status --coordinator localhost:7070
  ringtrain status --coordinator localhost:7070 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			coords := splitList(coordinators)
			if len(coords) == 0 {
				return fmt.Errorf("--coordinator is required")
			}
			_, clientTLS, err := p.tlsConfigs()
			if err != nil {
				return err
			}
			st, err := fetchStatus(cmd.Context(), coords, dialOption(clientTLS), timeout)
			if err != nil {
				return err
			}
			if asJSON {
				b, err := json.Marshal(st)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&coordinators, "coordinator", "localhost:7070", "coordinator control address(es), HOST:PORT[,HOST:PORT]")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for an answer")
	f.StringVar(&p.tlsCert, "tls-cert", "", "client certificate (PEM) for mutual TLS")
	f.StringVar(&p.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&p.tlsCA, "tls-ca", "", "CA certificate (PEM) of the cluster")
	return cmd
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
			if s.Code() == codes.DeadlineExceeded || s.Code() == codes.Unavailable {
				return nil, errors.New("unreachable: " + s.Message())
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
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tRANK\tSTEP\tLOSS\tIMAGES/S\tLAST SEEN")
	for _, m := range st.Workers {
		rank := "-"
		if m.Rank >= 0 {
			rank = fmt.Sprint(m.Rank)
		}
		loss, ips := "-", "-"
		if m.Stats != nil {
			loss, ips = fmt.Sprintf("%.4f", m.Stats.Loss), fmt.Sprintf("%.0f", m.Stats.ImagesPerSecond)
		}
		seen := "-"
		if !m.LastSeen.IsZero() {
			seen = time.Since(m.LastSeen).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", m.Name, rank, m.Step, loss, ips, seen)
	}
	tw.Flush()
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
