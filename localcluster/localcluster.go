// Package localcluster runs a training cluster on one machine, as
// `ringtrain train --workers N` does: an embedded etcd server with its data
// in the run directory, a coordinator in this process and N worker
// processes of the ringtrain binary, talking gRPC and memberlist over
// loopback — the cluster's code paths on one machine. It supervises the
// workers (one that dies is started again under its name), shows the
// job's progress, and has the ring checkpoint before it stops on an
// interrupt.
package localcluster

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
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/etcdlocal"
	"github.com/ringtrain/ringtrain/internal/freeport"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/worker"
)

// TokenEnv is the environment variable that carries the join token to
// `ringtrain worker` processes.
const TokenEnv = "RINGTRAIN_JOIN_TOKEN"

// Subdirectories and files of a cluster run directory.
const (
	etcdDir        = "etcd"
	etcdLog        = "etcd.log"
	storeSubdir    = "checkpoints"
	coordinatorLog = "coordinator.log"
	// StatusTokenFile holds the cluster's status token (mode 0600): it
	// reads the coordinator's status (`ringtrain status
	// --status-token-file`) and its dashboard, and cannot join.
	StatusTokenFile = "status-token"
)

// Options configures Run.
type Options struct {
	// Spec is the job; Spec.Workers worker processes are started.
	Spec job.Spec
	// Dir is the run directory.
	Dir string
	// Resume continues the cluster run in Dir from its last checkpoint
	// committed in etcd; without it, Dir must not hold a cluster run.
	Resume bool
	// MaxRestarts is how many times each worker that dies while the job
	// runs is started again (≥ 0).
	MaxRestarts int
	// Executable is the ringtrain binary the workers run as `ringtrain
	// worker` (default: this process's executable).
	Executable string
	// Progress is shown the job's epochs, steps and evaluations; nil shows
	// nothing.
	Progress worker.Progress
	// Logf receives notices for people (workers restarted, an interrupt);
	// nil discards them.
	Logf func(format string, args ...any)
	// UI, when set, is the address (HOST:PORT, bound as given) where the
	// coordinator's HTTP listener serves the job's dashboard, beside its
	// /healthz, /readyz, /metrics and /status.
	UI string
	// Timeline has the workers record their step timelines in the run
	// directory's timeline/ (worker.TimelineDir).
	Timeline bool
	// SampleLogs has the workers log the samples of every step they take
	// in the run directory's samples/ (worker.SampleLogDir).
	SampleLogs bool
}

