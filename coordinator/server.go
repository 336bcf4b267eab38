package coordinator

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dashboard"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/pki"
	"github.com/ringtrain/ringtrain/runlog"
)

// ServerConfig configures a coordinator process (see Server).
type ServerConfig struct {
	// Name is this coordinator's name, unique among the job's coordinators;
	// it is the value of its leader key.
	Name string
	// Spec is the job. Its name (JobName) is the etcd key component of all
	// the job's keys.
	Spec job.Spec
	// CheckJob, when set, checks the names Spec gives (model, data set,
	// optimizer, codec, …) as the workers will run them. NewServer calls
	// it before anything else it does and fails with its error, so a job
	// the workers cannot run never takes the lead, opens the store or
	// serves. The coordinator knows no model or codec itself; a CLI passes
	// the workers' check (worker.CheckJob).
	CheckJob func(job.Spec) error
	Token    string // the join token every worker must present; non-empty
	// StatusToken reads the job's status (gRPC Status, HTTP /status, the
	// dashboard) but cannot join: for operators and monitoring that need
	// to see the job and nothing more. Empty: none. The join token always
	// reads the status too.
	StatusToken string
	Etcd        *clientv3.Client
	// Store is the job's checkpoint store (a shared volume on a cluster);
	// the coordinator seals the workers' shards there, and its directory is
	// advertised to them. Nil: NewServer opens the job's store under
	// StoreDir (checkpoint.OpenJobShared: StoreDir/<job name>, or StoreDir
	// itself when it has the layout before stores were separated per job
	// and holds this job's checkpoints), refusing one that holds the
	// checkpoints of another job of the same name.
	//
	// A coordinator removes nothing from the store while it is a standby;
	// when it leads it removes its own unfinished writes (its staging
	// directories carry its Name), and retention removes what the job's
	// etcd records list.
	Store *checkpoint.Store
	// StoreDir is the store root (--store), when Store is nil. The
	// server sets it to the job's store directory, made absolute: the
	// directory advertised to workers.
	StoreDir string
	// Samples is the number of training samples per epoch (0: the data
	// set's, as dataset.TrainSamples counts them); the coordinator loads
	// no data.
	Samples int
	// Gossip is this process's memberlist member; its Gone events declare
	// workers dead. Run is the only reader of its Events. Optional (nil:
	// deaths are noticed by silence only).
	Gossip *membership.Member
	// GossipAddr is the memberlist address workers join (JoinReply.Gossip).
	GossipAddr string
	// ControlAddr is the control-plane address (host:port) others reach
	// this coordinator at. While it leads it is in the job's state key, so
	// that a standby's status says where the leader answers. Optional
	// (Listen sets it from the bound port and ProcessConfig.Advertise).
	ControlAddr string
	// HeartbeatInterval is how often workers heartbeat (default 200 ms); one
	// tick of the state machine is half of it.
	HeartbeatInterval time.Duration
	// DeadAfter: a worker silent this long is declared dead (default 3 s).
	DeadAfter time.Duration
	// Settle is the settling window that coalesces membership changes into
	// one generation (default 300 ms).
	Settle time.Duration
	// StuckAfter: a ring member that heartbeats but has not reached the
	// ring of the current generation (formed it and synced its state) this
	// long after it was first put in a ring it then failed to reach is
	// evicted as stuck (Config.StuckTicks), and may join again StuckAfter
	// after the eviction; a worker evicted again without reaching a ring in
	// between waits twice as long each time (up to 64 × StuckAfter). Default 9 s: three times the workers' default
	// ring timeout (3 s), so a ring that times out once or twice on a slow
	// member does not evict it. Set it to about three times the workers'
	// --timeout when that differs, and above the longest state sync the
	// job needs. Negative: never evict stuck members.
	StuckAfter time.Duration
	// LeaseTTL is the etcd session TTL in seconds (default 5): a leader cut
	// off from etcd this long steps down, and a standby takes over this long
	// after a leader dies.
	LeaseTTL int
	// RunDir is the job's run directory (empty: none). While this
	// coordinator leads, it keeps the run's metrics.jsonl there: "train"
	// records from rank 0's heartbeats and "eval" records from checkpoint
	// reports; a generation that goes back to an earlier step (a restore
	// from a checkpoint) drops the records past it, which the steps
	// trained again replace. The coordinators of a job may share the
	// directory: only the leader writes, and a new leader continues the
	// records of the one before. WriteRunProducts adds the rest of a run's
	// products.
	RunDir string
	// Stragglers are the thresholds of straggler detection (zero fields:
	// the defaults; see StragglerDetector).
	Stragglers StragglerConfig
	// ReplaceJob lets this coordinator start its job over when etcd holds
	// the state of another job (another job hash) under the same name: the
	// leader clears that job's state, generation and committed checkpoints
	// from etcd (its files stay in the store) and starts afresh. Without
	// it such a coordinator refuses to lead (Run's error). The state of
	// this very job is always resumed: a store in which none of its
	// committed checkpoints verifies is an error either way.
	ReplaceJob bool
	// Logf receives log lines (nil: discarded).
	Logf func(format string, args ...any)
	// Now is the clock for timestamps in status and records (nil: time.Now).
	Now func() time.Time
}

