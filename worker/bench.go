package worker

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
)

// BenchResult is the training throughput of a model measured by Bench.
type BenchResult struct {
	Model     string    `json:"model"`
	BatchSize int       `json:"batch_size"`
	Threads   int       `json:"threads"`
	Steps     int       `json:"steps"`
	Repeats   int       `json:"repeats"`
	Median    float64   `json:"images_per_second"`
	Min       float64   `json:"images_per_second_min"`
	Max       float64   `json:"images_per_second_max"`
	Samples   []float64 `json:"samples"`
	// StepMillis is the median time of one training step.
	StepMillis float64 `json:"step_ms"`
}

// Bench measures training throughput: it runs the job's model on real
// training batches (forward, backward, optimizer step, as Train does) for
// warm-up steps, then times repeats windows of steps each and reports
// images per second over them. Data loading is included, evaluation and
// checkpointing are not.
func Bench(ctx context.Context, spec job.Spec, steps, repeats int, logf func(string, ...any)) (BenchResult, error) {
	if err := CheckJob(spec); err != nil {
		return BenchResult{}, err
	}
	if steps < 1 || repeats < 1 {
		return BenchResult{}, fmt.Errorf("worker: bench needs at least one step and one repeat, got %d and %d", steps, repeats)
	}
	su, err := newSetup(ctx, spec, logf, 0, 0)
	if err != nil {
		return BenchResult{}, err
	}
	defer su.Close()
	train, in := su.train, su.in
	l := &loop{
		spec: spec, model: su.model, opt: su.opt, sched: models.ConstantLR{Base: spec.Optimizer.LR},
		train: train, in: in, sampler: dataset.NewSampler(train.N, spec.Seed, true),
		compute: su.compute, now: time.Now,
	}
	b := spec.BatchSize
	idx := make([]int, b)
	x := make([]float32, b*in.size())
	y := make([]int, b)
	step := func() error {
		for l.sampler.Next(idx) < b { // whole batches only, so every step is alike
			l.sampler.NextEpoch()
		}
		l.in.batch(train, idx, x, y)
		_, _, err := l.trainStep(x, y)
		return err
	}
	warmup := max(10, steps/10)
	for i := 0; i < warmup; i++ {
		if err := step(); err != nil {
			return BenchResult{}, err
		}
	}
	res := BenchResult{Model: spec.Model, BatchSize: b, Threads: su.threads, Steps: steps, Repeats: repeats}
	for r := 0; r < repeats; r++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		start := time.Now()
		for i := 0; i < steps; i++ {
			if err := step(); err != nil {
				return res, err
			}
		}
		res.Samples = append(res.Samples, float64(steps*b)/time.Since(start).Seconds())
	}
	sorted := append([]float64(nil), res.Samples...)
	sort.Float64s(sorted)
	res.Median = median(sorted)
	res.Min, res.Max = sorted[0], sorted[len(sorted)-1]
	res.StepMillis = 1000 * float64(b) / res.Median
	return res, nil
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
