package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/allreduce"
	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/membership"
)

// ClusterOptions configure one worker process of a cluster.
type ClusterOptions struct {
	// Name identifies the worker in the job (e.g. its pod name); names
	// order the ring.
	Name string
	// Coordinators are the control addresses (host:port) of the job's
	// coordinators; the worker talks to whichever is the leader.
	Coordinators []string
	Token        string
	// Spec, when set, is the job this worker was started for: a
	// coordinator running another job refuses it. When nil the worker
	// trains the coordinator's job.
	Spec *job.Spec

	// DataListen is the address the all-reduce listener binds
	// (e.g. ":7080"); DataAdvertise the host:port its ring neighbours dial.
	DataListen, DataAdvertise string
	// GossipBind is the memberlist address (host:port); GossipAdvertise
	// the host others reach it at (empty: the bound address).
	GossipBind, GossipAdvertise string
	// HTTPAddr is advertised to the coordinator for status (optional).
	HTTPAddr string

	// StoreDir, when set, is the checkpoint store root (the coordinators'
	// --store, as this worker mounts it): the worker writes into the job's
	// store under it instead of the directory the coordinator advertises.
	// DataDir overrides the job's data directory; Threads its threads.
	StoreDir, DataDir string
	Threads           int

	// ControlDial are extra dial options for the control plane (e.g.
	// transport credentials; default plaintext). ServerTLS and ClientTLS
	// secure the all-reduce links (both nil: plaintext).
	ControlDial          []grpc.DialOption
	ServerTLS, ClientTLS *tls.Config
	// CheckRingPeer, with TLS, is asked whether a ring neighbour's
	// certificate (its connection's TLS state) may act as the worker the
	// ring names at its rank (see allreduce.GRPCConfig.CheckPeer); nil:
	// any certificate ServerTLS and ClientTLS accept.
	CheckRingPeer func(name string, cs tls.ConnectionState) error
	// NoSharedMemory keeps all-reduce frames on gRPC even between workers
	// on one host (see allreduce.GRPCConfig).
	NoSharedMemory bool

	// Timeout bounds every wait for a ring neighbour and every control
	// call (0: 3s).
	Timeout time.Duration
	// JoinTimeout bounds the wait to join the job when the worker starts
	// (0: no bound, as a Kubernetes pod waits for its coordinator). While
	// it waits the worker logs what it waits for every JoinReport (0:
	// 30s).
	JoinTimeout, JoinReport time.Duration
	// FileTimeout bounds each blocking file operation on the training
	// path: writing this rank's shards of a checkpoint (the checkpoint is
	// then skipped, as when the disk is full) and, bounded by ten times
	// FileTimeout as it may read a whole model, loading a checkpoint to
	// restore (the worker then fails). A hung file system cannot hang the
	// worker: the operation is abandoned (see withDeadline). 0: three
	// times Timeout (9 s by default), the coordinator's default deadline
	// for a member to reach a new ring, so a worker whose write hung
	// rejoins the ring before it would be evicted as stuck; negative: no
	// bound.
	FileTimeout time.Duration

	Logf func(format string, args ...any)
	// TimelineDir, when set, is where the worker records its step
	// timeline (a file named after the worker; see package timeline).
	TimelineDir string

	// SampleLog, when set, receives a line for every step the worker
	// takes (see SampleRecord): which samples it trained on, for checking
	// the data order of a run. Each line is one Write.
	SampleLog io.Writer

	// AfterStep, when set, is called after every optimizer step with the
	// step number and the parameters (tests compare runs with it).
	AfterStep func(step int64, params []float32)

	// storeFilter, when set, is the checkpoint store's write filter
	// (checkpoint.Store.WithWriteFilter): tests inject faults with it.
	storeFilter func(path string, w io.Writer) io.Writer
}

// DefaultJoinReport is how often a worker waiting to join says so.
const DefaultJoinReport = 30 * time.Second