// Defaults of ServerConfig.
const (
	DefaultHeartbeatInterval = 200 * time.Millisecond
	DefaultDeadAfter         = 3 * time.Second
	DefaultSettle            = 300 * time.Millisecond
	DefaultStuckAfter        = 9 * time.Second
	DefaultLeaseTTL          = 5
	// defaultKeepCheckpoints is used when the job file keeps none.
	defaultKeepCheckpoints = 3
	// trainRecordEvery is the number of steps between "train" records.
	trainRecordEvery = 50
)

// Timeouts of etcd calls; they bound how long one attempt waits while etcd
// is unreachable.
const (
	commitTimeout   = 5 * time.Second
	etcdOpTimeout   = 2 * time.Second
	readTimeout     = 5 * time.Second
	leaderLookup    = 500 * time.Millisecond
	revokeTimeout   = 2 * time.Second
	campaignBackoff = 500 * time.Millisecond
)

// Server is a coordinator process: it campaigns for the job's leadership in
// etcd and, while leader, drives the generation state machine (Coordinator)
// from the control-plane RPCs, memberlist events and a ticker, publishes
// generations (each first written to etcd), seals and commits checkpoints,
// and serves status and metrics. While standby it refuses the workers'
// calls with codes.Unavailable, naming the leader.
//
// All job state lives in one leadership term and is dropped when the term
// ends (the etcd session expired, etcd refused a guarded write, or Run's
// context ended); the next term rebuilds it from etcd. The RPC handlers are
// safe for concurrent use; NewServer starts nothing, Run owns every
// goroutine the server starts.
type Server struct {
	cfg       ServerConfig
	job       string
	hash      string
	jobID     uint64
	jobYAML   string
	storeDir  string
	tick      time.Duration
	smConfig  Config // the state machine's config without the start fields
	keep      int
	commitTTL time.Duration // per-commit timeout
	logf      func(string, ...any)
	now       func() time.Time
	metrics   *metrics

	kick chan struct{} // wakes the driver: the state machine has outputs
	done chan struct{}

	// staleLeases are leases of ended terms that etcd did not revoke; only
	// Run's goroutine uses them.
	staleLeases []clientv3.LeaseID

	mu       sync.Mutex
	term     *term // nil while standby
	doneOnce sync.Once
	// history is the generation history of this coordinator's terms,
	// oldest first, at most historyLen events.
	history []api.GenerationEvent
	// records reads RunDir's metrics log while this coordinator is a
	// standby (nil without a RunDir).
	records *dashboard.RecordsFile

	// refusals rate-limits the log lines of workers' calls refused (a
	// wrong token, a certificate not the worker's).
	refusals refusalLog
}

// refusalLogEvery is the least time between two log lines of calls
// refused for a wrong token.
const refusalLogEvery = 10 * time.Second

// refusalLog rate-limits the log lines of refused calls: the first is
// logged, then at most one per period, with the number refused since the
// line before.
type refusalLog struct {
	mu     sync.Mutex
	every  time.Duration // 0: refusalLogEvery
	last   time.Time
	missed int
}

func (r *refusalLog) setEvery(d time.Duration) {
	r.mu.Lock()
	r.every = d
	r.mu.Unlock()
}

// allow reports whether a refusal at now is logged and, if so, how many
// were not since the last one logged.
func (r *refusalLog) allow(now time.Time) (ok bool, missed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	every := r.every
	if every == 0 {
		every = refusalLogEvery
	}
	if !r.last.IsZero() && now.Sub(r.last) < every {
		r.missed++
		return false, 0
	}
	missed, r.last, r.missed = r.missed, now, 0
	return true, missed
}

// historyLen bounds the generation history a coordinator keeps.
const historyLen = 200

