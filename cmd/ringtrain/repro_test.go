package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/repro"
)

// TestReproCommand runs an experiment's quick form as a user would, lists
// the experiments with their last results, and checks that bad names and
// flags are refused with a message that says what is wrong.
func TestReproCommand(t *testing.T) {
	mnist := filepath.Join(dataset.DefaultDataDir(), "mnist")
	cache := t.TempDir()
	t.Setenv("RINGTRAIN_DATA", cache)
	out := filepath.Join(t.TempDir(), "mlp")
	text, err := runCLI(t, "repro", "backprop-mlp", "--quick", "--out", out, "--data-dir", mnist)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if !strings.Contains(text, "backprop-mlp: ") || !strings.Contains(text, filepath.Join(out, "report.md")) {
		t.Errorf("output does not name the verdict and report:\n%s", text)
	}
	if _, err := os.Stat(filepath.Join(out, "report.md")); err != nil {
		t.Fatal(err)
	}
	// A quick run is not anyone's last result; a full one is.
	text, err = runCLI(t, "repro", "list")
	if err != nil || !strings.Contains(text, "never run") {
		t.Fatalf("list after a quick run: %v\n%s", err, text)
	}
	for _, e := range repro.All() {
		if !strings.Contains(text, e.Name) {
			t.Errorf("list lacks %s", e.Name)
		}
	}
	rec := &repro.Record{Name: "backprop-mlp", Verdict: "reproduced", WallSeconds: 61, Result: repro.Result{Claims: []repro.Claim{{What: "e", Ours: "2.10%", Pass: true}}}}
	if err := repro.SaveLast(repro.LastDir(cache), rec); err != nil {
		t.Fatal(err)
	}
	text, err = runCLI(t, "repro", "list")
	if err != nil || !strings.Contains(text, "reproduced (2.10%)") || !strings.Contains(text, "1m1s") {
		t.Errorf("list after a full run: %v\n%s", err, text)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"repro", "no-such"}, `unknown experiment "no-such"`},
		{[]string{"repro", "backprop-mlp", "--workers", "0"}, "--workers must be at least 1"},
		{[]string{"repro"}, "accepts 1 arg"},
	} {
		if text, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v (want %q)\n%s", c.args, err, c.want, text)
		}
	}
}
