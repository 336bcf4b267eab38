package coordinator

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/runlog"
)

// RunDir is the run directory of ServerConfig.
func (s *Server) RunDir() string { return s.cfg.RunDir }

// WriteRunProducts writes what a cluster run leaves in RunDir beside
// metrics.jsonl, as single-node training does: summary.json, curves.png,
// and model.safetensors (checkpoint.ModelFile), the model of the newest committed checkpoint with its
// workers' shards merged into one file, every tensor under its PyTorch
// state_dict name.
//
// sum brings what only the caller knows (threads, wall seconds, peak RSS,
// whether the run resumed or was interrupted; images/s, else the last
// "train" record's); the job's own figures are filled in: the spec's, and
// the step, test and training figures of the checkpoint, which is
// sum.Checkpoint or else the store's newest. launch, unless zero, is when
// the run started, for SecondsTo99. It returns the summary it wrote. It
// may be called while Run runs (a leader whose job is done) or after.
func (s *Server) WriteRunProducts(sum runlog.Summary, launch time.Time) (runlog.Summary, error) {
	dir := s.cfg.RunDir
	if dir == "" {
		return sum, errors.New("coordinator: no run directory")
	}
	spec := s.cfg.Spec
	sum.Model, sum.Dataset, sum.Epochs, sum.BatchSize, sum.Seed = spec.Model, spec.Dataset, spec.Epochs, spec.BatchSize, spec.Seed
	// The leader adds records under s.mu.
	s.mu.Lock()
	records, err := runlog.ReadRecords(dir)
	s.mu.Unlock()
	if err != nil {
		return sum, err
	}
	if sum.ImagesPerSecond == 0 {
		for _, r := range records {
			if r.Kind == "train" && r.ImagesPerSecond > 0 {
				sum.ImagesPerSecond = r.ImagesPerSecond
			}
		}
	}
	if !launch.IsZero() {
		for _, r := range records {
			if r.Kind == "eval" && r.Accuracy >= 0.99 {
				sum.SecondsTo99 = r.Time.Sub(launch).Seconds()
				break
			}
		}
	}
	var errs []error
	if sum.Checkpoint == "" {
		if sum.Checkpoint, err = s.cfg.Store.Latest(); err != nil {
			errs = append(errs, err)
		}
	}
	if sum.Checkpoint != "" {
		m, err := s.cfg.Store.ReadManifest(sum.Checkpoint)
		if err == nil {
			sum.Steps = m.Step
			sum.TestAccuracy, sum.TestLoss, sum.TrainLoss = m.Metrics.TestAccuracy, m.Metrics.TestLoss, m.Metrics.TrainLoss
			err = s.cfg.Store.ExportModel(sum.Checkpoint, filepath.Join(dir, checkpoint.ModelFile))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("coordinator: the final model: %w", err))
		}
	}
	if err := runlog.WriteSummary(dir, sum); err != nil {
		errs = append(errs, err)
	}
	if err := runlog.WritePlot(dir, spec.Model, records); err != nil {
		errs = append(errs, err)
	}
	return sum, errors.Join(errs...)
}
