package coordinator

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ringtrain/ringtrain/api"
)

// StragglerDetector tells which workers of a ring are persistently slower
// than the rest, and in which phase of their steps.
//
// In a synchronous ring every worker's step takes the same wall time: the
// fast ones wait for the slow one in the all-reduce. What tells a slow
// worker apart is what it spends on its own, computing (forward and
// backward) and waiting for its batches, while its peers show it as a
// longer wait for the reduction. A StragglerDetector keeps, for each
// worker of the ring, the phase figures of its last Window heartbeats (the
// mean seconds per step of the steps they cover, api.WorkerStats) and
// compares them with the same figures of the rest of the ring:
//
//   - a worker is slow in a phase when its mean seconds per step in it are
//     at least Factor times the median of the other workers' means and at
//     least Floor above it;
//   - its own phases are "compute" and "data" (the larger excess names it);
//   - "network" is named only when no worker is slow in an own phase (a
//     slow worker explains its peers' waits) and the worker's wait for the
//     all-reduce is the one that is slow;
//   - a worker slow in some phase at every look for Hold is flagged, and a
//     flagged one that is slow in none at every look for Hold is cleared.
//
// Only workers with a full window (Window heartbeats that covered steps)
// are judged or counted in medians, and at least two are needed. The
// detector is pure: its owner feeds it heartbeats with their times and
// tells it who is in the ring; every Observe looks at every worker.
type StragglerDetector struct {
	cfg     StragglerConfig
	workers map[string]*stragglerTrack
}

// StragglerConfig are a detector's thresholds; zero fields take the
// defaults.
type StragglerConfig struct {
	// Window is the number of heartbeats (that covered steps) whose phase
	// figures are averaged per worker.
	Window int
	// Factor is how many times the ring's median a worker's phase must
	// take to count as slow.
	Factor float64
	// Floor is how many seconds per step above the ring's median a
	// worker's phase must take as well, so that noise on steps of a few
	// milliseconds flags nobody.
	Floor time.Duration
	// Hold is how long a worker must be slow before it is flagged, and
	// keep up before the flag is cleared.
	Hold time.Duration
}

// The detector's defaults: with heartbeats every 200 ms, a window of 2 s,
// and a worker that takes 1.5 times the ring's median and 1 ms more per
// step for 5 s is flagged.
const (
	DefaultStragglerWindow = 10
	DefaultStragglerFactor = 1.5
	DefaultStragglerFloor  = time.Millisecond
	DefaultStragglerHold   = 5 * time.Second
)

// The phases a straggler is slow in.
const (
	PhaseCompute = "compute"
	PhaseData    = "data"
	PhaseNetwork = "network"
)

// StragglerPhases are the phases of a flag, in the order of the metric's
// series.
var StragglerPhases = []string{PhaseCompute, PhaseData, PhaseNetwork}

// minMedian is the least median a factor is taken against (a ring that
// waits no time for its data has a median of 0).
const minMedian = 100e-6

// StragglerEvent is a flag raised or cleared.
type StragglerEvent struct {
	Worker  string
	Flagged bool // raised (else cleared)
	Phase   string
	// Factor, Own and Median are the phase's figures at the event: the
	// worker's mean seconds per step, the median of the others', and
	// their ratio. A flag cleared because the worker left the ring has
	// the figures it was last flagged with.
	Factor, Own, Median float64
	// Left: the flag was cleared because the worker left the ring.
	Left bool
}

func (e StragglerEvent) String() string {
	figures := fmt.Sprintf("%s %.1f× the ring's median (%.1f ms vs %.1f ms per step)", e.Phase, e.Factor, 1e3*e.Own, 1e3*e.Median)
	switch {
	case e.Flagged:
		return fmt.Sprintf("%s is a straggler: %s", e.Worker, figures)
	case e.Left:
		return fmt.Sprintf("%s is no longer a straggler: it left the ring", e.Worker)
	}
	return fmt.Sprintf("%s is no longer a straggler: it keeps up with the ring: %s", e.Worker, figures)
}

// phaseMeans are a window's mean seconds per step.
type phaseMeans struct{ data, compute, reduce float64 }

