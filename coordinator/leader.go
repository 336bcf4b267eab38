package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/runlog"
)

// EtcdStateKey is the key of a job's state (a JobState in JSON), written by
// its leader under the guard of its leader key.
func EtcdStateKey(job string) string { return "/ringtrain/" + job + "/state" }

// JobState is the value of a job's state key.
type JobState struct {
	JobHash string `json:"job_hash"`
	Leader  string `json:"leader"`
	// LeaderAddr is the leader's control-plane address, when it knows it.
	LeaderAddr string `json:"leader_addr,omitempty"`
	State      string `json:"state"` // "running" or "done"
}

// fatalError is an error that ends Run instead of a campaign.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// Run campaigns for the job's leadership, leads while elected, and
// campaigns again whenever a term ends (the etcd session expired because
// etcd was unreachable for LeaseTTL, or etcd refused a write guarded by the
// leader key). It returns nil when ctx ends, after resigning (so a standby
// takes over at once) and after every goroutine it started has returned. It
// returns an error only when this coordinator must not lead the job: etcd
// holds the state or checkpoints of another job under the same name (and
// ServerConfig.ReplaceJob is not set), none of the checkpoints committed
// in etcd verifies in the store, or its keys cannot be understood. The
// error is logged once.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.cfg.Gossip != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watchGossip(ctx, s.cfg.Gossip)
		}()
	}
	s.metrics.leader.Set(0)
	for {
		err := s.campaignAndLead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fatal := (*fatalError)(nil); errors.As(err, &fatal) {
			s.logf("%v", fatal.err)
			return fatal.err
		}
		if err != nil {
			s.logf("%v; %s campaigns again", err, s.cfg.Name)
		}
		timer := time.NewTimer(campaignBackoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// campaignAndLead runs one etcd session: campaign, then lead until the
// session or ctx ends.
func (s *Server) campaignAndLead(ctx context.Context) error {
	// The session's context is ctx, so granting its lease gives up when
	// Run ends; its lease is revoked with a fresh context below.
	sess, err := concurrency.NewSession(s.cfg.Etcd, concurrency.WithTTL(s.cfg.LeaseTTL), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("coordinator: etcd session: %w", err)
	}
	// A lease that could not be revoked when its term ended (etcd was
	// down) may still hold a leader key of ours that this campaign would
	// queue behind: revoke it now that etcd answers.
	for _, id := range s.staleLeases {
		s.revoke(id)
	}
	s.staleLeases = nil
	defer func() {
		sess.Orphan()
		if !s.revoke(sess.Lease()) {
			s.staleLeases = append(s.staleLeases, sess.Lease())
		}
	}()
	el := concurrency.NewElection(sess, checkpoint.EtcdLeaderPrefix(s.job))
	s.logf("coordinator: %s campaigns for job %s", s.cfg.Name, s.job)
	// sess.Ctx ends with ctx and when the lease is lost.
	if err := el.Campaign(sess.Ctx(), s.cfg.Name); err != nil {
		return fmt.Errorf("coordinator: campaign: %w", err)
	}
	select {
	case <-sess.Done():
		return errors.New("coordinator: etcd session expired while campaigning")
	default:
	}
	return s.lead(ctx, sess, el.Key(), el.Rev())
}

// revoke revokes a lease of this coordinator, so that its leader key goes
// at once; it reports false if etcd did not answer.
func (s *Server) revoke(id clientv3.LeaseID) bool {
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	_, err := s.cfg.Etcd.Revoke(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.logf("coordinator: %s: revoking lease %x: %v (it expires within %d s)", s.cfg.Name, int64(id), err, s.cfg.LeaseTTL)
		return false
	}
	return true
}

// lead is one leadership term: it rebuilds the job state from etcd, then
// drives the state machine until ctx or the session ends.
func (s *Server) lead(ctx context.Context, sess *concurrency.Session, key string, rev int64) error {
	t, err := s.startTerm(ctx, key, rev)
	if err != nil {
		return err
	}
	ckpt := "none"
	if t.lastCkpt != nil {
		ckpt = t.lastCkpt.Name
	}
	s.logf("coordinator: %s leads job %s (hash %s, last generation %d, last checkpoint %s)",
		s.cfg.Name, s.job, s.hash, t.sm.cfg.StartGeneration, ckpt)
	s.mu.Lock()
	s.term = t
	s.mu.Unlock()
	s.metrics.leader.Set(1)
	if t.done {
		s.logf("coordinator: job %s is complete; telling every worker to stop", s.job)
		s.markDone()
	}

	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.commitLoop(cctx, t)
	}()
	defer func() {
		// Step down first: from here on every call is answered as standby.
		s.mu.Lock()
		s.term = nil
		if t.rlog != nil {
			if err := t.rlog.Close(); err != nil {
				s.logf("coordinator: warning: metrics log: %v", err)
			}
		}
		s.mu.Unlock()
		s.metrics.leader.Set(0)
		cancel()
		wg.Wait()
	}()

	ticker := time.NewTicker(s.tick)
	defer ticker.Stop()
	s.wake()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return errors.New("coordinator: etcd session expired (etcd unreachable or lease revoked): stepping down")
		case <-ticker.C:
			s.mu.Lock()
			if !t.done {
				t.sm.Tick()
			}
			s.mu.Unlock()
		case <-s.kick:
		}
		if err := s.drive(ctx, t); err != nil {
			return err
		}
	}
}

