package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/coordinator"
	"github.com/ringtrain/ringtrain/etcdlocal"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/localcluster"
	"github.com/ringtrain/ringtrain/pki"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/safetensors"
)

// The tests in this file run real clusters: the real etcd server binary
// (built from go.etcd.io/etcd/server/v3), coordinator and worker processes
// of the ringtrain binary, gRPC and memberlist over loopback, the real
// MNIST. Timeouts only catch hangs; the recovery times they observe are
// logged (`ringtrain bench recovery` measures them for docs/BENCHMARKS.md).

var (
	etcdOnce sync.Once
	etcdBin  string
	etcdErr  error
)

// etcdBinary builds the etcd server once per test binary.
func etcdBinary(t *testing.T) string {
	t.Helper()
	bin, _ := binary(t)
	etcdOnce.Do(func() {
		etcdBin = filepath.Join(filepath.Dir(bin), "etcd")
		cmd := exec.Command("go", "build", "-o", etcdBin, "go.etcd.io/etcd/server/v3")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			etcdErr = fmt.Errorf("building etcd: %v\n%s", err, out)
		}
	})
	if etcdErr != nil {
		t.Fatal(etcdErr)
	}
	return etcdBin
}

// proc is one process of a test cluster.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// testCluster is a cluster of processes for one test.
type testCluster struct {
	t       *testing.T
	bin     string
	data    string // MNIST directory
	dir     string
	token   string
	jobFile string
	spec    job.Spec
	store   string

	etcd     *proc
	etcdURL  url.URL
	etcdPeer url.URL
	coords   []*proc
	coordAt  map[string]string // name → control address
	workers  map[string]*proc
	workerAt map[string]string // name → data address (kept across restarts)
	httpAt   map[string]string // name → HTTP address
	mu       sync.Mutex

	// pki, when set, is the cluster's authority (see usePKI): every
	// process gets its own certificate, etcd serves TLS to client
	// certificates only and lets the coordinators' user reach the job's
	// keys alone. statusCreds is what the test's status calls use.
	pki         string
	statusCreds *pki.Creds
	// coordHTTPOpen binds each coordinator's --http listener on every
	// interface (at httpAt[name]'s port) instead of loopback only.
	coordHTTPOpen bool
}