// of returns the mean a flag's phase is judged by ("network": the wait
// for the all-reduce).
func (m phaseMeans) of(phase string) float64 {
	switch phase {
	case PhaseCompute:
		return m.compute
	case PhaseData:
		return m.data
	}
	return m.reduce
}

type stragglerTrack struct {
	samples []api.WorkerStats // the last Window heartbeats with steps, a ring buffer
	next    int
	means   phaseMeans // over samples, weighted by their steps

	slowSince time.Time // when it was first found slow in a row of looks (zero: not slow)
	okSince   time.Time // while flagged: when it was first found keeping up (zero: not)
	flag      *api.Straggler
	flagged   verdict // the latest verdict while flagged
}

type verdict struct {
	phase               string // "" when not slow
	factor, own, median float64
}

// NewStragglerDetector returns a detector with cfg's thresholds.
func NewStragglerDetector(cfg StragglerConfig) *StragglerDetector {
	if cfg.Window <= 0 {
		cfg.Window = DefaultStragglerWindow
	}
	if cfg.Factor <= 0 {
		cfg.Factor = DefaultStragglerFactor
	}
	if cfg.Floor <= 0 {
		cfg.Floor = DefaultStragglerFloor
	}
	if cfg.Hold <= 0 {
		cfg.Hold = DefaultStragglerHold
	}
	return &StragglerDetector{cfg: cfg, workers: map[string]*stragglerTrack{}}
}

// Config returns the detector's thresholds, defaults applied.
func (d *StragglerDetector) Config() StragglerConfig { return d.cfg }

// Observe takes a heartbeat's figures from a worker of the ring at now,
// looks at every worker and returns the flags raised and cleared. A
// heartbeat that covered no steps (or holds figures that are not finite
// and non-negative) adds nothing to the window but still looks, so that
// flags are raised and cleared on time.
func (d *StragglerDetector) Observe(worker string, now time.Time, st api.WorkerStats) []StragglerEvent {
	tr := d.workers[worker]
	if tr == nil {
		tr = &stragglerTrack{}
		d.workers[worker] = tr
	}
	if st.PhaseSteps > 0 && validSeconds(st.DataWaitSeconds) && validSeconds(st.ComputeSeconds) && validSeconds(st.ReduceSeconds) {
		if len(tr.samples) < d.cfg.Window {
			tr.samples = append(tr.samples, st)
		} else {
			tr.samples[tr.next] = st
		}
		tr.next = (tr.next + 1) % d.cfg.Window
		var sum phaseMeans
		steps := 0
		for _, s := range tr.samples {
			n := float64(s.PhaseSteps)
			sum.data += n * s.DataWaitSeconds
			sum.compute += n * s.ComputeSeconds
			sum.reduce += n * s.ReduceSeconds
			steps += s.PhaseSteps
		}
		n := float64(steps)
		tr.means = phaseMeans{sum.data / n, sum.compute / n, sum.reduce / n}
	}
	return d.look(now)
}

func validSeconds(x float64) bool { return x >= 0 && !math.IsInf(x, 1) }

// Retain forgets every worker not in ring (the workers of a new
// generation; nil: all of them) and returns the flags that cleared.
func (d *StragglerDetector) Retain(ring []string) []StragglerEvent {
	var evs []StragglerEvent
	for _, name := range sortedKeys(d.workers) {
		if slices.Contains(ring, name) {
			continue
		}
		if tr := d.workers[name]; tr.flag != nil {
			evs = append(evs, StragglerEvent{Worker: name, Phase: tr.flag.Phase, Factor: tr.flag.Factor, Own: tr.flagged.own, Median: tr.flagged.median, Left: true})
		}
		delete(d.workers, name)
	}
	return evs
}

// Straggler returns worker's flag, or nil.
func (d *StragglerDetector) Straggler(worker string) *api.Straggler {
	if tr := d.workers[worker]; tr != nil && tr.flag != nil {
		f := *tr.flag
		return &f
	}
	return nil
}

