package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/faults"
)

// Bad flags are clear errors before anything starts.
func TestChaosRefusesBadFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-etcd")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"chaos", "--schedules", "0"}, "--schedules 0: must be at least 1"},
		{[]string{"chaos", "--faults", "pause,explode"}, `unknown fault kind "explode"`},
		{[]string{"chaos", "--faults", ""}, "no fault kind given"},
		{[]string{"chaos", "--bound", "1s"}, "--bound 1s: must be at least 10s"},
		{[]string{"chaos", "--etcd-bin", missing, "--out", t.TempDir()}, "--etcd-bin " + missing + ": not a file"},
	} {
		out, err := runCLIWithin(t, 30*time.Second, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q\n%s", c.args, err, c.want, out)
		}
	}
}

// TestChaosShortCampaign runs a short fault campaign on clusters of real
// processes: an uninterrupted run, then seeds 4 and 5 — the checkpoint
// disk full twice (as root) and etcd's quorum lost; slow ring links, the
// leader killed and restarted, and a worker paused. No invariant may
// break.
func TestChaosShortCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	bin, data := binary(t)
	cfg := faults.Config{
		Exe: bin, Etcd: etcdBinary(t), DataDir: filepath.Join(data, "mnist"), Dir: t.TempDir(),
		Shape: faults.DefaultShape, Kinds: faults.Kinds, Job: faults.CampaignJob(faults.DefaultShape.Workers),
		Bound: 2 * time.Minute, Status: chaosStatus, Root: os.Geteuid() == 0, Logf: t.Logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := faults.Run(ctx, cfg, 4, 2, func(res faults.Result) { t.Logf("\n%s", res.Text()) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Text())
	if len(rep.Results) != 3 || rep.Reference == nil {
		t.Fatalf("%d results, reference %v", len(rep.Results), rep.Reference)
	}
	for _, res := range rep.Results {
		for _, v := range res.Violations {
			t.Errorf("seed %d: %v (logs in %s)", res.Seed, v, res.Dir)
		}
	}
}
