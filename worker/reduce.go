package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
)

// gradReducer sums a model's gradients over a ring while backward runs.
//
// The arena's parameters are grouped into buckets (allreduce.PlanBuckets:
// taken from the end of the arena, since backward finishes the last layers
// first). As backward reports each parameter's gradient final, the
// parameter is scaled by the rank's weight; when every parameter of a
// bucket is, the bucket is ready. Buckets are handed to the reducing
// goroutine strictly in plan order, whatever order they become ready in,
// so every rank submits the same sequence of collective operations and
// every rank ends with bit-identical sums. wait returns when every bucket
// of the step is reduced.
//
// With afterBackward, nothing is reduced until backward has finished every
// gradient (for comparison: no overlap).
//
// begin, final, allFinal and wait are called by the step's goroutine(s);
// final may be called from several goroutines at once (the per-core
// replicas of compute).
type gradReducer struct {
	grad          []float32
	params        []models.ParamInfo
	buckets       []allreduce.Bucket
	bucketOf      []int // parameter → bucket
	afterBackward bool
	reduce        func(ctx context.Context, b int) error

	work chan int   // bucket indices, in plan order
	done chan error // one per bucket reduced, with its error
	wg   sync.WaitGroup
	// spans[b] is when bucket b's reduction of the step began and ended,
	// written by the reducing goroutine before it reports the bucket done
	// (so wait's caller reads it after wait returns, without a lock).
	spans []bucketSpan

	// Set by begin, before the step's backward reports anything.
	ctx    context.Context
	weight float32

	mu     sync.Mutex
	left   []int // per bucket: parameters not yet final this step
	next   int   // the next bucket to hand over; all before it are handed over
	closed bool
}

// newGradReducer plans the buckets of arena a for the job's limits and
// starts the goroutine that reduces them with reduce; close stops it.
func newGradReducer(a *models.Arena, lim job.Buckets, reduce func(ctx context.Context, span []float32, b allreduce.Bucket) error) (*gradReducer, error) {
	sizes := make([]int, len(a.Params))
	for i, p := range a.Params {
		sizes[i] = p.Len()
	}
	limits := allreduce.BucketLimits{First: lim.FirstKiB << 10, Cap: lim.CapKiB << 10}
	if lim.AfterBackward {
		limits = allreduce.BucketLimits{First: 4 * len(a.Grad), Cap: 4 * len(a.Grad)} // one bucket
	}
	buckets, err := allreduce.PlanBuckets(sizes, limits)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	g := &gradReducer{
		grad: a.Grad, params: a.Params, buckets: buckets, bucketOf: make([]int, len(sizes)),
		afterBackward: lim.AfterBackward,
		work:          make(chan int, len(buckets)), done: make(chan error, len(buckets)),
		left: make([]int, len(buckets)), spans: make([]bucketSpan, len(buckets)),
	}
	for bi, b := range buckets {
		for _, p := range b.Params {
			g.bucketOf[p] = bi
		}
	}
	g.reduce = func(ctx context.Context, bi int) error {
		b := buckets[bi]
		return reduce(ctx, a.Grad[b.Span.Off:b.Span.Off+b.Span.Len], b)
	}
	g.wg.Add(1)
	go g.loop()
	return g, nil
}

// loop reduces the buckets handed over, in order, until close.
func (g *gradReducer) loop() {
	defer g.wg.Done()
	for bi := range g.work {
		start := time.Now()
		err := g.reduce(g.ctx, bi) // begin wrote ctx before handing bi over
		g.spans[bi] = bucketSpan{start, time.Now()}
		g.done <- err
	}
}

// bucketSpan is when a bucket's reduction began and ended.
type bucketSpan struct{ start, end time.Time }

// close stops the reducing goroutine once the buckets handed over are done.
func (g *gradReducer) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.work)
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// begin starts a step whose gradients the rank weighs by weight. The
// previous step must have been waited for.
func (g *gradReducer) begin(ctx context.Context, weight float32) {
	g.ctx, g.weight = ctx, weight
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next = 0
	for bi, b := range g.buckets {
		g.left[bi] = len(b.Params)
	}
}

// final reports parameter p's gradient complete for this step.
func (g *gradReducer) final(p int) {
	if info := g.params[p]; g.weight != 1 {
		scale(g.grad[info.Offset:info.Offset+info.Len()], g.weight)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.left[g.bucketOf[p]]--
	g.handOverLocked()
}

// allFinal reports every parameter final (a rank with no samples this
// step, whose zero gradient needs no weighting).
func (g *gradReducer) allFinal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.left)
	g.handOverLocked()
}

// handOverLocked hands over the ready buckets at the head of the plan.
func (g *gradReducer) handOverLocked() {
	for g.next < len(g.buckets) && g.left[g.next] == 0 {
		g.work <- g.next
		g.next++
	}
}

// wait blocks until every bucket of the step is reduced and returns the
// first error. Every parameter must have been reported final.
func (g *gradReducer) wait() error {
	g.mu.Lock()
	handed := g.next
	g.mu.Unlock()
	if handed != len(g.buckets) {
		panic(fmt.Sprintf("worker: gradReducer: %d of %d buckets ready after backward", handed, len(g.buckets)))
	}
	var first error
	for range g.buckets {
		if err := <-g.done; err != nil && first == nil {
			first = err
		}
	}
	return first
}