// startTerm reads the job from etcd (its generation, latest committed
// checkpoint and state), builds the state machine and writes the job state
// key.
func (s *Server) startTerm(ctx context.Context, key string, rev int64) (*term, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	committer := checkpoint.NewEtcdCommitter(s.cfg.Etcd, s.job, s.cfg.Store)
	committer.Warnf = func(f string, a ...any) { s.logf("coordinator: warning: "+f, a...) }
	// Only a leader removes anything, and only its own unfinished writes
	// (of an earlier term, or an earlier run under this name): a standby's
	// or a deposed leader's are theirs.
	if n, err := s.cfg.Store.RemoveOwnStaging(); err != nil {
		s.logf("coordinator: warning: %v", err)
	} else if n > 0 {
		s.logf("coordinator: removed %d unfinished writes of %s from the store", n, s.cfg.Name)
	}
	genKey := checkpoint.EtcdGenerationKey(s.job)
	resp, err := s.cfg.Etcd.Get(rctx, genKey)
	if err != nil {
		return nil, fmt.Errorf("coordinator: reading %s: %w", genKey, err)
	}
	var gen uint64
	if len(resp.Kvs) > 0 {
		gen, err = strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
		if err != nil {
			return nil, &fatalError{fmt.Errorf("coordinator: etcd key %s holds %q, not a generation number", genKey, resp.Kvs[0].Value)}
		}
	}
	stateKey := EtcdStateKey(s.job)
	resp, err = s.cfg.Etcd.Get(rctx, stateKey)
	if err != nil {
		return nil, fmt.Errorf("coordinator: reading %s: %w", stateKey, err)
	}
	var st JobState
	if len(resp.Kvs) > 0 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
			s.logf("coordinator: warning: etcd key %s holds no job state (%v); overwriting it", stateKey, err)
			st = JobState{}
		}
	}
	// The keys under the job's name must be this job's: a job file with
	// another hash is another job, whose generation, state and checkpoints
	// this one must not take up.
	other := ""
	if st.JobHash != "" && st.JobHash != s.hash {
		other = st.JobHash
	} else if m, ok, err := committer.Latest(rctx); err == nil && ok && m.JobHash != s.hash {
		other = m.JobHash
	}
	if other != "" {
		if !s.cfg.ReplaceJob {
			return nil, &fatalError{fmt.Errorf("coordinator: etcd holds the state of another job named %s (hash %s; this job file has hash %s) "+
				"under /ringtrain/%s/: give this job another name (name: in the job file), or start it over with --replace-job, "+
				"which clears that job's etcd state", s.job, other, s.hash, s.job)}
		}
		if err := s.replaceJob(ctx, key, rev, other, gen); err != nil {
			return nil, err
		}
		gen, st = 0, JobState{}
	}
	// Resume from the newest committed checkpoint whose files verify: one
	// that fails its checksums is skipped with a warning. When none does,
	// the store is not the one the job wrote to (or its files are gone):
	// campaigning again cannot help.
	ck, err := committer.LoadLatest(rctx, func(f string, a ...any) { s.logf("coordinator: warning: "+f, a...) })
	if errors.Is(err, checkpoint.ErrNoneVerifies) {
		return nil, &fatalError{fmt.Errorf("coordinator: job %s: %w; is --store (%s) the volume its workers wrote to? "+
			"Check it with `ringtrain checkpoint verify --dir %s`", s.job, err, s.storeDir, s.storeDir)}
	}
	if err != nil {
		return nil, fmt.Errorf("coordinator: job %s: %w", s.job, err)
	}
	if ck != nil && ck.Manifest.JobHash != s.hash {
		return nil, &fatalError{fmt.Errorf("coordinator: etcd holds job %s's checkpoints with hash %s; this job file has hash %s",
			s.job, ck.Manifest.JobHash, s.hash)}
	}

	cfg := s.smConfig
	cfg.StartGeneration = gen
	t := &term{
		key:        key,
		rev:        rev,
		committer:  committer,
		commits:    make(chan commitJob, commitQueue),
		workers:    make(map[string]*workerInfo),
		evicted:    make(map[string]eviction),
		reports:    make(map[reportKey]*reportSet),
		stragglers: NewStragglerDetector(s.cfg.Stragglers),
	}
	if ck != nil {
		latest := ck.Manifest
		cfg.StartStep = int64(latest.Step)
		cfg.StartPosition = Position{Epoch: latest.Epoch, Consumed: latest.Position}
		t.lastCkpt = &latest
		t.committed = s.committedUpTo(rctx, committer, latest)
		t.lastTrain = int64(latest.Step)
		t.done = s.isFinal(latest.Epoch, latest.Position)
	}
	if st.State == "done" && st.JobHash == s.hash {
		t.done = true
	}
	t.sm, err = New(cfg)
	if err != nil {
		return nil, &fatalError{fmt.Errorf("coordinator: resuming job %s from step %d (%s): %w", s.job, cfg.StartStep,
			checkpoint.DescribePosition(cfg.StartPosition.Epoch, cfg.StartPosition.Consumed, s.cfg.Samples), err)}
	}
	state := "running"
	if t.done {
		state = "done"
	}
	if err := s.writeState(ctx, t, state); err != nil {
		return nil, err
	}
	if s.cfg.RunDir != "" {
		// Only a leader writes the run's metrics: it continues what an
		// earlier leader wrote there.
		if t.rlog, err = runlog.Open(s.cfg.RunDir); err != nil {
			s.logf("coordinator: warning: %v; the run's metrics are not recorded", err)
			t.rlog = nil
		} else {
			for _, r := range t.rlog.Records() {
				switch r.Kind {
				case "train":
					t.lastTrain = max(t.lastTrain, int64(r.Step))
				case "eval":
					t.lastEvalStep = max(t.lastEvalStep, int64(r.Step))
				}
			}
		}
	}
	return t, nil
}

