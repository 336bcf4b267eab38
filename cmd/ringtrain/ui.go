package main

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/dashboard"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/worker"
)

// soloUI is the dashboard's source for single-node training: it passes
// the run's progress on to the terminal and keeps the latest figures; the
// curves come from the run directory's metrics.jsonl and the checkpoints
// from its store.
type soloUI struct {
	next    worker.Progress // the terminal's display
	spec    job.Spec
	jobYAML string
	store   string
	records *dashboard.RecordsFile

	mu        sync.Mutex
	state     string // starting, running, done or stopped
	reason    string
	step      worker.StepStats
	stepped   bool
	seen      time.Time
	eval      *api.Eval
	ckptNames []string
	ckptList  []dashboard.Checkpoint
}

// soloWorker is the name of the one rank of a single-node run.
const soloWorker = "local"

func newSoloUI(next worker.Progress, spec job.Spec, runDir string) *soloUI {
	y, _ := spec.YAML()
	store, _, err := checkpoint.JobDir(filepath.Join(runDir, "checkpoints"), spec.JobName(), spec.Hash())
	if err != nil {
		store = filepath.Join(runDir, "checkpoints")
	}
	if abs, err := filepath.Abs(store); err == nil {
		store = abs
	}
	return &soloUI{
		next: next, spec: spec, jobYAML: string(y),
		store:   store,
		records: dashboard.NewRecordsFile(runDir),
		state:   "starting", reason: "single-node run in " + runDir,
	}
}

func (u *soloUI) EpochStart(epoch, epochs, steps, done int) {
	u.mu.Lock()
	u.state = "running"
	u.mu.Unlock()
	u.next.EpochStart(epoch, epochs, steps, done)
}

func (u *soloUI) Step(s worker.StepStats) {
	u.mu.Lock()
	u.state, u.step, u.stepped, u.seen = "running", s, true, time.Now()
	u.mu.Unlock()
	u.next.Step(s)
}

func (u *soloUI) EpochEnd(e worker.EvalStats) {
	u.mu.Lock()
	u.eval = &api.Eval{Epoch: e.Epoch, Loss: e.Loss, Accuracy: e.Accuracy}
	u.mu.Unlock()
	u.next.EpochEnd(e)
}

// finish records how the run ended.
func (u *soloUI) finish(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil {
		u.state, u.reason = "stopped", err.Error()
		return
	}
	u.state, u.reason = "done", "the job is complete"
}

func (u *soloUI) Status(context.Context) *api.StatusReply {
	ck := u.Checkpoints()
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.spec
	r := &api.StatusReply{
		Job: s.Name, JobHash: s.Hash(), Model: s.Model, Dataset: s.Dataset, Codec: s.Codec,
		State: u.state, Reason: u.reason, Ring: []string{soloWorker}, MinWorkers: 1, MaxWorkers: 1, Epochs: s.Epochs,
		LastEval: u.eval,
	}
	if n := len(ck.Checkpoints); n > 0 {
		r.LastCheckpoint = ck.Checkpoints[n-1].Name
	}
	w := api.WorkerStatus{Name: soloWorker, Rank: 0}
	if u.stepped {
		st := u.step
		r.Step, r.Epoch, r.ImagesPerSecond = int64(st.Step), st.Epoch, st.ImagesPerSecond
		w.Step, w.LastSeen = int64(st.Step), u.seen
		w.Stats = &api.WorkerStats{Epoch: st.Epoch, Loss: st.Loss, Accuracy: st.Accuracy, ImagesPerSecond: st.ImagesPerSecond, LR: st.LR}
	}
	if u.state == "done" {
		r.Epoch = s.Epochs
	}
	r.Workers = []api.WorkerStatus{w}
	return r
}

func (u *soloUI) Records() []runlog.Record { return u.records.Records() }

// Generations: a single-node run is a ring of one, with no generations.
func (u *soloUI) Generations() []api.GenerationEvent { return nil }

func (u *soloUI) JobFile() string { return u.jobYAML }

// Checkpoints lists the store's committed checkpoints, reading the
// manifests again only when the list changed.
func (u *soloUI) Checkpoints() dashboard.Checkpoints {
	out := dashboard.Checkpoints{Store: u.store}
	if !checkpoint.IsStore(u.store) { // nothing written yet
		return out
	}
	st, err := checkpoint.OpenShared(u.store)
	if err != nil {
		return out
	}
	names, err := st.List()
	if err != nil {
		return out
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !slices.Equal(names, u.ckptNames) {
		list := make([]dashboard.Checkpoint, 0, len(names))
		for _, n := range names {
			m, err := st.ReadManifest(n)
			if err != nil {
				continue // removed by retention meanwhile
			}
			list = append(list, coordinator.DashboardCheckpoint(m))
		}
		u.ckptNames, u.ckptList = names, list
	}
	out.Checkpoints = slices.Clone(u.ckptList)
	return out
}
