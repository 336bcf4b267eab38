package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/localcluster"
)

// trainRun is `ringtrain train` running in the background.
type trainRun struct {
	t     *testing.T
	cmd   *exec.Cmd
	out   string // its run directory
	coord chan string

	mu    sync.Mutex
	lines []string
	done  chan struct{}
	err   error
}

var coordinatorLine = regexp.MustCompile(`^cluster: etcd \S+, coordinator (\S+), `)

// startTrain starts `ringtrain train --out out args…`; the run is killed
// when the test ends if it has not exited by then.
func startTrain(t *testing.T, out string, args ...string) *trainRun {
	t.Helper()
	bin, data := binary(t)
	cmd := exec.Command(bin, append([]string{"train", "--out", out}, args...)...)
	cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &trainRun{t: t, cmd: cmd, out: out, coord: make(chan string, 1), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
			if m := coordinatorLine.FindStringSubmatch(sc.Text()); m != nil {
				r.coord <- m[1]
			}
		}
		r.err = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		// As Ctrl-C: the cluster stops its workers too.
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

func (r *trainRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func (r *trainRun) coordinatorLog() string {
	b, _ := os.ReadFile(filepath.Join(r.out, "coordinator.log"))
	return string(b)
}

// waitRunning waits for the coordinator's address and then for a ring of
// three workers that has taken steps, and returns the address.
func (r *trainRun) waitRunning() string {
	r.t.Helper()
	var addr string
	select {
	case addr = <-r.coord:
	case <-r.done:
		r.t.Fatalf("train exited: %v\n%s", r.err, r.output())
	case <-time.After(time.Minute):
		r.t.Fatalf("no coordinator address in a minute:\n%s", r.output())
	}
	r.poll(addr, "a running ring of 3", time.Minute, func(st *api.StatusReply) bool {
		return st.State == "running" && len(st.Ring) == 3 && st.Step > 0
	})
	return addr
}

// poll asks the coordinator at addr for its status, as `ringtrain status`
// does, every 100 ms until cond holds, and returns the time it took; it
// fails the test after timeout.
func (r *trainRun) poll(addr, what string, timeout time.Duration, cond func(*api.StatusReply) bool) time.Duration {
	r.t.Helper()
	start := time.Now()
	var last *api.StatusReply
	for {
		token, _ := readToken(filepath.Join(r.out, localcluster.StatusTokenFile), "status token")
		if st, err := fetchStatus(api.WithToken(context.Background(), token), []string{addr}, dialOption(nil), time.Second); err == nil {
			last = st
			if cond(st) {
				return time.Since(start)
			}
		}
		select {
		case <-r.done:
			r.t.Fatalf("train exited waiting for %s: %v\n%s", what, r.err, r.output())
		default:
		}
		if time.Since(start) > timeout {
			r.t.Fatalf("no %s after %v; last status %+v\n%s\n%s", what, timeout, last, r.output(), r.coordinatorLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// interrupt stops the run as Ctrl-C does and waits for it to exit.
func (r *trainRun) interrupt() {
	r.t.Helper()
	r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		r.t.Fatalf("train still running a minute after SIGINT:\n%s", r.output())
	}
}

// flagged returns the workers the status flags, as name → phase.
func flagged(st *api.StatusReply) map[string]string {
	m := map[string]string{}
	for _, w := range st.Workers {
		if w.Straggler != nil {
			m[w.Name] = w.Straggler.Phase
		}
	}
	return m
}

// Bursts of SIGSTOP that slow worker-1 down: stopped stopFor out of every
// stopFor+runFor, about half its time. Each stop is shorter than every
// deadline that declares a process dead or a ring broken: memberlist's
// probe timeout (100 ms, half its 200 ms probe interval; a failed probe
// then leaves 400 ms of suspicion to refute), the coordinator's 3 s of
// heartbeat silence and the ring's 3 s neighbour timeout.
const (
	stopFor = 40 * time.Millisecond
	runFor  = 40 * time.Millisecond
)

// stragglerFlagBound is how long the test gives the coordinator to flag
// the slowed worker: the detector's 2 s window and 5 s of hold, with room
// for a machine whose cores are shared.
const stragglerFlagBound = 30 * time.Second

// TestLocalClusterFlagsAStraggler runs `ringtrain train --workers 3` on
// MNIST twice. Clean, it flags nobody over 20 s of training (more than the
// detector's window and hold, 7 s). With worker-1 stopped about half its
// time by bursts of SIGSTOP, the coordinator flags it as a straggler in
// compute within stragglerFlagBound, and nobody else; `ringtrain status
// --watch` shows it; once the bursts end the flag clears. Both runs are
// interrupted (Ctrl-C) when the test has seen what it needs.
func TestLocalClusterFlagsAStraggler(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster twice")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the worker's process through /proc")
	}
	job := []string{"--workers", "3", "--epochs", "5", "--test-limit", "2000"}
	dir := t.TempDir()

	// Clean: nobody flagged.
	clean := startTrain(t, filepath.Join(dir, "clean"), job...)
	addr := clean.waitRunning()
	start := time.Now()
	clean.poll(addr, "20 s of clean training", time.Minute, func(st *api.StatusReply) bool {
		if f := flagged(st); len(f) > 0 {
			t.Errorf("clean run: flagged %v", f)
		}
		return time.Since(start) >= 20*time.Second
	})
	clean.interrupt()
	if log := clean.coordinatorLog(); strings.Contains(log, "straggler") {
		t.Errorf("clean run: the coordinator logged a straggler:\n%s", log)
	}

	// worker-1 slowed by bursts of SIGSTOP.
	slow := startTrain(t, filepath.Join(dir, "slow"), job...)
	addr = slow.waitRunning()
	pid := childWorker(slow.cmd.Process.Pid, "worker-1")
	if pid == 0 {
		t.Fatalf("no worker-1 process:\n%s", slow.output())
	}
	endBursts := stopBursts(t, pid, stopFor, runFor)
	took := slow.poll(addr, "worker-1 flagged in compute", stragglerFlagBound, func(st *api.StatusReply) bool {
		f := flagged(st)
		for name, phase := range f {
			if name != "worker-1" {
				t.Errorf("%s flagged in %s", name, phase)
			}
		}
		return f["worker-1"] == "compute"
	})
	t.Logf("worker-1 flagged as a straggler in compute %.1f s after the bursts began", took.Seconds())

	// `ringtrain status --watch`, not on a terminal: refreshes one after
	// another, separated by a blank line, until interrupted.
	bin, _ := binary(t)
	var watchOut strings.Builder
	watch := exec.Command(bin, "status", "--coordinator", addr, "--watch", "--interval", "500ms",
		"--status-token-file", filepath.Join(slow.out, localcluster.StatusTokenFile))
	watch.Stdout, watch.Stderr = &watchOut, &watchOut
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	watch.Process.Signal(syscall.SIGINT)
	err := watch.Wait()
	text := watchOut.String()
	if err != nil || strings.Count(text, "\n\njob ") < 1 || strings.Contains(text, "\x1b[") ||
		!regexp.MustCompile(`(?m)^worker-1 .* compute \d+\.\d×`).MatchString(text) {
		t.Errorf("status --watch: exit %v, want two refreshes or more, worker-1 flagged:\n%s", err, text)
	}

	endBursts()
	recovered := slow.poll(addr, "worker-1's flag cleared", time.Minute, func(st *api.StatusReply) bool {
		return len(flagged(st)) == 0
	})
	t.Logf("worker-1's flag cleared %.1f s after the bursts ended", recovered.Seconds())
	slow.interrupt()
	log := slow.coordinatorLog()
	for _, want := range []string{"worker-1 is a straggler: compute", "worker-1 is no longer a straggler"} {
		if !strings.Contains(log, want) {
			t.Errorf("the coordinator's log has no %q:\n%s", want, log)
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "straggler") || strings.Contains(line, "removed") {
			t.Log(line)
		}
	}
	if strings.Contains(log, "worker-0 is a straggler") || strings.Contains(log, "worker-2 is a straggler") {
		t.Errorf("the coordinator flagged a worker that was not slowed:\n%s", log)
	}
}

// stopBursts stops process pid for stopFor of every stopFor+runFor until
// the returned function is called (or the test ends), and leaves it
// running.
func stopBursts(t *testing.T, pid int, stopFor, runFor time.Duration) (end func()) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer syscall.Kill(pid, syscall.SIGCONT)
		for {
			select {
			case <-stop:
				return
			default:
			}
			syscall.Kill(pid, syscall.SIGSTOP)
			time.Sleep(stopFor)
			syscall.Kill(pid, syscall.SIGCONT)
			time.Sleep(runFor)
		}
	}()
	end = sync.OnceFunc(func() { close(stop); <-done })
	t.Cleanup(end)
	return end
}
