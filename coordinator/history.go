package coordinator

import (
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/api"
)

// Generations returns the generation history of this coordinator, oldest
// first: every generation it published and every pause of the ring, with
// their causes, at most the last historyLen (200) of them. A coordinator
// that takes over a job starts its history with the generation it forms
// (cause "resume"); a standby's is what it saw while it led.
func (s *Server) Generations() []api.GenerationEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.GenerationEvent, len(s.history))
	for i, ev := range s.history {
		ev.Ring, ev.Causes = slices.Clone(ev.Ring), slices.Clone(ev.Causes)
		out[i] = ev
	}
	return out
}

// addHistory appends an event to the history, dropping the oldest beyond
// historyLen. Called with s.mu held.
func (s *Server) addHistory(ev api.GenerationEvent) {
	if ev.Causes == nil {
		ev.Causes = []api.GenerationCause{}
	}
	if ev.Ring == nil {
		ev.Ring = []string{}
	}
	if len(s.history) >= historyLen {
		s.history = slices.Delete(s.history, 0, len(s.history)-historyLen+1)
	}
	s.history = append(s.history, ev)
}

// generationEvent is the history's entry for a generation as workers
// receive it, with the state machine's causes.
func generationEvent(g *api.Generation, causes []Cause) api.GenerationEvent {
	ev := api.GenerationEvent{
		Number: g.Number, ResumeStep: g.ResumeStep, Epoch: g.Epoch, Consumed: g.Consumed,
		Source: g.Source, Restore: g.Restore, Causes: apiCauses(causes),
	}
	for _, p := range g.Ring {
		ev.Ring = append(ev.Ring, p.Name)
	}
	return ev
}

func apiCauses(causes []Cause) []api.GenerationCause {
	out := make([]api.GenerationCause, len(causes))
	for i, k := range causes {
		out[i] = api.GenerationCause{Kind: k.Kind, Worker: k.Worker, Detail: k.Detail}
	}
	return out
}

// describeCauses lists causes for a log line.
func describeCauses(causes []Cause) string {
	if len(causes) == 0 {
		return "no membership change"
	}
	s := make([]string, len(causes))
	for i, k := range causes {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}