// term is the job state of one leadership term. Its fields are guarded by
// Server.mu except where noted.
type term struct {
	key string // this coordinator's leader key and its create revision
	rev int64

	committer *checkpoint.EtcdCommitter
	commits   chan commitJob // to the committer goroutine

	sm     *Coordinator
	gen    *api.Generation // the current generation; nil before the first; never mutated
	paused bool
	reason string // the state machine's latest status line
	// done: the job's final checkpoint is committed; every heartbeat is
	// answered with Stop.
	done       bool
	stateDirty bool // the job state key must be (re)written

	workers map[string]*workerInfo
	// evicted are the workers evicted as stuck (ServerConfig.StuckAfter)
	// that have not reached a ring since: why, and until when a Join of
	// theirs is refused.
	evicted map[string]eviction
	reports map[reportKey]*reportSet
	// gone holds the members memberlist reported gone whose death is not
	// confirmed yet (watchGossip), as name → gossip address.
	gone map[string]string
	// lastBroken is when a ring member last reported its ring broken.
	lastBroken time.Time
	// rlog is the run's metrics log in RunDir, open while the term lasts;
	// nil without a RunDir.
	rlog      *runlog.Log
	lastCkpt  *checkpoint.Manifest // the newest checkpoint committed in etcd
	lastEval  *api.Eval
	lastTrain int64 // step of the last "train" record
	// lastEvalStep is the step of the last "eval" record: a heartbeat
	// that arrives after it, for that step or an earlier one, writes no
	// "train" record, so the log's steps never go back.
	lastEvalStep int64
	genFailed    bool // the last generation write to etcd failed (for logging once)
	// ckptAt is the step at which the current generation was asked to
	// checkpoint (RequestCheckpoint); 0 if none.
	ckptAt    int64
	ckptAtGen uint64
	// stragglers judges the phase figures of the running ring's
	// heartbeats.
	stragglers *StragglerDetector
	// committed are the checkpoints committed in etcd that retention
	// keeps, oldest first (the last is lastCkpt).
	committed []checkpoint.Manifest
}

// eviction is a worker evicted as stuck.
type eviction struct {
	reason string
	until  time.Time
	times  int // evictions as stuck without reaching a ring in between
}

// maxStuckBackoff bounds the doubling of the wait before a worker evicted
// as stuck again and again may join again: StuckAfter times this.
const maxStuckBackoff = 64

// workerInfo is what the coordinator knows about one member.
type workerInfo struct {
	dataAddr, gossipAddr, httpAddr string
	gen                            uint64
	brokenGen                      uint64 // the generation it last reported broken
	step                           int64
	lastSeen                       time.Time
	stats                          *api.WorkerStats
}