// replaceJob clears the etcd keys of another job (hash other, at
// generation gen) under this job's name: its state, generation and
// committed checkpoints, in one transaction guarded by this term's leader
// key (key, rev). The leader keys stay. It logs what it cleared; the
// cleared checkpoints' files stay in the store, where this job's own
// checkpoints replace them as it reaches their steps and retention removes
// the rest.
func (s *Server) replaceJob(ctx context.Context, key string, rev int64, other string, gen uint64) error {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	prefix := checkpoint.EtcdCheckpointsPrefix(s.job)
	resp, err := s.cfg.Etcd.Get(rctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("coordinator: reading %s: %w", prefix, err)
	}
	var names []string
	for _, kv := range resp.Kvs {
		names = append(names, strings.TrimPrefix(string(kv.Key), prefix))
	}
	err = s.guardedBy(ctx, key, rev, "clearing the state of the job it replaces",
		clientv3.OpDelete(EtcdStateKey(s.job)),
		clientv3.OpDelete(checkpoint.EtcdGenerationKey(s.job)),
		clientv3.OpDelete(prefix, clientv3.WithPrefix()))
	if err != nil {
		return err
	}
	ckpts := "none"
	if len(names) > 0 {
		ckpts = strings.Join(names, ", ")
	}
	s.logf("coordinator: replacing the job named %s with hash %s (generation %d; checkpoint keys: %s): its etcd state is cleared "+
		"(its files stay in %s); starting job hash %s afresh", s.job, other, gen, ckpts, s.storeDir, s.hash)
	return nil
}