// look judges every worker at now and moves the flags.
func (d *StragglerDetector) look(now time.Time) []StragglerEvent {
	var ready []string
	for _, name := range sortedKeys(d.workers) {
		if len(d.workers[name].samples) == d.cfg.Window {
			ready = append(ready, name)
		}
	}
	// sorted holds, per phase, the ready workers' means in order.
	sorted := map[string][]float64{}
	verdicts := map[string]verdict{}
	if len(ready) >= 2 {
		for _, phase := range StragglerPhases {
			v := make([]float64, len(ready))
			for i, name := range ready {
				v[i] = d.workers[name].means.of(phase)
			}
			slices.Sort(v)
			sorted[phase] = v
		}
		ownSlow := false
		for _, tr := range d.workers {
			if tr.flag != nil && tr.flag.Phase != PhaseNetwork {
				ownSlow = true
			}
		}
		for _, name := range ready {
			m := d.workers[name].means
			v := d.slow(PhaseCompute, m.compute, sorted[PhaseCompute])
			if dv := d.slow(PhaseData, m.data, sorted[PhaseData]); dv.phase != "" && (v.phase == "" || dv.own-dv.median > v.own-v.median) {
				v = dv
			}
			if v.phase != "" {
				ownSlow = true
			}
			verdicts[name] = v
		}
		if !ownSlow {
			for _, name := range ready {
				verdicts[name] = d.slow(PhaseNetwork, d.workers[name].means.reduce, sorted[PhaseNetwork])
			}
		}
	}
	var evs []StragglerEvent
	for _, name := range sortedKeys(d.workers) {
		tr, v := d.workers[name], verdicts[name]
		if v.phase == "" {
			tr.slowSince = time.Time{}
			if tr.flag == nil {
				continue
			}
			if tr.okSince.IsZero() {
				tr.okSince = now
			}
			if now.Sub(tr.okSince) < d.cfg.Hold {
				continue
			}
			// Cleared: the figures of the phase it was flagged in, now.
			ev := StragglerEvent{Worker: name, Phase: tr.flag.Phase, Factor: tr.flag.Factor, Own: tr.flagged.own, Median: tr.flagged.median}
			if s := sorted[tr.flag.Phase]; s != nil && len(tr.samples) == d.cfg.Window {
				ev.Own = tr.means.of(tr.flag.Phase)
				ev.Median = looMedian(s, ev.Own)
				ev.Factor = ev.Own / max(ev.Median, minMedian)
			}
			evs = append(evs, ev)
			tr.flag, tr.okSince = nil, time.Time{}
			continue
		}
		tr.okSince = time.Time{}
		if tr.slowSince.IsZero() {
			tr.slowSince = now
		}
		switch {
		case tr.flag != nil:
			tr.flag.Phase, tr.flag.Factor, tr.flagged = v.phase, v.factor, v
		case now.Sub(tr.slowSince) >= d.cfg.Hold:
			tr.flag, tr.flagged = &api.Straggler{Phase: v.phase, Factor: v.factor, Since: now}, v
			evs = append(evs, StragglerEvent{Worker: name, Flagged: true, Phase: v.phase, Factor: v.factor, Own: v.own, Median: v.median})
		}
	}
	return evs
}

// slow judges one phase of a worker: own is its mean, all the ready
// workers' means of the phase, sorted (own among them).
func (d *StragglerDetector) slow(phase string, own float64, all []float64) verdict {
	med := looMedian(all, own)
	if own >= d.cfg.Factor*med && own-med >= d.cfg.Floor.Seconds() {
		return verdict{phase: phase, factor: own / max(med, minMedian), own: own, median: med}
	}
	return verdict{}
}

// looMedian is the median of sorted with one element equal to x left
// out; sorted holds x and at least one more element.
func looMedian(sorted []float64, x float64) float64 {
	i, _ := slices.BinarySearch(sorted, x)
	at := func(k int) float64 {
		if k >= i {
			k++
		}
		return sorted[k]
	}
	m := len(sorted) - 1
	if m%2 == 1 {
		return at(m / 2)
	}
	return (at(m/2-1) + at(m/2)) / 2
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