// NewServer checks the job (CheckJob) and cfg, applies cfg's defaults,
// opens the job's store under cfg.StoreDir if cfg has none (refusing one
// that holds another job's checkpoints under this job's name), and returns
// a server that does nothing until Run.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.CheckJob != nil {
		if err := cfg.CheckJob(cfg.Spec); err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.Name == "" || strings.ContainsAny(cfg.Name, " \t\r\n"):
		return nil, fmt.Errorf("coordinator: server: bad coordinator name %q", cfg.Name)
	case cfg.Token == "":
		return nil, errors.New("coordinator: server: empty join token")
	case cfg.Etcd == nil:
		return nil, errors.New("coordinator: server: no etcd client")
	case cfg.Store == nil && cfg.StoreDir == "":
		return nil, errors.New("coordinator: server: no checkpoint store")
	case cfg.Samples < 0:
		return nil, fmt.Errorf("coordinator: server: %d samples per epoch, want ≥ 1", cfg.Samples)
	case cfg.HeartbeatInterval < 0 || cfg.DeadAfter < 0 || cfg.Settle < 0 || cfg.LeaseTTL < 0:
		return nil, errors.New("coordinator: server: negative duration")
	}
	if err := cfg.Spec.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	if cfg.Samples == 0 {
		n, err := dataset.TrainSamples(cfg.Spec.Dataset, cfg.Spec.Validation, cfg.Spec.TrainLimit)
		if err != nil {
			return nil, fmt.Errorf("coordinator: server: %w", err)
		}
		cfg.Samples = n
	}
	jobName := JobName(cfg.Spec)
	if strings.ContainsAny(jobName, "/\\ \t\r\n") || jobName == "." || jobName == ".." {
		return nil, fmt.Errorf("coordinator: server: job name %q cannot name etcd keys", jobName)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = DefaultDeadAfter
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.StuckAfter == 0 {
		cfg.StuckAfter = DefaultStuckAfter
	}
	stuckTicks := 0 // never
	if cfg.StuckAfter > 0 {
		stuckTicks = max(int(cfg.StuckAfter/max(cfg.HeartbeatInterval/2, time.Millisecond)), 1)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	tick := max(cfg.HeartbeatInterval/2, time.Millisecond)
	spec := cfg.Spec
	workers := max(spec.Workers, 1)
	minW := spec.MinWorkers
	if minW == 0 {
		minW = workers
	}
	minW = max(minW, 1)
	maxW := spec.MaxWorkers
	if maxW == 0 {
		maxW = max(workers, minW)
	}
	smc := Config{
		MinWorkers:     minW,
		MaxWorkers:     maxW,
		JoinToken:      cfg.Token,
		JobHash:        spec.Hash(),
		HeartbeatTicks: 2,
		DeadTicks:      max(int(cfg.DeadAfter/tick), 3),
		SettleTicks:    int(cfg.Settle / tick),
		StuckTicks:     stuckTicks,
		Samples:        cfg.Samples,
		Batch:          spec.BatchSize,
		Epochs:         spec.Epochs,
	}
	if err := smc.validate(); err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	yml, err := spec.YAML()
	if err != nil {
		return nil, fmt.Errorf("coordinator: server: rendering the job file: %w", err)
	}
	keep := spec.KeepCheckpoints
	if keep < 1 {
		keep = defaultKeepCheckpoints
	}
	if err := checkpoint.ValidJobName(jobName); err != nil {
		return nil, fmt.Errorf("coordinator: server: %w", err)
	}
	if cfg.Store == nil { // last: a config refused above leaves no trace
		// Every coordinator, standby or not, opens the store shared: it
		// removes nothing (see startTerm).
		store, err := checkpoint.OpenJobShared(cfg.StoreDir, jobName, spec.Hash())
		if err != nil {
			return nil, fmt.Errorf("coordinator: server: %w", err)
		}
		if store.Legacy() {
			logf("coordinator: the store %s has the layout before stores were separated per job and holds job %s's checkpoints: they continue there", store.Dir(), jobName)
		}
		cfg.Store = store
	}
	cfg.Store = cfg.Store.Owned(cfg.Name)
	cfg.StoreDir = cfg.Store.Dir()
	// Workers take the store as an absolute, clean path: a relative one
	// would name another directory in each worker's working directory.
	if abs, err := filepath.Abs(cfg.StoreDir); err == nil {
		cfg.StoreDir = abs
	}
	s := &Server{
		cfg:       cfg,
		job:       jobName,
		hash:      spec.Hash(),
		jobID:     JobID(spec.Hash()),
		jobYAML:   string(yml),
		storeDir:  cfg.StoreDir,
		tick:      tick,
		smConfig:  smc,
		keep:      keep,
		commitTTL: commitTimeout,
		logf:      logf,
		now:       cfg.Now,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	s.metrics = newMetrics(s)
	if cfg.RunDir != "" {
		s.records = dashboard.NewRecordsFile(cfg.RunDir)
	}
	return s, nil
}

// JobName is the name of spec's job in etcd keys and the store: its Name,
// or "ringtrain" when it has none (job.Spec.JobName).
func JobName(spec job.Spec) string { return spec.JobName() }

// JobID derives the all-reduce frame stamp of a job from its hash: the
// first 8 bytes of the hex hash, big-endian. A hash that is not at least 16
// hex digits is hashed with FNV-64a instead, so every string has an ID.
func JobID(hash string) uint64 {
	if len(hash) >= 16 {
		if b, err := hex.DecodeString(hash[:16]); err == nil {
			return binary.BigEndian.Uint64(b)
		}
	}
	h := fnv.New64a()
	h.Write([]byte(hash))
	return h.Sum64()
}

// Register registers the control service on g.
func (s *Server) Register(g *grpc.Server) { api.RegisterControlServer(g, s) }

// IsLeader reports whether this coordinator leads the job now.
func (s *Server) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.term != nil
}

// Done is closed when the job is complete: its final checkpoint is
// committed, by this coordinator or (found when it took over) by an earlier
// one.
func (s *Server) Done() <-chan struct{} { return s.done }

func (s *Server) markDone() { s.doneOnce.Do(func() { close(s.done) }) }

// wake tells the driver the state machine may have outputs.
func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Server) tokenOK(token string) bool {
	return subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) == 1
}

var errWrongToken = status.Error(codes.PermissionDenied, "coordinator: wrong join token")

