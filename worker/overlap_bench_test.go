package worker

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/job"
)

// BenchmarkOverlap shows what reducing gradients while backward runs buys
// when the links are slow. N engines, one per rank, train in one process
// over an in-memory ring whose every link is shaped (allreduce.Shaped) to
// a rate at which reducing the gradient alone takes about as long as
// computing it alone (comm=1.0x), or half as long (comm=0.5x). Each round
// times four things at the same rank count, each over the same steps:
//
//	compute   the ranks' steps with no reduction (forward, backward, optimizer)
//	comm      the reduction alone: every bucket of the gradient over the shaped ring
//	overlap   the engine's step: buckets reduced as backward finishes them
//	after     the same step with buckets.after_backward: reduce once backward is done
//
// and reports their medians over the rounds (b.N), with overlap/max(compute,
// comm) (the target: at most 1.2) and after/(compute+comm). A step cannot
// be shorter than the time to its first ready bucket plus the reduction
// alone (nothing is reduced during forward): overlap/bound compares the
// step with that.
//
//	go test ./worker -run '^$' -bench Overlap -benchtime 5x -timeout 30m
func BenchmarkOverlap(b *testing.B) {
	for _, model := range []string{"vgg", "resnet8"} {
		for _, n := range []int{2, 4} {
			for _, link := range []float64{1, 0.5} {
				b.Run(fmt.Sprintf("%s/ranks=%d/comm=%.1fx", model, n, link), func(b *testing.B) { benchOverlap(b, model, n, link) })
			}
		}
	}
}

// overlapSteps is how many steps one timing covers.
const overlapSteps = 6

// benchOverlap measures model on n ranks over links at which reducing the
// gradient alone takes about link times as long as computing it alone.
func benchOverlap(b *testing.B, model string, n int, link float64) {
	spec := job.Default()
	spec.Model, spec.DataDir, spec.Seed = model, realMNIST(b), 1
	spec.BatchSize, spec.Threads, spec.DataThreads = 32*n, 1, 1
	// Small buckets, as these models' gradients are small (0.3 to 2 MB):
	// a few buckets behind the first, so that the last one, ready only
	// when backward ends, is a small part of the gradient.
	small := job.Buckets{FirstKiB: 16, CapKiB: 64}
	after := job.Buckets{FirstKiB: 16, CapKiB: 64, AfterBackward: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ranks := make([]*overlapRank, n)
	for r := range ranks {
		e, err := newEngine(ctx, spec, spec.BatchSize/n, b.Logf)
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		if err := e.ensureOrder(); err != nil {
			b.Fatal(err)
		}
		pipe := startPipeline(e.train, e.order, 0, spec.BatchSize, r, n, e.trainTransform(0), spec.DataThreads)
		defer pipe.stop()
		ranks[r] = &overlapRank{e: e, pipe: pipe, rank: r}
	}
	grad := 4 * len(ranks[0].e.model.Arena.Grad)

	// Compute alone fixes the link rate: a ring all-reduce sends 2(N−1)/N
	// of the gradient over each link, in link times compute's time.
	timeAll(b, ranks, 1, func(r *overlapRank) error { return r.step(ctx, ring{rank: r.rank, world: n}) })
	compute0 := timeAll(b, ranks, overlapSteps, func(r *overlapRank) error { return r.step(ctx, ring{rank: r.rank, world: n}) })
	shape := allreduce.LinkShape{
		BytesPerSecond: float64(2*(n-1)*grad/n) / (link * compute0.Seconds() / overlapSteps),
		Latency:        100 * time.Microsecond,
	}
	net, err := allreduce.NewMemNetwork(n, 4, 0)
	if err != nil {
		b.Fatal(err)
	}
	for i, r := range ranks {
		comm, err := allreduce.New(allreduce.Shaped(net.Transport(i), shape), allreduce.Config{Job: 1, Generation: 1})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- comm.Run(ctx) }()
		defer func() { comm.Close(); <-done }()
		r.comm = comm
		reduce := func(ctx context.Context, span []float32, _ allreduce.Bucket) error {
			if r.firstAt.IsZero() {
				r.firstAt = time.Now()
			}
			return comm.AllReduce(ctx, span)
		}
		for _, lim := range []job.Buckets{small, after} {
			g, err := newGradReducer(r.e.model.Arena, lim, reduce)
			if err != nil {
				b.Fatal(err)
			}
			defer g.close()
			r.reducers = append(r.reducers, g)
		}
	}
	b.Logf("%s, %d ranks: gradient %.2f MB in %d buckets; links %.1f MB/s, %v latency",
		model, n, float64(grad)/1e6, len(ranks[0].reducers[0].buckets), shape.BytesPerSecond/1e6, shape.Latency)

	modes := []struct {
		name string
		fn   func(r *overlapRank) error
	}{
		{"compute", func(r *overlapRank) error { return r.step(ctx, ring{rank: r.rank, world: n}) }},
		{"comm", func(r *overlapRank) error { return r.reduceOnly(ctx) }},
		{"overlap", func(r *overlapRank) error {
			return r.step(ctx, ring{rank: r.rank, world: n, comm: r.comm, grads: r.reducers[0]})
		}},
		{"after", func(r *overlapRank) error {
			return r.step(ctx, ring{rank: r.rank, world: n, comm: r.comm, grads: r.reducers[1]})
		}},
	}
	for _, m := range modes { // warm every path once
		timeAll(b, ranks, 1, m.fn)
	}
	for _, r := range ranks {
		r.waited, r.waits = 0, 0
	}
	times := make([][]float64, len(modes))
	b.ResetTimer()
	for range b.N {
		for i, m := range modes {
			times[i] = append(times[i], timeAll(b, ranks, overlapSteps, m.fn).Seconds()*1000/overlapSteps)
		}
	}
	b.StopTimer()
	med := make([]float64, len(modes))
	for i, m := range modes {
		sorted := slices.Sorted(slices.Values(times[i]))
		med[i] = median(sorted)
		b.ReportMetric(med[i], m.name+"-ms/step")
	}
	compute, comm, overlap, afterB := med[0], med[1], med[2], med[3]
	// No bucket can be reduced before backward has finished its first
	// one: a step takes at least that long plus the reduction alone.
	var first float64
	for _, r := range ranks {
		first = max(first, r.waited.Seconds()*1000/float64(r.waits))
	}
	bound := math.Max(compute, first+comm)
	b.ReportMetric(overlap/math.Max(compute, comm), "overlap/max")
	b.ReportMetric(overlap/bound, "overlap/bound")
	b.ReportMetric(afterB/(compute+comm), "after/sum")
	b.Logf("%s, %d ranks: compute %.1f ms, comm %.1f ms, overlap %.1f ms (%.2f× max, %.2f× the bound %.1f ms: first bucket ready after %.1f ms), after backward %.1f ms (%.2f× sum); per round: %.1f",
		model, n, compute, comm, overlap, overlap/math.Max(compute, comm), overlap/bound, bound, first, afterB, afterB/(compute+comm), times)
}

