package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/timeline"
)

// trainer is a cluster worker's engine and checkpoint store, which survive
// from one generation of the ring to the next.
type trainer struct {
	e     *engine
	spec  job.Spec
	store *checkpoint.Store
	jobID uint64
	// psgd is the PowerSGD reducer when the job's codec is powersgd-rN; its
	// state is this rank's own (error feedback), so a new generation starts
	// it afresh unless it restores a checkpoint of the same ring size.
	psgd *allreduce.PowerSGDReducer

	// the checkpoint last written, so a new generation at the same step
	// writes its own
	ckptGen  uint64
	ckptStep int64

	window tally // the figures the next heartbeat reports
}

func newTrainer(ctx context.Context, spec job.Spec, store *checkpoint.Store, jobID uint64, logf func(string, ...any)) (*trainer, error) {
	e, err := newEngine(ctx, spec, spec.BatchPerWorker(), logf)
	if err != nil {
		return nil, err
	}
	t := &trainer{e: e, spec: spec, store: store, jobID: jobID}
	if r, ok := allreduce.PowerSGDRank(codecName(spec)); ok {
		a := e.model.Arena
		params := make([]allreduce.ParamShape, len(a.Params))
		for i, p := range a.Params {
			params[i] = allreduce.ParamShape{Name: p.Name, Shape: p.Shape, Off: p.Offset}
		}
		if t.psgd, err = allreduce.NewPowerSGDReducer(params, r, spec.Seed); err != nil {
			e.Close()
			return nil, fatal(fmt.Errorf("worker: %w", err))
		}
	}
	return t, nil
}

func (t *trainer) close() { t.e.Close() }

// codecState is the PowerSGD state a checkpoint keeps for this rank.
func (t *trainer) codecState() []checkpoint.Tensor {
	if t.psgd == nil {
		return nil
	}
	var out []checkpoint.Tensor
	for _, s := range t.psgd.State() {
		out = append(out, checkpoint.Tensor{Name: s.Name, Data: s.Data})
	}
	return out
}

// restoreCodec loads this rank's PowerSGD state from ck when it was written
// by a ring of the same size, and starts it afresh otherwise.
func (t *trainer) restoreCodec(ck *checkpoint.Checkpoint, rank, world int) error {
	if t.psgd == nil {
		return nil
	}
	t.psgd.Reset()
	dst := t.codecState()
	for i := range dst {
		dst[i].Data = make([]float32, len(dst[i].Data))
	}
	found, err := ck.ReadCodecState(rank, world, dst)
	if err != nil || !found {
		return err
	}
	st := make([]allreduce.NamedFloats, len(dst))
	for i, d := range dst {
		st[i] = allreduce.NamedFloats{Name: d.Name, Data: d.Data}
	}
	return t.psgd.LoadState(st)
}

