package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/dashboard"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/worker"
)

type quietProgress struct{}

func (quietProgress) EpochStart(epoch, epochs, steps, done int) {}
func (quietProgress) Step(worker.StepStats)                     {}
func (quietProgress) EpochEnd(worker.EvalStats)                 {}

// TestSoloDashboard serves the dashboard of a single-node run (the
// synthetic set, 2 epochs) and reads its endpoints before and after it:
// the status of the ring of one, the curves' records (as metrics.jsonl
// has them), the committed checkpoints, the job file, and no generations.
func TestSoloDashboard(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	spec := job.Default()
	spec.Dataset, spec.Epochs, spec.Threads = "synthetic", 2, 1
	ui := newSoloUI(quietProgress{}, spec, dir)
	srv := httptest.NewServer(dashboard.Handler(ui))
	defer srv.Close()
	get := func(path string, v any) string {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("GET %s: %v\n%s", path, err, b)
			}
		}
		return string(b)
	}

	var st api.StatusReply
	get("/api/status", &st)
	if st.State != "starting" || len(st.Workers) != 1 || st.Workers[0].Stats != nil || st.Coordinator != "" || st.Epochs != 2 {
		t.Errorf("status before the run: %+v", st)
	}
	var ck dashboard.Checkpoints
	get("/api/checkpoints", &ck)
	if !filepath.IsAbs(ck.Store) || len(ck.Checkpoints) != 0 {
		t.Errorf("checkpoints before the run: %+v", ck)
	}

	sum, err := worker.Train(context.Background(), worker.Options{Spec: spec, RunDir: dir, Progress: ui})
	ui.finish(err)
	if err != nil {
		t.Fatal(err)
	}
	st = api.StatusReply{}
	get("/api/status", &st)
	if st.State != "done" || st.Step != int64(sum.Steps) || st.Epoch != 2 || st.LastEval == nil || st.LastEval.Accuracy != sum.TestAccuracy ||
		st.LastCheckpoint != sum.Checkpoint || st.Workers[0].Stats == nil || st.Workers[0].Stats.ImagesPerSecond <= 0 {
		t.Errorf("status after the run: %+v (summary %+v)", st, sum)
	}
	var recs dashboard.RecordsReply
	get("/api/records", &recs)
	kinds := map[string]int{}
	for _, r := range recs.Records {
		kinds[r.Kind]++
	}
	if kinds["train"] < 2 || kinds["eval"] != 2 || recs.Next != len(recs.Records) {
		t.Errorf("records after the run: %d train, %d eval, next %d", kinds["train"], kinds["eval"], recs.Next)
	}
	if disk, _ := runlog.ReadRecords(dir); len(disk) != len(recs.Records) {
		t.Errorf("the dashboard has %d records, metrics.jsonl %d", len(recs.Records), len(disk))
	}
	ck = dashboard.Checkpoints{}
	get("/api/checkpoints", &ck)
	if n := len(ck.Checkpoints); n == 0 || ck.Checkpoints[n-1].Name != sum.Checkpoint || ck.Checkpoints[n-1].Bytes <= 0 ||
		ck.Checkpoints[n-1].TestAccuracy != sum.TestAccuracy {
		t.Errorf("checkpoints after the run: %+v (summary %+v)", ck, sum)
	}
	var gens dashboard.GenerationsReply
	get("/api/generations", &gens)
	if gens.Generations == nil || len(gens.Generations) != 0 {
		t.Errorf("generations of a single-node run: %+v", gens)
	}
	if y := get("/api/job", nil); !strings.Contains(y, "dataset: synthetic") {
		t.Errorf("job file:\n%s", y)
	}
}

// TestTrainUIAddress: --ui is checked before anything runs.
func TestTrainUIAddress(t *testing.T) {
	_, err := runCLI(t, "train", "--ui", "nohost", "--out", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--ui: dashboard: address \"nohost\"") {
		t.Errorf("train --ui nohost: %v", err)
	}
}
