package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
	"github.com/ringtrain/ringtrain/timeline"
)

// engine is ringtrain's one training loop. Single-node training is a ring
// of one; a cluster worker runs the same engine in each generation's ring.
//
// Data order: the order of epoch e is dataset.EpochOrder(seed, e); a step
// takes the next batch_size samples of it (the job's global batch, the
// last step of an epoch what is left), dealt among the ring's ranks
// (dataset.AppendStepShare). Where training stands is (step, pos), changed
// only between steps, so a checkpoint, a state sync or a new generation
// continues exactly where the last step ended.
//
// The learning rate of step s is the schedule's rate at s, the number of
// steps taken since the job began; with a global batch every ring takes
// the same steps, so the curve does not depend on the ring's history.
//
// The engine holds no reference to its owner: what the owner does around
// steps (progress, checkpoints) it passes to run as hooks.
type engine struct {
	spec          job.Spec
	model         *models.Model
	opt           models.Optimizer
	sched         models.Schedule
	train, test   dataset.Set
	in            dataset.Shape // the model's input
	compute       *compute
	loss          models.Loss // training: with the job's label smoothing
	evalLoss      models.Loss // evaluation: without it
	pool          *tensorcore.Pool
	threads       int
	evalTape      *tensorcore.Tape
	evalBatch     int // test samples per evaluation forward
	stepsPerEpoch int
	now           func() time.Time

	// where training stands; changed only between steps
	step int64
	pos  dataset.Position

	order   []int // the order of epoch orderEp
	orderEp int

	// the initial parameters, for a generation that starts the job afresh
	initData, initBuffers []float32

	syncBuf, statsBuf []float32

	// tl records the phases of every step and what happens between
	// steps; nil records nothing.
	tl *timeline.Recorder
}

// newEngine builds the model, the data sets, the optimizer and the compute
// pool of a checked job, using only the first trainLimit and testLimit
// samples when they are positive. perRank is the most samples one rank
// computes per step (it decides how a batch is split across cores). Close
// releases its pools.
func newEngine(ctx context.Context, spec job.Spec, perRank int, logf func(string, ...any)) (*engine, error) {
	e := &engine{spec: spec, threads: spec.Threads, orderEp: -1, now: time.Now}
	if e.threads == 0 {
		e.threads = defaultThreads()
	}
	var err error
	if e.train, err = dataset.Open(ctx, spec.Dataset, spec.DataDir, "train", logf); err != nil {
		return nil, err
	}
	if spec.Validation > 0 {
		if e.train, e.test, err = dataset.Holdout(e.train, spec.Validation); err != nil {
			return nil, fmt.Errorf("worker: validation: %w", err)
		}
	} else if e.test, err = dataset.Open(ctx, spec.Dataset, spec.DataDir, "test", logf); err != nil {
		return nil, err
	}
	e.train, e.test = dataset.Head(e.train, spec.TrainLimit), dataset.Head(e.test, spec.TestLimit)
	if spec.Distort && !slices.Contains(dataset.Names(), spec.Dataset) {
		return nil, fmt.Errorf("worker: distort applies to the digit sets (%s), not %s", strings.Join(dataset.Names(), ", "), spec.Dataset)
	}
	if e.model, err = models.BuildFor(spec.Model, spec.Seed, modelConfig(spec, e.train)); err != nil {
		return nil, err
	}
	if spec.InitFrom != "" {
		rep, err := LoadWeights(e.model, spec.InitFrom)
		if err != nil {
			return nil, err
		}
		logf("started from the weights of %s", spec.InitFrom)
		if len(rep.NewHead) > 0 {
			logf("%s: a new head for %d classes (%s start afresh)", spec.InitFrom, e.model.NumClasses, strings.Join(rep.NewHead, ", "))
		}
	}
	is := e.model.InputShape
	e.in = dataset.Shape{C: is[0], H: is[1], W: is[2]}
	if err := dataset.CheckTransform(e.train, e.in); err != nil {
		return nil, fmt.Errorf("worker: model %s: %w", spec.Model, err)
	}
	if c := e.train.Classes(); c > e.model.NumClasses {
		return nil, fmt.Errorf("worker: model %s scores %d classes; data set %s has %d", spec.Model, e.model.NumClasses, spec.Dataset, c)
	}
	if e.opt, err = models.NewOptimizer(spec.Optimizer, e.model.Arena); err != nil {
		return nil, err
	}
	e.stepsPerEpoch = dataset.StepsPerEpoch(e.train.Len(), spec.BatchSize)
	e.sched = models.NewSchedule(spec.Schedule, spec.LR(), spec.Epochs, e.stepsPerEpoch)
	e.pool = tensorcore.NewPool(e.threads)
	models.UsePool(e.opt, e.pool)
	usePrecision(e.pool, spec.Precision, logf)
	if e.loss, err = models.NewLoss(spec.Loss, float32(spec.LabelSmoothing)); err != nil {
		e.pool.Close()
		return nil, err
	}
	if e.evalLoss, err = models.NewLoss(spec.Loss, 0); err != nil {
		e.pool.Close()
		return nil, err
	}
	if e.compute, err = newCompute(e.model, e.pool, e.threads, perRank, spec.Accumulate, spec.Seed, e.loss, e.in); err != nil {
		e.pool.Close()
		return nil, err
	}
	e.evalTape = tensorcore.NewTape(e.pool)
	e.evalBatch = evalBatch(perRank, max(spec.Accumulate, 1))
	e.initData = slices.Clone(e.model.Arena.Data)
	e.initBuffers = slices.Clone(e.model.Arena.Buffers)
	return e, nil
}

