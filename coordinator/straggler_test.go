package coordinator

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
)

// phases are one worker's mean seconds per step in a heartbeat.
type phases struct{ data, compute, reduce float64 }

// ringSim feeds a detector the heartbeats of a ring whose workers beat
// every 200 ms (each at its own offset within the interval), with the
// figures fig gives for a worker at a time since the start, and records
// the flags raised and cleared with their times.
type ringSim struct {
	d       *StragglerDetector
	workers []string
	fig     func(worker string, at time.Duration) phases
	steps   int // steps per heartbeat
	start   time.Time
	events  []simEvent
}

type simEvent struct {
	at time.Duration
	StragglerEvent
}

const beat = 200 * time.Millisecond

func newRingSim(cfg StragglerConfig, n int, fig func(string, time.Duration) phases) *ringSim {
	s := &ringSim{d: NewStragglerDetector(cfg), fig: fig, steps: 20, start: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	for i := range n {
		s.workers = append(s.workers, "worker-"+string(rune('0'+i)))
	}
	return s
}

// run feeds heartbeats from..to (times since the start).
func (s *ringSim) run(from, to time.Duration) {
	for at := from; at < to; at += beat {
		for i, w := range s.workers {
			t := at + time.Duration(i)*beat/time.Duration(len(s.workers))
			p := s.fig(w, t)
			st := api.WorkerStats{PhaseSteps: s.steps, DataWaitSeconds: p.data, ComputeSeconds: p.compute, ReduceSeconds: p.reduce,
				StepSeconds: p.data + p.compute + p.reduce}
			for _, ev := range s.d.Observe(w, s.start.Add(t), st) {
				s.events = append(s.events, simEvent{t, ev})
			}
		}
	}
}

func (s *ringSim) flags() []simEvent {
	var out []simEvent
	for _, e := range s.events {
		if e.Flagged {
			out = append(out, e)
		}
	}
	return out
}

const ms = 1e-3

// steady is a ring at 4 ms of compute, 0.1 ms of data wait and 2 ms of
// reduce wait per step.
var steady = phases{data: 0.1 * ms, compute: 4 * ms, reduce: 2 * ms}

// bound is the longest a persistent slowdown takes to be flagged with the
// default thresholds: the window turns over (10 heartbeats, 2 s), then
// Hold (5 s); a heartbeat interval of slack for the looks.
const bound = DefaultStragglerWindow*beat + DefaultStragglerHold + beat

// TestStragglerFlaggedInItsPhase: a worker slowed in one phase from 10 s on
// is flagged in that phase, no sooner than Hold after the slowdown and
// within bound of it, and no other worker is flagged.
func TestStragglerFlaggedInItsPhase(t *testing.T) {
	const slowFrom = 10 * time.Second
	for _, tc := range []struct {
		name, phase string
		workers     int
		slow        func(p phases) phases // the slow worker's figures
		peers       func(p phases) phases // the others' while it is slow
	}{
		{"compute", PhaseCompute, 3,
			func(p phases) phases { p.compute, p.reduce = 9*ms, 0.5*ms; return p },
			func(p phases) phases { p.reduce = 7 * ms; return p }},
		{"compute in a ring of two", PhaseCompute, 2,
			func(p phases) phases { p.compute, p.reduce = 9*ms, 0.5*ms; return p },
			func(p phases) phases { p.reduce = 7 * ms; return p }},
		{"compute in a ring of eight", PhaseCompute, 8,
			func(p phases) phases { p.compute, p.reduce = 7*ms, 0.5*ms; return p },
			func(p phases) phases { p.reduce = 5 * ms; return p }},
		{"data", PhaseData, 3,
			func(p phases) phases { p.data, p.reduce = 6*ms, 0.5*ms; return p },
			func(p phases) phases { p.reduce = 8 * ms; return p }},
		{"data over a slower compute", PhaseData, 4,
			func(p phases) phases { p.data, p.compute = 12*ms, 6.5*ms; return p },
			func(p phases) phases { p.reduce = 16 * ms; return p }},
		{"network", PhaseNetwork, 3,
			func(p phases) phases { p.reduce = 8 * ms; return p },
			func(p phases) phases { return p }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const slowWorker = "worker-1"
			s := newRingSim(StragglerConfig{}, tc.workers, func(w string, at time.Duration) phases {
				switch {
				case at < slowFrom:
					return steady
				case w == slowWorker:
					return tc.slow(steady)
				}
				return tc.peers(steady)
			})
			s.run(0, 30*time.Second)
			flags := s.flags()
			if len(flags) != 1 || len(s.events) != 1 {
				t.Fatalf("events %+v, want one flag", s.events)
			}
			f := flags[0]
			took := f.at - slowFrom
			t.Logf("%s flagged %v after the slowdown: %s", f.Worker, took, f.StragglerEvent)
			if f.Worker != slowWorker || f.Phase != tc.phase {
				t.Errorf("flagged %s in %s, want %s in %s", f.Worker, f.Phase, slowWorker, tc.phase)
			}
			if took < DefaultStragglerHold || took > bound {
				t.Errorf("flagged %v after the slowdown, want between %v and %v", took, DefaultStragglerHold, bound)
			}
			if f.Factor < DefaultStragglerFactor || math.Abs(f.Factor-f.Own/f.Median) > 1e-9 {
				t.Errorf("factor %v (own %v, median %v)", f.Factor, f.Own, f.Median)
			}
			st := s.d.Straggler(slowWorker)
			if st == nil || st.Phase != tc.phase || st.Factor < DefaultStragglerFactor || !st.Since.Equal(s.start.Add(f.at)) {
				t.Errorf("Straggler(%s) = %+v", slowWorker, st)
			}
			for _, w := range s.workers {
				if w != slowWorker && s.d.Straggler(w) != nil {
					t.Errorf("%s flagged too: %+v", w, s.d.Straggler(w))
				}
			}
			if !strings.Contains(f.String(), slowWorker+" is a straggler: "+tc.phase) {
				t.Errorf("log line %q", f.String())
			}
		})
	}
}

