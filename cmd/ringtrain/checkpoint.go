package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/checkpoint"
)

func newCheckpointCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "List, inspect and verify the checkpoints of a run",
	}
	var dir, jobName string
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "a checkpoint store (a cluster's --store, or one job's store in it) or a run directory holding checkpoints/")
	cmd.PersistentFlags().StringVar(&jobName, "job", "", "the job whose checkpoints to show, where --dir holds several jobs' stores")
	open := func() (*checkpoint.Store, error) {
		if dir == "" {
			return nil, fmt.Errorf("checkpoint: --dir is required (a run directory such as runs/lenet5, or a cluster's --store)")
		}
		d, err := storeDir(dir, jobName)
		if err != nil {
			return nil, err
		}
		return checkpoint.OpenShared(d) // read only: a store may be on a read-only volume
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List committed checkpoints, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			names, err := s.List()
			if err != nil {
				return err
			}
			if len(names) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no committed checkpoints in %s\n", s.Dir())
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSTEP\tPROGRESS\tTEST ACC\tCREATED")
			for _, n := range names {
				m, err := s.ReadManifest(n)
				if err != nil {
					fmt.Fprintf(w, "%s\t(unreadable: %v)\n", n, err)
					continue
				}
				acc := "-" // not evaluated yet
				if m.Metrics.TestAccuracy > 0 {
					acc = fmt.Sprintf("%.2f%%", 100*m.Metrics.TestAccuracy)
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", n, m.Step, checkpoint.DescribePosition(m.Epoch, m.Position, 0), acc, m.Created.Format("2006-01-02 15:04:05"))
			}
			return w.Flush()
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect [NAME]",
		Short: "Print a checkpoint's manifest (the latest by default)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			name, err := pick(s, args)
			if err != nil {
				return err
			}
			m, err := s.ReadManifest(name)
			if err != nil {
				return err
			}
			b, _ := json.MarshalIndent(m, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	verify := &cobra.Command{
		Use:   "verify [NAME]",
		Short: "Check a checkpoint's files against their SHA-256 sums (all by default)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			names := args
			if len(names) == 0 {
				if names, err = s.List(); err != nil {
					return err
				}
			}
			bad := 0
			for _, n := range names {
				if _, err := s.Verify(n); err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: FAILED: %v\n", n, err)
					bad++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", n)
			}
			if bad > 0 {
				return fmt.Errorf("checkpoint: %d of %d checkpoints failed verification", bad, len(names))
			}
			return nil
		},
	}
	cmd.AddCommand(list, inspect, verify, newCommittedCmd(&jobName))
	return cmd
}

func pick(s *checkpoint.Store, args []string) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	name, err := s.Latest()
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", fmt.Errorf("checkpoint: no committed checkpoints in %s", s.Dir())
	}
	return name, nil
}

// storeDir finds the checkpoint store that --dir (and --job) name. Stores
// are separated per job: a store root (a cluster's --store, a run
// directory's checkpoints/) holds one store per job, named after it. dir
// may be a job's store itself, a store root, or a run directory (whose
// checkpoints/ is the root); a root of the layout before stores were
// separated (checkpoints directly in it) is a store too. Where the root
// holds several stores, job chooses by name; without it, a root of the
// earlier layout is the store named (the job stores beside it need --job),
// and else the root must hold one store.
func storeDir(dir, job string) (string, error) {
	sub := filepath.Join(dir, "checkpoints")
	found, err := checkpoint.FindStores(dir)
	if err != nil {
		return "", err
	}
	if len(found) == 0 {
		if found, err = checkpoint.FindStores(sub); err != nil {
			return "", err
		}
	}
	if len(found) == 0 {
		msg := fmt.Sprintf("checkpoint: neither %s nor %s holds checkpoints", dir, sub)
		if _, err := os.Stat(dir); err != nil {
			return "", fmt.Errorf("%s: %w", msg, err)
		}
		return "", fmt.Errorf("%s (a job's store: a latest pointer, job.json or ckpt-* directories)", msg)
	}
	var names []string
	for _, f := range found {
		name := f.Job
		if name == "" {
			name = f.Dir + " (the layout before per-job stores)"
		}
		if job != "" && f.Job == job {
			return f.Dir, nil
		}
		names = append(names, name)
	}
	switch {
	case job != "":
		return "", fmt.Errorf("checkpoint: %s holds no store of job %s (it holds: %s)", dir, job, strings.Join(names, ", "))
	case found[0].Dir == dir || found[0].Dir == sub:
		// The root is a store itself (of the layout before per-job
		// stores): it is the one named, and --job names those beside it.
		return found[0].Dir, nil
	case len(found) > 1:
		return "", fmt.Errorf("checkpoint: %s holds the stores of several jobs (%s): choose one with --job", dir, strings.Join(names, ", "))
	}
	return found[0].Dir, nil
}

// newCommittedCmd lists what etcd says is committed for a job: the
// checkpoints a new leader may resume from, as etcd's clients see them
// (with TLS, as the identity of --tls-cert; etcd's access control decides).
func newCommittedCmd(jobName *string) *cobra.Command {
	var (
		endpoints string
		asJSON    bool
		timeout   time.Duration
		p         processFlags
	)
	cmd := &cobra.Command{
		Use:   "committed --etcd-endpoints URLS --job NAME",
		Short: "List the checkpoints etcd holds as committed for a job, and its latest",
		Example: `  ringtrain checkpoint committed --etcd-endpoints https://etcd-0.etcd:2379 --job lenet5-mnist \
    --tls-cert pki/client/root.crt --tls-key pki/client/root.key --tls-ca pki/ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if *jobName == "" {
				return errors.New("checkpoint committed: --job is required")
			}
			creds, err := p.creds("")
			if err != nil {
				return err
			}
			p.insecure = true // a client: nothing of its own to expose
			cli, err := p.etcdClient(endpoints, creds, timeout)
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c := checkpoint.NewEtcdCommitter(cli, *jobName, nil)
			ms, err := c.Committed(ctx)
			if err != nil {
				return err
			}
			latest, _, err := c.Latest(ctx)
			if err != nil {
				return err
			}
			names := make([]string, len(ms))
			for i, m := range ms {
				names[i] = m.Name
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, err := json.Marshal(struct {
					Latest    string   `json:"latest"`
					Committed []string `json:"committed"`
				}{latest.Name, names})
				if err != nil {
					return err
				}
				fmt.Fprintln(out, string(b))
				return nil
			}
			if len(ms) == 0 {
				fmt.Fprintf(out, "etcd holds no committed checkpoint of job %s\n", *jobName)
				return nil
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSTEP\tCREATED\t")
			for _, m := range ms {
				mark := ""
				if m.Name == latest.Name {
					mark = "latest"
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", m.Name, m.Step, m.Created.Format("2006-01-02 15:04:05"), mark)
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&endpoints, "etcd-endpoints", "", "etcd client URLs, comma-separated")
	f.BoolVar(&asJSON, "json", false, `print {"latest": NAME, "committed": [NAME...]}`)
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for etcd")
	f.StringVar(&p.tlsCert, "tls-cert", "", "client certificate (PEM) for etcd with TLS: its name is the etcd user")
	f.StringVar(&p.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&p.tlsCA, "tls-ca", "", "CA certificate (PEM) of the cluster")
	return cmd
}
