package worker

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// defaultThreads is the compute threads of a job that names none.
func defaultThreads() int { return runtime.GOMAXPROCS(0) }

// minReplicaBatch is the smallest slice of a batch worth a core of its own.
// Below it, the step runs on one tape with the kernels split across cores.
const minReplicaBatch = 8

// minReplicaFLOPPerParam is the least GEMM arithmetic a replica's slice
// must do per parameter for replicas to pay. Each replica repeats work in
// proportion to the parameters, whatever its slice: it packs every weight
// matrix, writes a whole weight gradient, and the replicas' gradients are
// summed after. Nets whose every weight serves one multiply-add per image
// (multilayer perceptrons: about 4 FLOP per parameter and image) stay
// under it at the usual batches and run faster on one tape with split
// kernels (the MLP at batch 64 on 2 cores: 1.25× a replica pair); ConvNets
// reuse each weight across an image's positions and clear it by far
// (LeNet-5 about 37 FLOP per parameter and image, ResNet-20 about 900).
const minReplicaFLOPPerParam = 600

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
//
// The replicas' pools compute in the precision of pool (see
// tensorcore.Pool.SetPrecision).
//
// With accumulation (accum > 1), each tape runs its share of the batch in
// accum micro-batches one after another, adding their gradients (each
// weighted by its share): the activations held at once are a micro-batch's,
// so a rank trains at a batch its memory could not hold. BatchNorm
// normalizes each micro-batch by its own statistics, as PyTorch does under
// accumulation.
//
// When step is given a final function, it reports each parameter's
// gradient as soon as the batch's gradient of it is complete in the
// model's arena (summed over the replicas), while backward goes on.
type compute struct {
	seed     uint64
	loss     models.Loss // the training loss
	accum    int         // micro-batches per tape and step (at least 1)
	rngs     []*rand.PCG // the dropout streams of model (index 0) and the replicas
	model    *models.Model
	pool     *tensorcore.Pool
	tape     *tensorcore.Tape // the single-tape way
	replicas []*replica       // the split way; replicas[0] runs on model
	in       dataset.Shape
	size     int              // floats per image
	paramOf  map[*float32]int // the model's gradient buffers → parameter index
	seen     []bool           // parameters reported this step (one tape)
	count    []atomic.Int32   // replicas done with each parameter this step
	final    func(p int)      // the step's final, nil for none

	// the batch of the step in progress, read by runPart
	x       []float32
	y       []int
	n       int
	runPart func(lo, hi int)
	sumPart func(lo, hi int)
}

type replica struct {
	paramOf map[*float32]int
	seen    []bool
	model   *models.Model
	pool    *tensorcore.Pool // one worker: kernels run on the replica's goroutine with its own scratch
	tape    *tensorcore.Tape
	lo, hi  int
	loss    float64
	correct int
	fwdEnd  time.Time // when its forward (and loss) ended this step
}

// newCompute prepares the steps of model; a nil loss is cross-entropy.
func newCompute(model *models.Model, pool *tensorcore.Pool, threads, batch, accum int, seed uint64, loss models.Loss, in dataset.Shape) (*compute, error) {
	accum = max(accum, 1)
	if loss == nil {
		loss = models.CrossEntropy
	}
	c := &compute{seed: seed, loss: loss, accum: accum, model: model, pool: pool, in: in, size: in.Size()}
	c.paramOf = gradIndex(model.Arena)
	c.seen = make([]bool, len(model.Arena.Params))
	c.rngs = []*rand.PCG{useStream(model)}
	if micro := (batch + accum - 1) / accum; threads < 2 || micro < threads*minReplicaBatch || !replicasPay(model, in, micro/threads) {
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
		if err := p.SetPrecision(pool.Precision()); err != nil { // the engine's pool could, so this one can
			return nil, fmt.Errorf("worker: %w", err)
		}
		c.replicas = append(c.replicas, &replica{
			model: m, pool: p, tape: tensorcore.NewTape(p),
			paramOf: gradIndex(m.Arena), seen: make([]bool, len(m.Arena.Params)),
		})
	}
	c.count = make([]atomic.Int32, len(model.Arena.Params))
	c.runPart = func(lo, hi int) {
		for r := lo; r < hi; r++ {
			c.replicas[r].run(c)
		}
	}
	c.sumPart = c.sumGradients
	return c, nil
}

