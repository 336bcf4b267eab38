// Command ringtrain trains neural networks on one machine or across a
// cluster: `ringtrain train` runs single-node training, `ringtrain bench`
// measures the hot paths, `ringtrain data` prepares data sets.
package main

import (
	"context"
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
	root.AddCommand(newCheckpointCmd())
	root.AddCommand(newModelsCmd())
	root.AddCommand(newDataCmd())
	root.AddCommand(newBenchCmd())
	return root
}

// newBenchCmd is the parent of the benchmark commands (`ringtrain bench …`).
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure ringtrain's hot paths",
	}
	cmd.AddCommand(newBenchTrainCmd())
	cmd.AddCommand(newBenchAllreduceCmd())
	return cmd
}