func newTestCluster(t *testing.T, spec job.Spec) *testCluster {
	t.Helper()
	bin, data := binary(t)
	dir := t.TempDir()
	y, err := spec.YAML()
	if err != nil {
		t.Fatal(err)
	}
	jobFile := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(jobFile, y, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{
		t: t, bin: bin, data: filepath.Join(data, "mnist"), dir: dir, token: strongToken, jobFile: jobFile, spec: spec,
		store: filepath.Join(dir, "store"), coordAt: map[string]string{}, workers: map[string]*proc{}, workerAt: map[string]string{},
		httpAt: map[string]string{},
	}
	t.Cleanup(c.killAll)
	// `ringtrain status` in the test shows the join token, as an operator
	// of the cluster would.
	t.Setenv(tokenEnv, c.token)
	return c
}

// usePKI makes the cluster's authority: from now on every process of the
// cluster runs with mutual TLS and a certificate of its own (tlsFlags).
func (c *testCluster) usePKI() {
	c.t.Helper()
	c.pki = filepath.Join(c.dir, "pki")
	if err := pki.Init(c.pki, "", time.Hour); err != nil {
		c.t.Fatal(err)
	}
	c.statusCreds = c.creds(pki.Client, "operator")
}

// tlsFlags are the TLS flags of the process id (its certificate is issued
// the first time); none without usePKI.
func (c *testCluster) tlsFlags(role pki.Role, name string) []string {
	c.t.Helper()
	if c.pki == "" {
		return nil
	}
	id := pki.Identity{Role: role, Name: name}
	cert, key := pki.Paths(c.pki, id)
	if _, err := os.Stat(cert); err != nil {
		if _, _, err := pki.Issue(c.pki, id, []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
			c.t.Fatal(err)
		}
	}
	ca, _ := pki.CAPaths(c.pki)
	return []string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", ca}
}

// creds loads the credentials of id, issued by tlsFlags.
func (c *testCluster) creds(role pki.Role, name string) *pki.Creds {
	c.t.Helper()
	f := c.tlsFlags(role, name)
	cr, err := pki.Load(f[1], f[3], f[5])
	if err != nil {
		c.t.Fatal(err)
	}
	return cr
}

func (c *testCluster) start(name string, bin string, env []string, args ...string) *proc {
	c.t.Helper()
	log := filepath.Join(c.dir, name+".log")
	f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p
}

// startEtcd starts (or restarts, on the same data and ports) the real etcd
// server and waits until it answers.
func (c *testCluster) startEtcd() {
	c.t.Helper()
	bin := etcdBinary(c.t)
	if c.etcdURL.Host == "" {
		var err error
		if c.etcdURL, err = etcdlocal.FreeLoopbackURL(); err != nil {
			c.t.Fatal(err)
		}
		if c.etcdPeer, err = etcdlocal.FreeLoopbackURL(); err != nil {
			c.t.Fatal(err)
		}
	}
	if c.pki != "" {
		c.etcdURL.Scheme, c.etcdPeer.Scheme = "https", "https"
	}
	args := []string{"--name", "e0", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", c.etcdURL.String(), "--advertise-client-urls", c.etcdURL.String(),
		"--listen-peer-urls", c.etcdPeer.String(), "--initial-advertise-peer-urls", c.etcdPeer.String(),
		"--initial-cluster", "e0=" + c.etcdPeer.String(), "--log-level", "error"}
	if c.pki != "" {
		// TLS to clients and peers; a client must show a certificate of
		// the authority, whose common name is its etcd user.
		f := c.tlsFlags(pki.Etcd, "e0")
		args = append(args, "--cert-file", f[1], "--key-file", f[3], "--trusted-ca-file", f[5], "--client-cert-auth",
			"--peer-cert-file", f[1], "--peer-key-file", f[3], "--peer-trusted-ca-file", f[5], "--peer-client-cert-auth")
	}
	c.etcd = c.start("etcd", bin, nil, args...)
	cli := c.etcdClient()
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || c.etcd.exited() {
			c.t.Fatalf("etcd did not start: %v\n%s", err, c.etcd.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *testCluster) etcdClient() *clientv3.Client {
	c.t.Helper()
	cfg := clientv3.Config{Endpoints: []string{c.etcdURL.String()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	if c.pki != "" {
		cfg.TLS = c.creds(pki.Client, "root").EtcdClientConfig() // etcd's administrator
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	return cli
}

// addrFor returns the loopback address at[name], choosing a free port the
// first time: a restarted process keeps its address.
func (c *testCluster) addrFor(at map[string]string, name string) string {
	c.t.Helper()
	if addr, ok := at[name]; ok {
		return addr
	}
	port, err := localcluster.FreePort()
	if err != nil {
		c.t.Fatal(err)
	}
	at[name] = "127.0.0.1:" + strconv.Itoa(port)
	return at[name]
}

func (c *testCluster) startCoordinator(name string) *proc {
	c.t.Helper()
	addr := c.addrFor(c.coordAt, name)
	http := "127.0.0.1:0"
	if c.coordHTTPOpen {
		_, port, _ := net.SplitHostPort(c.addrFor(c.httpAt, name))
		http = ":" + port
	}
	p := c.start(name, c.bin, []string{tokenEnv + "=" + c.token}, append([]string{"coordinator",
		"--etcd-endpoints", c.etcdURL.String(), "-f", c.jobFile, "--name", name, "--listen", addr,
		"--gossip", "127.0.0.1:0", "--http", http, "--advertise", "127.0.0.1", "--store", c.store}, c.tlsFlags(pki.Coordinator, "coordinator")...)...)
	c.coords = append(c.coords, p)
	return p
}

// startJob starts etcd, coordinator-0 and workers worker-0, worker-1, ….
func (c *testCluster) startJob(workers int) {
	c.t.Helper()
	c.startEtcd()
	c.startCoordinator("coordinator-0")
	for i := range workers {
		c.startWorker(fmt.Sprintf("worker-%d", i))
	}
}

func (c *testCluster) coordinatorAddrs() string {
	var addrs []string
	for _, a := range c.coordAt {
		addrs = append(addrs, a)
	}
	return strings.Join(addrs, ",")
}

// startWorker starts the worker name, with the flags extra besides the
// cluster's.
func (c *testCluster) startWorker(name string, extra ...string) *proc {
	c.t.Helper()
	addr := c.addrFor(c.workerAt, name)
	args := append([]string{"worker",
		"--coordinator", c.coordinatorAddrs(), "--name", name, "--listen", addr, "--gossip", "127.0.0.1:0",
		"--http", c.addrFor(c.httpAt, name), "--advertise", "127.0.0.1", "--data-dir", c.data, "--threads", "1"}, c.tlsFlags(pki.Worker, name)...)
	p := c.start(name, c.bin, []string{tokenEnv + "=" + c.token}, append(args, extra...)...)
	c.mu.Lock()
	c.workers[name] = p
	c.mu.Unlock()
	return p
}

func (c *testCluster) killAll() {
	for _, w := range c.workers {
		if !w.exited() {
			w.kill()
		}
	}
	for _, p := range c.coords {
		if !p.exited() {
			p.kill()
		}
	}
	if c.etcd != nil && !c.etcd.exited() {
		c.etcd.kill()
	}
}

// logs returns every process's log, for failure messages.
func (c *testCluster) logs() string {
	var b strings.Builder
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".log") {
			data, _ := os.ReadFile(filepath.Join(c.dir, e.Name()))
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", e.Name(), strings.Join(lines, "\n"))
		}
	}
	return b.String()
}

// status asks the coordinators for the leader's status (nil if none
// answers).
func (c *testCluster) status() *api.StatusReply {
	st, err := fetchStatus(api.WithToken(context.Background(), c.token), strings.Split(c.coordinatorAddrs(), ","), dialOption(c.statusCreds), time.Second)
	if err != nil {
		return nil
	}
	return st
}

// waitFor polls the status until cond holds and returns it with the time
// it took; it fails the test after timeout (a hang).
func (c *testCluster) waitFor(what string, timeout time.Duration, cond func(*api.StatusReply) bool) (*api.StatusReply, time.Duration) {
	c.t.Helper()
	start := time.Now()
	for {
		if st := c.status(); st != nil && cond(st) {
			return st, time.Since(start)
		}
		if time.Since(start) > timeout {
			c.t.Fatalf("no %s after %v; last status %+v\n%s", what, timeout, c.status(), c.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withCommitter calls fn with a committer of the job's checkpoints in etcd
// and a context that bounds its calls.
func (c *testCluster) withCommitter(fn func(context.Context, *checkpoint.EtcdCommitter)) {
	c.t.Helper()
	cli := c.etcdClient()
	defer cli.Close()
	store, err := checkpoint.OpenShared(c.jobStore())
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fn(ctx, checkpoint.NewEtcdCommitter(cli, coordinator.JobName(c.spec), store))
}

// jobStore is the job's store under the coordinators' --store.
func (c *testCluster) jobStore() string { return filepath.Join(c.store, c.spec.JobName()) }

// committed returns the job's committed checkpoints as etcd holds them.
func (c *testCluster) committed() []checkpoint.Manifest {
	c.t.Helper()
	var ms []checkpoint.Manifest
	var err error
	c.withCommitter(func(ctx context.Context, cm *checkpoint.EtcdCommitter) { ms, err = cm.Committed(ctx) })
	if err != nil {
		c.t.Fatal(err)
	}
	return ms
}

// waitWorkersExit waits for every worker to exit by itself (the job is
// complete) and checks they exited 0.
func (c *testCluster) waitWorkersExit(timeout time.Duration) {
	c.t.Helper()
	deadline := time.After(timeout)
	for name, w := range c.workers {
		select {
		case <-w.done:
			if w.err != nil {
				c.t.Errorf("%s exited with %v", name, w.err)
			}
		case <-deadline:
			c.t.Fatalf("%s still running after %v\n%s", name, timeout, c.logs())
		}
	}
}

// finalCheckpoint loads the newest committed checkpoint that verifies.
func (c *testCluster) finalCheckpoint() *checkpoint.Checkpoint {
	c.t.Helper()
	var ck *checkpoint.Checkpoint
	var err error
	c.withCommitter(func(ctx context.Context, cm *checkpoint.EtcdCommitter) { ck, err = cm.LoadLatest(ctx, c.t.Logf) })
	if err != nil || ck == nil {
		c.t.Fatalf("final checkpoint: %v %v", ck, err)
	}
	return ck
}

// clusterJob is the job of the fault tests: LeNet-5 on a part of MNIST.
func clusterJob(name string, workers int) job.Spec {
	s := job.Default()
	s.Name, s.Model, s.Epochs, s.BatchSize, s.Seed = name, "lenet5", 2, 16*workers, 3
	s.Workers, s.MinWorkers, s.MaxWorkers = workers, workers, workers
	s.TrainLimit, s.TestLimit = 12800, 2000
	s.CheckpointEvery, s.KeepCheckpoints = 40, 100
	return s
}

func tensorsEqual(t *testing.T, a, b *checkpoint.Checkpoint) {
	t.Helper()
	if a.Manifest.Step != b.Manifest.Step {
		t.Fatalf("final steps differ: %d and %d", a.Manifest.Step, b.Manifest.Step)
	}
	merged := func(ck *checkpoint.Checkpoint) map[string][]byte {
		m := map[string][]byte{}
		for name, f := range ck.Files {
			for _, tn := range f.Names() {
				tt, _ := f.Tensor(tn)
				m[name[:strings.IndexAny(name, "-.")]+"/"+tn] = tt.Data
			}
		}
		return m
	}
	ma, mb := merged(a), merged(b)
	if len(ma) != len(mb) || len(ma) == 0 {
		t.Fatalf("checkpoints hold %d and %d tensors", len(ma), len(mb))
	}
	var differ []string
	for k, v := range ma {
		if w, ok := mb[k]; !ok || string(v) != string(w) {
			differ = append(differ, k)
		}
	}
	if len(differ) > 0 {
		slices.Sort(differ)
		t.Fatalf("tensors %v differ between the runs", differ)
	}
}

// TestClusterKillEverythingResumesBitIdentical kills every process (etcd,
// coordinator, workers) with SIGKILL mid-run, flips a byte in the newest
// committed checkpoint, and restarts everything: the coordinator skips the
// corrupt checkpoint and resumes from the one before, and the run ends with
// parameters bit-identical to an uninterrupted run's.
func TestClusterKillEverythingResumesBitIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	spec := clusterJob("resume", 2)

	ref := newTestCluster(t, spec)
	ref.startJob(2)
	ref.waitFor("job completion", 3*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" })
	ref.waitWorkersExit(30 * time.Second)
	want := ref.finalCheckpoint()

	c := newTestCluster(t, spec)
	c.startJob(2)
	killAt := int64(90 + rand.IntN(250)) // after at least two checkpoints
	c.waitFor(fmt.Sprintf("step %d", killAt), 3*time.Minute, func(st *api.StatusReply) bool { return st.Step >= killAt })
	c.killAll()
	c.coords, c.workers = nil, map[string]*proc{}
	c.startEtcd()
	ms := c.committed()
	if len(ms) < 2 {
		t.Fatalf("only %d checkpoints committed before the kill", len(ms))
	}
	// Corrupt the newest committed checkpoint: one flipped byte.
	newest := ms[len(ms)-1]
	victim := filepath.Join(c.jobStore(), newest.Name, newest.Files[0].Name)
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x40
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed at step ≥ %d; committed %d checkpoints, corrupted %s", killAt, len(ms), victim)

	old, _ := os.ReadFile(filepath.Join(c.dir, "coordinator-0.log"))
	before := len(old)
	coord := c.startCoordinator("coordinator-0")
	c.startWorker("worker-0")
	c.startWorker("worker-1")
	c.waitFor("job completion after the restart", 3*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" })
	c.waitWorkersExit(30 * time.Second)
	log := coord.logText()[before:]
	if !strings.Contains(log, "skipping checkpoint "+newest.Name) || !strings.Contains(log, "restore "+ms[len(ms)-2].Name) {
		t.Errorf("the coordinator's log does not tell of skipping %s for %s:\n%s", newest.Name, ms[len(ms)-2].Name, log)
	}
	tensorsEqual(t, c.finalCheckpoint(), want)
}

// TestClusterSurvivesWorkerKill SIGKILLs a worker mid-epoch: the others
// form a new ring and train on, a replacement under the same name joins
// the running job, and the job ends with the accuracy of a run without the
// fault.
func TestClusterSurvivesWorkerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	spec := clusterJob("workerkill", 3)
	spec.MinWorkers = 2
	// The whole of MNIST, so accuracies compare to a tenth of a point; 3
	// epochs, so that on a fast machine the job still runs when the
	// replacement joins.
	spec.TrainLimit, spec.TestLimit, spec.CheckpointEvery, spec.Epochs = 0, 0, 200, 3

	ref := newTestCluster(t, spec)
	ref.startJob(3)
	refSt, _ := ref.waitFor("job completion", 4*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" && st.LastEval != nil })
	ref.killAll()

	c := newTestCluster(t, spec)
	c.startJob(3)
	st, _ := c.waitFor("a running ring of 3", 2*time.Minute, func(st *api.StatusReply) bool {
		return st.State == "running" && st.Step >= 600 && ringSize(st) == 3
	})
	gen, step := st.Generation, st.Step
	c.workers["worker-1"].kill()
	killed := time.Now()
	st, detect := c.waitFor("a new generation without worker-1", time.Minute, func(st *api.StatusReply) bool {
		return st.Generation > gen && ringSize(st) == 2
	})
	resumeStep, newGen := st.Step, st.Generation
	_, trainOn := c.waitFor("training on", time.Minute, func(st *api.StatusReply) bool {
		return st.Step >= resumeStep+5 && st.Generation == newGen
	})
	t.Logf("worker-1 killed at step ≥ %d: generation %d of 2 workers after %v; 5 steps trained %v later (%v after the kill)",
		step, newGen, detect.Round(time.Millisecond), trainOn.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	// Workers on one host link through shared memory: the survivors'
	// ring did too.
	for _, name := range []string{"worker-0", "worker-2"} {
		sharedMemoryLinks(t, name, c.workers[name].logText(), newGen, 1)
	}

	c.startWorker("worker-1")
	c.waitFor("the replacement in the ring", time.Minute, func(st *api.StatusReply) bool { return ringSize(st) == 3 })
	final, _ := c.waitFor("job completion", 4*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" && st.LastEval != nil })
	c.waitWorkersExit(30 * time.Second)
	diff := 100 * (final.LastEval.Accuracy - refSt.LastEval.Accuracy)
	t.Logf("test accuracy %.2f%% with the fault, %.2f%% without (%+.2f points)", 100*final.LastEval.Accuracy, 100*refSt.LastEval.Accuracy, diff)
	if diff < -0.3 {
		t.Errorf("accuracy with a killed worker %.2f%%, without %.2f%%: more than 0.3 points lost", 100*final.LastEval.Accuracy, 100*refSt.LastEval.Accuracy)
	}
}

// ringSize is the number of workers in the current generation's ring.
func ringSize(st *api.StatusReply) int { return len(st.Ring) }

// TestClusterCoordinatorFailover SIGKILLs the leading coordinator: the
// standby takes over from etcd, the workers follow it, no committed
// checkpoint is lost, and the job completes.
func TestClusterCoordinatorFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	spec := clusterJob("failover", 2)
	// Long enough that the job is still running when the standby takes
	// over, about 5 s after the kill (the workers train on meanwhile, at
	// up to 30,000 images/s, so 2 epochs could end first).
	spec.TrainLimit, spec.Epochs, spec.CheckpointEvery = 0, 6, 200
	c := newTestCluster(t, spec)
	c.startEtcd()
	first := c.startCoordinator("coordinator-a")
	c.waitFor("coordinator-a leading", time.Minute, func(st *api.StatusReply) bool { return st.Coordinator == "coordinator-a" && st.State != "standby" })
	c.startCoordinator("coordinator-b")
	c.startWorker("worker-0")
	c.startWorker("worker-1")
	c.waitFor("committed checkpoints", 2*time.Minute, func(st *api.StatusReply) bool { return st.Step >= 100 && st.LastCheckpoint != "" })
	before := c.committed()
	stepBefore := c.status().Step
	first.kill()
	killed := time.Now()
	st, takeover := c.waitFor("coordinator-b leading", time.Minute, func(st *api.StatusReply) bool {
		if st.Coordinator == "coordinator-b" && st.State == "running" && st.Step < stepBefore {
			t.Errorf("coordinator-b reports step %d, below step %d before the kill", st.Step, stepBefore)
		}
		return st.Coordinator == "coordinator-b" && st.State == "running" && len(st.Ring) == 2
	})
	gen, step := st.Generation, st.Step
	// The new leader continues from the workers' state, not from the last
	// checkpoint: no step is lost, and its log says where it resumed.
	if step < stepBefore {
		t.Errorf("coordinator-b leads at step %d, below step %d before the kill", step, stepBefore)
	}
	if log := c.coords[1].logText(); !strings.Contains(log, "from source") || strings.Contains(log, "from restore") {
		t.Errorf("coordinator-b did not resume from a worker's state:\n%s", log)
	}
	// The new leader may form another generation from the workers that
	// rejoin it, and a fast machine may finish the job meanwhile: what
	// counts is that steps go on under coordinator-b.
	_, trainOn := c.waitFor("training under coordinator-b", time.Minute, func(st *api.StatusReply) bool {
		return st.Coordinator == "coordinator-b" && st.Step >= step+5
	})
	t.Logf("coordinator-a killed after %d committed checkpoints: coordinator-b leads generation %d after %v; training on %v later (%v after the kill)",
		len(before), gen, takeover.Round(time.Millisecond), trainOn.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	c.waitFor("job completion", 3*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" })
	c.waitWorkersExit(30 * time.Second)
	after := map[string]bool{}
	for _, m := range c.committed() {
		after[m.Name] = true
	}
	for _, m := range before {
		if !after[m.Name] {
			t.Errorf("checkpoint %s, committed before the failover, is gone", m.Name)
		}
	}
	store, err := checkpoint.OpenShared(c.jobStore())
	if err != nil {
		t.Fatal(err)
	}
	for name := range after {
		if _, err := store.Verify(name); err != nil {
			t.Errorf("committed checkpoint %s does not verify: %v", name, err)
		}
	}
}

// TestClusterEtcdOutage stops etcd (SIGSTOP: it neither answers nor
// closes connections) for 20 s: training goes on without committing, no
// half-written checkpoint becomes visible, and once etcd is back the
// coordinator leads again and checkpoints commit.
func TestClusterEtcdOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	spec := clusterJob("outage", 2)
	spec.TrainLimit, spec.Epochs = 0, 2 // long enough to outlast the outage
	spec.CheckpointEvery = 100
	c := newTestCluster(t, spec)
	c.startJob(2)
	c.waitFor("a committed checkpoint", 2*time.Minute, func(st *api.StatusReply) bool { return st.LastCheckpoint != "" })
	c.etcd.cmd.Process.Signal(syscall.SIGSTOP)
	stepAtStop := workerStep(c)
	time.Sleep(20 * time.Second)
	stepAtResume := workerStep(c)
	c.etcd.cmd.Process.Signal(syscall.SIGCONT)
	t.Logf("etcd stopped for 20 s: the workers went from step %d to %d meanwhile", stepAtStop, stepAtResume)
	if stepAtResume <= stepAtStop {
		t.Errorf("training stood still while etcd was unreachable (step %d → %d)", stepAtStop, stepAtResume)
	}
	// (On a fast machine the job may end during the outage; its final
	// checkpoint then commits once etcd is back.)
	st, back := c.waitFor("a checkpoint committed after the outage", 2*time.Minute, func(st *api.StatusReply) bool {
		return (st.State == "running" || st.State == "done") && st.LastCheckpoint >= checkpoint.NameForStep(int(stepAtResume))
	})
	t.Logf("after etcd returned: checkpoint %s committed %v later", st.LastCheckpoint, back.Round(time.Millisecond))
	c.waitFor("job completion", 4*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" })
	c.waitWorkersExit(30 * time.Second)
	store, err := checkpoint.OpenShared(c.jobStore())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.committed() {
		if _, err := store.Verify(m.Name); err != nil {
			t.Errorf("committed checkpoint %s does not verify: %v", m.Name, err)
		}
	}
}

// workerStep is the highest step the workers report on their own
// /metrics endpoints, which answer whatever the coordinator's state.
func workerStep(c *testCluster) int64 {
	var best int64
	for _, addr := range c.httpAt {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "ringtrain_worker_step "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				best = max(best, int64(f))
			}
		}
	}
	return best
}

// TestClusterStatusAndRefusals: below min_workers the job waits and
// `ringtrain status` says why; a worker with the wrong token, or started
// for another job, is refused with a clear error and exits non-zero.
func TestClusterStatusAndRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	spec := clusterJob("waiting", 2)
	c := newTestCluster(t, spec)
	c.startJob(1)
	c.waitFor("worker-0 waiting", time.Minute, func(st *api.StatusReply) bool { return st.State == "waiting" && len(st.Workers) == 1 })
	out, err := runCLI(t, "status", "--coordinator", c.coordinatorAddrs())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "waiting: 1 of min 2 workers") || !strings.Contains(out, "worker-0") {
		t.Errorf("status does not say why the job waits:\n%s", out)
	}
	out, err = runCLI(t, "status", "--coordinator", c.coordinatorAddrs(), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st api.StatusReply
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.MinWorkers != 2 || st.Job != "waiting" {
		t.Errorf("status --json = %s (%v)", out, err)
	}
	if _, err := runCLI(t, "status", "--coordinator", "127.0.0.1:1", "--timeout", "500ms"); err == nil || !strings.Contains(err.Error(), "no coordinator answered") {
		t.Errorf("status of nothing: %v", err)
	}

	// A worker with the wrong token.
	bad := c.start("intruder", c.bin, []string{tokenEnv + "=" + wrongToken}, "worker",
		"--coordinator", c.coordinatorAddrs(), "--name", "intruder", "--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0",
		"--http", "", "--advertise", "127.0.0.1", "--data-dir", c.data)
	// A worker started for another job.
	other := spec
	other.Optimizer.LR = 0.5
	y, _ := other.YAML()
	otherFile := filepath.Join(c.dir, "other.yaml")
	os.WriteFile(otherFile, y, 0o644)
	stranger := c.start("stranger", c.bin, []string{tokenEnv + "=" + c.token}, "worker", "-f", otherFile,
		"--coordinator", c.coordinatorAddrs(), "--name", "stranger", "--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0",
		"--http", "", "--advertise", "127.0.0.1", "--data-dir", c.data)
	for _, tc := range []struct {
		p    *proc
		want string
	}{{bad, "wrong join token"}, {stranger, "job hash"}} {
		select {
		case <-tc.p.done:
		case <-time.After(time.Minute):
			t.Fatalf("%s still running", tc.p.name)
		}
		if tc.p.err == nil || !strings.Contains(tc.p.logText(), tc.want) {
			t.Errorf("%s: exit %v, log:\n%s", tc.p.name, tc.p.err, tc.p.logText())
		}
	}
	if st := c.status(); st == nil || len(st.Workers) != 1 {
		t.Errorf("refused workers became members: %+v", st)
	}
	// The coordinator logs the refusal of the wrong token, naming the
	// worker, never the token.
	if log := c.coords[0].logText(); !strings.Contains(log, `claiming to be worker "intruder": wrong join token`) || strings.Contains(log, wrongToken) {
		t.Errorf("coordinator log of the intruder's refusal:\n%s", log)
	}
}

// TestLocalClusterMatchesSingleNode trains LeNet-5 for 3 epochs with
// `train --workers 4` (embedded etcd, a coordinator, 4 worker processes) and
// on one process, at the same global batch: the test accuracies agree
// within 0.2 points, and the cluster's run directory is complete.
func TestLocalClusterMatchesSingleNode(t *testing.T) {
	if testing.Short() {
		t.Skip("trains LeNet-5 twice")
	}
	bin, data := binary(t)
	run := func(out string, args ...string) runlog.Summary {
		cmd := exec.Command(bin, append([]string{"train", "--model", "lenet5", "--epochs", "3", "--out", out}, args...)...)
		cmd.Env = append(os.Environ(), "RINGTRAIN_DATA="+data)
		o, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, o)
		}
		sum, err := runlog.ReadSummary(out)
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	dir := t.TempDir()
	cluster := run(filepath.Join(dir, "cluster"), "--workers", "4")
	single := run(filepath.Join(dir, "single"))
	diff := 100 * (cluster.TestAccuracy - single.TestAccuracy)
	t.Logf("test accuracy: 4 workers %.2f%% (%.0f images/s, %.1f s), one process %.2f%% (%.0f images/s, %.1f s): %+.2f points",
		100*cluster.TestAccuracy, cluster.ImagesPerSecond, cluster.WallSeconds,
		100*single.TestAccuracy, single.ImagesPerSecond, single.WallSeconds, diff)
	if diff < -0.2 || diff > 0.2 {
		t.Errorf("4 workers reach %.2f%%, one process %.2f%%: more than 0.2 points apart", 100*cluster.TestAccuracy, 100*single.TestAccuracy)
	}
	if cluster.Steps != single.Steps || cluster.Steps != 3*938 {
		t.Errorf("steps: cluster %d, single %d, want %d", cluster.Steps, single.Steps, 3*938)
	}
	for _, f := range []string{runlog.MetricsFile, runlog.PlotFile, "job.yaml", "coordinator.log", "worker-3.log", "checkpoints/ringtrain/latest", "checkpoints/ringtrain/job.json"} {
		if _, err := os.Stat(filepath.Join(dir, "cluster", f)); err != nil {
			t.Error(err)
		}
	}
	if o, err := runCLI(t, "checkpoint", "verify", "--dir", filepath.Join(dir, "cluster")); err != nil || !strings.Contains(o, ": ok") {
		t.Errorf("the cluster's checkpoints do not verify: %v\n%s", err, o)
	}
}

// TestLocalClusterCtrlCCheckpointsAndResumes interrupts `train --workers 2`
// with SIGINT mid-epoch: the ring checkpoints where it stands, the command
// says how to resume, and --resume finishes the job from there.
func TestLocalClusterCtrlCCheckpointsAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster")
	}
	out := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // catches hangs only
	defer cancel()
	text, err := interruptedRun(t, ctx, "epoch 1/2:", 2*time.Second, "train", "--workers", "2", "--epochs", "2", "--out", out)
	if err == nil || !strings.Contains(text, "checkpointing the ring at step") || !strings.Contains(text, "--resume") {
		t.Fatalf("interrupted cluster: exit %v, output:\n%s", err, text)
	}
	if sum, _ := resumeRun(t, ctx, out); !sum.Resumed || sum.Steps != 2*938 || sum.TestAccuracy < 0.97 {
		t.Fatalf("resumed summary %+v", sum)
	}
	store, err := checkpoint.OpenShared(filepath.Join(out, "checkpoints", job.DefaultName))
	if err != nil {
		t.Fatal(err)
	}
	final, err := store.LoadLatest(t.Logf)
	if err != nil || final == nil {
		t.Fatalf("final checkpoint: %v", err)
	}
	checkRunProducts(t, out, final)
	m := regexp.MustCompile(`checkpoint (ckpt-\d+) is committed`).FindStringSubmatch(text)
	if m == nil || m[1] == checkpoint.NameForStep(938) {
		t.Fatalf("no mid-epoch checkpoint named after the interrupt:\n%s", text)
	}
	log, _ := os.ReadFile(filepath.Join(out, "coordinator.log"))
	if !strings.Contains(string(log), "from restore "+m[1]) {
		t.Errorf("the resumed run did not start from %s:\n%s", m[1], log)
	}
}

// checkRunProducts checks that a cluster's run directory holds what
// `ringtrain train` leaves, and the final model: final's model tensors,
// merged from the ranks' shards under their own names.
func checkRunProducts(t *testing.T, dir string, final *checkpoint.Checkpoint) {
	t.Helper()
	sum, err := runlog.ReadSummary(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Checkpoint != final.Manifest.Name || sum.Steps != final.Manifest.Step || sum.TestAccuracy <= 0.1 || sum.Model == "" {
		t.Errorf("summary.json %+v; final checkpoint %s at step %d", sum, final.Manifest.Name, final.Manifest.Step)
	}
	recs, err := runlog.ReadRecords(dir)
	if err != nil || len(recs) == 0 || recs[len(recs)-1].Kind != "eval" {
		t.Errorf("metrics.jsonl: %v, %d records", err, len(recs))
	}
	if fi, err := os.Stat(filepath.Join(dir, runlog.PlotFile)); err != nil || fi.Size() == 0 {
		t.Errorf("curves.png: %v", err)
	}
	model, err := safetensors.ReadFile(filepath.Join(dir, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := final.Merged(checkpoint.ModelFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(model.Names()) != len(want) || len(want) == 0 {
		t.Fatalf("model.safetensors holds %d tensors, the checkpoint's shards %d", len(model.Names()), len(want))
	}
	for name, w := range want {
		if got, ok := model.Tensor(name); !ok || !bytes.Equal(got.Data, w.Data) {
			t.Errorf("model.safetensors: tensor %s differs from the checkpoint's", name)
		}
	}
	if !slices.Contains(model.Names(), "c1.weight") { // LeNet-5's first convolution
		t.Errorf("model.safetensors has no PyTorch state_dict names: %v", model.Names())
	}
}

// TestClusterSecure runs a job as 'ringtrain pki' sets a cluster up: each
// process with a certificate of its own, mutual TLS on the control plane
// and the all-reduce links, etcd on TLS with client certificates and its
// access control set by 'ringtrain pki etcd-auth'. The job completes; then
// nobody reaches what is not theirs: a plaintext status call gets nothing,
// a worker's certificate no etcd key, the coordinators' no key beyond the
// job's, a client without a certificate not etcd at all, and a worker
// started with another worker's certificate refuses to start.
func TestClusterSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters of processes")
	}
	spec := clusterJob("tls", 2)
	spec.Epochs, spec.TrainLimit = 1, 3200
	c := newTestCluster(t, spec)
	c.usePKI()
	c.startEtcd()
	root := c.tlsFlags(pki.Client, "root")
	for range 2 { // idempotent: a second run (once auth is on) keeps what is there
		out, err := runCLI(t, append([]string{"pki", "etcd-auth", "--etcd-endpoints", c.etcdURL.String(), "-f", c.jobFile}, root...)...)
		if err != nil {
			t.Fatalf("pki etcd-auth: %v\n%s", err, out)
		}
	}
	c.startCoordinator("coordinator-0")
	for i := range 2 {
		c.startWorker(fmt.Sprintf("worker-%d", i))
	}
	c.waitFor("job completion over TLS", 3*time.Minute, func(st *api.StatusReply) bool { return st.State == "done" })
	c.waitWorkersExit(30 * time.Second)
	out, err := runCLI(t, append([]string{"status", "--coordinator", c.coordinatorAddrs()}, c.tlsFlags(pki.Client, "operator")...)...)
	if err != nil || !strings.Contains(out, "done") {
		t.Errorf("status over TLS: %v\n%s", err, out)
	}
	// The coordinator's run directory, by default run/ beside the store.
	checkRunProducts(t, filepath.Join(c.dir, "run"), c.finalCheckpoint())
	if _, err := runCLI(t, "status", "--coordinator", c.coordinatorAddrs(), "--timeout", "2s"); err == nil {
		t.Error("a plaintext status call got an answer from a TLS coordinator")
	}

	// etcd, as each identity sees it.
	etcdAs := func(cfg *tls.Config) error {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcdURL.String()}, TLS: cfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = cli.Get(ctx, checkpoint.EtcdCheckpointsPrefix(spec.JobName()), clientv3.WithPrefix())
		return err
	}
	coordTLS := c.creds(pki.Coordinator, "coordinator").EtcdClientConfig()
	if err := etcdAs(coordTLS); err != nil {
		t.Errorf("the coordinators' certificate reading the job's checkpoints: %v", err)
	}
	if err := etcdAs(c.creds(pki.Worker, "worker-0").EtcdClientConfig()); err == nil {
		t.Error("a worker's certificate read the job's committed checkpoints from etcd")
	}
	// What an operator sees: 'checkpoint committed' as root names the
	// final checkpoint latest; as a worker it is refused.
	committed := append([]string{"checkpoint", "committed", "--etcd-endpoints", c.etcdURL.String(), "--job", spec.JobName(), "--json"}, root...)
	out, err = runCLI(t, committed...)
	final := c.finalCheckpoint().Manifest.Name
	if err != nil || !strings.Contains(out, `"latest":"`+final+`"`) {
		t.Errorf("checkpoint committed as root: %v\n%s (want latest %s)", err, out, final)
	}
	copy(committed[len(committed)-6:], c.tlsFlags(pki.Worker, "worker-0"))
	if out, err := runCLI(t, committed...); err == nil {
		t.Errorf("checkpoint committed as a worker: %s", out)
	}
	noCert := c.creds(pki.Worker, "worker-0").EtcdClientConfig()
	noCert.Certificates = nil
	if err := etcdAs(noCert); err == nil {
		t.Error("a client without a certificate read etcd")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcdURL.String()}, TLS: coordTLS, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/ringtrain/another-job/generation", "1"); err == nil {
		t.Error("the coordinators' certificate wrote another job's key")
	}
	if _, err := cli.Delete(ctx, "/", clientv3.WithPrefix()); err == nil {
		t.Error("the coordinators' certificate deleted every key")
	}

	// A worker holding another worker's certificate.
	w0 := c.tlsFlags(pki.Worker, "worker-0")
	out, err = runCLI(t, append([]string{"worker", "--coordinator", c.coordinatorAddrs(), "--name", "worker-9",
		"--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "", "--advertise", "127.0.0.1"}, w0...)...)
	if err == nil || !strings.Contains(err.Error()+out, `this is worker "worker-9"`) {
		t.Errorf("a worker with another's certificate: %v\n%s", err, out)
	}
}

// A worker of a local cluster that dies while the job runs is started
// again under its name and rejoins the ring, as a replacement pod would:
// the job completes (it needs both workers) instead of waiting forever.
func TestLocalClusterRestartsADeadWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster")
	}
	if runtime.GOOS != "linux" {
		t.Skip("finds the worker's process through /proc")
	}
	out := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // catches hangs only
	defer cancel()
	killed := 0
	text, err := runUntil(t, ctx, "epoch 1/2:", func(cmd *exec.Cmd) {
		if pid := childWorker(cmd.Process.Pid, "worker-0"); pid > 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = pid
		}
	}, "train", "--workers", "2", "--epochs", "2", "--codec", "bf16", "--out", out)
	if killed == 0 {
		t.Fatalf("found no worker-0 process to kill; output:\n%s", text)
	}
	if err != nil || !strings.Contains(text, "worker-0 exited: signal: killed") || !strings.Contains(text, "restarting it (1 of 3)") {
		t.Fatalf("exit %v; output:\n%s", err, text)
	}
	sum, err := runlog.ReadSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Steps != 2*938 || sum.TestAccuracy < 0.97 {
		t.Fatalf("summary after the restart %+v", sum)
	}
	t.Logf("worker-0 (pid %d) killed after epoch 1; the job ended at %.2f%%", killed, 100*sum.TestAccuracy)
	// The workers share this host: every ring linked them through shared
	// memory, the ring the restarted worker-0 joined included.
	for _, name := range []string{"worker-0", "worker-1"} {
		log, _ := os.ReadFile(filepath.Join(out, name+".log"))
		sharedMemoryLinks(t, name, string(log), 0, 1)
	}
	log, _ := os.ReadFile(filepath.Join(out, "worker-0.log"))
	restarted := string(log)[max(0, strings.LastIndex(string(log), "joined the job")):]
	sharedMemoryLinks(t, "the restarted worker-0", restarted, 0, 1)

	// Without restarts left, a job that is then short of workers stops
	// with an error instead of waiting for ever.
	killed = 0
	text, err = runUntil(t, ctx, "epoch 1/2:", func(cmd *exec.Cmd) {
		if pid := childWorker(cmd.Process.Pid, "worker-1"); pid > 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = pid
		}
	}, "train", "--workers", "2", "--epochs", "2", "--max-restarts", "0", "--out", filepath.Join(t.TempDir(), "run"))
	if killed == 0 || err == nil || !strings.Contains(text, "the job needs 2 workers and 1 remain") {
		t.Fatalf("no restarts: killed %d, exit %v; output:\n%s", killed, err, text)
	}
}

// sharedMemoryLinks checks that a worker's log tells of at least n rings
// (of generation gen, or of any when gen is 0) and that every ring it
// formed linked both neighbours through shared memory, not gRPC.
func sharedMemoryLinks(t *testing.T, name, log string, gen uint64, n int) {
	t.Helper()
	prefix := `generation \d+: `
	if gen > 0 {
		prefix = fmt.Sprintf(`generation %d: `, gen)
	}
	shm := regexp.MustCompile(prefix + `ring links: shared memory to rank \d+, shared memory from rank \d+`)
	if got := len(shm.FindAllString(log, -1)); got < n {
		t.Errorf("%s's log tells of %d rings linked through shared memory, want at least %d:\n%s", name, got, n, log)
	}
	if other := regexp.MustCompile(`ring links: .*gRPC.*`).FindString(log); other != "" {
		t.Errorf("%s formed a ring on gRPC beside neighbours on its host: %q", name, other)
	}
}

// childWorker returns the pid of parent's child process running
// `ringtrain worker --name name`, or 0.
func childWorker(parent int, name string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The parent's pid is the second field after the command name,
		// which is in parentheses and may hold spaces.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(parent) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte("\x00worker\x00")) && bytes.Contains(cmdline, []byte("\x00--name\x00"+name+"\x00")) {
			return pid
		}
	}
	return 0
}
