package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/etcdlocal"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/worker"
)

// localCluster is `ringtrain train --workers N`: an embedded etcd (data in
// the run directory), a coordinator in this process, and N worker
// processes of this binary on loopback — the cluster's code paths, real
// gRPC, memberlist and etcd, on one machine.
type localCluster struct {
	spec     job.Spec
	out      string
	resume   bool
	progress *progress
	logf     func(string, ...any)

	maxRestarts int // per worker, for workers that die while the job runs

	// The worker processes: the current one of each slot, how many times
	// each slot was restarted, and how many processes have not yet been
	// seen to exit (by watch or reap).
	workers  []*exec.Cmd
	restarts []int
	alive    int
	exited   chan workerExit
	start    func(slot int) error
	reaped   bool // reap has run
	shown    shown
}

// Subdirectories and files of a cluster run directory.
const (
	etcdDir     = "etcd"
	etcdLog     = "etcd.log"
	storeSubdir = "checkpoints"
)

func (lc *localCluster) run(ctx context.Context) (runlog.Summary, error) {
	spec, out := lc.spec, lc.out
	launch := time.Now()
	sum := runlog.Summary{Model: spec.Model, Dataset: spec.Dataset, Epochs: spec.Epochs, BatchSize: spec.BatchSize, Seed: spec.Seed}
	if err := worker.CheckJob(spec); err != nil {
		return sum, err
	}
	exe, err := os.Executable()
	if err != nil {
		return sum, fmt.Errorf("finding this binary to start workers: %w", err)
	}
	_, statErr := os.Stat(filepath.Join(out, etcdDir))
	switch {
	case statErr == nil && !lc.resume:
		return sum, fmt.Errorf("%s already holds a cluster run; pass --resume to continue it or choose another --out", out)
	case statErr != nil && lc.resume:
		lc.logf("no cluster run in %s: starting from the beginning", out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return sum, err
	}
	dataDir := spec.DataDir
	if dataDir == "" {
		dataDir = filepath.Join(dataset.DefaultDataDir(), "mnist")
	}
	if err := dataset.EnsureMNIST(ctx, dataDir, lc.logf); err != nil {
		return sum, err
	}
	y, err := spec.YAML()
	if err != nil {
		return sum, err
	}
	if err := runlog.WriteFile(out, worker.JobFile, y); err != nil {
		return sum, err
	}

	etcd, err := etcdlocal.Start(etcdlocal.Config{Dir: filepath.Join(out, etcdDir), LogPath: filepath.Join(out, etcdLog)})
	if err != nil {
		return sum, err
	}
	defer etcd.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return sum, fmt.Errorf("etcd: %w", err)
	}
	defer cli.Close()
	rlog, err := runlog.Open(out)
	if err != nil {
		return sum, err
	}
	defer rlog.Close()
	if lc.resume {
		// Records past the checkpoint the job resumes from are replaced by
		// the resumed run's.
		store, err := checkpoint.OpenShared(filepath.Join(out, storeSubdir))
		if err != nil {
			return sum, err
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		latest, ok, err := checkpoint.NewEtcdCommitter(cli, coordinator.JobName(spec), store).Latest(lctx)
		cancel()
		if err != nil {
			return sum, err
		}
		if ok {
			if err := rlog.TruncateAfter(latest.Step); err != nil {
				return sum, err
			}
		}
	}

	// The coordinator's own lines go to the run directory's log file; the
	// progress display shows the job's state.
	clog, err := os.OpenFile(filepath.Join(out, "coordinator.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return sum, err
	}
	defer clog.Close()
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	// The coordinator outlives an interrupt of ctx long enough to have the
	// ring checkpoint where it stands (see checkpointNow).
	cctx, cancelCoord := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCoord()
	c, err := startCoordinator(cctx, coordinatorSetup{
		name: "coordinator", spec: spec, token: token, etcd: cli, storeDir: filepath.Join(out, storeSubdir),
		listen: "127.0.0.1:0", gossip: "127.0.0.1:0", advertise: "127.0.0.1", runLog: rlog,
		logf: func(f string, a ...any) {
			fmt.Fprintf(clog, "%s %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(f, a...))
		},
	})
	if err != nil {
		return sum, err
	}
	stopCoordinator := sync.OnceValue(c.stop)
	defer stopCoordinator()

	threads := spec.Threads
	if threads == 0 {
		threads = max(1, runtime.GOMAXPROCS(0)/spec.Workers)
	}
	lc.workers = make([]*exec.Cmd, spec.Workers)
	lc.restarts = make([]int, spec.Workers)
	lc.exited = make(chan workerExit, spec.Workers*(lc.maxRestarts+1))
	defer func() { lc.reap(0) }()
	lc.start = func(slot int) error {
		port, err := freePort()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("worker-%d", slot)
		// A restarted worker appends to its predecessor's log.
		logf, err := os.OpenFile(filepath.Join(out, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command(exe, "worker", "--coordinator", c.controlAddr, "--name", name,
			"--listen", "127.0.0.1:"+strconv.Itoa(port), "--gossip", "127.0.0.1:0", "--advertise", "127.0.0.1",
			"--http", "", "--data-dir", dataDir, "--threads", strconv.Itoa(threads))
		cmd.Env = append(os.Environ(), tokenEnv+"="+token)
		cmd.Stdout, cmd.Stderr = logf, logf
		detach(cmd)
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("starting %s: %w", name, err)
		}
		lc.workers[slot] = cmd
		lc.alive++
		go func() {
			err := cmd.Wait()
			logf.Close()
			lc.exited <- workerExit{name: name, slot: slot, cmd: cmd, err: err}
		}()
		return nil
	}
	for i := range lc.workers {
		if err := lc.start(i); err != nil {
			return sum, err
		}
	}
	lc.logf("cluster: etcd %s, coordinator %s, %d workers × %d threads (logs in %s)",
		etcd.Endpoints()[0], c.controlAddr, spec.Workers, threads, out)

	runErr := lc.watch(ctx, c)
	st := c.srv.StatusReply()
	// A complete job's workers exit by themselves once told; otherwise (or
	// if they linger) SIGTERM makes them leave the job.
	grace := 10 * time.Second
	if runErr != nil {
		grace = 0
	}
	lc.reap(grace)
	// The coordinator adds to the run log; it is done before the log is
	// read for the summary and the plot.
	stopCoordinator()
	sum.Steps = int(st.Step)
	sum.WallSeconds = time.Since(launch).Seconds()
	sum.ImagesPerSecond = st.ImagesPerSecond
	sum.Threads = threads
	sum.Resumed = lc.resume && statErr == nil
	sum.Checkpoint = st.LastCheckpoint
	if e := st.LastEval; e != nil {
		sum.TestAccuracy, sum.TestLoss = e.Accuracy, e.Loss
	}
	for _, r := range rlog.Records() {
		if r.Kind == "eval" && r.Accuracy >= 0.99 {
			sum.SecondsTo99 = r.Time.Sub(launch).Seconds()
			break
		}
	}
	sum.PeakRSSBytes = runlog.PeakRSS()
	if errors.Is(runErr, context.Canceled) {
		sum.Interrupted = true
		runErr = fmt.Errorf("%w: the cluster stopped; checkpoint %s is committed", worker.ErrInterrupted, st.LastCheckpoint)
	}
	if err := runlog.WriteSummary(out, sum); err != nil && runErr == nil {
		runErr = err
	}
	if err := runlog.WritePlot(out, spec.Model, rlog.Records()); err != nil && runErr == nil {
		runErr = err
	}
	return sum, runErr
}

type workerExit struct {
	name string
	slot int
	cmd  *exec.Cmd
	err  error
}

// gone records that a worker process has exited: its slot no longer
// holds a process to signal, unless a successor took it already.
func (lc *localCluster) gone(e workerExit) {
	lc.alive--
	if lc.workers[e.slot] == e.cmd {
		lc.workers[e.slot] = nil
	}
}

// reap waits up to grace for the workers still running to exit, then
// sends them SIGTERM (they leave the job) and, 30 s later, SIGKILL. It
// returns once every one has exited; it is a no-op the second time.
func (lc *localCluster) reap(grace time.Duration) {
	if lc.reaped {
		return
	}
	lc.reaped = true
	timer := time.NewTimer(grace)
	defer timer.Stop()
	signal := func(sig os.Signal) {
		for _, w := range lc.workers {
			if w != nil {
				w.Process.Signal(sig)
			}
		}
	}
	for signalled := false; lc.alive > 0; {
		select {
		case e := <-lc.exited:
			lc.gone(e)
		case <-timer.C:
			if signalled {
				signal(os.Kill)
				continue
			}
			signal(syscall.SIGTERM)
			signalled = true
			timer.Reset(30 * time.Second)
		}
	}
}

// watch shows the job's progress until it is complete (nil), ctx ends, or
// the coordinator fails. A worker that dies while the job runs is started
// again under its name, at most maxRestarts times, and rejoins the ring as
// a replacement pod would on Kubernetes; meanwhile the job carries on
// without it while it has min_workers.
func (lc *localCluster) watch(ctx context.Context, c *runningCoordinator) error {
	spec := lc.spec
	samples, _ := dataset.TrainSamples(spec.Dataset, spec.TrainLimit)
	perStep := spec.BatchPerWorker() * spec.Workers
	steps := (samples + perStep - 1) / perStep
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lc.shown = shown{epoch: -1, eval: -1}
	for {
		select {
		case <-ctx.Done():
			lc.checkpointNow(c)
			return ctx.Err()
		case <-c.srv.Done():
			lc.show(c.srv.StatusReply(), steps)
			return nil
		case err := <-c.runErr:
			c.runErr <- err
			if err == nil {
				return ctx.Err()
			}
			return err
		case e := <-lc.exited:
			lc.gone(e)
			if e.err != nil {
				msg := fmt.Sprintf("%s exited: %v (see %s.log)", e.name, e.err, filepath.Join(lc.out, e.name))
				if lc.restarts[e.slot] < lc.maxRestarts && ctx.Err() == nil {
					lc.restarts[e.slot]++
					msg += fmt.Sprintf("; restarting it (%d of %d)", lc.restarts[e.slot], lc.maxRestarts)
					if err := lc.start(e.slot); err != nil {
						return err
					}
				}
				lc.progress.notice(msg)
				// Without restarts left, too few workers would leave the
				// job waiting for ever.
				if need, _ := spec.WorkerRange(); lc.alive < need && lc.alive > 0 {
					return fmt.Errorf("%s exited %d times; the job needs %d workers and %d remain: stopping (the logs are in %s; --resume continues from the last checkpoint)",
						e.name, lc.restarts[e.slot]+1, need, lc.alive, lc.out)
				}
			}
			if lc.alive == 0 {
				return fmt.Errorf("every worker exited before the job was complete (see the logs in %s)", lc.out)
			}
		case <-tick.C:
			lc.show(c.srv.StatusReply(), steps)
		}
	}
}

// checkpointNow has the running ring checkpoint a second's worth of steps
// ahead of where it stands and waits (at most 20 s) until the checkpoint is
// committed, so that --resume continues from there, as after a Ctrl-C of
// single-node training.
func (lc *localCluster) checkpointNow(c *runningCoordinator) {
	st := c.srv.StatusReply()
	perStep := float64(lc.spec.BatchPerWorker() * max(len(st.Ring), 1))
	ahead := max(5, int64(st.ImagesPerSecond/perStep))
	step, err := c.srv.RequestCheckpoint(ahead)
	if err != nil {
		return
	}
	lc.progress.notice(fmt.Sprintf("interrupted: checkpointing the ring at step %d", step))
	want := checkpoint.NameForStep(int(step))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if st := c.srv.StatusReply(); st.LastCheckpoint >= want || st.State != "running" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	lc.progress.notice("the checkpoint was not committed in time; --resume continues from the one before")
}

// shown is what the progress display last showed.
type shown struct {
	epoch, eval int // the epoch in progress and the last one evaluated; -1 for none
	reason      string
}

func (lc *localCluster) show(st *api.StatusReply, steps int) {
	sh := &lc.shown
	p := lc.progress
	if st.Reason != sh.reason && st.State != "running" {
		p.notice(fmt.Sprintf("cluster: %s", st.Reason))
	}
	sh.reason = st.Reason
	if e := st.LastEval; e != nil && e.Epoch > sh.eval {
		sh.eval = e.Epoch
		p.EpochEnd(worker.EvalStats{Epoch: e.Epoch, Loss: e.Loss, Accuracy: e.Accuracy})
	}
	if st.State != "running" || st.Epoch >= lc.spec.Epochs {
		return
	}
	if st.Epoch != sh.epoch {
		sh.epoch = st.Epoch
		p.EpochStart(st.Epoch, lc.spec.Epochs, steps, int(st.Step)-st.Epoch*steps)
	}
	var loss, acc, lr float64
	n := 0
	for _, w := range st.Workers {
		if w.Stats != nil && w.Rank >= 0 {
			loss += w.Stats.Loss
			acc += w.Stats.Accuracy
			lr = w.Stats.LR
			n++
		}
	}
	if n > 0 {
		loss, acc = loss/float64(n), acc/float64(n)
	}
	p.Step(worker.StepStats{
		Epoch: st.Epoch, Step: int(st.Step), EpochStep: min(steps, max(0, int(st.Step)-st.Epoch*steps)),
		LR: lr, Loss: loss, Accuracy: acc, ImagesPerSecond: st.ImagesPerSecond,
	})
}

// freePort returns a loopback TCP port free right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
