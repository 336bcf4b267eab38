package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/checkpoint"
)

func newCheckpointCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "List, inspect and verify the checkpoints of a run",
	}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "a checkpoint store (a cluster's --store) or a run directory holding checkpoints/")
	open := func() (*checkpoint.Store, error) {
		if dir == "" {
			return nil, fmt.Errorf("checkpoint: --dir is required (a run directory such as runs/lenet5, or a cluster's --store)")
		}
		d, err := storeDir(dir)
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
	cmd.AddCommand(list, inspect, verify)
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

// storeDir finds the checkpoint store that --dir names: dir itself when it
// holds checkpoints (a `latest` pointer or checkpoint directories, as a
// cluster's --store does), else its checkpoints/ folder (a run directory of
// `ringtrain train`).
func storeDir(dir string) (string, error) {
	if checkpoint.IsStore(dir) {
		return dir, nil
	}
	sub := filepath.Join(dir, "checkpoints")
	if fi, err := os.Stat(sub); err == nil && fi.IsDir() {
		return sub, nil
	}
	msg := fmt.Sprintf("checkpoint: neither %s nor %s holds checkpoints", dir, sub)
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("%s: %w", msg, err)
	}
	return "", fmt.Errorf("%s (a latest pointer or ckpt-* directories)", msg)
}