// TestStragglerNoFlagForNoise: figures that jitter from heartbeat to
// heartbeat, a worker persistently slower by less than Factor, a worker
// slower by more than Factor but less than Floor, and a slowdown shorter
// than Hold flag nobody.
func TestStragglerNoFlagForNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	jitter := func(x float64) float64 { return x * (0.6 + 0.8*rng.Float64()) } // ±40% per heartbeat
	for _, tc := range []struct {
		name string
		fig  func(w string, at time.Duration) phases
	}{
		{"jitter", func(string, time.Duration) phases {
			return phases{jitter(steady.data), jitter(steady.compute), jitter(steady.reduce)}
		}},
		{"within the factor", func(w string, _ time.Duration) phases {
			p := phases{jitter(steady.data), jitter(steady.compute), jitter(steady.reduce)}
			if w == "worker-2" {
				p.compute *= 1.4
			}
			return p
		}},
		{"under the floor", func(w string, _ time.Duration) phases {
			p := phases{data: 0.05 * ms, compute: 0.3 * ms, reduce: 0.1 * ms}
			if w == "worker-0" {
				p.compute, p.data, p.reduce = 1.2*ms, 0.9*ms, 0.9*ms // 4×, 18× and 9×, all under 1 ms more
			}
			return p
		}},
		{"a slowdown shorter than the hold", func(w string, at time.Duration) phases {
			if w == "worker-1" && at >= 10*time.Second && at < 13*time.Second {
				return phases{steady.data, 20 * ms, steady.reduce}
			}
			return steady
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newRingSim(StragglerConfig{}, 4, tc.fig)
			s.run(0, 60*time.Second)
			if len(s.events) != 0 {
				t.Errorf("events %+v, want none", s.events)
			}
		})
	}
}

// TestStragglerClearedAfterRecovery: a worker slow from 5 s to 25 s is
// flagged, then cleared no sooner than Hold after it recovers and within
// bound of it; the cleared line names its figures.
func TestStragglerClearedAfterRecovery(t *testing.T) {
	const recovered = 25 * time.Second
	s := newRingSim(StragglerConfig{}, 3, func(w string, at time.Duration) phases {
		if w == "worker-2" && at >= 5*time.Second && at < recovered {
			return phases{steady.data, 10 * ms, 0.5 * ms}
		}
		return steady
	})
	s.run(0, 45*time.Second)
	if len(s.events) != 2 || !s.events[0].Flagged || s.events[1].Flagged || s.events[1].Worker != "worker-2" {
		t.Fatalf("events %+v, want worker-2 flagged then cleared", s.events)
	}
	cleared := s.events[1]
	took := cleared.at - recovered
	t.Logf("cleared %v after the recovery: %s", took, cleared.StragglerEvent)
	if took < DefaultStragglerHold || took > bound {
		t.Errorf("cleared %v after the recovery, want between %v and %v", took, DefaultStragglerHold, bound)
	}
	if s.d.Straggler("worker-2") != nil {
		t.Errorf("still flagged: %+v", s.d.Straggler("worker-2"))
	}
	if line := cleared.String(); !strings.Contains(line, "worker-2 is no longer a straggler: it keeps up") || !strings.Contains(line, "compute 1.0×") {
		t.Errorf("cleared line %q", line)
	}
}

