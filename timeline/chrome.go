package timeline

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// The tracks (Chrome "threads") of a worker in a trace.
const (
	// StepsTrack holds the steps, their phases (nested in them) and what
	// happens between steps.
	StepsTrack = 1
	// CommTrack holds each bucket's all-reduce.
	CommTrack = 2
)

// ChromeStats is what WriteChrome wrote.
type ChromeStats struct {
	Workers, Events int
	// Origin is the wall-clock time of the trace's zero.
	Origin time.Time
}

// WriteChrome writes the workers' timelines to w in the Chrome trace event
// format (a JSON object whose "traceEvents" Perfetto and chrome://tracing
// open): every event a complete event ("ph":"X") with "ts" and "dur" in
// microseconds, each worker a process ("pid" 1, 2, … in the order given,
// named by a process_name metadata event) with two tracks ("tid"):
// StepsTrack and CommTrack, named by thread_name events. All workers share
// one time axis: each segment's events are placed by its wall-clock anchor,
// and ts 0 is the earliest anchor (otherData.origin_unix_ns).
func WriteChrome(w io.Writer, workers []Worker) (ChromeStats, error) {
	origin := int64(math.MaxInt64)
	for _, wk := range workers {
		for _, s := range wk.Segments {
			origin = min(origin, s.WallNS)
		}
	}
	if origin == math.MaxInt64 {
		origin = 0
	}
	st := ChromeStats{Workers: len(workers), Origin: time.Unix(0, origin).UTC()}
	bw := bufio.NewWriterSize(w, 256<<10)
	fmt.Fprintf(bw, `{"displayTimeUnit":"ms","otherData":{"origin_unix_ns":%d,"origin":%q},"traceEvents":[`, origin, st.Origin.Format(time.RFC3339Nano))
	first := true
	emit := func(e traceEvent) error {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if !first {
			bw.WriteByte(',')
		}
		first = false
		bw.WriteString("\n")
		bw.Write(b)
		return nil
	}
	for i, wk := range workers {
		pid := i + 1
		meta := []traceEvent{
			{Name: "process_name", Ph: "M", Pid: pid, Args: map[string]any{"name": wk.Name}},
			{Name: "process_sort_index", Ph: "M", Pid: pid, Args: map[string]any{"sort_index": i}},
			{Name: "thread_name", Ph: "M", Pid: pid, Tid: StepsTrack, Args: map[string]any{"name": "steps"}},
			{Name: "thread_sort_index", Ph: "M", Pid: pid, Tid: StepsTrack, Args: map[string]any{"sort_index": StepsTrack}},
			{Name: "thread_name", Ph: "M", Pid: pid, Tid: CommTrack, Args: map[string]any{"name": "comm"}},
			{Name: "thread_sort_index", Ph: "M", Pid: pid, Tid: CommTrack, Args: map[string]any{"sort_index": CommTrack}},
		}
		for _, m := range meta {
			if err := emit(m); err != nil {
				return st, err
			}
		}
		for _, s := range wk.Segments {
			off := s.WallNS - origin
			for _, ev := range s.Events {
				te := traceEvent{
					Name: ev.Kind.String(), Cat: category(ev.Kind), Ph: "X", Pid: pid, Tid: StepsTrack,
					Ts: micros(off + ev.Start), Dur: micros(ev.End - ev.Start),
					Args: map[string]any{"step": ev.Step},
				}
				switch ev.Kind {
				case Step:
					te.Name = "step " + strconv.FormatInt(ev.Step, 10)
				case AllReduce:
					te.Name = "allreduce bucket " + strconv.Itoa(int(ev.Bucket))
					te.Tid = CommTrack
					te.Args["bucket"], te.Args["bytes"] = ev.Bucket, ev.Bytes
				}
				if err := emit(te); err != nil {
					return st, err
				}
				st.Events++
			}
		}
	}
	bw.WriteString("\n]}\n")
	return st, bw.Flush()
}

// traceEvent is one event of the Chrome trace event format.
type traceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	Ts   json.Number    `json:"ts,omitempty"`
	Dur  json.Number    `json:"dur,omitempty"`
	Pid  int            `json:"pid"`
	Tid  int            `json:"tid"`
	Args map[string]any `json:"args,omitempty"`
}

// micros writes ns as microseconds, exactly (three decimals).
func micros(ns int64) json.Number {
	s := strconv.FormatInt(ns/1000, 10)
	if r := ns % 1000; r != 0 {
		s += "." + fmt.Sprintf("%03d", r)
	}
	return json.Number(s)
}

func category(k Kind) string {
	switch {
	case k == Step:
		return "step"
	case k.Phase():
		return "phase"
	case k == AllReduce:
		return "comm"
	}
	return "between steps"
}
