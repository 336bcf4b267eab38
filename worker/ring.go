package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// checksumEvery is how often (in steps) the ranks compare a checksum of
// their parameters; they also compare at every checkpoint.
const checksumEvery = 100

// ringTrainer is a cluster worker's model, data and optimizer, which
// survive from one generation of the ring to the next.
type ringTrainer struct {
	w        *ClusterWorker
	spec     job.Spec
	su       *setup
	store    *checkpoint.Store
	jobID    uint64
	sched    models.Schedule
	evalTape *tensorcore.Tape

	batch         int // the job's global batch: samples per step, dealt among the ring
	stepsPerEpoch int

	initData, initBuffers []float32 // the initial parameters, for a fresh start

	// where training stands; changed only between steps
	step int64
	pos  dataset.Position

	// scratch reused across steps and generations
	idx, y   []int
	x        []float32
	order    []int
	orderEp  int
	shard    []int
	syncBuf  []float32
	statsBuf []float32

	// the checkpoint last written, so a new generation at the same step
	// writes its own
	ckptGen  uint64
	ckptStep int64

	window windowStats
}

// windowStats accumulates the figures the heartbeat reports.
type windowStats struct {
	images, correct int
	loss, seconds   float64
}

func newRingTrainer(ctx context.Context, w *ClusterWorker, spec job.Spec, store *checkpoint.Store, jobID uint64) (*ringTrainer, error) {
	b := spec.BatchPerWorker()
	setupSpec := spec
	setupSpec.BatchSize = b // per-core replicas split the worker's own batch
	su, err := newSetup(ctx, setupSpec, w.logf, 0, 0)
	if err != nil {
		return nil, err
	}
	batch := spec.BatchSize
	spe := dataset.StepsPerEpoch(su.train.N, batch)
	r := &ringTrainer{
		w: w, spec: spec, su: su, store: store, jobID: jobID,
		sched: newSchedule(spec, spe), evalTape: tensorcore.NewTape(su.pool),
		batch: batch, stepsPerEpoch: spe,
		initData:    slices.Clone(su.model.Arena.Data),
		initBuffers: slices.Clone(su.model.Arena.Buffers),
		idx:         make([]int, batch), y: make([]int, batch), x: make([]float32, batch*su.in.size()),
		orderEp: -1,
	}
	return r, nil
}

func (r *ringTrainer) close() { r.su.Close() }

// ringError is a failure of the ring (a peer, the network, a newer
// generation): the worker waits for the next generation.
func ringError(op string, err error) error { return fmt.Errorf("worker: %s: %w", op, err) }

