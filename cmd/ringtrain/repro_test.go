package main

import (
	"os"
	"os/exec"
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

// TestReproOnWorkers runs the real binary's quick backprop-mlp on a local
// cluster of two worker processes, then runs it again with the same --out:
// the finished training jobs are not run twice.
func TestReproOnWorkers(t *testing.T) {
	bin, data := binary(t)
	out := filepath.Join(t.TempDir(), "mlp")
	run := func() string {
		cmd := exec.Command(bin, "repro", "backprop-mlp", "--quick", "--workers", "2", "--out", out, "--data-dir", filepath.Join(data, "mnist"))
		cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+t.TempDir())
		text, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		return string(text)
	}
	first := run()
	for _, f := range []string{"worker-0.log", "worker-1.log", "summary.json"} {
		if _, err := os.Stat(filepath.Join(out, "runs", "mlp-300-100", f)); err != nil {
			t.Errorf("the cluster run left no %s: %v\n%s", f, err, first)
		}
	}
	again := run()
	if strings.Count(again, "finished earlier") != 2 {
		t.Errorf("the second run trained again:\n%s", again)
	}
}