// overlapRank is one rank of BenchmarkOverlap's in-process ring.
type overlapRank struct {
	e        *engine
	pipe     *pipeline
	rank     int
	comm     *allreduce.Comm
	reducers []*gradReducer // small buckets, then after_backward

	// firstAt is when the step's first bucket began its reduction;
	// waited sums, over the overlapped steps, the time from each step's
	// start to it.
	firstAt time.Time
	waited  time.Duration
	waits   int
}

// step runs one engine step, starting the next epoch's pipeline when one
// ends.
func (r *overlapRank) step(ctx context.Context, rg ring) error {
	r.firstAt = time.Time{}
	start := time.Now()
	if _, err := r.e.trainStep(ctx, rg, r.pipe, hooks{}); err != nil {
		return err
	}
	if rg.grads != nil && rg.grads == r.reducers[0] && !r.firstAt.IsZero() {
		r.waited += r.firstAt.Sub(start)
		r.waits++
	}
	if e := r.e; e.pos.Consumed == 0 {
		r.pipe.stop()
		if err := e.ensureOrder(); err != nil {
			return err
		}
		r.pipe = startPipeline(e.train, e.order, 0, e.spec.BatchSize, rg.rank, rg.world, e.trainTransform(e.pos.Epoch), e.spec.DataThreads)
	}
	return nil
}

// reduceOnly reduces the gradient as the engine's step does (every bucket,
// then BatchNorm's buffers), with nothing computed.
func (r *overlapRank) reduceOnly(ctx context.Context) error {
	g := r.reducers[0]
	g.begin(ctx, 1)
	g.allFinal()
	if err := g.wait(); err != nil {
		return err
	}
	if a := r.e.model.Arena; len(a.Buffers) > 0 {
		return r.comm.AllReduceExact(ctx, a.Buffers)
	}
	return nil
}

// timeAll runs fn steps times on every rank at once and returns the wall
// time until the last rank is done.
func timeAll(b *testing.B, ranks []*overlapRank, steps int, fn func(r *overlapRank) error) time.Duration {
	b.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(ranks))
	for i, r := range ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range steps {
				if errs[i] = fn(r); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("rank %d: %v", i, err)
		}
	}
	return time.Since(start)
}