// runGeneration joins the ring of generation g, syncs state, and trains
// until the job's last epoch is done (nil) or the ring fails.
func (w *ClusterWorker) runGeneration(parent context.Context, t *trainer, g *api.Generation) error {
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

	ln := w.data.Generation()
	addrs := make([]string, world)
	for i, p := range g.Ring {
		addrs[i] = p.DataAddr
	}
	codec, err := gradientCodec(t.spec, 4*allreduce.DefaultChunk)
	if err != nil {
		return fatal(err)
	}
	if cl, ok := codec.(io.Closer); ok {
		defer cl.Close()
	}
	var checkPeer func(int, tls.ConnectionState) error
	if w.o.CheckRingPeer != nil {
		checkPeer = func(r int, cs tls.ConnectionState) error { return w.o.CheckRingPeer(g.Ring[r].Name, cs) }
	}
	tr, err := allreduce.DialRing(ctx, allreduce.GRPCConfig{
		Rank: rank, Addrs: addrs, Listener: ln, Job: t.jobID, Generation: g.Number,
		Timeout: w.o.Timeout, ServerTLS: w.o.ServerTLS, ClientTLS: w.o.ClientTLS, CheckPeer: checkPeer,
		NoSharedMemory: w.o.NoSharedMemory,
		// Every link proves, at both ends, a key only holders of the join
		// token can derive; the ring's notices of links it refused go to
		// the worker's log.
		RingKey: allreduce.RingKey(w.o.Token, t.jobID, g.Number), Logf: w.logf,
		// Frames are at most one chunk, in fp32 (shared memory) or the
		// codec's encoding: this sizes the shared rings (8 MiB) rather
		// than the default limit (16 MiB, so 64 MiB rings).
		MaxFrame: max(4*allreduce.DefaultChunk, codec.MaxEncodedLen(allreduce.DefaultChunk)) + 1024,
	})
	if err != nil {
		return ringError(fmt.Sprintf("forming the ring of generation %d", g.Number), err)
	}
	comm, err := allreduce.New(tr, allreduce.Config{Job: t.jobID, Generation: g.Number, Codec: codec})
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
	if world > 1 {
		right, left := tr.LocalLinks()
		w.logf("generation %d: ring links: %s to rank %d, %s from rank %d",
			g.Number, linkKind(right), (rank+1)%world, linkKind(left), (rank+world-1)%world)
	}

	r := ring{rank: rank, world: world, comm: comm}
	if world > 1 {
		grads, err := newGradReducer(t.e.model.Arena, t.spec.Buckets, t.reduceBucket(comm))
		if err != nil {
			return fatal(err)
		}
		defer grads.close()
		r.grads = grads
	}
	syncStart := time.Now()
	if err := w.sync(ctx, t, r, g); err != nil {
		return err
	}
	e := t.e
	e.mark(timeline.Sync, syncStart)
	w.setProgress(func(p *progress) {
		p.step, p.epoch, p.consumed, p.inRing, p.trained = e.step, e.pos.Epoch, e.pos.Consumed, true, true
	})
	w.beat()
	e.compute.seed = t.spec.Seed ^ (uint64(rank)+1)*0x9e3779b97f4a7c15
	h := w.clusterHooks(t, r, g)
	if err := e.run(ctx, r, h); err != nil {
		if ctx.Err() != nil && !errors.As(err, new(*fatalError)) {
			return ringError("training", context.Cause(ctx))
		}
		return err
	}
	// A ring formed after the last epoch (a member changed at the very
	// end, perhaps during the last evaluation) evaluates and writes the
	// final checkpoint of its own generation.
	if t.ckptGen != g.Number || t.ckptStep != e.step {
		if err := e.endEpoch(ctx, r, e.pos.Epoch-1, h); err != nil {
			return err
		}
	}
	// Every replica logs what it ends with, so replicas of one run (and
	// runs of one job) can be compared from their logs alone.
	w.logf("%s step %d, parameters %016x", FinalParametersLog, e.step, paramChecksum(e.model.Arena))
	return nil
}

// FinalParametersLog begins the line a cluster worker logs when it has
// trained the job to its end: "… step N, parameters H", with H the hash of
// its parameters' and buffers' bits in 16 hex digits.
const FinalParametersLog = "trained to the end:"

// reduceBucket is how a bucket of the arena is summed over the ring: by the
// PowerSGD reducer when the job names it, else by the Comm's codec.
func (t *trainer) reduceBucket(comm *allreduce.Comm) func(ctx context.Context, span []float32, b allreduce.Bucket) error {
	if t.psgd != nil {
		grad := t.e.model.Arena.Grad
		return func(ctx context.Context, _ []float32, b allreduce.Bucket) error {
			return t.psgd.Reduce(ctx, comm, grad, b)
		}
	}
	return func(ctx context.Context, span []float32, _ allreduce.Bucket) error {
		return comm.AllReduce(ctx, span)
	}
}

