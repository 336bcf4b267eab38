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
	e, err := newEngine(ctx, spec, spec.BatchSize, logf)
	if err != nil {
		return BenchResult{}, err
	}
	defer e.Close()
	e.sched = models.ConstantLR{Base: spec.Optimizer.LR}
	solo := ring{rank: 0, world: 1}
	var pipe *pipeline
	defer func() {
		if pipe != nil {
			pipe.stop()
		}
	}()
	b := spec.BatchSize
	step := func() error {
		// Whole batches only, so every step is alike: an epoch's short
		// last step is skipped for the next epoch's first.
		if pipe == nil || e.pos.Epoch != e.orderEp || e.train.Len()-e.pos.Consumed < b {
			if pipe != nil {
				pipe.stop()
			}
			e.pos = dataset.Position{Epoch: e.orderEp + 1}
			if err := e.ensureOrder(); err != nil {
				return err
			}
			pipe = startPipeline(e.train, e.order, 0, b, 0, 1, e.trainTransform(e.pos.Epoch), spec.DataThreads)
		}
		_, err := e.trainStep(ctx, solo, pipe)
		return err
	}
	warmup := max(10, steps/10)
	for i := 0; i < warmup; i++ {
		if err := step(); err != nil {
			return BenchResult{}, err
		}
	}
	res := BenchResult{Model: spec.Model, BatchSize: b, Threads: e.threads, Steps: steps, Repeats: repeats}
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