// replicasPay reports whether per-core replicas of model, each running
// perReplica images of shape in, do enough arithmetic per parameter (see
// minReplicaFLOPPerParam). It depends only on the model, the shape and the
// batch, so a job computes the same way every run.
func replicasPay(model *models.Model, in dataset.Shape, perReplica int) bool {
	return trainFLOP(model, in)*float64(perReplica) >= minReplicaFLOPPerParam*float64(len(model.Arena.Data))
}

// trainFLOP is the GEMM arithmetic of one image's training step of model
// (forward and backward), read from a profiled forward pass of one blank
// image of shape in in evaluation mode (which changes no state).
func trainFLOP(model *models.Model, in dataset.Shape) float64 {
	var prof tensorcore.Profile
	tp := tensorcore.NewTape(nil)
	tp.SetProfile(&prof)
	tp.SumAll(model.Forward(tp, tp.Const(tensorcore.New(1, in.C, in.H, in.W)), false))
	var flop float64
	for _, op := range prof.Ops {
		flop += op.FwdFLOP + op.BwdFLOP
	}
	return flop
}

// firstTape is the tape of the single-tape way, or the first replica's
// (which runs on a core of its own).
func (c *compute) firstTape() *tensorcore.Tape {
	if c.tape != nil {
		return c.tape
	}
	return c.replicas[0].tape
}

// firstBatch is how many of a batch of n samples firstTape computes (over
// its micro-batches).
func (c *compute) firstBatch(n int) int {
	if c.tape != nil {
		return n
	}
	return n / len(c.replicas)
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

// gradIndex maps the first element of each parameter's gradient in a to
// the parameter's index (zero-sized parameters have none).
func gradIndex(a *models.Arena) map[*float32]int {
	m := make(map[*float32]int, len(a.Params))
	for i, p := range a.Params {
		if p.Len() > 0 {
			m[&a.Grad[p.Offset]] = i
		}
	}
	return m
}

// step runs forward and backward of training step number step on x
// (len(y) images), leaving the batch-mean gradient in the model's arena,
// and returns the batch's mean loss, its number of correct predictions and
// when forward (with the loss) ended: on per-core replicas, when the last
// replica's did. Reading the clock changes nothing computed.
// The dropout streams are seeded from (seed, step, replica), so a run
// resumed at any step draws the same masks as one that never stopped.
// final, when not nil, is told each parameter whose gradient is complete,
// once, possibly from several goroutines at once.
func (c *compute) step(step int, x []float32, y []int, final func(p int)) (loss float64, correct int, fwdEnd time.Time) {
	for r, src := range c.rngs {
		src.Seed(c.seed, uint64(step)<<8|uint64(r))
	}
	c.final = final
	if c.tape != nil {
		c.model.Arena.ZeroGrad()
		sum, correct, fwdEnd := c.run(c.tape, c.model, x, y, 0, len(y), c.paramOf, c.seen, final)
		return sum / float64(len(y)), correct, fwdEnd
	}
	n, parts := len(y), len(c.replicas)
	for i, r := range c.replicas {
		r.lo, r.hi = i*n/parts, (i+1)*n/parts
	}
	c.x, c.y, c.n = x, y, n
	for i := range c.count {
		c.count[i].Store(0)
	}
	c.pool.For(parts, 1, c.runPart)
	if final == nil {
		c.pool.For(len(c.model.Arena.Grad), 1<<14, c.sumPart)
	}
	for _, r := range c.replicas {
		loss += r.loss * float64(r.hi-r.lo)
		correct += r.correct
		if r.fwdEnd.After(fwdEnd) {
			fwdEnd = r.fwdEnd
		}
	}
	for _, r := range c.replicas[1:] {
		// Replicas see the model's running statistics, not their own.
		copy(r.model.Arena.Buffers, c.model.Arena.Buffers)
	}
	return loss / float64(n), correct, fwdEnd
}

// backward runs tp's backward pass from lv and, when final is not nil,
// tells it the index (by paramOf) of each parameter whose gradient is
// complete, then those the tape never saw; seen is the scratch for that.
func backward(tp *tensorcore.Tape, lv *tensorcore.Var, paramOf map[*float32]int, seen []bool, final func(p int)) {
	if final == nil {
		tp.Backward(lv)
		return
	}
	clear(seen)
	tp.BackwardNotify(lv, func(g *tensorcore.Tensor) {
		if len(g.Data) == 0 {
			return
		}
		if p, ok := paramOf[&g.Data[0]]; ok {
			seen[p] = true
			final(p)
		}
	})
	for p, ok := range seen {
		if !ok {
			final(p)
		}
	}
}

// replicaDone counts one replica done with parameter p; the last one sums
// p's gradient over the replicas and reports it final.
func (c *compute) replicaDone(p int) {
	if int(c.count[p].Add(1)) != len(c.replicas) {
		return
	}
	info := c.model.Arena.Params[p]
	c.sumGradients(info.Offset, info.Offset+info.Len())
	c.final(p)
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
		tensorcore.Axpy(float32(r.hi-r.lo)/float32(c.n), r.model.Arena.Grad[lo:hi], g)
	}
}

