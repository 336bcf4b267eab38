package coordinator

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/api"
)

// describeEvents renders a generation history as lines such as
// "1 [w1 w2] start, join w1, join w2" or "paused 1 [w1] left w2".
func describeEvents(evs []api.GenerationEvent) []string {
	var out []string
	for _, ev := range evs {
		var causes []string
		for _, k := range ev.Causes {
			causes = append(causes, Cause{Kind: k.Kind, Worker: k.Worker, Detail: k.Detail}.String())
		}
		p := ""
		if ev.Paused {
			p = "paused "
		}
		out = append(out, fmt.Sprintf("%s%d %v %s", p, ev.Number, ev.Ring, strings.Join(causes, ", ")))
	}
	return out
}

// TestServerGenerationHistory: the coordinator keeps every generation it
// forms and every pause, with their causes (start and joins, a leave that
// stops the ring, the join that restarts it, a broken ring), and its
// status says which generation each worker runs.
func TestServerGenerationHistory(t *testing.T) {
	c := newCluster(t)
	c.spec.MinWorkers = 2
	cd := c.start("coord-a", nil)
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	w2, _ := c.join(t, cd, "w2")
	g1 := w1.waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	w1.heartbeat(t, g1.Number, 50, false)
	w2.heartbeat(t, g1.Number, 50, false)

	// w2 leaves: below min_workers the ring pauses.
	if _, err := w2.c.Leave(c.ctx(), &api.LeaveRequest{Name: "w2", Token: testToken}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ring to pause", func() bool { return w1.heartbeat(t, g1.Number, 50, false).Paused })
	w3, _ := c.join(t, cd, "w3")
	g2 := w3.waitGeneration(t, g1.Number, nil)
	// w3 finds the ring broken.
	for range 3 {
		w3.heartbeat(t, g2.Number, 50, true)
	}
	g3 := w1.waitGeneration(t, g2.Number, nil)

	want := []string{
		fmt.Sprintf("%d [w1 w2] start, join w1, join w2", g1.Number),
		fmt.Sprintf("paused %d [w1] left w2", g1.Number),
		fmt.Sprintf("%d [w1 w3] left w2, join w3", g2.Number),
		fmt.Sprintf("%d [w1 w3] broken w3 (generation %d)", g3.Number, g2.Number),
	}
	evs := cd.srv.Generations()
	if got := describeEvents(evs); !slices.Equal(got, want) {
		t.Fatalf("history\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i, ev := range evs {
		if ev.Time.IsZero() || (i > 0 && ev.Time.Before(evs[i-1].Time)) {
			t.Errorf("event %d at %v, after %v", i, ev.Time, evs[max(i-1, 0)].Time)
		}
	}
	if evs[1].Reason == "" || !strings.Contains(evs[1].Reason, "1 of min 2") {
		t.Errorf("the pause says %q, want why the job waits", evs[1].Reason)
	}
	if evs[2].Source != "w1" || evs[2].ResumeStep != 50 {
		t.Errorf("generation %d continues from %q at %d, want w1 at 50", g2.Number, evs[2].Source, evs[2].ResumeStep)
	}
	if !strings.Contains(c.log.String(), "because of left w2, join w3") {
		t.Errorf("the log does not say why generation %d formed:\n%s", g2.Number, c.log.String())
	}

	w1.heartbeat(t, g3.Number, 50, false)
	if st := cd.srv.StatusReply(); st.Workers[0].Name != "w1" || st.Workers[0].Generation != g3.Number {
		t.Errorf("status of w1 %+v, want generation %d", st.Workers[0], g3.Number)
	}
}

// TestHistoryBounded: the history keeps the newest historyLen events.
func TestHistoryBounded(t *testing.T) {
	s := &Server{}
	for i := range historyLen + 10 {
		s.addHistory(api.GenerationEvent{Number: uint64(i + 1)})
	}
	evs := s.Generations()
	if len(evs) != historyLen || evs[0].Number != 11 || evs[len(evs)-1].Number != historyLen+10 {
		t.Fatalf("%d events, %d to %d", len(evs), evs[0].Number, evs[len(evs)-1].Number)
	}
	if evs[0].Ring == nil || evs[0].Causes == nil {
		t.Error("nil lists in an event: the page wants []")
	}
}
