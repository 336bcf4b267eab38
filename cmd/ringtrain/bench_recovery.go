package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/etcdlocal"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/localcluster"
)

// recoveryResult is what `ringtrain bench recovery` measures, in seconds
// from the SIGKILL: every sample, and their medians.
type recoveryResult struct {
	Workers int `json:"workers"`
	Repeats int `json:"repeats"`
	// A worker killed: until the coordinator publishes a ring of the
	// survivors, and until they have trained 5 steps in it.
	WorkerRing     []float64 `json:"worker_kill_ring_s"`
	WorkerTrainOn  []float64 `json:"worker_kill_5_steps_s"`
	WorkerRingMed  float64   `json:"worker_kill_ring_median_s"`
	WorkerTrainMed float64   `json:"worker_kill_5_steps_median_s"`
	// The leading coordinator killed: until the standby leads a running
	// ring of every worker, and until it has trained 5 steps more.
	LeaderRing     []float64 `json:"leader_kill_ring_s"`
	LeaderTrainOn  []float64 `json:"leader_kill_5_steps_s"`
	LeaderRingMed  float64   `json:"leader_kill_ring_median_s"`
	LeaderTrainMed float64   `json:"leader_kill_5_steps_median_s"`
	// LeaderResumed is, per leader kill, whether the standby's first ring
	// continued from a worker's state (its log says "from source") rather
	// than from the last checkpoint.
	LeaderResumed []bool `json:"leader_kill_resumed_from_workers"`
}