// ClusterWorker is one worker process of a cluster: it joins the job, runs
// each generation of the ring it is given, and checkpoints its shard.
type ClusterWorker struct {
	o    ClusterOptions
	logf func(string, ...any)
	ctl  *api.LeaderClient // the job's coordinators, following the leader

	kick chan struct{} // asks the heartbeat loop for an immediate beat

	samples *sampleLogger // the sample log (SampleLog), used by the training goroutine

	mu         sync.Mutex
	jobHash    string              // the hash of the job this worker runs, once joined
	failed     error               // a fatal error of the heartbeat loop: it ends Run
	reply      *api.HeartbeatReply // the newest heartbeat reply
	changed    chan struct{}       // closed and replaced when reply changes
	prog       progress
	gossipAddr string // this worker's memberlist address, as others reach it
	storeDir   string // the job's checkpoint store, once opened

	data *allreduce.RingListener // the all-reduce listener, bound for the worker's life

	metrics *workerMetrics
}

// progress is what the heartbeat reports, written by the training loop.
type progress struct {
	generation uint64
	step       int64
	// the data position after step, and whether the model holds the
	// state of generation (synced in it)
	epoch, consumed int
	trained         bool
	broken          bool
	done            bool
	inRing          bool
	stats           api.WorkerStats
	// ckptFailures counts the checkpoint shards this worker failed to
	// write, and ckptError is the last failure's error.
	ckptFailures int
	ckptError    string
	// phases are the steps since the last heartbeat was sent; their means
	// are in stats (report fills them) and the heartbeat that carries
	// them starts anew.
	phases tally
}