// scale multiplies xs by a, in place.
func scale(xs []float32, a float32) { tensorcore.Scale(xs, a, xs) }

// run does forward and backward of the replica's slice of the batch.
func (r *replica) run(c *compute) {
	r.loss, r.correct, r.fwdEnd = 0, 0, time.Time{}
	r.model.Arena.ZeroGrad()
	if r.hi == r.lo {
		if c.final != nil {
			for p := range r.seen {
				c.replicaDone(p)
			}
		}
		return
	}
	var done func(int)
	if c.final != nil {
		done = c.replicaDone
	}
	sum, correct, fwdEnd := c.run(r.tape, r.model, c.x, c.y, r.lo, r.hi, r.paramOf, r.seen, done)
	r.loss, r.correct, r.fwdEnd = sum/float64(r.hi-r.lo), correct, fwdEnd
}

// run does forward and backward of samples [lo, hi) of the batch (x, y) on
// tp with model, in c.accum micro-batches, adding to the model's gradient
// (zeroed by the caller) the gradient of the slice's mean loss, and
// returns the slice's summed loss, its correct predictions and when the
// last forward ended. final, when not nil, hears of the parameters whose
// gradient is complete during the last micro-batch's backward.
func (c *compute) run(tp *tensorcore.Tape, model *models.Model, x []float32, y []int, lo, hi int, paramOf map[*float32]int, seen []bool, final func(int)) (sum float64, correct int, fwdEnd time.Time) {
	n := hi - lo
	k := max(min(c.accum, n), 1) // no empty micro-batch
	for m := range k {
		mlo, mhi := lo+m*n/k, lo+(m+1)*n/k
		last := m == k-1
		tp.Reset()
		my := y[mlo:mhi]
		xv := tp.Const(tensorcore.FromSlice(x[mlo*c.size:mhi*c.size], len(my), c.in.C, c.in.H, c.in.W))
		logits := model.Forward(tp, xv, true)
		lv := c.loss(tp, logits, my)
		fwdEnd = time.Now()
		if k > 1 { // the slice's mean is the micro-batches' weighted sum
			lv = tp.MulScalar(lv, float32(len(my))/float32(n))
		}
		var f func(int)
		if last {
			f = final
		}
		backward(tp, lv, paramOf, seen, f)
		if len(my) > 0 {
			sum += float64(lv.Value.Data[0]) * float64(n)
			correct += models.CountCorrect(logits.Value, my)
		}
	}
	return sum, correct, fwdEnd
}
