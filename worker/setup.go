package worker

import (
	"cmp"
	"context"
	"runtime"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// setup is what Train and Bench both build before their first step: the
// model, its data, the optimizer, the compute pool and the step runner.
type setup struct {
	threads     int
	model       *models.Model
	train, test *dataset.MNIST
	in          *input
	opt         models.Optimizer
	pool        *tensorcore.Pool
	compute     *compute
}

// newSetup builds a setup for a validated spec, using only the first
// trainLimit and testLimit samples when they are positive. Close releases
// its pools.
func newSetup(ctx context.Context, spec job.Spec, logf func(string, ...any), trainLimit, testLimit int) (*setup, error) {
	s := &setup{threads: spec.Threads}
	if s.threads == 0 {
		s.threads = runtime.GOMAXPROCS(0)
	}
	var err error
	if s.model, err = models.Build(spec.Model, spec.Seed); err != nil {
		return nil, err
	}
	if s.train, s.test, err = loadData(ctx, spec, logf); err != nil {
		return nil, err
	}
	s.train, s.test = head(s.train, cmp.Or(spec.TrainLimit, trainLimit)), head(s.test, cmp.Or(spec.TestLimit, testLimit))
	if s.in, err = newInput(s.model.InputShape, s.train); err != nil {
		return nil, err
	}
	if s.opt, err = newOptimizer(spec.Optimizer, s.model.Arena); err != nil {
		return nil, err
	}
	s.pool = tensorcore.NewPool(s.threads)
	if s.compute, err = newCompute(s.model, s.pool, s.threads, spec.BatchSize, spec.Seed, s.in); err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the setup's pools.
func (s *setup) Close() {
	s.compute.Close()
	s.pool.Close()
}
