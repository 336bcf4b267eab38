package timeline

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// twoWorkers is a timeline of two workers whose anchors are 5 ms apart.
func twoWorkers() []Worker {
	ms := int64(time.Millisecond)
	steps := func(step int64) []Event {
		return []Event{
			{Kind: Data, Step: step, Start: 0, End: 1 * ms},
			{Kind: Forward, Step: step, Start: 1 * ms, End: 3 * ms},
			{Kind: Backward, Step: step, Start: 3 * ms, End: 6 * ms},
			{Kind: AllReduce, Step: step, Bucket: 0, Bytes: 4096, Start: 4 * ms, End: 6*ms + 500},
			{Kind: AllReduce, Step: step, Bucket: 1, Bytes: 8192, Start: 6*ms + 500, End: 7 * ms},
			{Kind: Reduce, Step: step, Start: 6 * ms, End: 7 * ms},
			{Kind: Optimizer, Step: step, Start: 7 * ms, End: 8 * ms},
			{Kind: Step, Step: step, Start: 0, End: 8 * ms},
			{Kind: Checkpoint, Step: step, Start: 9 * ms, End: 20 * ms},
		}
	}
	return []Worker{
		{Name: "worker-0", Segments: []Segment{{Header: Header{Version: 1, Worker: "worker-0", WallNS: 1_000_000_000}, Events: steps(1)}}},
		{Name: "worker-1", Segments: []Segment{{Header: Header{Version: 1, Worker: "worker-1", WallNS: 1_000_000_000 + 5*ms}, Events: steps(1)}}},
	}
}

// chromeTrace is the part of the Chrome trace event format tests read.
type chromeTrace struct {
	TraceEvents []struct {
		Name string         `json:"name"`
		Cat  string         `json:"cat"`
		Ph   string         `json:"ph"`
		Ts   *float64       `json:"ts"`
		Dur  *float64       `json:"dur"`
		Pid  *int           `json:"pid"`
		Tid  *int           `json:"tid"`
		Args map[string]any `json:"args"`
	} `json:"traceEvents"`
	OtherData struct {
		OriginUnixNS int64 `json:"origin_unix_ns"`
	} `json:"otherData"`
}

func TestWriteChromeIsATrace(t *testing.T) {
	var buf bytes.Buffer
	st, err := WriteChrome(&buf, twoWorkers())
	if err != nil {
		t.Fatal(err)
	}
	if st.Workers != 2 || st.Events != 18 || !st.Origin.Equal(time.Unix(1, 0)) {
		t.Errorf("stats %+v", st)
	}
	if !json.Valid(buf.Bytes()) {
		t.Fatalf("not JSON:\n%s", buf.Bytes())
	}
	var tr chromeTrace
	if err := json.Unmarshal(buf.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.OtherData.OriginUnixNS != 1e9 {
		t.Errorf("origin %d", tr.OtherData.OriginUnixNS)
	}
	procs := map[int]string{}
	threads := map[[2]int]string{}
	var x int
	for _, e := range tr.TraceEvents {
		if e.Name == "" || e.Pid == nil || e.Tid == nil {
			t.Fatalf("event lacks name, pid or tid: %+v", e)
		}
		switch e.Ph {
		case "M":
			switch e.Name {
			case "process_name":
				procs[*e.Pid] = e.Args["name"].(string)
			case "thread_name":
				threads[[2]int{*e.Pid, *e.Tid}] = e.Args["name"].(string)
			}
		case "X":
			x++
			if e.Ts == nil || e.Dur == nil || *e.Ts < 0 || *e.Dur < 0 || e.Cat == "" || e.Args["step"] == nil {
				t.Fatalf("complete event lacks ts, dur, cat or its step: %+v", e)
			}
			if _, ok := procs[*e.Pid]; !ok {
				t.Fatalf("event of pid %d before its process_name", *e.Pid)
			}
			comm := e.Cat == "comm"
			if comm != (*e.Tid == CommTrack) || (comm && (e.Args["bucket"] == nil || e.Args["bytes"] == nil)) {
				t.Errorf("event on the wrong track or without its bucket: %+v", e)
			}
			// worker-1's anchor is 5 ms later: the same event is 5000 µs later.
			if e.Name == "step 1" && *e.Dur != 8000 || e.Name == "allreduce bucket 0" && *e.Dur != 2000.5 {
				t.Errorf("%s lasts %v µs", e.Name, *e.Dur)
			}
			if e.Name == "forward" && *e.Ts != 1000+5000*float64(*e.Pid-1) {
				t.Errorf("forward of pid %d at %v µs", *e.Pid, *e.Ts)
			}
		default:
			t.Errorf("event of phase %q", e.Ph)
		}
	}
	if x != 18 {
		t.Errorf("%d complete events, want 18", x)
	}
	if procs[1] != "worker-0" || procs[2] != "worker-1" || len(procs) != 2 {
		t.Errorf("processes %v", procs)
	}
	for pid := 1; pid <= 2; pid++ {
		if threads[[2]int{pid, StepsTrack}] != "steps" || threads[[2]int{pid, CommTrack}] != "comm" {
			t.Errorf("tracks %v", threads)
		}
	}
}

func TestWriteChromeOfNothing(t *testing.T) {
	var buf bytes.Buffer
	if _, err := WriteChrome(&buf, nil); err != nil || !json.Valid(buf.Bytes()) {
		t.Fatalf("%v\n%s", err, buf.Bytes())
	}
}
