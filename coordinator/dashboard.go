package coordinator

import (
	"context"
	"slices"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/dashboard"
	"github.com/ringtrain/ringtrain/runlog"
)

// committedUpTo returns the checkpoints committed in etcd up to latest
// that retention keeps, oldest first: best effort, just latest when etcd
// does not answer.
func (s *Server) committedUpTo(ctx context.Context, c *checkpoint.EtcdCommitter, latest checkpoint.Manifest) []checkpoint.Manifest {
	ms, err := c.Committed(ctx)
	if err != nil {
		return []checkpoint.Manifest{latest}
	}
	var out []checkpoint.Manifest
	for _, m := range ms {
		if m.Name <= latest.Name {
			out = keepCommitted(out, m, s.keep)
		}
	}
	if len(out) == 0 || out[len(out)-1].Name != latest.Name {
		out = keepCommitted(out, latest, s.keep)
	}
	return out
}

// keepCommitted adds the newly committed m to list (dropping any at or
// past its step: a restored run commits them again) and keeps the newest
// keep, as retention does.
func keepCommitted(list []checkpoint.Manifest, m checkpoint.Manifest, keep int) []checkpoint.Manifest {
	list = slices.DeleteFunc(list, func(o checkpoint.Manifest) bool { return o.Name >= m.Name })
	list = append(list, m)
	if len(list) > keep {
		list = slices.Delete(list, 0, len(list)-keep)
	}
	return list
}

// Checkpoints returns the committed checkpoints that retention keeps,
// oldest first, as the dashboard shows them, and the store's directory.
// A standby knows none.
func (s *Server) Checkpoints() dashboard.Checkpoints {
	out := dashboard.Checkpoints{Store: s.storeDir}
	t := s.leading()
	if t == nil {
		return out
	}
	defer s.mu.Unlock()
	for _, m := range t.committed {
		out.Checkpoints = append(out.Checkpoints, DashboardCheckpoint(m))
	}
	return out
}

// DashboardCheckpoint is a checkpoint's manifest as the dashboard shows it
// (a coordinator's, or a single-node run's).
func DashboardCheckpoint(m checkpoint.Manifest) dashboard.Checkpoint {
	c := dashboard.Checkpoint{
		Name: m.Name, Step: m.Step, Epoch: m.Epoch, Position: m.Position, Generation: m.Generation,
		WorldSize: m.WorldSize, Created: m.Created, Files: len(m.Files),
		TrainLoss: m.Metrics.TrainLoss, TestAccuracy: m.Metrics.TestAccuracy, TestLoss: m.Metrics.TestLoss,
	}
	for _, f := range m.Files {
		c.Bytes += f.Size
	}
	return c
}

// runRecords returns the run's metrics records: the leader's log, or what a
// standby reads from the run directory.
func (s *Server) runRecords() []runlog.Record {
	if t := s.leading(); t != nil {
		defer s.mu.Unlock()
		if t.rlog != nil {
			return slices.Clone(t.rlog.Records())
		}
		return nil
	}
	if s.records == nil {
		return nil
	}
	return s.records.Records()
}

// dashSource is what the coordinator's dashboard shows.
type dashSource struct{ s *Server }

func (d dashSource) Status(ctx context.Context) *api.StatusReply { return d.s.status(ctx) }
func (d dashSource) Records() []runlog.Record                    { return d.s.runRecords() }
func (d dashSource) Generations() []api.GenerationEvent          { return d.s.Generations() }
func (d dashSource) Checkpoints() dashboard.Checkpoints          { return d.s.Checkpoints() }
func (d dashSource) JobFile() string                             { return d.s.jobYAML }
