package main

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// chromeTrace is the part of an exported trace the tests read.
type chromeTrace struct {
	TraceEvents []struct {
		Name, Cat, Ph string
		Ts, Dur       float64
		Pid, Tid      int
		Args          map[string]any
	}
}

func readTrace(t *testing.T, path string) chromeTrace {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tr chromeTrace
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return tr
}

// `train --workers 2` leaves each worker's timeline in the run directory;
// `ringtrain trace` makes one trace of them, a process per worker, whose
// steps' phases sum to the steps' times within 5%.
func TestTraceOfALocalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster")
	}
	bin, data := binary(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(bin, "train", "--workers", "2", "--epochs", "1", "--train-limit", "1280", "--test-limit", "500", "--out", out)
	cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	for _, f := range []string{"worker-0.jsonl", "worker-1.jsonl"} {
		if _, err := os.Stat(filepath.Join(out, "timeline", f)); err != nil {
			t.Error(err)
		}
	}
	msg, err := runCLI(t, "trace", "--dir", out)
	if err != nil || !strings.Contains(msg, "of 2 workers") {
		t.Fatalf("trace: %v\n%s", err, msg)
	}
	tr := readTrace(t, filepath.Join(out, "trace.json"))
	procs := map[int]string{}
	type sums struct{ step, phases float64 }
	perStep := map[[2]int]*sums{}
	comm := map[int]int{}
	for _, e := range tr.TraceEvents {
		if e.Ph == "M" {
			if e.Name == "process_name" {
				procs[e.Pid] = e.Args["name"].(string)
			}
			continue
		}
		step, _ := e.Args["step"].(float64)
		k := [2]int{e.Pid, int(step)}
		if perStep[k] == nil {
			perStep[k] = &sums{}
		}
		switch e.Cat {
		case "step":
			perStep[k].step += e.Dur
		case "phase":
			perStep[k].phases += e.Dur
		case "comm":
			comm[e.Pid]++
		}
	}
	if len(procs) != 2 || procs[1] != "worker-0" || procs[2] != "worker-1" {
		t.Fatalf("processes %v", procs)
	}
	for pid := 1; pid <= 2; pid++ {
		if comm[pid] < 20 {
			t.Errorf("%s: %d all-reduces in 20 steps", procs[pid], comm[pid])
		}
		for s := 1; s <= 20; s++ {
			v := perStep[[2]int{pid, s}]
			if v == nil || v.step == 0 || math.Abs(v.phases-v.step) > 0.05*v.step {
				t.Errorf("%s step %d: %+v µs", procs[pid], s, v)
			}
		}
	}
}

// Single-node training records a timeline unless told not to; trace
// writes it where -o says, and a malformed timeline is an error naming the
// file and the line.
func TestTraceOfOneProcess(t *testing.T) {
	_, data := binary(t)
	t.Setenv("RINGTRAIN_DATA", data)
	dir := t.TempDir()
	on, off := filepath.Join(dir, "on"), filepath.Join(dir, "off")
	for _, args := range [][]string{{"--out", on}, {"--out", off, "--timeline=false"}} {
		if o, err := runCLI(t, append([]string{"train", "--model", "mlp", "--epochs", "1", "--train-limit", "320", "--test-limit", "100"}, args...)...); err != nil {
			t.Fatalf("%v\n%s", err, o)
		}
	}
	if _, err := os.Stat(filepath.Join(off, "timeline")); !os.IsNotExist(err) {
		t.Errorf("--timeline=false left a timeline: %v", err)
	}
	traceFile := filepath.Join(dir, "t.json")
	if o, err := runCLI(t, "trace", "--dir", on, "-o", traceFile); err != nil || !strings.Contains(o, "of 1 worker from") {
		t.Fatalf("%v\n%s", err, o)
	}
	tr := readTrace(t, traceFile)
	steps := 0
	for _, e := range tr.TraceEvents {
		if e.Cat == "step" {
			steps++
		}
	}
	if steps != 5 {
		t.Errorf("%d steps in the trace, want 5", steps)
	}

	f, err := os.OpenFile(filepath.Join(on, "timeline", "worker-0.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"ev":"forward","step":"six"}` + "\n")
	f.Close()
	lines := strings.Count(mustRead(t, filepath.Join(on, "timeline", "worker-0.jsonl")), "\n")
	_, err = runCLI(t, "trace", "--dir", on)
	want := filepath.Join(on, "timeline", "worker-0.jsonl") + ":" + itoa(lines) + ":"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("malformed timeline: error %v, want one naming %s", err, want)
	}
	if _, err := runCLI(t, "trace", "--dir", off); err == nil || !strings.Contains(err.Error(), "no timelines in") {
		t.Errorf("run without a timeline: error %v", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