// usePrecision sets the products of p's GEMMs and convolutions to the
// job's precision; where the CPU cannot compute in it (bf16 without
// AVX512_BF16), it says so through logf and leaves p in fp32.
func usePrecision(p *tensorcore.Pool, precision string, logf func(string, ...any)) {
	pr, err := tensorcore.ParsePrecision(precision)
	if err == nil {
		err = p.SetPrecision(pr)
	}
	if err != nil {
		logf("precision %s: %v; training in fp32", precision, err)
	}
}

// modelConfig is what the job's model is built for: the data set's classes
// and image shape, the side at the job's image size where it sets one
// (images are resampled down, never up), and the job's residual options.
func modelConfig(spec job.Spec, data dataset.Set) models.Config {
	s := data.Shape()
	in := []int{s.C, s.H, s.W}
	if n := spec.ImageSize; n > 0 && (s.H == 0 || n < min(s.H, s.W)) {
		in[1], in[2] = n, n
	}
	return models.Config{Classes: data.Classes(), Input: in, ZeroInitResidual: spec.ZeroInitResidual, Shortcut: spec.Shortcut}
}

// Close releases the engine's pools.
func (e *engine) Close() {
	e.compute.Close()
	e.pool.Close()
}

// ring is one generation's ring as the engine sees it: this process's rank,
// the ring's size, and the means to reduce over it (nil in a ring of one).
type ring struct {
	rank, world int
	comm        *allreduce.Comm
	grads       *gradReducer
}

// hooks are what an engine's owner does around steps. Each may be nil.
type hooks struct {
	// step is told the figures of every step.
	step func(stepReport)
	// batch, when set, is told the samples this rank takes for step
	// (counting from 1) at pos, before the step computes anything; the
	// slice is valid during the call only.
	batch func(step int64, pos dataset.Position, samples []int)
	// checkpointDue reports whether the state after step must be
	// checkpointed mid-epoch (every epoch's end is checkpointed anyway).
	checkpointDue func(step int64) bool
	// checkpoint writes, and commits or reports, the state at the
	// engine's step; ev is the evaluation that ended an epoch (nil
	// mid-epoch).
	checkpoint func(ctx context.Context, ev *EvalStats) error
	// evaluated is told every epoch's evaluation before its checkpoint.
	evaluated func(EvalStats)
	// checksummed is told the parameter checksum every replica of the
	// ring agreed on, and the step it was taken after.
	checksummed func(step int64, sum uint64)
}