// NewClusterWorker checks the options and connects to the coordinators
// (lazily: nothing is dialled until Run).
func NewClusterWorker(o ClusterOptions) (*ClusterWorker, error) {
	if err := checkWorkerName(o.Name); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if o.Token == "" {
		return nil, errors.New("worker: no join token (set --token-file or RINGTRAIN_JOIN_TOKEN)")
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.JoinTimeout < 0 {
		return nil, fmt.Errorf("worker: negative join timeout %v", o.JoinTimeout)
	}
	if o.JoinReport <= 0 {
		o.JoinReport = DefaultJoinReport
	}
	if o.FileTimeout == 0 {
		o.FileTimeout = 3 * o.Timeout
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.DataAdvertise == "" {
		o.DataAdvertise = o.DataListen
	}
	if _, _, err := net.SplitHostPort(o.DataAdvertise); err != nil {
		return nil, fmt.Errorf("worker: data address %q: %w", o.DataAdvertise, err)
	}
	ctl, err := api.NewLeaderClient(o.Coordinators, o.Timeout, o.ControlDial...)
	if err != nil {
		return nil, err
	}
	return &ClusterWorker{
		o: o, logf: o.Logf, ctl: ctl,
		changed: make(chan struct{}), kick: make(chan struct{}, 1),
		metrics: newWorkerMetrics(),
	}, nil
}

// SetHTTPAddr sets the address of the worker's HTTP endpoints, reported to
// the coordinator when the worker joins.
func (w *ClusterWorker) SetHTTPAddr(addr string) {
	w.mu.Lock()
	w.o.HTTPAddr = addr
	w.mu.Unlock()
}

// Run joins the job and trains until the coordinator says the job is
// complete (nil), ctx ends (the worker leaves the job: nil as well), or a
// fatal error.
func (w *ClusterWorker) Run(ctx context.Context) error {
	defer w.ctl.Close()
	data, err := allreduce.ListenRing(ctx, w.o.DataListen, w.o.Timeout)
	if err != nil {
		return fatal(fmt.Errorf("worker: all-reduce listener: %w", err))
	}
	defer data.Close()
	w.data = data
	gossip, err := membership.Start(membership.Config{
		Name: w.o.Name, Bind: w.o.GossipBind, Advertise: w.o.GossipAdvertise,
		Secret: w.o.Token, Meta: []byte("worker"),
	})
	if err != nil {
		return fatal(err)
	}
	defer gossip.Shutdown()
	w.mu.Lock()
	w.gossipAddr = gossip.Addr()
	w.mu.Unlock()
	rep, err := w.join(ctx, true)
	if err != nil {
		return err
	}
	hbInterval, err := checkJoinReply(rep, w.o.StoreDir != "")
	if err != nil {
		return fatal(fmt.Errorf("worker: the coordinator at %s: %w", strings.Join(w.o.Coordinators, ","), err))
	}
	spec, err := job.Parse([]byte(rep.Job), "the coordinator's job")
	if err != nil {
		return fatal(err)
	}
	if err := CheckJob(spec); err != nil {
		return fatal(err)
	}
	if spec.Hash() != rep.JobHash {
		return fatal(fmt.Errorf("worker: the coordinator's job hashes to %s but it announced %s", spec.Hash(), rep.JobHash))
	}
	w.mu.Lock()
	w.jobHash = rep.JobHash // joining again, the worker asks for this job
	w.mu.Unlock()
	if w.o.DataDir != "" {
		spec.DataDir = w.o.DataDir
	}
	if w.o.Threads > 0 {
		spec.Threads = w.o.Threads
	}
	store, err := w.openStore(spec, rep.StoreDir)
	if err != nil {
		return fatal(err)
	}
	if w.o.storeFilter != nil {
		store = store.WithWriteFilter(w.o.storeFilter)
	}
	w.mu.Lock()
	w.storeDir = store.Dir()
	w.mu.Unlock()

	if err := gossip.Join(rep.Gossip); err != nil {
		w.logf("warning: %v (membership will rely on heartbeats)", err)
	}

	t, err := newTrainer(ctx, spec, store, rep.JobID, w.logf)
	if err != nil {
		return fatal(err)
	}
	defer t.close()
	if w.o.TimelineDir != "" {
		defer openTimeline(t.e, w.o.TimelineDir, w.o.Name, w.logf)()
	}

	hbCtx, stopHB := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeats(hbCtx, hbInterval)
	}()
	defer func() { stopHB(); <-hbDone }()

	l := newLifecycle(w.o.Name)
	l.Joined()
	return w.loop(ctx, t, l, func() {
		// Leaving on purpose: the coordinator re-forms the ring at once
		// instead of waiting for gossip to declare this worker dead.
		lctx, cancel := context.WithTimeout(context.Background(), w.o.Timeout)
		w.ctl.Call(lctx, func(c context.Context, cl *api.ControlClient) error {
			_, err := cl.Leave(c, &api.LeaveRequest{Name: w.o.Name, Token: w.o.Token})
			return err
		})
		cancel()
		gossip.Leave(time.Second)
	})
}

// StoreDir is the directory of the job's checkpoint store, as this worker
// mounts it, once Run has opened it ("" before).
func (w *ClusterWorker) StoreDir() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.storeDir
}

// openStore opens the job's checkpoint store: the job's store under
// ClusterOptions.StoreDir, the store root as this worker mounts it, when
// set; else the one the coordinator advertises. A store that holds
// checkpoints of another job of the same name is refused.
func (w *ClusterWorker) openStore(spec job.Spec, advertised string) (*checkpoint.Store, error) {
	if w.o.StoreDir != "" {
		return checkpoint.OpenJobShared(w.o.StoreDir, spec.JobName(), spec.Hash())
	}
	if advertised == "" {
		return nil, errors.New("worker: no checkpoint store: the coordinator advertises none and --store is not set")
	}
	if err := checkpoint.CheckJob(advertised, spec.JobName(), spec.Hash()); err != nil {
		return nil, err
	}
	return checkpoint.OpenShared(advertised)
}