// runGeneration joins the ring of generation g, syncs state, and trains
// until the job's last epoch is done (nil) or the ring fails.
func (r *ringTrainer) runGeneration(parent context.Context, g *api.Generation) error {
	w := r.w
	rank, world := g.Rank(w.o.Name), len(g.Ring)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	// A newer generation, a pause or the end of the job ends this one.
	go func() {
		w.waitReply(ctx, func(rep *api.HeartbeatReply) bool {
			ng := rep.Generation
			return rep.Stop || rep.Paused || (ng != nil && ng.Number > g.Number)
		})
		cancel()
	}()
	w.setProgress(func(p *progress) {
		p.generation, p.broken, p.done, p.inRing, p.trained = g.Number, false, false, false, false
	})
	w.metrics.generation.Set(float64(g.Number))
	w.metrics.rank.Set(float64(rank))

	ln := w.data.generation()
	addrs := make([]string, world)
	for i, p := range g.Ring {
		addrs[i] = p.DataAddr
	}
	codec, err := gradientCodec(r.spec, 4*allreduce.DefaultChunk)
	if err != nil {
		return fatal(err)
	}
	if cl, ok := codec.(io.Closer); ok {
		defer cl.Close()
	}
	tr, err := allreduce.DialRing(ctx, allreduce.GRPCConfig{
		Rank: rank, Addrs: addrs, Listener: ln, Job: r.jobID, Generation: g.Number,
		Timeout: w.o.Timeout, ServerTLS: w.o.ServerTLS, ClientTLS: w.o.ClientTLS,
		NoSharedMemory: w.o.NoSharedMemory,
		// Frames are at most one chunk, in fp32 (shared memory) or the
		// codec's encoding: this sizes the shared rings (8 MiB) rather
		// than the default limit (16 MiB, so 64 MiB rings).
		MaxFrame: max(4*allreduce.DefaultChunk, codec.MaxEncodedLen(allreduce.DefaultChunk)) + 1024,
	})
	if err != nil {
		return ringError(fmt.Sprintf("forming the ring of generation %d", g.Number), err)
	}
	comm, err := allreduce.New(tr, allreduce.Config{Job: r.jobID, Generation: g.Number, Codec: codec})
	if err != nil {
		tr.Close()
		return ringError("all-reduce", err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- comm.Run(ctx) }()
	defer func() {
		comm.Close()
		<-runDone
	}()
	w.logf("generation %d: rank %d of %d", g.Number, rank, world)

	if err := r.sync(ctx, comm, g); err != nil {
		return err
	}
	w.setProgress(func(p *progress) {
		p.step, p.epoch, p.consumed, p.inRing, p.trained = r.step, r.pos.Epoch, r.pos.Consumed, true, true
	})
	w.beat()
	r.su.compute.seed = r.spec.Seed ^ (uint64(rank)+1)*0x9e3779b97f4a7c15
	return r.train(ctx, comm, g, rank, world)
}

// sync makes every rank's state the same: the source's (a survivor of the
// previous ring) when there is one, else the named committed checkpoint,
// else the job's initial state; then rank root broadcasts parameters,
// buffers, optimizer state and the training position.
func (r *ringTrainer) sync(ctx context.Context, comm *allreduce.Comm, g *api.Generation) error {
	root := 0
	if g.Source != "" {
		if root = g.Rank(g.Source); root < 0 {
			return fatal(fmt.Errorf("worker: generation %d names source %s, not in its ring", g.Number, g.Source))
		}
	} else if g.Restore != "" {
		ck, err := r.store.Load(g.Restore)
		if err != nil {
			// The coordinator verified it in the shared store; this worker
			// cannot read it (a volume not mounted, or a different one).
			return fatal(fmt.Errorf("worker: restoring checkpoint %s from %s: %w", g.Restore, r.store.Dir(), err))
		}
		if err := restoreState(ck, r.spec, r.su.model, r.su.opt); err != nil {
			return fatal(err)
		}
		r.step, r.pos = int64(ck.Manifest.Step), dataset.Position{Epoch: ck.Manifest.Epoch, Consumed: ck.Manifest.Position}
		r.w.logf("restored checkpoint %s (epoch %d, step %d)", g.Restore, r.pos.Epoch+1, r.step)
	} else {
		a := r.su.model.Arena
		copy(a.Data, r.initData)
		copy(a.Buffers, r.initBuffers)
		var zero []models.NamedSlice
		for _, s := range r.su.opt.State() {
			zero = append(zero, models.NamedSlice{Name: s.Name, Data: make([]float32, len(s.Data))})
		}
		if err := r.su.opt.LoadState(0, zero); err != nil {
			return fatal(err)
		}
		r.step, r.pos = g.ResumeStep, dataset.Position{Epoch: g.Epoch, Consumed: g.Consumed}
	}
	buf := r.packState()
	if err := comm.Broadcast(ctx, root, buf); err != nil {
		return ringError(fmt.Sprintf("state sync from rank %d", root), err)
	}
	return r.unpackState(buf)
}

// The state vector: parameters, buffers, each optimizer buffer, then the
// position as 32-bit words (step and optimizer steps as two words each).
const stateHeader = 6

func (r *ringTrainer) packState() []float32 {
	a := r.su.model.Arena
	n := len(a.Data) + len(a.Buffers) + stateHeader
	state := r.su.opt.State()
	for _, s := range state {
		n += len(s.Data)
	}
	if cap(r.syncBuf) < n {
		r.syncBuf = make([]float32, n)
	}
	buf := r.syncBuf[:n]
	k := copy(buf, a.Data)
	k += copy(buf[k:], a.Buffers)
	for _, s := range state {
		k += copy(buf[k:], s.Data)
	}
	word := func(i int, v uint32) { buf[k+i] = math.Float32frombits(v) }
	word(0, uint32(r.step))
	word(1, uint32(r.step>>32))
	word(2, uint32(r.pos.Epoch))
	word(3, uint32(r.pos.Consumed))
	os := r.su.opt.Steps()
	word(4, uint32(os))
	word(5, uint32(os>>32))
	return buf
}

func (r *ringTrainer) unpackState(buf []float32) error {
	a := r.su.model.Arena
	k := copy(a.Data, buf)
	k += copy(a.Buffers, buf[k:])
	var state []models.NamedSlice
	for _, s := range r.su.opt.State() {
		state = append(state, models.NamedSlice{Name: s.Name, Data: buf[k : k+len(s.Data)]})
		k += len(s.Data)
	}
	word := func(i int) uint32 { return math.Float32bits(buf[k+i]) }
	r.step = int64(word(0)) | int64(word(1))<<32
	r.pos = dataset.Position{Epoch: int(word(2)), Consumed: int(word(3))}
	if err := r.su.opt.LoadState(int64(word(4))|int64(word(5))<<32, state); err != nil {
		return fatal(err)
	}
	if n := r.su.train.N; r.pos.Consumed == n {
		r.pos = dataset.Position{Epoch: r.pos.Epoch + 1}
	} else if r.pos.Consumed < 0 || r.pos.Consumed > n || r.pos.Epoch < 0 {
		return fatal(fmt.Errorf("worker: state sync gave position %v outside epochs of %d samples", r.pos, n))
	}
	return nil
}

// train runs lock-step steps of the ring until the job's last epoch ends.
func (r *ringTrainer) train(ctx context.Context, comm *allreduce.Comm, g *api.Generation, rank, world int) error {
	n, b := r.su.train.N, r.batch
	a := r.su.model.Arena
	for r.pos.Epoch < r.spec.Epochs {
		if r.orderEp != r.pos.Epoch {
			var err error
			if r.order, err = dataset.EpochOrder(dataset.ShardSpec{Samples: n, Seed: r.spec.Seed, Shuffle: true, Position: dataset.Position{Epoch: r.pos.Epoch}, World: 1}); err != nil {
				return fatal(err)
			}
			r.orderEp = r.pos.Epoch
		}
		epoch, start := r.pos.Epoch, r.pos.Consumed
		steps := dataset.StepsPerEpoch(n-start, b)
		for k := range steps {
			if err := ctx.Err(); err != nil {
				return ringError("training", context.Cause(ctx))
			}
			t0 := time.Now()
			consumed := start + k*b
			r.shard = dataset.AppendStepShare(r.shard[:0], r.order, consumed, b, rank, world)
			local := r.shard
			global := min(b, n-consumed)
			loss, correct := r.localGradient(local, global)
			if err := comm.AllReduce(ctx, a.Grad); err != nil {
				return ringError(fmt.Sprintf("all-reduce of step %d", r.step+1), err)
			}
			if len(a.Buffers) > 0 {
				// BatchNorm statistics: every replica takes the ring's
				// mean, exact whatever the gradients' codec.
				if err := comm.AllReduceExact(ctx, a.Buffers); err != nil {
					return ringError(fmt.Sprintf("all-reduce of buffers at step %d", r.step+1), err)
				}
				scale(a.Buffers, 1/float32(world))
			}
			lr := r.sched.LR(r.nominalStep())
			r.su.opt.Step(lr)
			r.step++
			r.pos = dataset.AdvancePosition(r.pos, n, b, 1)
			secs := time.Since(t0).Seconds()
			r.report(len(local), correct, loss, secs, float64(lr))
			if r.w.o.AfterStep != nil {
				r.w.o.AfterStep(r.step, a.Data)
			}
			if r.step%checksumEvery == 0 {
				if err := r.checksum(ctx, comm, rank); err != nil {
					return err
				}
			}
			e := int64(r.spec.CheckpointEvery)
			// (The epoch's last step checkpoints below, after the evaluation.)
			if ((e > 0 && r.step%e == 0) || r.step == r.w.checkpointAt(g.Number)) && k < steps-1 {
				if err := r.checkpoint(ctx, g, rank, world, nil); err != nil {
					return err
				}
			}
		}
		// The epoch is done: evaluate on the test set (each rank a slice,
		// summed over the ring) and checkpoint.
		ev, err := r.evaluate(ctx, comm, rank, world, epoch)
		if err != nil {
			return err
		}
		r.w.logf("epoch %d: test loss %.4f, accuracy %.2f%%", epoch+1, ev.Loss, 100*ev.Accuracy)
		if err := r.checksum(ctx, comm, rank); err != nil {
			return err
		}
		if err := r.checkpoint(ctx, g, rank, world, ev); err != nil {
			return err
		}
	}
	// A ring formed after the last epoch (a member changed at the very
	// end, perhaps during the last evaluation) evaluates and writes the
	// final checkpoint of its own generation.
	if r.ckptGen != g.Number || r.ckptStep != r.step {
		ev, err := r.evaluate(ctx, comm, rank, world, r.pos.Epoch-1)
		if err != nil {
			return err
		}
		return r.checkpoint(ctx, g, rank, world, ev)
	}
	return nil
}

// nominalStep is the schedule's step for the current position: every step
// takes the job's global batch whatever the ring's size, so this is the
// number of steps taken since the job began.
func (r *ringTrainer) nominalStep() int {
	return r.pos.Epoch*r.stepsPerEpoch + r.pos.Consumed/r.batch
}

// localGradient leaves in the arena this worker's share of the step's
// gradient: the mean gradient of its samples weighted by their share of the
// global batch, so the ring's sum is the global batch's mean gradient. A
// worker without samples in this step contributes zeros.
func (r *ringTrainer) localGradient(local []int, global int) (loss float64, correct int) {
	a := r.su.model.Arena
	if len(local) == 0 {
		a.ZeroGrad()
		return 0, 0
	}
	size := r.su.in.size()
	r.su.in.batch(r.su.train, local, r.x[:len(local)*size], r.y[:len(local)])
	loss, correct = r.su.compute.step(int(r.step), r.x[:len(local)*size], r.y[:len(local)])
	scale(a.Grad, float32(len(local))/float32(global))
	return loss, correct
}

// report updates the figures the heartbeat carries.
func (r *ringTrainer) report(n, correct int, loss, secs, lr float64) {
	ws := &r.window
	ws.images += n
	ws.correct += correct
	ws.loss += loss * float64(n)
	ws.seconds += secs
	r.w.metrics.step.Set(float64(r.step))
	r.w.metrics.stepSeconds.Observe(secs)
	if ws.images < 4*r.batch && r.step%10 != 0 {
		r.w.setProgress(func(p *progress) { p.step, p.epoch, p.consumed = r.step, r.pos.Epoch, r.pos.Consumed })
		return
	}
	st := api.WorkerStats{Epoch: r.pos.Epoch, LR: lr}
	if ws.images > 0 {
		st.Loss, st.Accuracy = ws.loss/float64(ws.images), float64(ws.correct)/float64(ws.images)
	}
	if ws.seconds > 0 {
		st.ImagesPerSecond = float64(ws.images) / ws.seconds
	}
	r.w.metrics.loss.Set(st.Loss)
	r.w.metrics.imagesPerSecond.Set(st.ImagesPerSecond)
	r.w.setProgress(func(p *progress) {
		st.Checksum, st.ChecksumStep = p.stats.Checksum, p.stats.ChecksumStep
		p.step, p.epoch, p.consumed, p.stats = r.step, r.pos.Epoch, r.pos.Consumed, st
	})
	*ws = windowStats{}
}

// evaluate measures the test set: rank r takes the r-th of world equal
// slices, and the sums go round the ring.
func (r *ringTrainer) evaluate(ctx context.Context, comm *allreduce.Comm, rank, world, epoch int) (*api.Eval, error) {
	t := r.su.test.N
	lossSum, correct := evalRange(r.su.model, r.evalTape, r.su.in, r.su.test, rank*t/world, (rank+1)*t/world)
	if cap(r.statsBuf) < 2 {
		r.statsBuf = make([]float32, 2)
	}
	buf := r.statsBuf[:2]
	buf[0], buf[1] = float32(lossSum), float32(correct)
	if err := comm.AllReduceExact(ctx, buf); err != nil {
		return nil, ringError("evaluation", err)
	}
	return &api.Eval{Epoch: epoch, Loss: float64(buf[0]) / float64(t), Accuracy: float64(buf[1]) / float64(t)}, nil
}

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

// checksum compares this rank's parameters with rank 0's: replicas that
// differ are an error, not a silent drift.
func (r *ringTrainer) checksum(ctx context.Context, comm *allreduce.Comm, rank int) error {
	mine := paramChecksum(r.su.model.Arena)
	buf := []float32{math.Float32frombits(uint32(mine)), math.Float32frombits(uint32(mine >> 32))}
	if err := comm.Broadcast(ctx, 0, buf); err != nil {
		return ringError("parameter checksum", err)
	}
	root := uint64(math.Float32bits(buf[0])) | uint64(math.Float32bits(buf[1]))<<32
	r.w.setProgress(func(p *progress) {
		p.stats.Checksum, p.stats.ChecksumStep = fmt.Sprintf("%016x", mine), r.step
	})
	if root != mine {
		return fatal(fmt.Errorf("worker: %w at step %d: rank %d's parameters hash to %016x, rank 0's to %016x", ErrDiverged, r.step, rank, mine, root))
	}
	return nil
}

// checkpoint writes this rank's shard of the checkpoint at the current
// step and reports it; the coordinator seals and commits it once every
// rank has. A report that does not reach the coordinator is only a
// warning: training goes on and a later checkpoint commits.
func (r *ringTrainer) checkpoint(ctx context.Context, g *api.Generation, rank, world int, ev *api.Eval) error {
	name := checkpoint.NameForStep(int(r.step))
	rep := &api.CheckpointReport{
		Name: r.w.o.Name, Token: r.w.o.Token, Generation: g.Number, Rank: rank, World: world,
		Checkpoint: name, Step: r.step, Epoch: r.pos.Epoch, Consumed: r.pos.Consumed, Eval: ev,
	}
	for _, p := range shardParts(r.su.model, r.su.opt, rank, world) {
		fi, err := r.store.WriteShard(name, p)
		if err != nil {
			return fatal(fmt.Errorf("worker: writing checkpoint shard: %w", err))
		}
		rep.Files = append(rep.Files, api.FileInfo{Name: fi.Name, Size: fi.Size, SHA256: fi.SHA256})
	}
	r.ckptGen, r.ckptStep = g.Number, r.step
	r.w.metrics.checkpoints.Inc()
	err := r.w.ctl.call(ctx, func(c context.Context, cl *api.ControlClient) error {
		_, err := cl.ReportCheckpoint(c, rep)
		return err
	})
	if err != nil && ctx.Err() == nil {
		r.w.logf("warning: checkpoint %s not reported: %v", name, err)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return ringError("checkpoint report", context.Cause(ctx))
	}
	return nil
}
