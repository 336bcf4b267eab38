// Command ringtrain trains neural networks on one machine or across a
// cluster: `ringtrain train` runs single-node training, `ringtrain bench`
// measures the hot paths, `ringtrain data` prepares data sets.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	// The image has no CA certificates (an empty base); with this, TLS to
	// the Go module proxy (`ringtrain data get`) verifies there too. The
	// system's roots are used wherever there are some.
	_ "golang.org/x/crypto/x509roots/fallback"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ringtrain:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ringtrain",
		Short:         "Data-parallel training of neural networks, on one machine or a cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())
	})
	root.AddCommand(newTrainCmd())
	root.AddCommand(newCoordinatorCmd())
	root.AddCommand(newWorkerCmd())
	root.AddCommand(newStatusCmd())
	root.AddCommand(newPKICmd())
	root.AddCommand(newCheckpointCmd())
	root.AddCommand(newTraceCmd())
	root.AddCommand(newModelsCmd())
	root.AddCommand(newDataCmd())
	root.AddCommand(newBenchCmd())
	root.AddCommand(newChaosCmd())
	root.AddCommand(newReproCmd())
	root.InitDefaultCompletionCmd() // so that its parent command is one of them
	forEachCommand(root, func(cmd *cobra.Command) {
		if cmd.HasSubCommands() && !cmd.Runnable() {
			refuseUnknownSubcommands(cmd)
		}
	})
	return root
}

// forEachCommand calls fn for cmd and every command below it.
func forEachCommand(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		forEachCommand(c, fn)
	}
}

// refuseUnknownSubcommands makes a parent command, one that only groups
// others, fail on what is not one of its subcommands, in one line: by
// itself cobra shows a parent's help and exits 0 for `ringtrain checkpoint
// frobnicate`, so a typo in a script passes unnoticed (and the root's own
// refusal spans lines). Alone, the parent still shows its help.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		cmd.SuggestionsMinimumDistance = 2
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf("; did you mean %q?", s[0])
		}
		return errors.New(msg)
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// newBenchCmd is the parent of the benchmark commands (`ringtrain bench …`).
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure ringtrain's hot paths",
	}
	cmd.AddCommand(newBenchTrainCmd())
	cmd.AddCommand(newBenchModelCmd())
	cmd.AddCommand(newBenchAllreduceCmd())
	cmd.AddCommand(newBenchRecoveryCmd())
	cmd.AddCommand(newBenchImagepipeCmd())
	return cmd
}