// TestStragglerFlagFollowsThePhase: a flagged worker slow in another phase
// stays flagged, under the new phase.
func TestStragglerFlagFollowsThePhase(t *testing.T) {
	s := newRingSim(StragglerConfig{}, 3, func(w string, at time.Duration) phases {
		switch {
		case w != "worker-0":
			return steady
		case at < 15*time.Second:
			return phases{steady.data, 10 * ms, steady.reduce}
		}
		return phases{10 * ms, steady.compute, steady.reduce}
	})
	s.run(0, 30*time.Second)
	if len(s.events) != 1 || s.events[0].Phase != PhaseCompute {
		t.Fatalf("events %+v, want one compute flag", s.events)
	}
	if st := s.d.Straggler("worker-0"); st == nil || st.Phase != PhaseData {
		t.Errorf("Straggler(worker-0) = %+v, want data", st)
	}
}

// TestStragglerHeartbeatsWithoutSteps: heartbeats that cover no steps (an
// evaluation, a checkpoint) leave the window alone, and a worker whose
// window is not full is neither judged nor counted.
func TestStragglerHeartbeatsWithoutSteps(t *testing.T) {
	d := NewStragglerDetector(StragglerConfig{Window: 3, Hold: time.Second})
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	slow := api.WorkerStats{PhaseSteps: 5, ComputeSeconds: 10 * ms}
	fast := api.WorkerStats{PhaseSteps: 5, ComputeSeconds: 4 * ms}
	var evs []StragglerEvent
	for i := range 20 {
		at := now.Add(time.Duration(i) * beat)
		evs = append(evs, d.Observe("a", at, slow)...)
		evs = append(evs, d.Observe("b", at, fast)...)
		if i < 10 {
			// c never covers steps: it never counts, and a ring of a
			// and b flags a.
			evs = append(evs, d.Observe("c", at, api.WorkerStats{ComputeSeconds: 4 * ms})...)
		}
		if i >= 10 {
			// Idle heartbeats (no steps, and figures that are not
			// finite) keep a's slow window.
			evs = append(evs, d.Observe("a", at, api.WorkerStats{ComputeSeconds: math.NaN()})...)
			evs = append(evs, d.Observe("a", at, api.WorkerStats{PhaseSteps: 3, ComputeSeconds: math.Inf(1)})...)
		}
	}
	if len(evs) != 1 || evs[0].Worker != "a" || evs[0].Phase != PhaseCompute || evs[0].Median != 4*ms {
		t.Errorf("events %+v, want a flagged against b's 4 ms", evs)
	}
	if st := d.Straggler("a"); st == nil {
		t.Error("a no longer flagged after idle heartbeats")
	}
}

// TestStragglerRetain: a flagged worker that leaves the ring is cleared
// and forgotten; one that stays keeps its flag.
func TestStragglerRetain(t *testing.T) {
	s := newRingSim(StragglerConfig{}, 3, func(w string, at time.Duration) phases {
		if w == "worker-1" {
			return phases{steady.data, 10 * ms, steady.reduce}
		}
		return steady
	})
	s.run(0, 10*time.Second)
	if s.d.Straggler("worker-1") == nil {
		t.Fatalf("worker-1 not flagged: %+v", s.events)
	}
	if evs := s.d.Retain([]string{"worker-0", "worker-1"}); len(evs) != 0 {
		t.Errorf("Retain of the flagged worker: %+v", evs)
	}
	evs := s.d.Retain([]string{"worker-0", "worker-2"})
	if len(evs) != 1 || evs[0].Worker != "worker-1" || !evs[0].Left || evs[0].Flagged {
		t.Fatalf("Retain without worker-1: %+v", evs)
	}
	if line := evs[0].String(); line != "worker-1 is no longer a straggler: it left the ring" {
		t.Errorf("line %q", line)
	}
	if s.d.Straggler("worker-1") != nil {
		t.Error("worker-1 still flagged after it left")
	}
	if evs := s.d.Retain(nil); len(evs) != 0 {
		t.Errorf("Retain(nil) of unflagged workers: %+v", evs)
	}
}

func TestLooMedian(t *testing.T) {
	for _, tc := range []struct {
		sorted  []float64
		x, want float64
	}{
		{[]float64{1, 5}, 1, 5},
		{[]float64{1, 5}, 5, 1},
		{[]float64{1, 2, 9}, 9, 1.5},
		{[]float64{1, 2, 9}, 1, 5.5},
		{[]float64{1, 2, 9}, 2, 5},
		{[]float64{1, 2, 3, 9}, 9, 2},
		{[]float64{1, 2, 3, 9}, 1, 3},
		{[]float64{2, 2, 2, 7}, 2, 2},
	} {
		if got := looMedian(tc.sorted, tc.x); got != tc.want {
			t.Errorf("looMedian(%v, %v) = %v, want %v", tc.sorted, tc.x, got, tc.want)
		}
	}
}