// sync makes every rank's state the same: the source's (a survivor of the
// previous ring) when there is one, else the named committed checkpoint,
// else the job's initial state; then rank root broadcasts parameters,
// buffers, optimizer state and the training position.
func (w *ClusterWorker) sync(ctx context.Context, t *trainer, r ring, g *api.Generation) error {
	e := t.e
	root := 0
	if t.psgd != nil {
		t.psgd.Reset() // rank-local state: a new ring starts it afresh
	}
	if g.Source != "" {
		if root = g.Rank(g.Source); root < 0 {
			return fatal(fmt.Errorf("worker: generation %d names source %s, not in its ring", g.Number, g.Source))
		}
	} else if g.Restore != "" {
		ck, err := withDeadline(10*w.o.FileTimeout, "loading checkpoint "+g.Restore, func() (*checkpoint.Checkpoint, error) {
			return t.store.Load(g.Restore)
		})
		if err != nil {
			// The coordinator verified it in the shared store; this worker
			// cannot read it (a volume not mounted, or a different one).
			return fatal(fmt.Errorf("worker: restoring checkpoint %s from %s: %w", g.Restore, t.store.Dir(), err))
		}
		if err := e.restore(ck); err != nil {
			return fatal(err)
		}
		if err := t.restoreCodec(ck, r.rank, r.world); err != nil {
			return fatal(fmt.Errorf("worker: checkpoint %s: %w", g.Restore, err))
		}
		w.logf("restored checkpoint %s (epoch %d, step %d)", g.Restore, e.pos.Epoch+1, e.step)
	} else if err := e.reset(g.ResumeStep, dataset.Position{Epoch: g.Epoch, Consumed: g.Consumed}); err != nil {
		return err
	}
	buf := e.packState()
	if err := r.comm.Broadcast(ctx, root, buf); err != nil {
		return ringError(fmt.Sprintf("state sync from rank %d", root), err)
	}
	return e.unpackState(buf)
}

// clusterHooks are what a cluster worker does around the engine's steps:
// report progress in heartbeats, and write and report checkpoint shards.
func (w *ClusterWorker) clusterHooks(t *trainer, r ring, g *api.Generation) hooks {
	e := t.e
	var samples func(int64, dataset.Position, []int)
	if w.o.SampleLog != nil {
		if w.samples == nil {
			w.samples = &sampleLogger{w: w.o.SampleLog, logf: w.logf}
		}
		samples = func(step int64, pos dataset.Position, idx []int) {
			w.samples.record(g.Number, step, pos, r.rank, r.world, idx)
		}
	}
	return hooks{
		batch: samples,
		step: func(rep stepReport) {
			w.report(t, rep)
			if w.o.AfterStep != nil {
				w.o.AfterStep(e.step, e.model.Arena.Data)
			}
		},
		checkpointDue: func(step int64) bool {
			k := int64(t.spec.CheckpointEvery)
			return (k > 0 && step%k == 0) || step == w.checkpointAt(g.Number)
		},
		checkpoint: func(ctx context.Context, ev *EvalStats) error {
			return w.checkpoint(ctx, t, g, r.rank, r.world, ev)
		},
		evaluated: func(ev EvalStats) {
			w.logf("epoch %d: test loss %.4f, accuracy %.2f%%", ev.Epoch+1, ev.Loss, 100*ev.Accuracy)
		},
		checksummed: func(step int64, sum uint64) {
			w.setProgress(func(p *progress) { p.stats.Checksum, p.stats.ChecksumStep = fmt.Sprintf("%016x", sum), step })
		},
	}
}

// report updates the figures the heartbeat carries: loss, accuracy and
// images/s over a window of a few steps, and the phases of every step
// since the previous heartbeat (progress.phases).
func (w *ClusterWorker) report(t *trainer, rep stepReport) {
	e, ws := t.e, &t.window
	ws.add(rep)
	w.metrics.step.Set(float64(e.step))
	w.metrics.stepSeconds.Observe(rep.Seconds)
	if ws.images < 4*t.spec.BatchPerWorker() && e.step%10 != 0 {
		w.setProgress(func(p *progress) {
			p.step, p.epoch, p.consumed = e.step, e.pos.Epoch, e.pos.Consumed
			p.phases.add(rep)
			p.phases.phases(&p.stats)
		})
		return
	}
	st := api.WorkerStats{Epoch: e.pos.Epoch, LR: rep.LR}
	if ws.images > 0 {
		st.Loss, st.Accuracy = ws.lossSum/float64(ws.images), float64(ws.correct)/float64(ws.images)
	}
	if ws.seconds > 0 {
		st.ImagesPerSecond = float64(ws.images) / ws.seconds
	}
	w.metrics.loss.Set(st.Loss)
	w.metrics.imagesPerSecond.Set(st.ImagesPerSecond)
	w.setProgress(func(p *progress) {
		st.Checksum, st.ChecksumStep = p.stats.Checksum, p.stats.ChecksumStep
		p.phases.add(rep)
		p.phases.phases(&st)
		p.step, p.epoch, p.consumed, p.stats = e.step, e.pos.Epoch, e.pos.Consumed, st
	})
	*ws = tally{}
}