// admit checks a worker's call (what: join, heartbeat, leave) made under
// name: it must carry the join token and, over TLS, come with that
// worker's certificate, so that no holder of the token joins, beats or
// leaves as another worker, and nobody but a worker does. A refusal is
// logged (refused) and returned.
func (s *Server) admit(ctx context.Context, what, name, token string) error {
	if !s.tokenOK(token) {
		return s.refused(ctx, what, name, "token", "wrong join token", errWrongToken)
	}
	id, isTLS, err := pki.FromContext(ctx)
	if !isTLS {
		return nil // a plaintext server: the token is all there is
	}
	if err == nil {
		err = pki.Expect(id, pki.Worker, name)
	}
	if err != nil {
		return s.refused(ctx, what, name, "identity", err.Error(),
			status.Errorf(codes.PermissionDenied, "coordinator: %s as worker %q: %v", what, name, err))
	}
	return nil
}

// refused logs a call (what) refused for why (reason: its metric's label), naming the peer's address
// and the worker name it claims, never its token (rate-limited:
// refusalLog), counts it and returns reply.
func (s *Server) refused(ctx context.Context, what, name, reason, why string, reply error) error {
	from := "an unknown address"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = p.Addr.String()
	}
	if ok, missed := s.refusals.allow(time.Now()); ok {
		more := ""
		if missed > 0 {
			more = fmt.Sprintf(" (and %d more calls refused since the last such line)", missed)
		}
		s.logf("coordinator: refused a %s from %s claiming to be worker %q: %s%s", what, from, name, why, more)
	}
	s.metrics.refused.WithLabelValues(reason).Inc()
	return reply
}

// statusOK reports whether token may read the job's status: the join
// token or the status token.
func (s *Server) statusOK(token string) bool {
	return token != "" && (s.tokenOK(token) ||
		s.cfg.StatusToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.StatusToken)) == 1)
}

var errStatusToken = status.Error(codes.Unauthenticated,
	"coordinator: the status needs a token: the join token or the job's status token, as a bearer token")

// leaderName returns the current leader's name as etcd has it, best
// effort ("unknown" when etcd does not answer quickly).
func (s *Server) leaderName(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, leaderLookup)
	defer cancel()
	resp, err := s.cfg.Etcd.Get(ctx, checkpoint.EtcdLeaderPrefix(s.job)+"/", clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) == 0 {
		return "unknown"
	}
	return string(resp.Kvs[0].Value)
}

// leaderAddr returns the control address the leader named leader
// published in the job's state key, best effort ("" when etcd does not
// answer quickly or the key is another leader's).
func (s *Server) leaderAddr(ctx context.Context, leader string) string {
	ctx, cancel := context.WithTimeout(ctx, leaderLookup)
	defer cancel()
	resp, err := s.cfg.Etcd.Get(ctx, EtcdStateKey(s.job))
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	var st JobState
	if json.Unmarshal(resp.Kvs[0].Value, &st) != nil || st.Leader != leader {
		return ""
	}
	return st.LeaderAddr
}

// standbyError is what a standby answers the workers' calls with.
func (s *Server) standbyError(ctx context.Context) error {
	return status.Errorf(codes.Unavailable, "standby coordinator %s; the leader is %s", s.cfg.Name, s.leaderName(ctx))
}

// leading returns the current term with s.mu held, or unlocks and returns
// nil while standby.
func (s *Server) leading() *term {
	s.mu.Lock()
	if s.term == nil {
		s.mu.Unlock()
		return nil
	}
	return s.term
}

