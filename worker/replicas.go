package worker

import (
	"fmt"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// minReplicaBatch is the smallest slice of a batch worth a core of its own.
// Below it, the step runs on one tape with the kernels split across cores.
const minReplicaBatch = 8

// compute runs forward and backward of training batches and leaves the
// batch-mean gradient in the model's arena.
//
// With one thread, or batches too small to split, one tape runs the whole
// batch and its kernels share the pool. Otherwise the batch is split into
// one contiguous slice per thread, each run by a replica of the model (same
// parameters, own gradients) on a core of its own with single-threaded
// kernels, and the replicas' gradients are summed in replica order,
// weighted by slice size. Small networks such as LeNet-5 spend a step in
// many small kernels, which scale poorly across cores; whole slices do.
// Both ways are deterministic for a given thread count.
type compute struct {
	seed     uint64
	rngs     []*rand.PCG // the dropout streams of model (index 0) and the replicas
	model    *models.Model
	pool     *tensorcore.Pool
	tape     *tensorcore.Tape // the single-tape way
	replicas []*replica       // the split way; replicas[0] runs on model
	shape    func(n int) []int
	size     int // floats per image

	// the batch of the step in progress, read by runPart
	x       []float32
	y       []int
	n       int
	runPart func(lo, hi int)
	sumPart func(lo, hi int)
}

type replica struct {
	model   *models.Model
	pool    *tensorcore.Pool // one worker: kernels run on the replica's goroutine with its own scratch
	tape    *tensorcore.Tape
	lo, hi  int
	loss    float64
	correct int
}

func newCompute(model *models.Model, pool *tensorcore.Pool, threads, batch int, seed uint64, in *input) (*compute, error) {
	c := &compute{seed: seed, model: model, pool: pool, shape: in.shape, size: in.size()}
	c.rngs = []*rand.PCG{useStream(model)}
	if threads < 2 || batch < threads*minReplicaBatch {
		c.tape = tensorcore.NewTape(pool)
		return c, nil
	}
	for r := 0; r < threads; r++ {
		m := model
		if r > 0 {
			var err error
			if m, err = model.Replica(seed, r); err != nil {
				return nil, fmt.Errorf("worker: %w", err)
			}
			c.rngs = append(c.rngs, useStream(m))
		}
		p := tensorcore.NewPool(1)
		c.replicas = append(c.replicas, &replica{model: m, pool: p, tape: tensorcore.NewTape(p)})
	}
	c.runPart = func(lo, hi int) {
		for r := lo; r < hi; r++ {
			c.replicas[r].run(c)
		}
	}
	c.sumPart = c.sumGradients
	return c, nil
}

// Close releases the replicas' pools.
func (c *compute) Close() {
	for _, r := range c.replicas {
		r.pool.Close()
	}
}

// useStream gives m a dropout RNG whose state the worker sets each step.
func useStream(m *models.Model) *rand.PCG {
	src := rand.NewPCG(0, 0)
	m.RNG = rand.New(src)
	return src
}

// step runs forward and backward of training step number step on x
// (len(y) images), leaving the batch-mean gradient in the model's arena,
// and returns the batch's mean loss and its number of correct predictions.
// The dropout streams are seeded from (seed, step, replica), so a run
// resumed at any step draws the same masks as one that never stopped.
func (c *compute) step(step int, x []float32, y []int) (loss float64, correct int) {
	for r, src := range c.rngs {
		src.Seed(c.seed, uint64(step)<<8|uint64(r))
	}
	if c.tape != nil {
		tp := c.tape
		tp.Reset()
		xv := tp.Const(tensorcore.FromSlice(x, c.shape(len(y))...))
		logits := c.model.Forward(tp, xv, true)
		lv := tp.CrossEntropy(logits, y)
		c.model.Arena.ZeroGrad()
		tp.Backward(lv)
		return float64(lv.Value.Data[0]), models.CountCorrect(logits.Value, y)
	}
	n, parts := len(y), len(c.replicas)
	for i, r := range c.replicas {
		r.lo, r.hi = i*n/parts, (i+1)*n/parts
	}
	c.x, c.y, c.n = x, y, n
	c.pool.For(parts, 1, c.runPart)
	c.pool.For(len(c.model.Arena.Grad), 1<<14, c.sumPart)
	for _, r := range c.replicas {
		loss += r.loss * float64(r.hi-r.lo)
		correct += r.correct
	}
	for _, r := range c.replicas[1:] {
		// Replicas see the model's running statistics, not their own.
		copy(r.model.Arena.Buffers, c.model.Arena.Buffers)
	}
	return loss / float64(n), correct
}

// sumGradients sums elements [lo, hi) of the replicas' gradients into the
// model's arena in replica order, each weighted by its share of the batch
// (the loss is a batch mean). Each element's sum has the same order
// however the range is split, so the result is deterministic.
func (c *compute) sumGradients(lo, hi int) {
	g := c.model.Arena.Grad[lo:hi]
	first := c.replicas[0]
	scale(g, float32(first.hi-first.lo)/float32(c.n))
	for _, r := range c.replicas[1:] {
		w := float32(r.hi-r.lo) / float32(c.n)
		for i, v := range r.model.Arena.Grad[lo:hi] {
			g[i] += w * v
		}
	}
}

func scale(xs []float32, a float32) {
	for i := range xs {
		xs[i] *= a
	}
}

// run does forward and backward of the replica's slice of the batch.
func (r *replica) run(c *compute) {
	r.loss, r.correct = 0, 0
	r.model.Arena.ZeroGrad()
	if r.hi == r.lo {
		return
	}
	tp := r.tape
	tp.Reset()
	y := c.y[r.lo:r.hi]
	xv := tp.Const(tensorcore.FromSlice(c.x[r.lo*c.size:r.hi*c.size], c.shape(len(y))...))
	logits := r.model.Forward(tp, xv, true)
	lv := tp.CrossEntropy(logits, y)
	tp.Backward(lv)
	r.loss = float64(lv.Value.Data[0])
	r.correct = models.CountCorrect(logits.Value, y)
}
