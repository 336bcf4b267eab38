package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/runlog"
)

// commitQueue bounds the checkpoints waiting for the committer; one more
// is dropped with a warning (the next one supersedes it anyway).
const commitQueue = 8

// finalRetry is the pause between attempts to commit the job's final
// checkpoint, which is retried until it commits: the job ends with it.
const finalRetry = time.Second

// reportKey names one checkpoint of one generation.
type reportKey struct {
	gen  uint64
	name string
}

// reportSet collects the ranks' reports of one checkpoint.
type reportSet struct {
	reports []*api.CheckpointReport // by rank
}

// commitJob is a checkpoint every rank reported, for the committer.
type commitJob struct {
	gen   uint64
	m     checkpoint.Manifest
	final bool
}

// ReportCheckpoint collects the ranks' reports of a checkpoint; when every
// rank of the current generation has reported, the committer goroutine
// seals it in the store and commits it in etcd (see api.ControlServer).
// Reports naming an earlier generation are acknowledged and ignored.
func (s *Server) ReportCheckpoint(ctx context.Context, req *api.CheckpointReport) (*api.CheckpointAck, error) {
	if err := s.checkReport(ctx, req); err != nil {
		return nil, err
	}
	t := s.leading()
	if t == nil {
		return nil, s.standbyError(ctx)
	}
	defer s.mu.Unlock()
	if t.done || t.gen == nil || req.Generation != t.gen.Number {
		return &api.CheckpointAck{}, nil
	}
	if req.World != len(t.gen.Ring) || t.gen.Ring[req.Rank].Name != req.Name {
		return nil, status.Errorf(codes.InvalidArgument,
			"coordinator: checkpoint report from %s as rank %d of %d, but generation %d has it at rank %d of %d",
			req.Name, req.Rank, req.World, t.gen.Number, t.gen.Rank(req.Name), len(t.gen.Ring))
	}
	key := reportKey{gen: req.Generation, name: req.Checkpoint}
	rs := t.reports[key]
	if rs == nil {
		rs = &reportSet{reports: make([]*api.CheckpointReport, req.World)}
		t.reports[key] = rs
	}
	r := *req
	r.Files = slices.Clone(req.Files)
	rs.reports[req.Rank] = &r
	if slices.Contains(rs.reports, nil) {
		return &api.CheckpointAck{}, nil
	}
	delete(t.reports, key)
	// An earlier checkpoint of the generation that is still incomplete
	// never will be: a rank skipped it (its shard write failed).
	for k, older := range t.reports {
		if k.gen == key.gen && k.name < key.name {
			delete(t.reports, k)
			var missing []string
			for rank, r := range older.reports {
				if r == nil {
					missing = append(missing, t.gen.Ring[rank].Name)
				}
			}
			s.metrics.commitFailures.Inc()
			s.logf("coordinator: warning: checkpoint %s of generation %d not committed: %v never reported it (a failed shard write)", k.name, k.gen, missing)
		}
	}
	m, err := s.manifest(t.gen, rs.reports)
	if err != nil {
		s.metrics.commitFailures.Inc()
		s.logf("coordinator: warning: dropping checkpoint %s: %v", req.Checkpoint, err)
		return &api.CheckpointAck{}, nil
	}
	if ev := reportedEval(rs.reports); ev != nil {
		t.lastEval = ev
		m.Metrics.TestAccuracy, m.Metrics.TestLoss = ev.Accuracy, ev.Loss
		if t.rlog != nil {
			t.lastEvalStep = max(t.lastEvalStep, int64(m.Step))
			t.rlog.Add(runlog.Record{
				Kind: "eval", Time: s.now().UTC(), Step: m.Step, Epoch: ev.Epoch, Progress: float64(ev.Epoch + 1),
				Loss: ev.Loss, Accuracy: ev.Accuracy,
			})
			if err := t.rlog.Flush(); err != nil {
				s.logf("coordinator: warning: metrics log: %v", err)
			}
		}
	} else if ev := t.lastEval; ev != nil {
		// A mid-epoch checkpoint carries the last evaluation, as
		// single-node checkpoints do.
		m.Metrics.TestAccuracy, m.Metrics.TestLoss = ev.Accuracy, ev.Loss
	}
	j := commitJob{gen: req.Generation, m: m, final: s.isFinal(m.Epoch, m.Position)}
	s.enqueueCommit(t, j)
	return &api.CheckpointAck{}, nil
}

// enqueueCommit queues j for the committer. A mid-run checkpoint that
// finds commitQueue commits already queued (etcd slow or away) is dropped:
// a later one commits the progress. The job's final checkpoint is never
// dropped, since the job ends only once it is committed: it supersedes
// every checkpoint still queued, which are dropped for it instead.
func (s *Server) enqueueCommit(t *term, j commitJob) {
	for {
		select {
		case t.commits <- j:
			return
		default:
		}
		if !j.final {
			s.metrics.commitFailures.Inc()
			s.logf("coordinator: warning: dropping checkpoint %s: %d commits already queued", j.m.Name, commitQueue)
			return
		}
		for drained := false; !drained; {
			select {
			case old := <-t.commits:
				s.metrics.commitFailures.Inc()
				s.logf("coordinator: warning: dropping checkpoint %s for the final one, %s", old.m.Name, j.m.Name)
			default:
				drained = true
			}
		}
	}
}