// phases sets st's per-step phase figures to the tally's means (all 0
// for a tally of no steps).
func (t *tally) phases(st *api.WorkerStats) {
	st.PhaseSteps, st.StepSeconds, st.DataWaitSeconds, st.ComputeSeconds, st.ReduceSeconds = t.steps, 0, 0, 0, 0
	if t.steps == 0 {
		return
	}
	n := float64(t.steps)
	st.StepSeconds, st.DataWaitSeconds, st.ComputeSeconds, st.ReduceSeconds = t.seconds/n, t.dataWait/n, t.compute/n, t.reduce/n
}

// checkpoint writes this rank's shard of the checkpoint at the current
// step and reports it; the coordinator seals and commits it once every
// rank has. A shard that cannot be written (a full disk) skips that
// checkpoint: a warning, a count in the heartbeats (and the
// ringtrain_worker_checkpoint_write_failures_total metric), and training
// goes on; so does a write that hangs (a hung file system) past
// FileTimeout, which is abandoned, the next checkpoint committing in its place; only the job's
// final checkpoint, which ends the job, is retried until it is written. A
// report that does not reach the coordinator is only a warning too.
func (w *ClusterWorker) checkpoint(ctx context.Context, t *trainer, g *api.Generation, rank, world int, ev *EvalStats) error {
	e := t.e
	name := checkpoint.NameForStep(int(e.step))
	rep := &api.CheckpointReport{
		Name: w.o.Name, Token: w.o.Token, Generation: g.Number, Rank: rank, World: world,
		Checkpoint: name, Step: e.step, Epoch: e.pos.Epoch, Consumed: e.pos.Consumed,
	}
	if ev != nil {
		rep.Eval = &api.Eval{Epoch: ev.Epoch, Loss: ev.Loss, Accuracy: ev.Accuracy}
	}
	parts := e.state(t.codecState()).Parts(rank, world)
	final := e.pos.Epoch >= t.spec.Epochs
	for wait := time.Second; ; wait = min(2*wait, maxShardRetry) {
		files, err := withDeadline(w.o.FileTimeout, "writing checkpoint "+name+"'s shard", func() ([]api.FileInfo, error) {
			return writeShards(t.store, name, parts)
		})
		if err == nil {
			rep.Files = files
			break
		}
		w.metrics.checkpointFailures.Inc()
		w.setProgress(func(p *progress) { p.ckptFailures, p.ckptError = p.ckptFailures+1, err.Error() })
		w.beat()
		if !final {
			w.logf("warning: checkpoint %s skipped: this rank's shard was not written: %v; training goes on", name, err)
			return nil
		}
		w.logf("warning: the final checkpoint %s: this rank's shard was not written: %v; trying again in %v", name, err, wait)
		select {
		case <-ctx.Done():
			return ringError("the final checkpoint", context.Cause(ctx))
		case <-time.After(wait):
		}
	}
	t.ckptGen, t.ckptStep = g.Number, e.step
	w.metrics.checkpoints.Inc()
	start := time.Now()
	err := w.ctl.Call(ctx, func(c context.Context, cl *api.ControlClient) error {
		_, err := cl.ReportCheckpoint(c, rep)
		return err
	})
	if err != nil && ctx.Err() == nil {
		w.logf("warning: checkpoint %s not reported after %v: %v", name, time.Since(start).Round(time.Millisecond), err)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return ringError("checkpoint report", context.Cause(ctx))
	}
	return nil
}

// maxShardRetry bounds the pause between attempts to write a shard of the
// job's final checkpoint.
const maxShardRetry = 30 * time.Second

// writeShards writes this rank's parts of checkpoint name into the store
// and returns what the report lists of them.
func writeShards(store *checkpoint.Store, name string, parts []checkpoint.Part) ([]api.FileInfo, error) {
	var files []api.FileInfo
	for _, p := range parts {
		fi, err := store.WriteShard(name, p)
		if err != nil {
			return nil, fmt.Errorf("worker: writing checkpoint shard: %w", err)
		}
		files = append(files, api.FileInfo{Name: fi.Name, Size: fi.Size, SHA256: fi.SHA256})
	}
	return files, nil
}

// linkKind names how a ring link carries frames, for the log: "shared
// memory" when both ends are on this host and mapped a shared ring, else
// "gRPC".
func linkKind(shm bool) string {
	if shm {
		return "shared memory"
	}
	return "gRPC"
}
