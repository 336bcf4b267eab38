package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// pflag takes a `quoted` word of a usage string for the name of the flag's
// value and removes the backticks: "workers and `ringtrain status` connect
// here" showed as "--listen ringtrain status   … workers and ringtrain
// status connect here". No usage string may hold one.
func TestFlagUsagesHaveNoBackticks(t *testing.T) {
	forEachCommand(newRootCmd(), func(cmd *cobra.Command) {
		check := func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				name, usage := pflag.UnquoteUsage(f)
				t.Errorf("%s --%s: usage %q has a backtick; --help shows it as %q %q", cmd.CommandPath(), f.Name, f.Usage, name, usage)
			}
		}
		cmd.Flags().VisitAll(check)
		cmd.PersistentFlags().VisitAll(check)
	})
}

// Every command that groups others refuses a subcommand it does not have,
// with an error, instead of showing its help and exiting 0.
func TestUnknownSubcommandsFail(t *testing.T) {
	var parents []string
	forEachCommand(newRootCmd(), func(cmd *cobra.Command) {
		if cmd.HasAvailableSubCommands() {
			parents = append(parents, cmd.CommandPath())
		}
	})
	for _, want := range []string{"ringtrain", "ringtrain checkpoint", "ringtrain data", "ringtrain bench"} {
		if !strings.Contains(strings.Join(parents, "|")+"|", want+"|") {
			t.Errorf("%s is not among the parent commands %q", want, parents)
		}
	}
	for _, path := range parents {
		args := append(strings.Fields(path)[1:], "frobnicate")
		out, err := runCLI(t, args...)
		want := `unknown command "frobnicate" for "` + path + `"`
		if err == nil || err.Error() != want {
			t.Errorf("ringtrain %s: error %v, want %q; output:\n%s", strings.Join(args, " "), err, want, out)
		}
	}
	// A near miss names the command meant.
	if _, err := runCLI(t, "checkpoint", "lst"); err == nil || !strings.Contains(err.Error(), `did you mean "list"?`) {
		t.Errorf("ringtrain checkpoint lst: %v", err)
	}
	// Alone, a parent shows its help.
	if out, err := runCLI(t, "checkpoint"); err != nil || !strings.Contains(out, "verify") {
		t.Errorf("ringtrain checkpoint: %v\n%s", err, out)
	}
}