// checkReport rejects malformed reports and callers admit refuses.
func (s *Server) checkReport(ctx context.Context, req *api.CheckpointReport) error {
	if req == nil || req.Name == "" {
		return status.Error(codes.InvalidArgument, "coordinator: checkpoint report without a worker name")
	}
	if err := s.admit(ctx, "checkpoint report", req.Name, req.Token); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, "coordinator: checkpoint report from %s: %s", req.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case req.World < 1 || req.Rank < 0 || req.Rank >= req.World:
		return bad("rank %d of %d", req.Rank, req.World)
	case req.Step < 0 || req.Step > int64(maxInt):
		return bad("step %d", req.Step)
	case req.Checkpoint != checkpoint.NameForStep(int(req.Step)):
		return bad("checkpoint %q for step %d (want %q)", req.Checkpoint, req.Step, checkpoint.NameForStep(int(req.Step)))
	case req.Epoch < 0 || req.Consumed < 0 || req.Consumed > s.cfg.Samples:
		return bad("epoch %d consumed %d outside epochs of %d samples", req.Epoch, req.Consumed, s.cfg.Samples)
	case len(req.Files) == 0:
		return bad("no files")
	}
	return nil
}

const maxInt = int(^uint(0) >> 1)

// manifest builds the manifest of a checkpoint from every rank's report.
// Called with s.mu held.
func (s *Server) manifest(g *api.Generation, reports []*api.CheckpointReport) (checkpoint.Manifest, error) {
	r0 := reports[0]
	m := checkpoint.Manifest{
		Name:       r0.Checkpoint,
		JobHash:    s.hash,
		Model:      s.cfg.Spec.Model,
		Step:       int(r0.Step),
		Epoch:      r0.Epoch,
		Position:   r0.Consumed,
		Seed:       s.cfg.Spec.Seed,
		WorldSize:  len(reports),
		Generation: int(g.Number),
	}
	files := make(map[string]api.FileInfo)
	var loss float64
	var losses int
	for _, r := range reports {
		if r.Epoch != r0.Epoch || r.Consumed != r0.Consumed {
			return m, fmt.Errorf("rank %d (%s) reports epoch %d consumed %d, rank 0 (%s) epoch %d consumed %d",
				r.Rank, r.Name, r.Epoch, r.Consumed, r0.Name, r0.Epoch, r0.Consumed)
		}
		if r.TrainLoss != 0 {
			loss += r.TrainLoss
			losses++
		}
		for _, f := range r.Files {
			if old, ok := files[f.Name]; ok && old != f {
				return m, fmt.Errorf("file %s reported twice with different contents (rank %d)", f.Name, r.Rank)
			}
			files[f.Name] = f
		}
	}
	if losses > 0 {
		m.Metrics.TrainLoss = loss / float64(losses)
	}
	for _, f := range files {
		m.Files = append(m.Files, checkpoint.FileInfo{Name: f.Name, Size: f.Size, SHA256: f.SHA256})
	}
	slices.SortFunc(m.Files, func(a, b checkpoint.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return m, nil
}

// reportedEval returns the evaluation the reports carry (rank 0's first),
// or nil.
func reportedEval(reports []*api.CheckpointReport) *api.Eval {
	for _, r := range reports {
		if r.Eval != nil {
			ev := *r.Eval
			return &ev
		}
	}
	return nil
}

// commitLoop seals and commits the term's checkpoints in order until ctx
// ends.
func (s *Server) commitLoop(ctx context.Context, t *term) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-t.commits:
			s.commit(ctx, t, j)
		}
	}
}

// commit seals one checkpoint and commits it in etcd, guarded by the
// leader key and its generation, then applies retention. A failure is
// logged and the checkpoint dropped (the next one commits once etcd is
// back), except for the job's final checkpoint, whose commit is retried
// until it succeeds, the generation moves on, or the term ends.
func (s *Server) commit(ctx context.Context, t *term, j commitJob) {
	s.mu.Lock()
	current := t.gen != nil && t.gen.Number == j.gen
	s.mu.Unlock()
	if !current {
		s.logf("coordinator: checkpoint %s of generation %d not committed: a newer generation replaced it", j.m.Name, j.gen)
		return
	}
	m, err := s.cfg.Store.Seal(j.m)
	if err != nil {
		s.metrics.commitFailures.Inc()
		s.logf("coordinator: warning: checkpoint %s not committed: %v", j.m.Name, err)
		return
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, s.commitTTL)
		err = t.committer.Commit(cctx, m, t.key, t.rev, int(j.gen))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.metrics.commitFailures.Inc()
		s.logf("coordinator: warning: checkpoint %s not committed: %v", m.Name, err)
		if !j.final || errors.Is(err, checkpoint.ErrNotLeader) || errors.Is(err, checkpoint.ErrStaleGeneration) {
			return
		}
		timer := time.NewTimer(finalRetry)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
	s.metrics.committed.Inc()
	s.logf("coordinator: committed checkpoint %s (step %d, %s, generation %d, %d files)",
		m.Name, m.Step, checkpoint.DescribePosition(m.Epoch, m.Position, s.cfg.Samples), j.gen, len(m.Files))
	s.mu.Lock()
	t.lastCkpt = &m
	t.committed = keepCommitted(t.committed, m, s.keep)
	if j.final {
		t.done, t.stateDirty = true, true
	}
	s.mu.Unlock()
	if j.final {
		s.logf("coordinator: job %s is complete", s.job)
		s.markDone()
		s.wake()
	}
	rctx, cancel := context.WithTimeout(ctx, s.commitTTL)
	defer cancel()
	if err := t.committer.Retain(rctx, s.keep, t.key, t.rev, int(j.gen)); err != nil {
		s.logf("coordinator: warning: retention of %d checkpoints: %v", s.keep, err)
	}
}