func newBenchRecoveryCmd() *cobra.Command {
	var (
		workers int
		repeats int
		asJSON  bool
		dataDir string
		keep    bool
	)
	cmd := &cobra.Command{
		Use:   "recovery",
		Short: "Measure how long a local cluster of processes takes to recover from a killed worker and a killed leader",
		Long: `Runs clusters of real processes on this machine — an embedded etcd in this
process, ringtrain coordinator and worker processes talking gRPC and
memberlist over loopback, LeNet-5 on MNIST — and SIGKILLs, in turn:

  a worker: the time until the coordinator publishes a ring of the
  survivors, and until they have trained 5 steps in it;
  the leading coordinator (a standby runs beside it): the time until the
  standby leads a running ring of every worker, and until 5 more steps
  are trained under it.

Each scenario runs --repeat times on a fresh cluster; the medians and
every sample are printed.`,
		Example: `  ringtrain bench recovery
  ringtrain bench recovery --workers 3 --repeat 3 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if workers < 2 {
				return fmt.Errorf("--workers %d: a worker kill needs at least 2", workers)
			}
			if repeats < 1 {
				return fmt.Errorf("--repeat %d: must be at least 1", repeats)
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			if dataDir == "" {
				dataDir = filepath.Join(dataset.DefaultDataDir(), "mnist")
			}
			logf := func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), f+"\n", a...) }
			if err := dataset.Ensure(cmd.Context(), "mnist", dataDir, logf); err != nil {
				return err
			}
			root, err := os.MkdirTemp("", "ringtrain-bench-recovery")
			if err != nil {
				return err
			}
			if keep {
				logf("run directories in %s", root)
			} else {
				defer os.RemoveAll(root)
			}
			res := recoveryResult{Workers: workers, Repeats: repeats}
			for i := range repeats {
				b := &benchCluster{exe: exe, data: dataDir, dir: filepath.Join(root, fmt.Sprintf("worker-kill-%d", i)), logf: logf}
				ring, train, err := b.workerKill(cmd.Context(), workers)
				b.stop()
				if err != nil {
					return fmt.Errorf("worker kill %d: %w (logs in %s)", i+1, err, b.dir)
				}
				logf("worker kill %d/%d: ring of %d after %.3f s, 5 steps after %.3f s", i+1, repeats, workers-1, ring, train)
				res.WorkerRing, res.WorkerTrainOn = append(res.WorkerRing, ring), append(res.WorkerTrainOn, train)
			}
			for i := range repeats {
				b := &benchCluster{exe: exe, data: dataDir, dir: filepath.Join(root, fmt.Sprintf("leader-kill-%d", i)), logf: logf}
				ring, train, resumed, err := b.leaderKill(cmd.Context(), workers)
				b.stop()
				if err != nil {
					return fmt.Errorf("leader kill %d: %w (logs in %s)", i+1, err, b.dir)
				}
				logf("leader kill %d/%d: standby leads a ring of %d after %.3f s, 5 steps after %.3f s (from the workers' state: %v)",
					i+1, repeats, workers, ring, train, resumed)
				res.LeaderRing, res.LeaderTrainOn = append(res.LeaderRing, ring), append(res.LeaderTrainOn, train)
				res.LeaderResumed = append(res.LeaderResumed, resumed)
			}
			res.WorkerRingMed, res.WorkerTrainMed = median(res.WorkerRing), median(res.WorkerTrainOn)
			res.LeaderRingMed, res.LeaderTrainMed = median(res.LeaderRing), median(res.LeaderTrainOn)
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.Marshal(res)
				fmt.Fprintln(out, string(b))
				return nil
			}
			printRecovery(out, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&workers, "workers", 3, "worker processes per cluster")
	f.IntVar(&repeats, "repeat", 3, "kills of each kind, each on a fresh cluster (the median is reported)")
	f.BoolVar(&asJSON, "json", false, "print one JSON line")
	f.StringVar(&dataDir, "data-dir", "", "MNIST directory (default: the ringtrain cache)")
	f.BoolVar(&keep, "keep", false, "keep the clusters' run directories (logs) instead of removing them")
	return cmd
}

func printRecovery(out io.Writer, r recoveryResult) {
	s := func(v []float64) string {
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = strconv.FormatFloat(x, 'f', 3, 64)
		}
		return strings.Join(parts, ", ")
	}
	fmt.Fprintf(out, "%d workers, %d repeats (seconds after the SIGKILL; median, then every sample)\n", r.Workers, r.Repeats)
	fmt.Fprintf(out, "worker killed: ring of the survivors   %6.3f s  [%s]\n", r.WorkerRingMed, s(r.WorkerRing))
	fmt.Fprintf(out, "worker killed: 5 steps trained         %6.3f s  [%s]\n", r.WorkerTrainMed, s(r.WorkerTrainOn))
	fmt.Fprintf(out, "leader killed: standby leads the ring  %6.3f s  [%s]\n", r.LeaderRingMed, s(r.LeaderRing))
	fmt.Fprintf(out, "leader killed: 5 steps trained         %6.3f s  [%s]\n", r.LeaderTrainMed, s(r.LeaderTrainOn))
	fmt.Fprintf(out, "leader killed: continued from the workers' state: %v\n", r.LeaderResumed)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchCluster is one cluster of `ringtrain bench recovery`: an embedded
// etcd in this process and coordinator and worker processes of the
// ringtrain binary, with their logs in dir.
type benchCluster struct {
	exe, data, dir string
	logf           func(string, ...any)

	token   string
	jobFile string
	etcd    *etcdlocal.Server
	coordAt []string // control addresses, in start order
	procs   map[string]*exec.Cmd
}

// recoveryJob is long enough that no kill outlives it: LeNet-5 on the
// whole of MNIST for 20 epochs, checkpointing every 100 steps.
func recoveryJob(workers, minWorkers int) job.Spec {
	s := job.Default()
	s.Name, s.Model, s.Epochs, s.BatchSize, s.Seed = "recovery", "lenet5", 20, 16*workers, 3
	s.Workers, s.MinWorkers, s.MaxWorkers = workers, minWorkers, workers
	s.CheckpointEvery, s.KeepCheckpoints = 100, 3
	return s
}

func (b *benchCluster) startEtcdAndJob(spec job.Spec) error {
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	b.procs = map[string]*exec.Cmd{}
	tok := make([]byte, 32)
	rand.Read(tok)
	b.token = hex.EncodeToString(tok)
	y, err := spec.YAML()
	if err != nil {
		return err
	}
	b.jobFile = filepath.Join(b.dir, "job.yaml")
	if err := os.WriteFile(b.jobFile, y, 0o644); err != nil {
		return err
	}
	b.etcd, err = etcdlocal.Start(etcdlocal.Config{Dir: filepath.Join(b.dir, "etcd"), LogPath: filepath.Join(b.dir, "etcd.log")})
	return err
}

func freeLoopback() (string, error) {
	port, err := localcluster.FreePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}

func (b *benchCluster) spawn(name string, args ...string) error {
	f, err := os.OpenFile(filepath.Join(b.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(b.exe, args...)
	cmd.Env = append(os.Environ(), tokenEnv+"="+b.token)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	b.procs[name] = cmd
	go func() {
		cmd.Wait()
		f.Close()
	}()
	return nil
}

func (b *benchCluster) startCoordinator(name string) error {
	addr, err := freeLoopback()
	if err != nil {
		return err
	}
	b.coordAt = append(b.coordAt, addr)
	return b.spawn(name, "coordinator", "--etcd-endpoints", b.etcd.Endpoints()[0], "-f", b.jobFile, "--name", name,
		"--listen", addr, "--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1",
		"--store", filepath.Join(b.dir, "store"), "--out", filepath.Join(b.dir, "run"))
}

func (b *benchCluster) startWorker(name string) error {
	addr, err := freeLoopback()
	if err != nil {
		return err
	}
	return b.spawn(name, "worker", "--coordinator", strings.Join(b.coordAt, ","), "--name", name,
		"--listen", addr, "--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1",
		"--data-dir", b.data, "--threads", "1")
}

func (b *benchCluster) kill(name string) error {
	return b.procs[name].Process.Signal(syscall.SIGKILL)
}

// stop SIGKILLs every process still running and stops etcd.
func (b *benchCluster) stop() {
	for _, cmd := range b.procs {
		cmd.Process.Signal(syscall.SIGKILL)
	}
	if b.etcd != nil {
		b.etcd.Close()
	}
}

// waitFor polls the leader's status every 20 ms until cond holds and
// returns it with the time since start.
func (b *benchCluster) waitFor(ctx context.Context, what string, start time.Time, timeout time.Duration, cond func(*api.StatusReply) bool) (*api.StatusReply, time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := fetchStatus(api.WithToken(ctx, b.token), b.coordAt, dialOption(nil), time.Second)
		if err == nil && cond(st) {
			return st, time.Since(start), nil
		}
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("no %s after %v (last status %+v, error %v)", what, timeout, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// workerKill runs a cluster of n workers (n-1 suffice) and SIGKILLs
// worker-1 once training runs.
func (b *benchCluster) workerKill(ctx context.Context, n int) (ring, trainOn float64, err error) {
	if err := b.startEtcdAndJob(recoveryJob(n, n-1)); err != nil {
		return 0, 0, err
	}
	if err := b.startCoordinator("coordinator-0"); err != nil {
		return 0, 0, err
	}
	for i := range n {
		if err := b.startWorker(fmt.Sprintf("worker-%d", i)); err != nil {
			return 0, 0, err
		}
	}
	st, _, err := b.waitFor(ctx, "running ring of every worker", time.Now(), 3*time.Minute, func(st *api.StatusReply) bool {
		return st.State == "running" && len(st.Ring) == n && st.Step >= 50
	})
	if err != nil {
		return 0, 0, err
	}
	gen := st.Generation
	if err := b.kill("worker-1"); err != nil {
		return 0, 0, err
	}
	killed := time.Now()
	st, d, err := b.waitFor(ctx, "ring of the survivors", killed, time.Minute, func(st *api.StatusReply) bool {
		return st.Generation > gen && len(st.Ring) == n-1
	})
	if err != nil {
		return 0, 0, err
	}
	ring = d.Seconds()
	newGen, resume := st.Generation, st.Step
	_, d, err = b.waitFor(ctx, "5 steps by the survivors", killed, time.Minute, func(st *api.StatusReply) bool {
		return st.Generation == newGen && st.Step >= resume+5
	})
	return ring, d.Seconds(), err
}

// leaderKill runs a cluster of n workers and two coordinators and
// SIGKILLs the leading one once training runs and a checkpoint is
// committed.
func (b *benchCluster) leaderKill(ctx context.Context, n int) (ring, trainOn float64, resumed bool, err error) {
	if err := b.startEtcdAndJob(recoveryJob(n, n)); err != nil {
		return 0, 0, false, err
	}
	if err := b.startCoordinator("coordinator-a"); err != nil {
		return 0, 0, false, err
	}
	if _, _, err := b.waitFor(ctx, "coordinator-a leading", time.Now(), time.Minute, func(st *api.StatusReply) bool {
		return st.Coordinator == "coordinator-a" && st.State != "standby"
	}); err != nil {
		return 0, 0, false, err
	}
	if err := b.startCoordinator("coordinator-b"); err != nil {
		return 0, 0, false, err
	}
	for i := range n {
		if err := b.startWorker(fmt.Sprintf("worker-%d", i)); err != nil {
			return 0, 0, false, err
		}
	}
	if _, _, err := b.waitFor(ctx, "running ring with a committed checkpoint", time.Now(), 3*time.Minute, func(st *api.StatusReply) bool {
		return st.State == "running" && len(st.Ring) == n && st.LastCheckpoint != "" && st.Step >= 150
	}); err != nil {
		return 0, 0, false, err
	}
	if err := b.kill("coordinator-a"); err != nil {
		return 0, 0, false, err
	}
	killed := time.Now()
	st, d, err := b.waitFor(ctx, "coordinator-b leading a running ring", killed, time.Minute, func(st *api.StatusReply) bool {
		return st.Coordinator == "coordinator-b" && st.State == "running" && len(st.Ring) == n
	})
	if err != nil {
		return 0, 0, false, err
	}
	ring = d.Seconds()
	step := st.Step
	_, d, err = b.waitFor(ctx, "5 steps under coordinator-b", killed, time.Minute, func(st *api.StatusReply) bool {
		return st.Coordinator == "coordinator-b" && st.Step >= step+5
	})
	if err != nil {
		return 0, 0, false, err
	}
	log, err := os.ReadFile(filepath.Join(b.dir, "coordinator-b.log"))
	if err != nil {
		return 0, 0, false, errors.Join(errors.New("reading coordinator-b's log"), err)
	}
	return ring, d.Seconds(), strings.Contains(string(log), "from source"), nil
}
