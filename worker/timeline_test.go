package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/timeline"
)

// traceEvent is a complete event of an exported trace.
type traceEvent struct {
	Name, Cat, Ph string
	Ts, Dur       float64
	Pid, Tid      int
	Args          struct {
		Step   *int64
		Bucket *int
	}
}

// exportTrace reads the timelines in dir and exports them as a Chrome
// trace, returned as its complete events and its process names by pid.
func exportTrace(t *testing.T, dir string) ([]traceEvent, map[int]string) {
	t.Helper()
	ws, err := timeline.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := timeline.WriteChrome(&buf, ws); err != nil {
		t.Fatal(err)
	}
	var tr struct {
		TraceEvents []struct {
			traceEvent
			Args map[string]any
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	var evs []traceEvent
	procs := map[int]string{}
	for _, e := range tr.TraceEvents {
		if e.Ph == "M" {
			if e.Name == "process_name" {
				procs[e.Pid] = e.Args["name"].(string)
			}
			continue
		}
		te := e.traceEvent
		if s, ok := e.Args["step"].(float64); ok {
			n := int64(s)
			te.Args.Step = &n
		}
		if b, ok := e.Args["bucket"].(float64); ok {
			n := int(b)
			te.Args.Bucket = &n
		}
		evs = append(evs, te)
	}
	return evs, procs
}

// stepView is one step of one worker in a trace.
type stepView struct {
	step      traceEvent
	phases    map[string]traceEvent
	phaseSum  float64
	allreduce []traceEvent
}

func stepsOf(evs []traceEvent, pid int) map[int64]*stepView {
	steps := map[int64]*stepView{}
	at := func(s int64) *stepView {
		if steps[s] == nil {
			steps[s] = &stepView{phases: map[string]traceEvent{}}
		}
		return steps[s]
	}
	for _, e := range evs {
		if e.Pid != pid || e.Args.Step == nil {
			continue
		}
		v := at(*e.Args.Step)
		switch e.Cat {
		case "step":
			v.step = e
		case "phase":
			v.phases[e.Name] = e
			v.phaseSum += e.Dur
		case "comm":
			v.allreduce = append(v.allreduce, e)
		}
	}
	return steps
}

// Two workers of a cluster record their timelines; exported as one trace,
// every step of each has its phases, which sum to the step's time within
// 5%; each bucket's all-reduce runs after forward and ends before the
// step's reduction does; and the same bucket's all-reduce of a step
// overlaps in time on both workers (one time axis).
func TestClusterTimelinePhasesSumToSteps(t *testing.T) {
	spec := clusterSpec(t)
	spec.Epochs, spec.TrainLimit = 1, 1280
	f, addr := newFake(t, spec, 2, api.Generation{})
	dir := filepath.Join(t.TempDir(), "timeline")
	runClusterWith(t, f, addr, &stepRecord{params: map[string]map[int64][]float32{}}, func(o *ClusterOptions) { o.TimelineDir = dir })

	evs, procs := exportTrace(t, dir)
	if len(procs) != 2 || procs[1] != "w0" || procs[2] != "w1" {
		t.Fatalf("processes %v", procs)
	}
	const steps = 1280 / 64
	byPid := map[int]map[int64]*stepView{1: stepsOf(evs, 1), 2: stepsOf(evs, 2)}
	kinds := map[int]map[string]int{1: {}, 2: {}}
	for _, e := range evs {
		kinds[e.Pid][e.Name]++
	}
	for pid, views := range byPid {
		for _, k := range []string{"eval", "checkpoint", "sync"} {
			if kinds[pid][k] == 0 {
				t.Errorf("%s records no %s", procs[pid], k)
			}
		}
		for s := int64(1); s <= steps; s++ {
			v := views[s]
			if v == nil || v.step.Name != "step "+itoa(s) {
				t.Fatalf("%s: step %d missing", procs[pid], s)
			}
			if len(v.phases) != 5 || len(v.allreduce) == 0 {
				t.Fatalf("%s step %d: phases %v, %d all-reduces", procs[pid], s, v.phases, len(v.allreduce))
			}
			if d := v.step.Dur; math.Abs(v.phaseSum-d) > 0.05*d {
				t.Errorf("%s step %d: phases sum to %.1f µs, the step took %.1f µs", procs[pid], s, v.phaseSum, d)
			}
			const eps = 0.01 // µs
			fwd, red := v.phases["forward"], v.phases["reduce"]
			for _, a := range v.allreduce {
				if a.Tid != timeline.CommTrack || a.Ts < fwd.Ts+fwd.Dur-eps || a.Ts+a.Dur > red.Ts+red.Dur+eps {
					t.Errorf("%s step %d: %s [%.1f, %.1f] µs outside forward's end %.1f and the reduction's %.1f",
						procs[pid], s, a.Name, a.Ts, a.Ts+a.Dur, fwd.Ts+fwd.Dur, red.Ts+red.Dur)
				}
			}
		}
	}
	for s := int64(1); s <= steps; s++ {
		a, b := byPid[1][s].allreduce[0], byPid[2][s].allreduce[0]
		const slack = 1000 // µs: the wall clocks of two anchors on one machine
		if a.Ts > b.Ts+b.Dur+slack || b.Ts > a.Ts+a.Dur+slack {
			t.Errorf("step %d: %s on w0 [%.0f, %.0f] µs and on w1 [%.0f, %.0f] µs do not overlap",
				s, a.Name, a.Ts, a.Ts+a.Dur, b.Ts, b.Ts+b.Dur)
		}
	}
}

// Single-node training records every step (no reduction on a ring of one)
// and the evaluations and checkpoints between them.
func TestTrainRecordsATimeline(t *testing.T) {
	spec := smallSpec(t, "mlp")
	spec.Epochs, spec.CheckpointEvery = 1, 10
	dir := t.TempDir()
	sum, err := Train(context.Background(), Options{Spec: spec, RunDir: dir, Logf: t.Logf, Timeline: true})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := timeline.ReadDir(filepath.Join(dir, TimelineDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].Name != SoloName || len(ws[0].Segments) != 1 {
		t.Fatalf("timelines %+v", ws)
	}
	count := map[timeline.Kind]int{}
	var stepNS, phaseNS int64
	for _, ev := range ws[0].Segments[0].Events {
		count[ev.Kind]++
		switch {
		case ev.Kind == timeline.Step:
			stepNS += ev.End - ev.Start
		case ev.Kind.Phase():
			phaseNS += ev.End - ev.Start
		}
	}
	n := sum.Steps
	if count[timeline.Step] != n || count[timeline.Forward] != n || count[timeline.Backward] != n ||
		count[timeline.Data] != n || count[timeline.Optimizer] != n || count[timeline.Reduce] != 0 || count[timeline.AllReduce] != 0 {
		t.Errorf("%d steps: events %v", n, count)
	}
	if count[timeline.Eval] != 1 || count[timeline.Checkpoint] != 1+(n-1)/10 {
		t.Errorf("events between steps %v", count)
	}
	if stepNS != phaseNS {
		t.Errorf("phases sum to %d ns, steps to %d", phaseNS, stepNS)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// BenchmarkTimelineOverhead measures what recording the timeline costs a
// step, as `ringtrain bench train --threads 1` runs it (LeNet-5, batch 64,
// data loading included), in one process: windows of 100 steps alternate
// with the recorder off and on (off-on, then on-off, …), and it reports
// the median over rounds of on/off throughput, and the median ms per step
// of each. Run with -benchtime 1x.
func BenchmarkTimelineOverhead(b *testing.B) {
	spec := job.Default()
	spec.DataDir, spec.Threads = realMNIST(b), 1
	l, err := newBenchLoop(context.Background(), spec, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	defer l.close()
	rec, err := timeline.Open(b.TempDir(), "bench", timeline.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Close()
	window := func(on bool) float64 {
		l.e.tl = nil
		if on {
			l.e.tl = rec
		}
		start := time.Now()
		for range 100 {
			if err := l.step(); err != nil {
				b.Fatal(err)
			}
		}
		l.e.tl = nil
		return time.Since(start).Seconds() * 1000 / 100
	}
	for range b.N {
		window(false) // warm-up
		const rounds = 20
		var ratios, off, on []float64
		for r := range rounds {
			var tOff, tOn float64
			if r%2 == 0 {
				tOff, tOn = window(false), window(true)
			} else {
				tOn, tOff = window(true), window(false)
			}
			ratios = append(ratios, tOff/tOn)
			off, on = append(off, tOff), append(on, tOn)
		}
		for _, xs := range [][]float64{ratios, off, on} {
			slices.Sort(xs)
		}
		b.ReportMetric(median(ratios), "on/off")
		b.ReportMetric(ratios[0], "on/off-min")
		b.ReportMetric(ratios[rounds-1], "on/off-max")
		b.ReportMetric(median(off), "ms/step-off")
		b.ReportMetric(median(on), "ms/step-on")
	}
}