// join registers with the coordinator. It retries while the coordinators
// are unreachable, a standby or full, backing off up to 2s and saying what
// it waits for when that changes and every JoinReport; a refusal is final.
// When the worker starts (first), so are an address that can never work
// (api.LeaderClient.Diagnose) and the end of JoinTimeout (when set).
// Joining again, the worker asks for the job it runs: a coordinator that
// runs another job now refuses it.
func (w *ClusterWorker) join(ctx context.Context, first bool) (*api.JoinReply, error) {
	w.mu.Lock()
	httpAddr, gossip, p, running := w.o.HTTPAddr, w.gossipAddr, w.prog, w.jobHash
	w.mu.Unlock()
	timeout := time.Duration(0)
	if first {
		timeout = w.o.JoinTimeout
	}
	req := &api.JoinRequest{
		Name: w.o.Name, Token: w.o.Token, DataAddr: w.o.DataAdvertise,
		GossipAddr: gossip, HTTPAddr: httpAddr,
	}
	if p.trained {
		req.Generation, req.Step, req.Epoch, req.Consumed = p.generation, p.step, p.epoch, p.consumed
	}
	if w.o.Spec != nil {
		req.JobHash = w.o.Spec.Hash()
	}
	if running != "" {
		req.JobHash = running
	}
	where := strings.Join(w.o.Coordinators, ",")
	start := time.Now()
	jctx, expired := ctx, (<-chan struct{})(nil) // expired: the join timeout passed
	if timeout > 0 {
		var cancel context.CancelFunc
		jctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
		expired = jctx.Done()
	}
	delay := 100 * time.Millisecond
	var last string
	var reported time.Time
	for {
		var rep *api.JoinReply
		err := w.ctl.Call(jctx, func(c context.Context, cl *api.ControlClient) error {
			var err error
			rep, err = cl.Join(c, req)
			return err
		})
		if err == nil {
			if running != "" && rep.JobHash != running {
				return nil, fatal(fmt.Errorf("worker: the coordinator at %s now runs job hash %s; this worker runs %s", where, rep.JobHash, running))
			}
			w.logf("joined the job at %s", where)
			return rep, nil
		}
		switch status.Code(err) {
		case codes.PermissionDenied, codes.FailedPrecondition, codes.InvalidArgument:
			return nil, fatal(fmt.Errorf("worker: the coordinator refused %s: %s", w.o.Name, status.Convert(err).Message()))
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg := status.Convert(err).Message()
		timedOut := func() error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if last == "" {
				last = msg
			}
			return fatal(fmt.Errorf("worker: no coordinator at %s admitted %s within the join timeout of %v: %s",
				where, w.o.Name, timeout, last))
		}
		if timeout > 0 && jctx.Err() != nil {
			return nil, timedOut() // the call was cut short: say why the ones before failed
		}
		if first {
			if perr := w.ctl.Diagnose(ctx, err); perr != nil {
				return nil, fatal(fmt.Errorf("worker: %w", perr))
			}
		}
		now := time.Now()
		switch {
		case msg != last:
			w.logf("waiting for the coordinator at %s: %s", where, msg)
			reported = now
		case now.Sub(reported) >= w.o.JoinReport:
			w.logf("still waiting for the coordinator at %s: %s (for %s)", where, msg, roundWait(now.Sub(start)))
			reported = now
		}
		last = msg
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-expired:
			return nil, timedOut()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// roundWait rounds a wait for a log line: to the second from 10s on.
func roundWait(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}

// heartbeats reports progress every interval (and at once when kicked)
// and keeps the newest reply. A coordinator that no longer knows the
// worker (a new leader, or it declared the worker dead) gets a new Join.
func (w *ClusterWorker) heartbeats(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.mu.Lock()
		p := w.prog
		w.prog.phases = tally{}
		w.prog.phases.phases(&w.prog.stats)
		w.mu.Unlock()
		stats := p.stats
		stats.CheckpointFailures, stats.LastCheckpointError = p.ckptFailures, p.ckptError
		req := &api.HeartbeatRequest{
			Name: w.o.Name, Token: w.o.Token, Generation: p.generation, Step: p.step,
			Broken: p.broken, InRing: p.inRing, Done: p.done, Stats: &stats,
		}
		var rep *api.HeartbeatReply
		err := w.ctl.Call(ctx, func(c context.Context, cl *api.ControlClient) error {
			var err error
			rep, err = cl.Heartbeat(c, req)
			return err
		})
		w.metrics.heartbeat(err == nil)
		switch {
		case err == nil:
			w.setReply(rep)
		case status.Code(err) == codes.NotFound:
			w.logf("the coordinator does not know this worker (%s): joining again", status.Convert(err).Message())
			if _, err := w.join(ctx, false); err != nil && ctx.Err() == nil {
				w.fail(err) // refused: the coordinator runs another job, or with another token
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
	}
}

// fail ends the worker with err (from the heartbeat loop): waitReply
// returns it.
func (w *ClusterWorker) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed == nil {
		w.failed = fatal(err)
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// failure is the error fail set, or nil.
func (w *ClusterWorker) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

func (w *ClusterWorker) setReply(r *api.HeartbeatReply) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reply = r
	close(w.changed)
	w.changed = make(chan struct{})
}

// checkpointAt is the step at which the coordinator asked generation gen
// to checkpoint, or 0.
func (w *ClusterWorker) checkpointAt(gen uint64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.reply; r != nil && r.Generation != nil && r.Generation.Number == gen {
		return r.CheckpointAt
	}
	return 0
}

// beat asks for a heartbeat now.
func (w *ClusterWorker) beat() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *ClusterWorker) setProgress(fn func(p *progress)) {
	w.mu.Lock()
	fn(&w.prog)
	w.mu.Unlock()
}

// waitReply blocks until the newest reply satisfies ok, ctx ends, or the
// heartbeat loop fails (its error).
func (w *ClusterWorker) waitReply(ctx context.Context, ok func(*api.HeartbeatReply) bool) (*api.HeartbeatReply, error) {
	for {
		w.mu.Lock()
		r, ch, failed := w.reply, w.changed, w.failed
		w.mu.Unlock()
		if failed != nil {
			return nil, failed
		}
		if r != nil && ok(r) {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// loop drives the worker's lifecycle (lifecycle.go) until it exits: it
// does what the machine asks (train a generation, report, leave) and feeds
// it what happened (heartbeat replies, how a generation ended, a stop).
func (w *ClusterWorker) loop(ctx context.Context, t *trainer, l *lifecycle, leave func()) error {
	var fed *api.HeartbeatReply
	for {
		rd := l.Ready()
		for _, line := range rd.Logs {
			w.logf("%s", line)
		}
		if f := rd.Progress; f != nil {
			w.setProgress(func(p *progress) { p.done, p.broken, p.inRing = f.Done, f.Broken, f.InRing })
		}
		if rd.Beat {
			w.beat()
		}
		switch {
		case rd.Exit:
			return rd.Err
		case rd.Leave:
			leave()
			l.Advance()
			continue
		case rd.Train != nil:
			l.Advance()
			err := w.runGeneration(ctx, t, rd.Train)
			if f := w.failure(); f != nil {
				return f
			}
			if ctx.Err() != nil {
				l.Stopped(context.Cause(ctx))
				continue
			}
			if err != nil && !errors.As(err, new(*fatalError)) {
				w.metrics.ringFailures.Inc()
			}
			l.Ended(err)
			continue
		}
		l.Advance()
		rep, err := w.waitReply(ctx, func(r *api.HeartbeatReply) bool { return r != fed })
		if f := w.failure(); f != nil {
			return f
		}
		if err != nil {
			l.Stopped(context.Cause(ctx))
			continue
		}
		fed = rep
		l.Reply(rep)
	}
}