// isFinal reports whether a data position is the end of the job's last
// epoch.
func (s *Server) isFinal(epoch, consumed int) bool {
	e := s.cfg.Spec.Epochs
	return (epoch == e && consumed == 0) || (epoch == e-1 && consumed == s.cfg.Samples)
}

// guarded runs ops in one etcd transaction only if t's leader key still
// exists with the revision it won the election with.
func (s *Server) guarded(ctx context.Context, t *term, what string, ops ...clientv3.Op) error {
	return s.guardedBy(ctx, t.key, t.rev, what, ops...)
}

// guardedBy runs ops in one etcd transaction only if the leader key key
// still exists with create revision rev.
func (s *Server) guardedBy(ctx context.Context, key string, rev int64, what string, ops ...clientv3.Op) error {
	ctx, cancel := context.WithTimeout(ctx, etcdOpTimeout)
	defer cancel()
	resp, err := s.cfg.Etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
		Then(ops...).
		Commit()
	if err != nil {
		return fmt.Errorf("coordinator: %s: etcd: %w", what, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("coordinator: %s: %w (leader key %s is gone)", what, checkpoint.ErrNotLeader, key)
	}
	return nil
}

// writeState writes the job state key.
func (s *Server) writeState(ctx context.Context, t *term, state string) error {
	b, err := json.Marshal(JobState{JobHash: s.hash, Leader: s.cfg.Name, LeaderAddr: s.cfg.ControlAddr, State: state})
	if err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	return s.guarded(ctx, t, "writing the job state", clientv3.OpPut(EtcdStateKey(s.job), string(b)))
}

// drive does what the state machine's Ready asks. A new generation is
// written to etcd before anything of it is visible; while that fails (etcd
// unreachable) the Ready stays unacknowledged and is retried on the next
// tick, and workers keep the previous generation. It returns an error only
// when etcd says this coordinator no longer leads.
func (s *Server) drive(ctx context.Context, t *term) error {
	s.mu.Lock()
	dirty := t.stateDirty
	s.mu.Unlock()
	if dirty {
		err := s.writeState(ctx, t, "done")
		if errors.Is(err, checkpoint.ErrNotLeader) {
			return err
		}
		if err != nil {
			s.logf("coordinator: warning: %v; retrying", err)
		} else {
			s.mu.Lock()
			t.stateDirty = false
			s.mu.Unlock()
		}
	}

	s.mu.Lock()
	if t.done || !t.sm.HasReady() {
		s.mu.Unlock()
		return nil
	}
	rd := t.sm.Ready()
	s.mu.Unlock()
	if g := rd.Generation; g != nil {
		err := s.guarded(ctx, t, fmt.Sprintf("writing generation %d", g.Number),
			clientv3.OpPut(checkpoint.EtcdGenerationKey(s.job), strconv.FormatUint(g.Number, 10)))
		if errors.Is(err, checkpoint.ErrNotLeader) {
			return err
		}
		if err != nil {
			s.mu.Lock()
			first := !t.genFailed
			t.genFailed = true
			s.mu.Unlock()
			if first {
				s.logf("coordinator: warning: generation %d not published: %v; retrying every tick", g.Number, err)
			}
			return nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.genFailed = false
	s.apply(t, rd)
	t.sm.Advance()
	return nil
}

// apply makes a Ready visible. Called with s.mu held, after a new
// generation's number is in etcd.
func (s *Server) apply(t *term, rd Ready) {
	members := t.sm.Members()
	paused := false // the ring stopped with this Ready
	for _, r := range rd.Removed {
		s.logf("coordinator: %s removed (%s)", r.Name, r.Reason)
		if strings.HasPrefix(r.Reason, StuckPrefix) {
			ev := t.evicted[r.Name]
			ev.times++
			ev.reason = r.Reason
			ev.until = s.now().Add(s.cfg.StuckAfter * time.Duration(min(1<<min(ev.times-1, 6), maxStuckBackoff)))
			t.evicted[r.Name] = ev
		}
		if !slices.Contains(members, r.Name) { // not re-joined since
			delete(t.workers, r.Name)
		}
	}
	if g := rd.Generation; g != nil {
		ag := s.apiGeneration(t, g)
		if ag.Source == "" && (ag.ResumeStep != g.ResumeStep || ag.Epoch != g.Position.Epoch || ag.Consumed != g.Position.Consumed) {
			t.sm.Restored(ag.ResumeStep, Position{Epoch: ag.Epoch, Consumed: ag.Consumed})
		}
		t.gen, t.paused = ag, false
		ring := make([]string, len(ag.Ring))
		for i, p := range ag.Ring {
			ring[i] = p.Name
		}
		s.logStragglers(t.stragglers.Retain(ring))
		for k := range t.reports {
			if k.gen < ag.Number {
				delete(t.reports, k)
			}
		}
		t.lastTrain = min(t.lastTrain, ag.ResumeStep)
		t.lastEvalStep = min(t.lastEvalStep, ag.ResumeStep)
		if t.rlog != nil {
			// The steps past the resume step are trained again (after a
			// restore from a checkpoint) and their records written anew.
			if err := t.rlog.TruncateAfter(int(ag.ResumeStep)); err != nil {
				s.logf("coordinator: warning: metrics log: %v", err)
			}
		}
		from := "source " + ag.Source
		switch {
		case ag.Restore != "":
			from = "restore " + ag.Restore
		case ag.Source == "":
			from = "initial parameters"
		}
		s.logf("coordinator: generation %d: %d workers %v; resume step %d (%s) from %s; because of %s",
			ag.Number, len(ag.Ring), g.Ring, ag.ResumeStep, checkpoint.DescribePosition(ag.Epoch, ag.Consumed, s.cfg.Samples), from,
			describeCauses(g.Causes))
	} else if _, running := t.sm.Generation(); !running && t.gen != nil {
		if !t.paused {
			s.logf("coordinator: ring of generation %d paused (%d members remain: %v); because of %s",
				t.gen.Number, len(rd.Pause), rd.Pause, describeCauses(rd.PauseCauses))
			paused = true
		}
		t.paused = true
		s.logStragglers(t.stragglers.Retain(nil))
	}
	if rd.Status != "" {
		t.reason = rd.Status
		s.logf("coordinator: job %s: %s", s.job, rd.Status)
	}
	switch {
	case rd.Generation != nil:
		ev := generationEvent(t.gen, rd.Generation.Causes)
		ev.Time, ev.Reason = s.now().UTC(), t.reason
		s.addHistory(ev)
	case paused:
		s.addHistory(api.GenerationEvent{
			Number: t.gen.Number, Time: s.now().UTC(), Paused: true, Ring: slices.Clone(rd.Pause),
			Causes: apiCauses(rd.PauseCauses), Reason: t.reason,
		})
	}
}

// apiGeneration turns a generation of the state machine into what workers
// receive. A ring with no surviving member (the first of a term, or one
// after every member died) starts from the latest committed checkpoint
// (Restore) at its step and position, which the driver then tells the state
// machine (Restored); with nothing committed it starts from the initial
// parameters.
func (s *Server) apiGeneration(t *term, g *Generation) *api.Generation {
	ag := &api.Generation{
		Number:     g.Number,
		ResumeStep: g.ResumeStep,
		Epoch:      g.Position.Epoch,
		Consumed:   g.Position.Consumed,
		Source:     g.Source,
	}
	for _, name := range g.Ring {
		p := api.Peer{Name: name}
		if w := t.workers[name]; w != nil {
			p.DataAddr = w.dataAddr
		}
		ag.Ring = append(ag.Ring, p)
	}
	if g.Source == "" {
		if m := t.lastCkpt; m != nil {
			ag.Restore, ag.ResumeStep, ag.Epoch, ag.Consumed = m.Name, int64(m.Step), m.Epoch, m.Position
		} else if g.ResumeStep > 0 || g.Position != (Position{}) {
			s.logf("coordinator: warning: generation %d has no survivor and no checkpoint is committed; starting over", g.Number)
			ag.ResumeStep, ag.Epoch, ag.Consumed = 0, 0, 0
		}
	}
	return ag
}

// watchGossip turns memberlist's Gone events for members into deaths, once
// the ring confirms them (see confirmGone): memberlist alone may call a live
// worker gone when its process or the machine is too busy to answer probes
// in time, and a false death costs two generations. A Joined event for a
// suspect (it refuted the suspicion) withdraws the suspicion, as does a
// heartbeat from it (Heartbeat).
func (s *Server) watchGossip(ctx context.Context, m *membership.Member) {
	events := m.Events()
	for {
		var ev membership.Event
		select {
		case <-ctx.Done():
			return
		case ev = <-events:
		}
		t := s.leading()
		if t == nil {
			continue
		}
		switch w := t.workers[ev.Name]; {
		case ev.Kind == membership.Joined:
			// A worker becomes a member through Join; here a suspect
			// may come back.
			if addr, ok := t.gone[ev.Name]; ok && (addr == ev.Addr || addr == "" || ev.Addr == "") {
				s.logf("coordinator: memberlist: %s is alive again", ev.Name)
				delete(t.gone, ev.Name)
			}
		case ev.Kind != membership.Gone:
		case t.done || !slices.Contains(t.sm.Members(), ev.Name):
		case w != nil && w.gossipAddr != "" && ev.Addr != "" && w.gossipAddr != ev.Addr:
			// A replacement took the name before gossip declared its
			// predecessor dead (a restarted process, a new pod): the
			// news is about the predecessor.
			s.logf("coordinator: memberlist: an earlier %s (%s) is gone; the one at %s stays", ev.Name, ev.Addr, w.gossipAddr)
		default:
			if t.gone == nil {
				t.gone = map[string]string{}
			}
			if _, ok := t.gone[ev.Name]; !ok {
				t.gone[ev.Name] = ev.Addr
				s.confirmGone(t)
				if _, ok := t.gone[ev.Name]; ok {
					s.logf("coordinator: memberlist: %s %s", ev.Name, suspicionLog)
				}
			}
		}
		s.mu.Unlock()
	}
}

// suspicionLog ends the log line of a member that memberlist called gone
// while nothing confirmed it.
const suspicionLog = "stopped answering probes; waiting for a broken ring to confirm"

// goneBrokenWindow: a suspect in the ring is dead if a ring member reported
// the ring broken this recently (the report may come first: the break is
// seen within a heartbeat, memberlist takes about 0.7 s).
const goneBrokenWindow = 3 * time.Second

// confirmGone declares dead the workers memberlist reported gone (t.gone)
// that are in the running ring if a ring member reported the ring broken in
// the last goneBrokenWindow: a killed process closes its connections, so
// its ring neighbours notice at once. A live process that was only too busy
// to answer probes in time breaks nothing: its neighbours still receive its
// chunks, and its next heartbeat withdraws the suspicion. Heartbeat silence
// alone is no confirmation: on saturated cores a starting worker was seen
// silent for 4 s. A suspect outside a running ring waits for the heartbeat
// deadline (DeadAfter). A suspect that stopped being a member (left, or
// silent past DeadAfter) is forgotten. Called with s.mu held.
func (s *Server) confirmGone(t *term) {
	if len(t.gone) == 0 {
		return
	}
	now := s.now()
	members := t.sm.Members()
	for name := range t.gone {
		if t.done || !slices.Contains(members, name) {
			delete(t.gone, name)
			continue
		}
		inRing := t.gen != nil && !t.paused && t.gen.Rank(name) >= 0
		if !inRing || t.lastBroken.IsZero() || now.Sub(t.lastBroken) >= goneBrokenWindow {
			continue
		}
		delete(t.gone, name)
		s.logf("coordinator: memberlist: %s is gone (the ring is broken)", name)
		t.sm.Dead(name)
		s.wake()
	}
}