// cluster is one Run: the options and the worker processes.
type cluster struct {
	Options
	logf func(string, ...any)

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

// Run runs the job on a local cluster until it is complete, ctx ends (the
// ring checkpoints where it stands first, and the error wraps
// worker.ErrInterrupted), or it cannot go on. The run directory receives
// what a single-node run leaves (metrics.jsonl, curves.png, summary.json,
// checkpoints/), the final model (model.safetensors, see
// coordinator.Server.WriteRunProducts), coordinator.log, worker-N.log and
// etcd/, with Options.Timeline the workers' timeline/ and with
// Options.SampleLogs their samples/. Every
// process it started has exited when it returns.
func Run(ctx context.Context, o Options) (runlog.Summary, error) {
	c := &cluster{Options: o, logf: o.Logf}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if c.Progress == nil {
		c.Progress = noProgress{}
	}
	return c.run(ctx)
}

func (c *cluster) run(ctx context.Context) (runlog.Summary, error) {
	spec, out := c.Spec, c.Dir
	launch := time.Now()
	sum := runlog.Summary{Model: spec.Model, Dataset: spec.Dataset, Epochs: spec.Epochs, BatchSize: spec.BatchSize, Seed: spec.Seed}
	// The job is checked here, before anything is started or written;
	// the coordinator below need not check it again.
	if err := worker.CheckJob(spec); err != nil {
		return sum, err
	}
	if c.MaxRestarts < 0 {
		return sum, fmt.Errorf("localcluster: %d restarts per worker: must not be negative", c.MaxRestarts)
	}
	exe := c.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return sum, fmt.Errorf("localcluster: finding this binary to start workers: %w", err)
		}
	}
	_, statErr := os.Stat(filepath.Join(out, etcdDir))
	switch {
	case statErr == nil && !c.Resume:
		return sum, fmt.Errorf("%s already holds a cluster run; pass --resume to continue it or choose another --out", out)
	case statErr != nil && c.Resume:
		return sum, fmt.Errorf("nothing to resume in %s: it holds no cluster run (run without --resume to start a new run there)", out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return sum, err
	}
	dataDir := spec.DataDir
	if dataDir == "" {
		dataDir = filepath.Join(dataset.DefaultDataDir(), spec.Dataset)
	}
	if err := dataset.Ensure(ctx, spec.Dataset, dataDir, c.logf); err != nil {
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
	// The coordinator's own lines go to the run directory's log file; the
	// progress display shows the job's state.
	clog, err := os.OpenFile(filepath.Join(out, coordinatorLog), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return sum, err
	}
	defer clog.Close()
	token, statusToken := randomToken(), randomToken()
	if err := os.WriteFile(filepath.Join(out, StatusTokenFile), []byte(statusToken+"\n"), 0o600); err != nil {
		return sum, err
	}
	proc, err := coordinator.Listen(coordinator.ProcessConfig{
		Server: coordinator.ServerConfig{
			Name: "coordinator", Spec: spec, Token: token, StatusToken: statusToken, Etcd: cli, StoreDir: filepath.Join(out, storeSubdir), RunDir: out,
			Logf: func(f string, a ...any) {
				fmt.Fprintf(clog, "%s %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(f, a...))
			},
		},
		Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Advertise: "127.0.0.1", HTTP: c.UI,
	})
	if err != nil {
		return sum, err
	}
	if c.UI != "" {
		if host, _, _ := net.SplitHostPort(proc.HTTPAddr()); net.ParseIP(host).IsLoopback() {
			c.logf("dashboard: http://%s/", proc.HTTPAddr())
		} else {
			// Open to others, the dashboard needs a token: the link
			// carries the status token, which reads and cannot join.
			c.logf("dashboard: http://%s/?token=%s", proc.HTTPAddr(), statusToken)
		}
	}
	// The coordinator outlives an interrupt of ctx long enough to have the
	// ring checkpoint where it stands (see checkpointNow).
	cctx, stopCoordinator := context.WithCancel(context.WithoutCancel(ctx))
	coordDone := make(chan error, 1)
	go func() { coordDone <- proc.Run(cctx) }()
	var coordErr error
	coordStopped := false
	stop := func() error {
		if !coordStopped {
			stopCoordinator()
			coordErr, coordStopped = <-coordDone, true
		}
		return coordErr
	}
	defer stop()

	threads := spec.Threads
	if threads == 0 {
		threads = max(1, runtime.GOMAXPROCS(0)/spec.Workers)
	}
	c.workers = make([]*exec.Cmd, spec.Workers)
	c.restarts = make([]int, spec.Workers)
	c.exited = make(chan workerExit, spec.Workers*(c.MaxRestarts+1))
	defer func() { c.reap(0) }()
	c.start = func(slot int) error {
		port, err := FreePort()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("worker-%d", slot)
		// A restarted worker appends to its predecessor's log.
		logf, err := os.OpenFile(filepath.Join(out, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command(exe, "worker", "--coordinator", proc.ControlAddr(), "--name", name,
			"--listen", "127.0.0.1:"+strconv.Itoa(port), "--gossip", "127.0.0.1:0", "--advertise", "127.0.0.1",
			"--http", "", "--data-dir", dataDir, "--threads", strconv.Itoa(threads))
		if c.Timeline {
			cmd.Args = append(cmd.Args, "--timeline", filepath.Join(out, worker.TimelineDir))
		}
		if c.SampleLogs {
			cmd.Args = append(cmd.Args, "--sample-log", filepath.Join(out, worker.SampleLogDir, worker.SampleLogFile(name)))
		}
		cmd.Env = append(os.Environ(), TokenEnv+"="+token)
		cmd.Stdout, cmd.Stderr = logf, logf
		detach(cmd)
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("starting %s: %w", name, err)
		}
		c.workers[slot] = cmd
		c.alive++
		go func() {
			err := cmd.Wait()
			logf.Close()
			c.exited <- workerExit{name: name, slot: slot, cmd: cmd, err: err}
		}()
		return nil
	}
	for i := range c.workers {
		if err := c.start(i); err != nil {
			return sum, err
		}
	}
	c.logf("cluster: etcd %s, coordinator %s, %d workers × %d threads (logs in %s; status token in %s)",
		etcd.Endpoints()[0], proc.ControlAddr(), spec.Workers, threads, out, filepath.Join(out, StatusTokenFile))
	c.logf("cluster: every process listens on loopback only, so its links are plaintext (no TLS: no other machine reaches them)")

	srv := proc.Server()
	runErr := c.watch(ctx, srv, coordDone)
	st := srv.StatusReply()
	// A complete job's workers exit by themselves once told; otherwise (or
	// if they linger) SIGTERM makes them leave the job.
	grace := 10 * time.Second
	if runErr != nil {
		grace = 0
	}
	c.reap(grace)
	// The coordinator adds to the run log; it is done before the log is
	// read for the summary and the plot.
	if err := stop(); err != nil && runErr == nil {
		runErr = err
	}
	sum.WallSeconds = time.Since(launch).Seconds()
	sum.ImagesPerSecond = st.ImagesPerSecond
	sum.Threads = threads
	sum.Resumed = c.Resume && statErr == nil
	sum.Checkpoint = st.LastCheckpoint
	sum.PeakRSSBytes = runlog.PeakRSS()
	if errors.Is(runErr, context.Canceled) {
		sum.Interrupted = true
		runErr = fmt.Errorf("%w: the cluster stopped; checkpoint %s is committed", worker.ErrInterrupted, st.LastCheckpoint)
	}
	sum, err = srv.WriteRunProducts(sum, launch)
	if err != nil && runErr == nil {
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
func (c *cluster) gone(e workerExit) {
	c.alive--
	if c.workers[e.slot] == e.cmd {
		c.workers[e.slot] = nil
	}
}

// reap waits up to grace for the workers still running to exit, then
// sends them SIGTERM (they leave the job) and, 30 s later, SIGKILL. It
// returns once every one has exited; it is a no-op the second time.
func (c *cluster) reap(grace time.Duration) {
	if c.reaped {
		return
	}
	c.reaped = true
	timer := time.NewTimer(grace)
	defer timer.Stop()
	signal := func(sig os.Signal) {
		for _, w := range c.workers {
			if w != nil {
				w.Process.Signal(sig)
			}
		}
	}
	for signalled := false; c.alive > 0; {
		select {
		case e := <-c.exited:
			c.gone(e)
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
// the coordinator fails (coordDone). A worker that dies while the job runs
// is started again under its name, at most MaxRestarts times, and rejoins
// the ring as a replacement pod would on Kubernetes; meanwhile the job
// carries on without it while it has min_workers.
func (c *cluster) watch(ctx context.Context, srv *coordinator.Server, coordDone chan error) error {
	spec := c.Spec
	samples, _ := dataset.TrainSamples(spec.Dataset, spec.Validation, spec.TrainLimit)
	perStep := spec.BatchSize
	steps := (samples + perStep - 1) / perStep
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	c.shown = shown{epoch: -1, eval: -1}
	for {
		select {
		case <-ctx.Done():
			c.checkpointNow(srv)
			return ctx.Err()
		case <-srv.Done():
			c.show(srv.StatusReply(), steps)
			return nil
		case err := <-coordDone:
			coordDone <- err // for the caller's stop
			if err == nil {
				return ctx.Err()
			}
			return err
		case e := <-c.exited:
			c.gone(e)
			if e.err != nil {
				msg := fmt.Sprintf("%s exited: %v (see %s.log)", e.name, e.err, filepath.Join(c.Dir, e.name))
				if c.restarts[e.slot] < c.MaxRestarts && ctx.Err() == nil {
					c.restarts[e.slot]++
					msg += fmt.Sprintf("; restarting it (%d of %d)", c.restarts[e.slot], c.MaxRestarts)
					if err := c.start(e.slot); err != nil {
						return err
					}
				}
				c.logf("%s", msg)
				// Without restarts left, too few workers would leave the
				// job waiting for ever.
				if need, _ := spec.WorkerRange(); c.alive < need && c.alive > 0 {
					return fmt.Errorf("%s exited %d times; the job needs %d workers and %d remain: stopping (the logs are in %s; --resume continues from the last checkpoint)",
						e.name, c.restarts[e.slot]+1, need, c.alive, c.Dir)
				}
			}
			if c.alive == 0 {
				return fmt.Errorf("every worker exited before the job was complete (see the logs in %s)", c.Dir)
			}
		case <-tick.C:
			c.show(srv.StatusReply(), steps)
		}
	}
}

// checkpointNow has the running ring checkpoint a second's worth of steps
// ahead of where it stands and waits (at most 20 s) until the checkpoint is
// committed, so that --resume continues from there, as after a Ctrl-C of
// single-node training.
func (c *cluster) checkpointNow(srv *coordinator.Server) {
	st := srv.StatusReply()
	perStep := float64(c.Spec.BatchSize)
	ahead := max(5, int64(st.ImagesPerSecond/perStep))
	step, err := srv.RequestCheckpoint(ahead)
	if err != nil {
		return
	}
	c.logf("interrupted: checkpointing the ring at step %d", step)
	want := checkpoint.NameForStep(int(step))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if st := srv.StatusReply(); st.LastCheckpoint >= want || st.State != "running" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.logf("the checkpoint was not committed in time; --resume continues from the one before")
}

// shown is what the progress display last showed.
type shown struct {
	epoch, eval int // the epoch in progress and the last one evaluated; -1 for none
	reason      string
}

func (c *cluster) show(st *api.StatusReply, steps int) {
	sh := &c.shown
	p := c.Progress
	if st.Reason != sh.reason && st.State != "running" {
		c.logf("cluster: %s", st.Reason)
	}
	sh.reason = st.Reason
	if e := st.LastEval; e != nil && e.Epoch > sh.eval {
		sh.eval = e.Epoch
		p.EpochEnd(worker.EvalStats{Epoch: e.Epoch, Loss: e.Loss, Accuracy: e.Accuracy})
	}
	if st.State != "running" || st.Epoch >= c.Spec.Epochs {
		return
	}
	if st.Epoch != sh.epoch {
		sh.epoch = st.Epoch
		p.EpochStart(st.Epoch, c.Spec.Epochs, steps, int(st.Step)-st.Epoch*steps)
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

// noProgress shows nothing.
type noProgress struct{}

func (noProgress) EpochStart(epoch, epochs, steps, done int) {}
func (noProgress) Step(worker.StepStats)                     {}
func (noProgress) EpochEnd(worker.EvalStats)                 {}

// FreePort returns a loopback port free right now for TCP and UDP, outside
// the range outgoing connections take theirs from (for a process that is
// to listen on it; see package freeport).
func FreePort() (int, error) { return freeport.Loopback() }

// randomToken is 128 random bits in hex.
func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
