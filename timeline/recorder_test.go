package timeline

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// recordSteps records n steps of 1 ms phases (and an all-reduce of one
// bucket in each) starting at base, after the recorder's anchor.
func recordSteps(r *Recorder, base time.Time, first, n int64) {
	ms := func(i int64) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }
	for s := first; s < first+n; s++ {
		t := 10 * (s - first)
		r.Add(Data, s, ms(t), ms(t+1))
		r.Add(Forward, s, ms(t+1), ms(t+3))
		r.Add(Backward, s, ms(t+3), ms(t+6))
		r.AddAllReduce(s, 0, 4096, ms(t+4), ms(t+7))
		r.Add(Reduce, s, ms(t+6), ms(t+7))
		r.Add(Optimizer, s, ms(t+7), ms(t+8))
		r.Add(Step, s, ms(t), ms(t+8))
		r.Commit()
	}
}

func TestRecorderWritesWhatItRecords(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir, "worker-0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	recordSteps(r, base, 1, 3)
	r.Add(Eval, 3, base.Add(40*time.Millisecond), base.Add(50*time.Millisecond))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Add(Eval, 3, base, base) // after Close: nothing
	r.Commit()
	segs, err := ReadFile(filepath.Join(dir, File("worker-0")))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 {
		t.Fatalf("%d segments, want 1", len(segs))
	}
	s := segs[0]
	if s.Worker != "worker-0" || s.Version != Version || s.PID != os.Getpid() || s.Line != 1 {
		t.Errorf("header %+v", s.Header)
	}
	if d := time.Since(time.Unix(0, s.WallNS)); d < 0 || d > time.Minute {
		t.Errorf("wall clock anchor %v ago", d)
	}
	if len(s.Events) != 3*7+1 {
		t.Fatalf("%d events, want %d", len(s.Events), 3*7+1)
	}
	off := r.At(base)
	ev := s.Events[1]
	if ev.Kind != Forward || ev.Step != 1 || ev.Start != off+int64(time.Millisecond) || ev.End != off+3*int64(time.Millisecond) {
		t.Errorf("second event %+v (anchor offset %d)", ev, off)
	}
	ar := s.Events[3]
	if ar.Kind != AllReduce || ar.Bucket != 0 || ar.Bytes != 4096 || ar.End-ar.Start != 3*int64(time.Millisecond) {
		t.Errorf("all-reduce event %+v", ar)
	}
	if last := s.Events[len(s.Events)-1]; last.Kind != Eval || last.Step != 3 {
		t.Errorf("last event %+v", last)
	}
}

// Recording allocates nothing per event once the buffers have grown.
func TestRecorderAllocatesNothingPerStep(t *testing.T) {
	r, err := Open(t.TempDir(), "w", Options{MaxBytes: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	base := time.Now()
	step := int64(1)
	allocs := testing.AllocsPerRun(2000, func() {
		recordSteps(r, base, step, 1)
		step++
	})
	if allocs != 0 {
		t.Errorf("%.2f allocations per step recorded", allocs)
	}
}

// Files rotate past MaxBytes: two files at most, each within the bound plus
// a step, together holding the last steps.
func TestRecorderRotates(t *testing.T) {
	dir := t.TempDir()
	const max = 4000
	r, err := Open(dir, "w", Options{MaxBytes: max, FlushBytes: 512})
	if err != nil {
		t.Fatal(err)
	}
	recordSteps(r, time.Now(), 1, 200)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		fi, _ := e.Info()
		if fi.Size() > max+1000 {
			t.Errorf("%s holds %d bytes, bound %d and a step", e.Name(), fi.Size(), max)
		}
	}
	if !slices.Equal(names, []string{File("w"), Previous("w")}) {
		t.Fatalf("files %v", names)
	}
	ws, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || len(ws[0].Segments) != 2 {
		t.Fatalf("read %+v", ws)
	}
	var steps []int64
	for _, s := range ws[0].Segments {
		for _, ev := range s.Events {
			if ev.Kind == Step {
				steps = append(steps, ev.Step)
			}
		}
	}
	if len(steps) < 10 || steps[len(steps)-1] != 200 {
		t.Fatalf("steps kept %v", steps)
	}
	for i := 1; i < len(steps); i++ {
		if steps[i] != steps[i-1]+1 {
			t.Fatalf("steps kept are not the last ones in order: %v", steps)
		}
	}
}

// A process that finds the file's last line cut off drops it and appends
// a segment of its own.
func TestRecorderRepairsACutOffLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, File("w"))
	torn := `{"timeline":1,"worker":"w","pid":1,"wall_ns":5}` + "\n" + `{"ev":"step","step":1,"t":0,"d":9}` + "\n" + `{"ev":"forw`
	if err := os.WriteFile(path, []byte(torn), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, "w", Options{})
	if err != nil {
		t.Fatal(err)
	}
	recordSteps(r, time.Now(), 2, 1)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || len(segs[0].Events) != 1 || len(segs[1].Events) != 7 || segs[1].Line != 3 {
		t.Fatalf("segments %+v", segs)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), `"forw`+"\n") || strings.Count(string(b), `{"timeline"`) != 2 {
		t.Fatalf("file:\n%s", b)
	}
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	var r *Recorder
	r.Add(Step, 1, time.Now(), time.Now())
	r.AddAllReduce(1, 0, 1, time.Now(), time.Now())
	r.Commit()
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRecorderStep is the cost of recording one step of a cluster
// worker (five phases, the step, one bucket's all-reduce) and writing it
// out: what the timeline adds to a step.
func BenchmarkRecorderStep(b *testing.B) {
	r, err := Open(b.TempDir(), "w", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	base := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		recordSteps(r, base, int64(i)+1, 1)
	}
}