// Join admits a worker (see api.ControlServer).
func (s *Server) Join(ctx context.Context, req *api.JoinRequest) (*api.JoinReply, error) {
	if req == nil || req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "coordinator: join without a worker name")
	}
	if err := s.admit(ctx, "join", req.Name, req.Token); err != nil {
		return nil, err
	}
	hash := req.JobHash
	if hash == "" {
		hash = s.hash
	}
	if hash != s.hash {
		return nil, status.Errorf(codes.FailedPrecondition,
			"coordinator: worker %s was started with job hash %s, but this coordinator runs job %s with hash %s",
			req.Name, hash, s.job, s.hash)
	}
	t := s.leading()
	if t == nil {
		return nil, s.standbyError(ctx)
	}
	defer s.mu.Unlock()
	reply := &api.JoinReply{
		Job:             s.jobYAML,
		JobHash:         s.hash,
		JobID:           s.jobID,
		HeartbeatMillis: int(s.cfg.HeartbeatInterval / time.Millisecond),
		StoreDir:        s.storeDir,
	}
	if s.cfg.GossipAddr != "" {
		reply.Gossip = []string{s.cfg.GossipAddr}
	}
	if t.done {
		return reply, nil // its first heartbeat tells it to stop
	}
	if ev, ok := t.evicted[req.Name]; ok {
		if now := s.now(); now.Before(ev.until) {
			// Unavailable: the worker retries, and is admitted later.
			return nil, status.Errorf(codes.Unavailable,
				"coordinator: %s was evicted (%s): it may join again in %v", req.Name, ev.reason, ev.until.Sub(now).Round(time.Millisecond))
		}
	}
	if err := t.sm.Join(req.Name, req.Token, hash); err != nil {
		switch {
		case errors.Is(err, ErrFull):
			return nil, status.Error(codes.ResourceExhausted, err.Error())
		default:
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if err := t.sm.Prior(req.Name, req.Generation, req.Step, Position{Epoch: req.Epoch, Consumed: req.Consumed}); err != nil {
		s.logf("%v: its state is not used", err)
	}
	t.workers[req.Name] = &workerInfo{
		dataAddr: req.DataAddr, gossipAddr: req.GossipAddr, httpAddr: req.HTTPAddr,
		lastSeen: s.now(),
	}
	delete(t.gone, req.Name) // a suspicion was about its predecessor
	s.logf("coordinator: %s joined (data %s, gossip %s)", req.Name, req.DataAddr, req.GossipAddr)
	s.wake()
	return reply, nil
}

// Heartbeat records a worker's progress and tells it the current
// generation (see api.ControlServer).
func (s *Server) Heartbeat(ctx context.Context, req *api.HeartbeatRequest) (*api.HeartbeatReply, error) {
	if req == nil || req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "coordinator: heartbeat without a worker name")
	}
	if err := s.admit(ctx, "heartbeat", req.Name, req.Token); err != nil {
		return nil, err
	}
	if req.Step < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "coordinator: heartbeat from %s: negative step %d", req.Name, req.Step)
	}
	t := s.leading()
	if t == nil {
		return nil, s.standbyError(ctx)
	}
	defer s.mu.Unlock()
	s.metrics.heartbeats.Inc()
	if t.done {
		return &api.HeartbeatReply{Generation: t.gen, Status: "done: the job is complete", Stop: true}, nil
	}
	if err := t.sm.Heartbeat(req.Name, req.Generation, req.Step); errors.Is(err, ErrNotMember) {
		if ev, ok := t.evicted[req.Name]; ok {
			return nil, status.Errorf(codes.NotFound,
				"coordinator: %s was evicted from job %s (%s): join again", req.Name, s.job, ev.reason)
		}
		// Evicted by the generation being published (apply records it
		// once etcd has the generation).
		if reason, ok := t.sm.Removal(req.Name); ok && strings.HasPrefix(reason, StuckPrefix) {
			return nil, status.Errorf(codes.NotFound,
				"coordinator: %s was evicted from job %s (%s): join again", req.Name, s.job, reason)
		}
		return nil, status.Errorf(codes.NotFound,
			"coordinator: %s is not a member of job %s (never joined, left or declared dead): join again", req.Name, s.job)
	}
	w := t.workers[req.Name]
	if w == nil { // every member joined through Join; keep going if not
		w = &workerInfo{}
		t.workers[req.Name] = w
	}
	if _, ok := t.gone[req.Name]; ok {
		// Memberlist called it gone, yet it heartbeats: it was only
		// held up.
		s.logf("coordinator: %s heartbeats: alive after all", req.Name)
		delete(t.gone, req.Name)
	}
	if req.Broken {
		// A worker repeats the report in every heartbeat until a new
		// generation comes; it is logged once.
		if w.brokenGen != req.Generation {
			s.logf("coordinator: %s reports the ring of generation %d broken", req.Name, req.Generation)
			w.brokenGen = req.Generation
		}
		t.sm.Broken(req.Name, req.Generation)
		t.lastBroken = s.now()
		s.confirmGone(t)
	}
	if req.InRing {
		t.sm.Reached(req.Name, req.Generation)
		if t.gen != nil && req.Generation == t.gen.Number {
			delete(t.evicted, req.Name) // no longer stuck
		}
	}
	w.lastSeen = s.now()
	if req.Generation > w.gen || (req.Generation == w.gen && req.Step > w.step) {
		w.gen, w.step = req.Generation, req.Step
	}
	if req.Stats != nil {
		st := *req.Stats
		before := 0
		if w.stats != nil {
			before = w.stats.CheckpointFailures
		}
		if st.CheckpointFailures > before {
			s.logf("coordinator: warning: %s failed to write %d checkpoint shards so far; the last: %s", req.Name, st.CheckpointFailures, st.LastCheckpointError)
		}
		w.stats = &st
		if t.gen != nil && !t.paused && req.Generation == t.gen.Number && t.gen.Rank(req.Name) >= 0 {
			s.logStragglers(t.stragglers.Observe(req.Name, w.lastSeen, st))
		}
	}
	s.trainRecord(t, req)
	if t.sm.HasReady() {
		s.wake()
	}
	rep := &api.HeartbeatReply{Generation: t.gen, Paused: t.paused, Status: t.reason}
	if t.gen != nil && t.ckptAtGen == t.gen.Number {
		rep.CheckpointAt = t.ckptAt
	}
	return rep, nil
}

