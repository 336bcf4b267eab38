package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/models"
)

func newModelsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "models",
		Short: "List the model zoo",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tPARAMETERS\tINPUT\tDESCRIPTION")
			for _, name := range models.Names() {
				n, in, err := models.Describe(name, models.Config{})
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s\t%d\t%v\t%s\n", name, n, in, models.About(name))
			}
			return w.Flush()
		},
	}
}