// stepReport is what one step did.
type stepReport struct {
	Step              int64 // steps taken after it
	Epoch, EpochStep  int   // the epoch it belonged to, and its 1-based index there
	Images, Correct   int   // this rank's samples and correct predictions
	Loss              float64
	LR                float64
	Seconds, DataWait float64 // the whole step, and the part spent waiting for its batch
	Compute, Reduce   float64 // forward and backward, and the wait for the reduction after them
	Optimizer         float64 // the optimizer step
	LastOfEpoch       bool
}

// ringError wraps an error of the ring (a peer, the network, a newer
// generation): not fatal, so the cluster worker waits for the next
// generation.
func ringError(op string, err error) error { return fmt.Errorf("worker: %s: %w", op, err) }

// checksumEvery is how often (in steps) the ranks of a ring compare a
// checksum of their parameters; they also compare at every epoch's end.
const checksumEvery = 100

// run trains from the engine's position until the job's last epoch is
// evaluated and checkpointed (nil), ctx ends (its error), or a step fails.
func (e *engine) run(ctx context.Context, r ring, h hooks) error {
	b := e.spec.BatchSize
	for e.pos.Epoch < e.spec.Epochs {
		if err := e.ensureOrder(); err != nil {
			return err
		}
		epoch := e.pos.Epoch
		pipe := startPipeline(e.train, e.order, e.pos.Consumed, b, r.rank, r.world, e.trainTransform(epoch), e.spec.DataThreads)
		err := func() error {
			defer pipe.stop()
			for e.pos.Epoch == epoch {
				if err := ctx.Err(); err != nil {
					return err
				}
				rep, err := e.trainStep(ctx, r, pipe, h)
				if err != nil {
					return err
				}
				if h.step != nil {
					h.step(rep)
				}
				if r.world > 1 && e.step%checksumEvery == 0 {
					if err := e.checksum(ctx, r, h); err != nil {
						return err
					}
				}
				if !rep.LastOfEpoch && h.checkpointDue != nil && h.checkpointDue(e.step) && h.checkpoint != nil {
					start := e.now()
					if err := h.checkpoint(ctx, nil); err != nil {
						return err
					}
					e.mark(timeline.Checkpoint, start)
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
		if err := e.endEpoch(ctx, r, epoch, h); err != nil {
			return err
		}
	}
	return nil
}

// endEpoch evaluates the epoch just trained, compares the replicas and
// checkpoints.
func (e *engine) endEpoch(ctx context.Context, r ring, epoch int, h hooks) error {
	ev, err := e.evaluate(ctx, r, epoch)
	if err != nil {
		return err
	}
	if h.evaluated != nil {
		h.evaluated(ev)
	}
	if r.world > 1 {
		if err := e.checksum(ctx, r, h); err != nil {
			return err
		}
	}
	if h.checkpoint != nil {
		start := e.now()
		if err := h.checkpoint(ctx, &ev); err != nil {
			return err
		}
		e.mark(timeline.Checkpoint, start)
	}
	return nil
}

// mark records an event of kind k between steps, from start to now, and
// writes the timeline out (a write error stops the timeline, not training:
// the owner reports it when it closes the recorder).
func (e *engine) mark(k timeline.Kind, start time.Time) {
	if e.tl != nil {
		e.tl.Add(k, e.step, start, e.now())
		e.tl.Flush()
	}
}

// ensureOrder computes the order of the epoch training stands in.
func (e *engine) ensureOrder() error {
	if e.orderEp == e.pos.Epoch {
		return nil
	}
	order, err := dataset.EpochOrder(dataset.ShardSpec{Samples: e.train.Len(), Seed: e.spec.Seed, Shuffle: true, Position: dataset.Position{Epoch: e.pos.Epoch}})
	if err != nil {
		return fatal(err)
	}
	e.order, e.orderEp = order, e.pos.Epoch
	return nil
}

func (e *engine) trainTransform(epoch int) dataset.Transform {
	tf := dataset.Transform{Out: e.in, Train: true, Seed: e.spec.Seed, Epoch: epoch}
	if e.spec.Distort {
		tf.Distort = dataset.PaperDistortion
	}
	return tf
}

// trainStep runs one step: this rank's share of the batch forward and
// backward, the gradients reduced over the ring as backward finishes them,
// the optimizer step.
func (e *engine) trainStep(ctx context.Context, r ring, pipe *pipeline, h hooks) (stepReport, error) {
	t0 := e.now()
	bt, err := pipe.next(ctx)
	if err != nil {
		return stepReport{}, err
	}
	defer pipe.release(bt)
	if h.batch != nil {
		h.batch(e.step+1, e.pos, bt.idx)
	}
	t1 := e.now()
	n := e.train.Len()
	global := min(e.spec.BatchSize, n-e.pos.Consumed)
	rep := stepReport{Epoch: e.pos.Epoch, EpochStep: e.pos.Consumed/e.spec.BatchSize + 1, Images: len(bt.y), LR: float64(e.sched.LR(int(e.step)))}
	a := e.model.Arena
	// Each rank's gradient is its samples' mean weighted by their share of
	// the global batch, so the ring's sum is the global batch's mean.
	weight := float32(len(bt.y)) / float32(global)
	var fwdEnd time.Time
	if r.grads != nil {
		r.grads.begin(ctx, weight)
	}
	if len(bt.y) == 0 {
		a.ZeroGrad()
		if r.grads != nil {
			r.grads.allFinal()
		}
	} else {
		var final func(int)
		if r.grads != nil {
			final = r.grads.final
		}
		rep.Loss, rep.Correct, fwdEnd = e.compute.step(int(e.step), bt.x, bt.y, final)
		if !isFinite(rep.Loss) {
			return rep, fatal(fmt.Errorf("worker: training diverged at step %d: loss is %v; lower the learning rate", e.step+1, rep.Loss))
		}
		if r.grads == nil && weight != 1 {
			scale(a.Grad, weight)
		}
	}
	t2 := e.now()
	if r.grads != nil {
		if err := r.grads.wait(); err != nil {
			return rep, ringError(fmt.Sprintf("all-reduce of step %d", e.step+1), err)
		}
		if len(a.Buffers) > 0 {
			// BatchNorm statistics: every replica takes the ring's mean,
			// exact whatever the gradients' codec.
			if err := r.comm.AllReduceExact(ctx, a.Buffers); err != nil {
				return rep, ringError(fmt.Sprintf("all-reduce of buffers at step %d", e.step+1), err)
			}
			scale(a.Buffers, 1/float32(r.world))
		}
	}
	t3 := e.now()
	e.opt.Step(e.sched.LR(int(e.step)))
	e.step++
	e.pos = dataset.AdvancePosition(e.pos, n, e.spec.BatchSize, 1)
	rep.Step = e.step
	rep.LastOfEpoch = e.pos.Epoch != rep.Epoch
	t4 := e.now()
	rep.DataWait, rep.Compute, rep.Reduce, rep.Optimizer = t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), t3.Sub(t2).Seconds(), t4.Sub(t3).Seconds()
	rep.Seconds = t4.Sub(t0).Seconds()
	if e.tl != nil {
		e.recordStep(r, t0, t1, fwdEnd, t2, t3, t4)
	}
	return rep, nil
}

// recordStep records the phases of the step just taken: data wait t0–t1,
// forward t1–fwd, backward fwd–t2 (each bucket's all-reduce ran meanwhile,
// on the reducer's goroutine), the wait for the reduction t2–t3 (none in
// a ring of one), the optimizer t3–t4.
func (e *engine) recordStep(r ring, t0, t1, fwd, t2, t3, t4 time.Time) {
	if fwd.Before(t1) { // no samples this step, or a clock of the owner's
		fwd = t1
	}
	if fwd.After(t2) {
		fwd = t2
	}
	tl, s := e.tl, e.step
	tl.Add(timeline.Data, s, t0, t1)
	tl.Add(timeline.Forward, s, t1, fwd)
	tl.Add(timeline.Backward, s, fwd, t2)
	if g := r.grads; g != nil {
		for b, sp := range g.spans {
			tl.AddAllReduce(s, b, 4*int64(g.buckets[b].Span.Len), sp.start, sp.end)
		}
		tl.Add(timeline.Reduce, s, t2, t3)
	} else {
		t3 = t2 // nothing to wait for: the phases stay contiguous
	}
	tl.Add(timeline.Optimizer, s, t3, t4)
	tl.Add(timeline.Step, s, t0, t4)
	tl.Commit()
}

// EvalStats are the figures of one evaluation on the test set.
type EvalStats struct {
	Epoch          int
	Loss, Accuracy float64
	Seconds        float64
}

// evaluate measures loss and accuracy on the test set: rank r takes the
// r-th of world equal slices, and the sums go round the ring exactly.
func (e *engine) evaluate(ctx context.Context, r ring, epoch int) (EvalStats, error) {
	start := e.now()
	defer e.mark(timeline.Eval, start)
	t := e.test.Len()
	lossSum, correct, err := e.evalRange(r.rank*t/r.world, (r.rank+1)*t/r.world)
	if err != nil {
		return EvalStats{}, err
	}
	if r.world > 1 {
		if cap(e.statsBuf) < 2 {
			e.statsBuf = make([]float32, 2)
		}
		buf := e.statsBuf[:2]
		buf[0], buf[1] = float32(lossSum), float32(correct)
		if err := r.comm.AllReduceExact(ctx, buf); err != nil {
			return EvalStats{}, ringError("evaluation", err)
		}
		lossSum, correct = float64(buf[0]), int(buf[1])
	}
	return EvalStats{
		Epoch: epoch, Loss: lossSum / float64(t), Accuracy: float64(correct) / float64(t),
		Seconds: e.now().Sub(start).Seconds(),
	}, nil
}

// evalBatch is how many test samples one evaluation forward takes: at
// most 250, and at most twice what a training tape holds at once (a rank's
// samples over its micro-batches), since an evaluation tape keeps the
// activations but no gradients. Evaluation then never needs more memory
// than training, whatever the image size.
func evalBatch(perRank, accum int) int {
	return max(1, min(250, 2*((perRank+accum-1)/accum)))
}

// evalRange runs the model in inference mode on test samples [lo, hi) and
// returns the summed loss and the number of correct predictions.
func (e *engine) evalRange(lo, hi int) (lossSum float64, correct int, err error) {
	eb := e.evalBatch
	idx := make([]int, eb)
	x := make([]float32, eb*e.in.Size())
	y := make([]int, eb)
	tf := dataset.Transform{Out: e.in}
	tp := e.evalTape
	for ; lo < hi; lo += eb {
		n := min(eb, hi-lo)
		for i := range n {
			idx[i] = lo + i
		}
		if err := e.test.Fill(x[:n*e.in.Size()], y[:n], idx[:n], tf); err != nil {
			return 0, 0, fatal(fmt.Errorf("worker: test set: %w", err))
		}
		tp.Reset()
		xv := tp.Const(tensorcore.FromSlice(x[:n*e.in.Size()], n, e.in.C, e.in.H, e.in.W))
		logits := e.model.Forward(tp, xv, false)
		loss := e.evalLoss(tp, logits, y[:n])
		lossSum += float64(loss.Value.Data[0]) * float64(n)
		correct += models.CountCorrect(logits.Value, y[:n])
	}
	return lossSum, correct, nil
}

// checksum compares this rank's parameters with rank 0's: replicas that
// differ are an error, not a silent drift.
func (e *engine) checksum(ctx context.Context, r ring, h hooks) error {
	defer e.mark(timeline.Checksum, e.now())
	mine := paramChecksum(e.model.Arena)
	buf := []float32{math.Float32frombits(uint32(mine)), math.Float32frombits(uint32(mine >> 32))}
	if err := r.comm.Broadcast(ctx, 0, buf); err != nil {
		return ringError("parameter checksum", err)
	}
	root := uint64(math.Float32bits(buf[0])) | uint64(math.Float32bits(buf[1]))<<32
	if root != mine {
		return fatal(fmt.Errorf("worker: %w at step %d: rank %d's parameters hash to %016x, rank 0's to %016x", ErrDiverged, e.step, r.rank, mine, root))
	}
	if h.checksummed != nil {
		h.checksummed(e.step, mine)
	}
	return nil
}

// state is the engine's training state as a checkpoint holds it; its
// tensors are views of the model's and optimizer's own memory.
func (e *engine) state(codec []checkpoint.Tensor) checkpoint.State {
	st := ModelState(e.model, e.opt.Steps())
	st.OptimizerSteps, st.Codec = e.opt.Steps(), codec
	for _, s := range e.opt.State() {
		st.Optimizer = append(st.Optimizer, checkpoint.Tensor{Name: s.Name, Shape: []int{len(s.Data)}, Data: s.Data})
	}
	return st
}

// manifest is the checkpoint manifest of the engine's position.
func (e *engine) manifest(ev *EvalStats, trainLoss float64, world int) checkpoint.Manifest {
	m := checkpoint.Manifest{
		JobHash: e.spec.Hash(), Model: e.spec.Model,
		Step: int(e.step), Epoch: e.pos.Epoch, Position: e.pos.Consumed, Seed: e.spec.Seed,
		WorldSize: world,
		Metrics:   checkpoint.Metrics{TrainLoss: trainLoss},
	}
	if ev != nil {
		m.Metrics.TestAccuracy, m.Metrics.TestLoss = ev.Accuracy, ev.Loss
	}
	return m
}

// restore loads a checkpoint's state and position, checking the job hash,
// every name and shape; nothing changes when it fails.
func (e *engine) restore(ck *checkpoint.Checkpoint) error {
	m := ck.Manifest
	if m.JobHash != e.spec.Hash() {
		return fmt.Errorf("worker: checkpoint %s belongs to another job (hash %s, this job %s): the model, data set or hyper-parameters differ", m.Name, m.JobHash, e.spec.Hash())
	}
	n := e.train.Len()
	if m.Epoch < 0 || m.Position < 0 || m.Position > n || m.Step < 0 {
		return fmt.Errorf("worker: checkpoint %s: position epoch %d, %d samples consumed, step %d, outside epochs of %d samples", m.Name, m.Epoch, m.Position, m.Step, n)
	}
	// Read into copies, so that a checkpoint that fails half-way changes
	// nothing.
	st := e.state(nil)
	dst := st
	dst.Params, dst.Buffers, dst.Optimizer = cloneTensors(st.Params), cloneTensors(st.Buffers), cloneTensors(st.Optimizer)
	steps, err := ck.ReadState(dst)
	if err != nil {
		return err
	}
	var opt []models.NamedSlice
	for _, t := range dst.Optimizer {
		opt = append(opt, models.NamedSlice{Name: t.Name, Data: t.Data})
	}
	if err := e.opt.LoadState(steps, opt); err != nil {
		return fmt.Errorf("worker: checkpoint %s: %w", m.Name, err)
	}
	copyTensors(st.Params, dst.Params)
	copyTensors(st.Buffers, dst.Buffers)
	e.step = int64(m.Step)
	e.pos = dataset.AdvancePosition(dataset.Position{Epoch: m.Epoch, Consumed: m.Position}, n, e.spec.BatchSize, 0)
	return nil
}

func cloneTensors(ts []checkpoint.Tensor) []checkpoint.Tensor {
	out := make([]checkpoint.Tensor, len(ts))
	for i, t := range ts {
		out[i] = checkpoint.Tensor{Name: t.Name, Shape: t.Shape, Data: slices.Clone(t.Data)}
	}
	return out
}

func copyTensors(dst, src []checkpoint.Tensor) {
	for i := range dst {
		copy(dst[i].Data, src[i].Data)
	}
}

// reset puts the engine at the job's start: initial parameters, zero
// optimizer state, step 0 at pos.
func (e *engine) reset(step int64, pos dataset.Position) error {
	a := e.model.Arena
	copy(a.Data, e.initData)
	copy(a.Buffers, e.initBuffers)
	var zero []models.NamedSlice
	for _, s := range e.opt.State() {
		zero = append(zero, models.NamedSlice{Name: s.Name, Data: make([]float32, len(s.Data))})
	}
	if err := e.opt.LoadState(0, zero); err != nil {
		return fatal(err)
	}
	e.step, e.pos = step, pos
	return nil
}

// The state vector a ring broadcasts from its source: parameters, buffers,
// each optimizer buffer, then the position as 32-bit words (step and
// optimizer steps as two words each).
const stateHeader = 6

func (e *engine) packState() []float32 {
	a := e.model.Arena
	n := len(a.Data) + len(a.Buffers) + stateHeader
	state := e.opt.State()
	for _, s := range state {
		n += len(s.Data)
	}
	if cap(e.syncBuf) < n {
		e.syncBuf = make([]float32, n)
	}
	buf := e.syncBuf[:n]
	k := copy(buf, a.Data)
	k += copy(buf[k:], a.Buffers)
	for _, s := range state {
		k += copy(buf[k:], s.Data)
	}
	word := func(i int, v uint32) { buf[k+i] = math.Float32frombits(v) }
	word(0, uint32(e.step))
	word(1, uint32(e.step>>32))
	word(2, uint32(e.pos.Epoch))
	word(3, uint32(e.pos.Consumed))
	os := e.opt.Steps()
	word(4, uint32(os))
	word(5, uint32(os>>32))
	return buf
}

func (e *engine) unpackState(buf []float32) error {
	a := e.model.Arena
	opt := e.opt.State()
	n := len(a.Data) + len(a.Buffers) + stateHeader
	for _, s := range opt {
		n += len(s.Data)
	}
	if len(buf) != n {
		// Every rank packs the same model and optimizer: a ring whose
		// ranks disagree on the job.
		return fatal(fmt.Errorf("worker: state sync gave %d values, want %d (this rank's model and optimizer)", len(buf), n))
	}
	k := n - stateHeader
	word := func(i int) uint32 { return math.Float32bits(buf[k+i]) }
	step := int64(word(0)) | int64(word(1))<<32
	pos := dataset.Position{Epoch: int(int32(word(2))), Consumed: int(int32(word(3)))}
	optSteps := int64(word(4)) | int64(word(5))<<32
	if n := e.train.Len(); pos.Consumed < 0 || pos.Consumed > n || pos.Epoch < 0 || step < 0 || optSteps < 0 {
		return fatal(fmt.Errorf("worker: state sync gave step %d (optimizer step %d) at %v, outside epochs of %d samples", step, optSteps, pos, n))
	}
	k = copy(a.Data, buf)
	k += copy(a.Buffers, buf[k:])
	state := make([]models.NamedSlice, 0, len(opt))
	for _, s := range opt {
		state = append(state, models.NamedSlice{Name: s.Name, Data: buf[k : k+len(s.Data)]})
		k += len(s.Data)
	}
	if err := e.opt.LoadState(optSteps, state); err != nil {
		return fatal(err)
	}
	e.step, e.pos = step, dataset.AdvancePosition(pos, e.train.Len(), e.spec.BatchSize, 0)
	return nil
}

// isFinite reports whether a loss is a number a run can go on from.
func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// fatalError marks an error the worker cannot recover from by joining a
// new generation (bad job, diverged replica, diverged training).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error {
	var f *fatalError
	if errors.As(err, &f) {
		return err
	}
	return &fatalError{err}
}

// ErrDiverged is wrapped by the error a worker returns when its parameters
// differ from rank 0's: replicas must stay bit-identical.
var ErrDiverged = errors.New("replica diverged")

// paramChecksum hashes the parameters' and buffers' bits.
func paramChecksum(a *models.Arena) uint64 {
	h := fnv.New64a()
	var chunk [4096]byte
	for _, xs := range [][]float32{a.Data, a.Buffers} {
		for len(xs) > 0 {
			n := min(len(xs), len(chunk)/4)
			for i, v := range xs[:n] {
				binary.LittleEndian.PutUint32(chunk[4*i:], math.Float32bits(v))
			}
			h.Write(chunk[:4*n])
			xs = xs[n:]
		}
	}
	return h.Sum64()
}
