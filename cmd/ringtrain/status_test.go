package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
)

// The workers' table shows each worker's phases in milliseconds per step
// and its straggler flag.
func TestStatusShowsPhasesAndStragglers(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, &api.StatusReply{State: "running", Epochs: 1, Ring: []string{"worker-0", "worker-1"}, Workers: []api.WorkerStatus{
		{Name: "worker-0", Stats: &api.WorkerStats{Loss: 0.1, ImagesPerSecond: 900, PhaseSteps: 20,
			StepSeconds: 0.0071, ComputeSeconds: 0.0032, DataWaitSeconds: 0.0001, ReduceSeconds: 0.0036}},
		{Name: "worker-1", Rank: 1, Stats: &api.WorkerStats{Loss: 0.1, ImagesPerSecond: 900, PhaseSteps: 20,
			StepSeconds: 0.0072, ComputeSeconds: 0.0065, ReduceSeconds: 0.0004},
			Straggler: &api.Straggler{Phase: "compute", Factor: 2.03}},
		{Name: "worker-2", Rank: -1, Stats: &api.WorkerStats{Loss: 0.1}}, // no steps since its last heartbeat
	}})
	text := out.String()
	for _, re := range []string{
		`(?m)^WORKER +RANK +STEP +LOSS +IMAGES/S +MS/STEP +COMPUTE +DATA +REDUCE +STRAGGLER +LAST SEEN$`,
		`(?m)^worker-0 +0 +0 +0\.1000 +900 +7\.1 +3\.2 +0\.1 +3\.6 +- +-$`,
		`(?m)^worker-1 +1 +0 +0\.1000 +900 +7\.2 +6\.5 +0\.0 +0\.4 +compute 2\.0× +-$`,
		`(?m)^worker-2 +- +0 +0\.1000 +0 +- +- +- +- +- +-$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("status lacks %s:\n%s", re, text)
		}
	}
}

// A worker that failed to write checkpoint shards says so under the
// table, with the last error.
func TestStatusShowsFailedCheckpointWrites(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, &api.StatusReply{State: "running", Epochs: 1, Ring: []string{"worker-0", "worker-1"}, Workers: []api.WorkerStatus{
		{Name: "worker-0", Stats: &api.WorkerStats{Loss: 0.1}},
		{Name: "worker-1", Rank: 1, Stats: &api.WorkerStats{Loss: 0.1, CheckpointFailures: 2,
			LastCheckpointError: "worker: writing checkpoint shard: no space left on device"}},
	}})
	text := out.String()
	if want := "worker-1: 2 checkpoint shards not written (those checkpoints were skipped); the last: worker: writing checkpoint shard: no space left on device\n"; !strings.Contains(text, want) {
		t.Errorf("status lacks %q:\n%s", want, text)
	}
	if strings.Contains(text, "worker-0: ") {
		t.Errorf("status reports failures of worker-0:\n%s", text)
	}
}

// `ringtrain status --watch` not on a terminal prints one status after
// another, separated by a blank line, until interrupted, and exits 0.
func TestStatusWatchNotOnATerminal(t *testing.T) {
	addr := serveStatus(t, &api.StatusReply{Job: "j", Coordinator: "coord-a", State: "running", Epochs: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond) // the Ctrl-C
	defer cancel()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"status", "--coordinator", addr, "--watch", "--interval", "100ms"})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("status --watch: %v\n%s", err, out.String())
	}
	refreshes := strings.Split(out.String(), "\n\n")
	if len(refreshes) < 2 || strings.Contains(out.String(), "\x1b[") {
		t.Fatalf("status --watch printed %d refreshes, want 2 or more and no escapes:\n%s", len(refreshes), out.String())
	}
	for _, r := range refreshes {
		if !strings.HasPrefix(r, "job j ") || !strings.Contains(r, "coordinator coord-a: running") {
			t.Errorf("refresh %q", r)
		}
	}
	if _, err := runCLI(t, "status", "--coordinator", addr, "--watch", "--interval", "0s"); err == nil {
		t.Error("status --watch --interval 0s: no error")
	}
}

// On a terminal each refresh clears the screen and redraws it; a status
// that cannot be had is shown, and the watch goes on.
func TestStatusWatchOnATerminal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	render := func(_ context.Context, w io.Writer) error {
		n++
		switch n {
		case 2:
			return errors.New("no coordinator answered")
		case 3:
			cancel()
		}
		io.WriteString(w, "job j\n")
		return nil
	}
	var out bytes.Buffer
	if err := watchStatus(ctx, &out, true, time.Millisecond, render); err != nil {
		t.Fatal(err)
	}
	want := clearScreen + "job j\n\n(every 1ms; Ctrl-C to stop)\n" +
		clearScreen + "status: no coordinator answered\n\n(every 1ms; Ctrl-C to stop)\n" +
		clearScreen + "job j\n\n(every 1ms; Ctrl-C to stop)\n"
	if out.String() != want {
		t.Errorf("terminal refreshes %q, want %q", out.String(), want)
	}
}
