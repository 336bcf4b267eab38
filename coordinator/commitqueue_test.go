package coordinator

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/checkpoint"
)

// A full commit queue drops a mid-run checkpoint, but never the job's
// final one: the final one takes the place of every checkpoint still
// queued, which it supersedes, so the job can end.
func TestFinalCheckpointIsNeverDropped(t *testing.T) {
	var logs []string
	s := &Server{logf: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }}
	s.metrics = newMetrics(s)
	tm := &term{commits: make(chan commitJob, commitQueue)}
	job := func(step int, final bool) commitJob {
		return commitJob{gen: 1, m: checkpoint.Manifest{Name: checkpoint.NameForStep(step), Step: step}, final: final}
	}
	for i := range commitQueue {
		s.enqueueCommit(tm, job(10*(i+1), false))
	}
	s.enqueueCommit(tm, job(90, false))
	if len(tm.commits) != commitQueue || !strings.Contains(strings.Join(logs, "\n"), "dropping checkpoint "+checkpoint.NameForStep(90)) {
		t.Fatalf("a mid-run checkpoint on a full queue: %d queued, logs %q", len(tm.commits), logs)
	}
	s.enqueueCommit(tm, job(100, true))
	if len(tm.commits) != 1 {
		t.Fatalf("%d commits queued after the final one, want it alone", len(tm.commits))
	}
	if j := <-tm.commits; !j.final || j.m.Step != 100 {
		t.Fatalf("queued %+v, want the final checkpoint", j)
	}
	if got := strings.Count(strings.Join(logs, "\n"), "for the final one"); got != commitQueue {
		t.Fatalf("%d checkpoints said dropped for the final one, want %d", got, commitQueue)
	}
	// With room, the final checkpoint queues behind the others.
	s.enqueueCommit(tm, job(110, false))
	s.enqueueCommit(tm, job(120, true))
	if len(tm.commits) != 2 {
		t.Fatalf("%d queued, want 2", len(tm.commits))
	}
}
