package faults

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRecoveries(t *testing.T) {
	s := func(at float64, leader string, gen uint64, step int64, ring int, state string) Sample {
		return Sample{At: time.Duration(at * float64(time.Second)), Leader: leader, State: state, Generation: gen, Step: step, Ring: ring}
	}
	samples := []Sample{
		s(0.9, "c0", 1, 40, 4, "running"),
		s(1.5, "c0", 2, 40, 3, "waiting"), // the ring without the killed worker
		s(2.5, "c0", 3, 40, 4, "running"), // its replacement joined
		s(2.8, "c0", 3, 45, 4, "running"),
		s(4.0, "c1", 4, 45, 4, "running"), // the standby leads
		s(4.5, "c1", 4, 50, 4, "running"),
	}
	fired := []Fired{
		{Event: Event{Kind: KillWorker, For: time.Second}, At: time.Second, Targets: []string{"worker-1"}},
		{Event: Event{Kind: KillLeader, For: time.Second}, At: 3 * time.Second, Targets: []string{"c0"}},
		{Event: Event{Kind: Pause, For: 10 * time.Second}, At: 3 * time.Second, Targets: []string{"etcd-0"}},
		{Event: Event{Kind: KillWorker, For: time.Second}, At: 0, Targets: []string{"worker-2"}}, // before any sample
	}
	Recoveries(fired, samples, 4)
	want := []struct{ detect, recover time.Duration }{
		{500 * time.Millisecond, 1800 * time.Millisecond},
		{time.Second, 1500 * time.Millisecond},
		{-1, -1}, // nothing to detect; the pause outlasts the samples
		{-1, -1},
	}
	for i, w := range want {
		round := func(d time.Duration) time.Duration {
			if d < 0 {
				return d
			}
			return d.Round(time.Millisecond)
		}
		if d, r := round(fired[i].Detect), round(fired[i].Recover); d != w.detect || r != w.recover {
			t.Errorf("fault %d: detected %v, recovered %v; want %v, %v", i, d, r, w.detect, w.recover)
		}
	}
}

func TestLastDigest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker-0.log")
	log := "generation 1: rank 0 of 2\n" +
		"2026/01/02 03:04:05 worker-0: trained to the end: step 100, parameters 00000000000000aa\n" +
		"generation 2: rank 0 of 2\n" +
		"2026/01/02 03:04:09 worker-0: trained to the end: step 100, parameters 00000000000000bb\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, ok := lastDigest(path); !ok || d != (Digest{100, "00000000000000bb"}) {
		t.Fatalf("lastDigest = %v, %v", d, ok)
	}
	if _, ok := lastDigest(filepath.Join(t.TempDir(), "none.log")); ok {
		t.Fatal("a digest from a missing log")
	}
}

// The summary counts the schedules, not the uninterrupted run, and names
// the seeds that broke an invariant.
func TestReportSummary(t *testing.T) {
	r := Report{Results: []Result{
		{Seed: 7, Uninterrupted: true, Elapsed: 40 * time.Second},
		{Seed: 7, Elapsed: 20 * time.Second},
		{Seed: 8, Elapsed: 30 * time.Second, Violations: []Violation{{InvEnds, "x"}, {InvReplicas, "y"}}},
	}, Skipped: []string{"disk-full: needs root"}}
	r.Summarize()
	if r.Violations != 2 || r.Slowest != 8 || r.SlowestS != 30 {
		t.Fatalf("summary: %d violations, slowest seed %d at %vs", r.Violations, r.Slowest, r.SlowestS)
	}
	want := "2 schedules (and an uninterrupted run), 2 violations; slowest: seed 8, 30.0s\nseeds with violations: 8\nskipped disk-full: needs root\n"
	if got := r.Text(); got != want {
		t.Fatalf("Text:\n%s\nwant:\n%s", got, want)
	}
}