// logStragglers logs the straggler flags raised and cleared.
func (s *Server) logStragglers(evs []StragglerEvent) {
	for _, ev := range evs {
		s.logf("coordinator: %s", ev)
	}
}

// trainRecord adds a "train" record from rank 0's heartbeat every
// trainRecordEvery steps. Called with s.mu held.
func (s *Server) trainRecord(t *term, req *api.HeartbeatRequest) {
	if t.rlog == nil || req.Stats == nil || t.gen == nil || req.Generation != t.gen.Number ||
		len(t.gen.Ring) == 0 || t.gen.Ring[0].Name != req.Name || req.Step < t.lastTrain+trainRecordEvery ||
		req.Step <= t.lastEvalStep {
		return
	}
	t.lastTrain = req.Step
	progress := float64(req.Stats.Epoch)
	if req.Step >= t.gen.ResumeStep {
		p := AdvancePosition(Position{Epoch: t.gen.Epoch, Consumed: min(max(t.gen.Consumed, 0), s.cfg.Samples)},
			s.cfg.Samples, s.smConfig.Batch, req.Step-t.gen.ResumeStep)
		progress = float64(p.Epoch) + float64(p.Consumed)/float64(s.cfg.Samples)
	}
	t.rlog.Add(runlog.Record{
		Kind: "train", Time: s.now().UTC(), Step: int(req.Step), Epoch: req.Stats.Epoch, Progress: progress,
		LR: req.Stats.LR, Loss: req.Stats.Loss, Accuracy: req.Stats.Accuracy,
		ImagesPerSecond: t.imagesPerSecond(),
	})
	if err := t.rlog.Flush(); err != nil {
		s.logf("coordinator: warning: metrics log: %v", err)
	}
}

// imagesPerSecond is the sum of the members' last reported rates.
func (t *term) imagesPerSecond() float64 {
	var sum float64
	for _, w := range t.workers {
		if w.stats != nil {
			sum += w.stats.ImagesPerSecond
		}
	}
	return sum
}

// Leave removes a worker that leaves on purpose (see api.ControlServer).
func (s *Server) Leave(ctx context.Context, req *api.LeaveRequest) (*api.LeaveReply, error) {
	if req == nil || req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "coordinator: leave without a worker name")
	}
	if err := s.admit(ctx, "leave", req.Name, req.Token); err != nil {
		return nil, err
	}
	t := s.leading()
	if t == nil {
		return nil, s.standbyError(ctx)
	}
	defer s.mu.Unlock()
	if t.sm != nil && !t.done {
		s.logf("coordinator: %s leaves", req.Name)
		t.sm.Leave(req.Name)
		s.wake()
	}
	return &api.LeaveReply{}, nil
}

// RequestCheckpoint asks the running ring to write a checkpoint ahead
// steps past the furthest step a worker has reported, and returns that
// step; the workers learn it from their next heartbeat, so ahead should
// cover a few heartbeats' worth of steps. It fails when this coordinator
// does not lead a running ring.
func (s *Server) RequestCheckpoint(ahead int64) (int64, error) {
	t := s.leading()
	if t == nil {
		return 0, errors.New("coordinator: not the leader")
	}
	defer s.mu.Unlock()
	if t.gen == nil || t.paused || t.done {
		return 0, errors.New("coordinator: no ring is running")
	}
	step := t.gen.ResumeStep
	for _, name := range t.sm.Members() {
		if w := t.workers[name]; w != nil && w.gen == t.gen.Number {
			step = max(step, w.step)
		}
	}
	t.ckptAt, t.ckptAtGen = step+max(ahead, 1), t.gen.Number
	s.logf("coordinator: checkpoint requested at step %d", t.ckptAt)
	return t.ckptAt, nil
}

