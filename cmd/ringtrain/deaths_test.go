package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
)

// falseDeath matches a generation (or a pause) of the coordinator's log
// caused by a worker declared dead by memberlist or silent by the
// heartbeat deadline.
var falseDeath = regexp.MustCompile(`because of .*\b(?:dead|silent) (worker-\d+)`)

// suspicion is the coordinator's log line for a worker memberlist called
// gone before anything confirmed it.
const suspicion = "stopped answering probes; waiting for"

// deaths returns the workers that generations in log blame on a death.
func deaths(log string) []string {
	var names []string
	for _, m := range falseDeath.FindAllStringSubmatch(log, -1) {
		names = append(names, m[1])
	}
	return names
}

// cpuHogs starts n processes that spin on a core each (`yes` into
// /dev/null) until the test ends: a machine whose cores are all busy.
func cpuHogs(t *testing.T, n int) {
	t.Helper()
	for range n {
		cmd := exec.Command("yes")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
}

// envCount reads a positive count from the environment; 0 when unset.
func envCount(t *testing.T, name string) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a count", name, s)
	}
	return n
}

// trainJob is the short local job of the tests in this file.
var trainJob = []string{"--workers", "3", "--epochs", "5", "--test-limit", "2000"}

// TestLocalClusterLoadedStarts measures how often a live worker is
// declared dead while a local cluster starts on a machine whose cores are
// all busy: RINGTRAIN_LOADED_STARTS times, with as many CPU hogs as cores,
// `ringtrain train --workers 3` starts, trains 3 s and is interrupted; a
// generation caused by a dead or silent worker is a false death (nobody
// was killed). Skipped unless RINGTRAIN_LOADED_STARTS is set: it is a
// measurement, docs/BENCHMARKS.md has the command.
func TestLocalClusterLoadedStarts(t *testing.T) {
	starts := envCount(t, "RINGTRAIN_LOADED_STARTS")
	if starts == 0 || testing.Short() {
		t.Skip("a measurement: set RINGTRAIN_LOADED_STARTS")
	}
	cpuHogs(t, runtime.NumCPU())
	dir := t.TempDir()
	var bad, suspected int
	for i := range starts {
		r := startTrain(t, filepath.Join(dir, strconv.Itoa(i)), trainJob...)
		addr := r.waitRunning()
		start := time.Now()
		r.poll(addr, "3 s of training", time.Minute, func(*api.StatusReply) bool { return time.Since(start) >= 3*time.Second })
		r.interrupt()
		log := r.coordinatorLog()
		if d := deaths(log); len(d) > 0 {
			bad++
			t.Logf("start %d: live workers declared dead: %v", i, d)
		}
		if n := strings.Count(log, suspicion); n > 0 {
			suspected++
			t.Logf("start %d: memberlist called a worker gone %d times, unconfirmed", i, n)
		}
	}
	t.Logf("%d of %d loaded starts declared a live worker dead; in %d memberlist's suspicion was not confirmed", bad, starts, suspected)
	if bad > 0 {
		t.Errorf("%d of %d loaded starts declared a live worker dead", bad, starts)
	}
}

// TestClusterKillDetection measures how long a cluster takes to publish a
// ring without a SIGKILLed worker: RINGTRAIN_KILL_TRIALS times (with CPU
// hogs on every core if RINGTRAIN_KILL_LOAD is set), a cluster of separate
// processes (etcd, a coordinator, 3 workers, as TestClusterSurvivesWorkerKill,
// where nobody restarts a dead worker) trains, worker-1 is killed after
// 20 steps, and the coordinator's status is polled every 50 ms until a
// generation of the 2 survivors. Skipped unless RINGTRAIN_KILL_TRIALS is
// set: it is a measurement.
func TestClusterKillDetection(t *testing.T) {
	trials := envCount(t, "RINGTRAIN_KILL_TRIALS")
	if trials == 0 || testing.Short() {
		t.Skip("a measurement: set RINGTRAIN_KILL_TRIALS")
	}
	if os.Getenv("RINGTRAIN_KILL_LOAD") != "" {
		cpuHogs(t, runtime.NumCPU())
	}
	spec := clusterJob("killdetect", 3)
	spec.MinWorkers = 2
	var took []time.Duration
	for i := range trials {
		c := newTestCluster(t, spec)
		c.startJob(3)
		st, _ := c.waitFor("a running ring of 3", 2*time.Minute, func(st *api.StatusReply) bool {
			return st.State == "running" && st.Step >= 20 && ringSize(st) == 3
		})
		gen := st.Generation
		c.workers["worker-1"].kill()
		_, d := c.waitFor("a new generation without worker-1", time.Minute, func(st *api.StatusReply) bool {
			return st.Generation > gen && ringSize(st) == 2
		})
		took = append(took, d)
		t.Logf("trial %d: a ring of the 2 survivors %v after the kill", i, d.Round(time.Millisecond))
		c.killAll()
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("detection of a SIGKILLed worker over %d trials: min %v, median %v, max %v", trials,
		took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

// TestLocalClusterSurvivesStopBursts SIGSTOPs worker-1 of `ringtrain
// train --workers 3` for burstStop out of every burstStop+burstRun for 10
// s: a live process that the scheduler (a loaded machine, a stop-the-world
// pause) holds back for a while, again and again. Nobody may be declared
// dead: no generation of the coordinator's log is caused by a dead or
// silent worker. The time limits only catch hangs.
func TestLocalClusterSurvivesStopBursts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the worker's process through /proc")
	}
	const burstStop, burstRun = 150 * time.Millisecond, 150 * time.Millisecond
	r := startTrain(t, filepath.Join(t.TempDir(), "run"), trainJob...)
	addr := r.waitRunning()
	pid := childWorker(r.cmd.Process.Pid, "worker-1")
	if pid == 0 {
		t.Fatalf("no worker-1 process:\n%s", r.output())
	}
	end := stopBursts(t, pid, burstStop, burstRun)
	start := time.Now()
	r.poll(addr, "10 s of bursts", time.Minute, func(*api.StatusReply) bool { return time.Since(start) >= 10*time.Second })
	end()
	// A death declared at the end of the last burst still shows.
	time.Sleep(time.Second)
	r.interrupt()
	log := r.coordinatorLog()
	if d := deaths(log); len(d) > 0 {
		t.Errorf("a live worker under SIGSTOP bursts was declared dead: %v\n%s", d, log)
	}
	t.Logf("memberlist called a worker gone %d times in 10 s of bursts; none confirmed", strings.Count(log, suspicion))
}