// Status describes the job (see api.ControlServer) to a caller that shows
// the join token or the status token (api.WithToken); a standby answers
// too.
func (s *Server) Status(ctx context.Context, _ *api.StatusRequest) (*api.StatusReply, error) {
	if !s.statusOK(api.BearerToken(ctx)) {
		return nil, errStatusToken
	}
	return s.status(ctx), nil
}

// StatusReply returns the job's status as `ringtrain status` shows it.
func (s *Server) StatusReply() *api.StatusReply { return s.status(context.Background()) }

func (s *Server) status(ctx context.Context) *api.StatusReply {
	r := &api.StatusReply{
		Job: s.job, JobHash: s.hash, Model: s.cfg.Spec.Model, Dataset: s.cfg.Spec.Dataset, Codec: s.cfg.Spec.Codec,
		MinWorkers: s.smConfig.MinWorkers, MaxWorkers: s.smConfig.MaxWorkers, Epochs: s.cfg.Spec.Epochs,
	}
	t := s.leading()
	if t == nil {
		r.State, r.Coordinator = "standby", s.leaderName(ctx)
		r.Reason = fmt.Sprintf("standby coordinator %s; the leader is %s", s.cfg.Name, r.Coordinator)
		r.LeaderAddr = s.leaderAddr(ctx, r.Coordinator)
		return r
	}
	defer s.mu.Unlock()
	r.Coordinator = s.cfg.Name
	r.State, r.Reason = t.state()
	if t.lastCkpt != nil {
		r.LastCheckpoint = t.lastCkpt.Name
		r.Step, r.Epoch = int64(t.lastCkpt.Step), t.lastCkpt.Epoch
	}
	if t.lastEval != nil {
		e := *t.lastEval
		r.LastEval = &e
	}
	if t.gen != nil {
		r.Generation = t.gen.Number
		for _, p := range t.gen.Ring {
			r.Ring = append(r.Ring, p.Name)
		}
		if r.Step < t.gen.ResumeStep {
			r.Step, r.Epoch = t.gen.ResumeStep, t.gen.Epoch
		}
	}
	names := make([]string, 0, len(t.workers))
	for name := range t.workers {
		names = append(names, name)
	}
	slices.SortFunc(names, naturalCompare)
	for _, name := range names {
		w := t.workers[name]
		ws := api.WorkerStatus{Name: name, Rank: -1, Generation: w.gen, Step: w.step, LastSeen: w.lastSeen, Straggler: t.stragglers.Straggler(name)}
		if t.gen != nil {
			ws.Rank = t.gen.Rank(name)
			if ws.Rank >= 0 && w.gen == t.gen.Number && w.step > r.Step {
				r.Step = w.step
				if w.stats != nil {
					r.Epoch = w.stats.Epoch
				}
			}
		}
		if w.stats != nil {
			st := *w.stats
			ws.Stats = &st
			r.ImagesPerSecond += st.ImagesPerSecond
		}
		r.Workers = append(r.Workers, ws)
	}
	return r
}

// state names the job's state and why, for status. Called with s.mu held.
func (t *term) state() (state, reason string) {
	switch {
	case t.done:
		return "done", "the job is complete"
	case t.gen != nil && t.paused:
		return "paused", t.reason
	case t.gen != nil:
		return "running", t.reason
	}
	return "waiting", t.reason
}

// HTTPHandler serves /healthz (200 while the process runs), /readyz (200
// iff this coordinator leads the job, else 503), /metrics (Prometheus, the
// server's own registry), /status (the StatusReply as JSON) and, at every
// other path, the job's dashboard (package dashboard: the page at /, its
// JSON under /api/). The probes and the metrics are open; the status and
// the dashboard need the join token or the status token
// (dashboard.RequireToken).
func (s *Server) HTTPHandler() http.Handler { return s.httpHandler(false) }

// httpHandler is HTTPHandler; open serves the status and the dashboard
// without a token (a listener only this machine reaches).
func (s *Server) httpHandler(open bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.IsLeader() {
			http.Error(w, "standby coordinator "+s.cfg.Name, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "leader")
	})
	mux.Handle("/metrics", s.metrics.handler())
	private := http.NewServeMux()
	private.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		b, err := json.MarshalIndent(s.status(r.Context()), "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
	private.Handle("/", dashboard.Handler(dashSource{s}))
	if open {
		mux.Handle("/", private)
	} else {
		mux.Handle("/", dashboard.RequireToken(private, s.cfg.Token, s.cfg.StatusToken))
	}
	return mux
}
