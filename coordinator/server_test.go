package coordinator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/etcdtest"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/membership"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/safetensors"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hang bounds every wait of these tests; it only catches hangs.
const hang = 30 * time.Second

const (
	testToken   = "s3cret"
	testSamples = 64 // 8 steps per epoch for 2 workers at batch 8
)

// testSpec is a one-epoch job of 1 to 2 workers at global batch 8.
func testSpec() job.Spec {
	s := job.Default()
	s.Name = "testjob"
	s.Epochs = 1
	s.BatchSize = 8
	s.Workers, s.MinWorkers, s.MaxWorkers = 2, 1, 2
	s.Codec = "bf16"
	return s
}

// cluster is one embedded etcd, a client and a checkpoint store, shared by
// the coordinators of a test.
type cluster struct {
	t     testing.TB
	etcd  *etcdtest.Server
	cli   *clientv3.Client
	store *checkpoint.Store
	spec  job.Spec
	log   *testLog
}

// testLog forwards the servers' logs to the test until it ends, and keeps
// them for the test to read.
type testLog struct {
	mu    sync.Mutex
	t     testing.TB
	done  bool
	lines strings.Builder
}

func (l *testLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.lines, format+"\n", args...)
	if !l.done {
		l.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// String is everything logged so far.
func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines.String()
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	l := &testLog{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	srv := etcdtest.New(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	store, err := checkpoint.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, etcd: srv, cli: cli, store: store, spec: testSpec(), log: l}
}

func (c *cluster) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	c.t.Cleanup(cancel)
	return ctx
}

// coord is one coordinator process: its server, gRPC endpoint and
// memberlist member, running until stop.
type coord struct {
	srv    *Server
	addr   string
	member *membership.Member
	client *api.ControlClient
	runErr chan error
	stop   func() error
}

func (c *cluster) start(name string, edit func(*ServerConfig)) *coord {
	t := c.t
	t.Helper()
	member, err := membership.Start(membership.Config{Name: name, Bind: "127.0.0.1:0", Secret: testToken, Probe: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig{
		Name: name, Spec: c.spec, Token: testToken, Etcd: c.cli, Store: c.store, Samples: testSamples,
		Gossip: member, GossipAddr: member.Addr(),
		HeartbeatInterval: 50 * time.Millisecond,
		DeadAfter:         time.Minute, // deaths come from memberlist or not at all
		// Fake workers report the ring only when a test drives them:
		// stuck members are evicted in the tests that ask for it.
		StuckAfter: -1,
		Settle:     50 * time.Millisecond,
		LeaseTTL:   5,
		Logf:       func(f string, a ...any) { c.log.logf(name+": "+f, a...) },
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		member.Shutdown()
		t.Fatal(err)
	}
	srv.commitTTL = time.Second
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	served := make(chan struct{})
	go func() {
		defer close(served)
		g.Serve(lis)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cd := &coord{srv: srv, addr: lis.Addr().String(), member: member, runErr: make(chan error, 1)}
	go func() { cd.runErr <- srv.Run(ctx) }()
	var once sync.Once
	var runErr error
	cd.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-cd.runErr:
			case <-time.After(hang):
				t.Errorf("%s: Run did not return within %v of its context's end", name, hang)
			}
			g.Stop()
			<-served
			member.Shutdown()
		})
		return runErr
	}
	t.Cleanup(func() { cd.stop() })
	cd.client = dial(t, cd.addr)
	return cd
}

func dial(t testing.TB, addr string) *api.ControlClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api.NewControlClient(cc)
}

// eventually polls cond until it holds; it fails the test after hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func (cd *coord) waitLeader(t *testing.T) {
	t.Helper()
	eventually(t, cd.srv.cfg.Name+" to lead", cd.srv.IsLeader)
}

func wantCode(t *testing.T, err error, code codes.Code, substrings ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	for _, s := range substrings {
		if !strings.Contains(status.Convert(err).Message(), s) {
			t.Errorf("error %q does not mention %q", status.Convert(err).Message(), s)
		}
	}
}

// worker is a fake worker: the test drives its calls.
type worker struct {
	name string
	data string
	c    *api.ControlClient
}

func (c *cluster) join(t *testing.T, cd *coord, name string) (*worker, *api.JoinReply) {
	t.Helper()
	w := &worker{name: name, data: "127.0.0.1:7" + name[len(name)-1:] + "00", c: cd.client}
	reply, err := w.c.Join(c.ctx(), &api.JoinRequest{Name: name, Token: testToken, JobHash: c.spec.Hash(), DataAddr: w.data})
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	return w, reply
}

func (w *worker) heartbeat(t *testing.T, gen uint64, step int64, broken bool) *api.HeartbeatReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	// A fake worker is in the ring of every generation it names.
	r, err := w.c.Heartbeat(ctx, &api.HeartbeatRequest{Name: w.name, Token: testToken, Generation: gen, Step: step, Broken: broken,
		InRing: gen > 0 && !broken, Stats: &api.WorkerStats{Loss: 0.5, ImagesPerSecond: 100}})
	if err != nil {
		t.Fatalf("heartbeat %s: %v", w.name, err)
	}
	return r
}

// waitGeneration heartbeats as w until the reply carries a generation
// after `after` for which ok holds.
func (w *worker) waitGeneration(t *testing.T, after uint64, ok func(*api.Generation) bool) *api.Generation {
	t.Helper()
	var g *api.Generation
	eventually(t, fmt.Sprintf("%s to see a generation after %d", w.name, after), func() bool {
		r := w.heartbeat(t, after, 0, false)
		g = r.Generation
		return g != nil && g.Number > after && (ok == nil || ok(g))
	})
	return g
}

func ringNames(g *api.Generation) []string {
	var names []string
	for _, p := range g.Ring {
		names = append(names, p.Name)
	}
	return names
}

func (c *cluster) etcdGeneration(t *testing.T) uint64 {
	t.Helper()
	resp, err := c.cli.Get(c.ctx(), checkpoint.EtcdGenerationKey(JobName(c.spec)))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	n, err := strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkpointAll writes one shard per rank of g at step and reports it from
// every rank; the last report carries eval.
func (c *cluster) checkpointAll(t *testing.T, g *api.Generation, ws map[string]*worker, step int64, epoch, consumed int, eval *api.Eval) string {
	t.Helper()
	name := checkpoint.NameForStep(int(step))
	for rank, p := range g.Ring {
		fi, err := c.store.WriteShard(name, checkpoint.Part{
			Name:    fmt.Sprintf("rank-%d.safetensors", rank),
			Tensors: map[string]safetensors.Tensor{"w": safetensors.F32([]int{2}, []float32{float32(step), float32(rank)})},
		})
		if err != nil {
			t.Fatal(err)
		}
		req := &api.CheckpointReport{
			Name: p.Name, Token: testToken, Generation: g.Number, Rank: rank, World: len(g.Ring),
			Checkpoint: name, Step: step, Epoch: epoch, Consumed: consumed, TrainLoss: 0.25,
			Files: []api.FileInfo{{Name: fi.Name, Size: fi.Size, SHA256: fi.SHA256}},
		}
		if rank == len(g.Ring)-1 {
			req.Eval = eval
		}
		if _, err := ws[p.Name].c.ReportCheckpoint(c.ctx(), req); err != nil {
			t.Fatalf("report of %s by %s: %v", name, p.Name, err)
		}
	}
	return name
}

func (c *cluster) latest(t *testing.T) (checkpoint.Manifest, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m, ok, err := checkpoint.NewEtcdCommitter(c.cli, JobName(c.spec), c.store).Latest(ctx)
	if err != nil {
		return checkpoint.Manifest{}, false
	}
	return m, ok
}

func (c *cluster) waitCommitted(t *testing.T, name string) checkpoint.Manifest {
	t.Helper()
	var m checkpoint.Manifest
	eventually(t, name+" to be committed in etcd", func() bool {
		var ok bool
		m, ok = c.latest(t)
		return ok && m.Name == name
	})
	return m
}

// metric scrapes the server's /metrics and returns one sample's value.
func metric(t *testing.T, s *Server, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	s.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// httpGet GETs path from s's HTTP handler with the join token.
func httpGet(s *Server, path string) *httptest.ResponseRecorder {
	return request(s, path, bearer(testToken))
}

func TestServerRefusesJoins(t *testing.T) {
	c := newCluster(t)
	cd := c.start("coord-a", nil)
	cd.waitLeader(t)
	ctx := c.ctx()

	_, err := cd.client.Join(ctx, &api.JoinRequest{Name: "w1", Token: "wrong", JobHash: c.spec.Hash()})
	wantCode(t, err, codes.PermissionDenied, "token")
	_, err = cd.client.Join(ctx, &api.JoinRequest{Name: "w1", Token: testToken, JobHash: "0123456789abcdef"})
	wantCode(t, err, codes.FailedPrecondition, "0123456789abcdef", c.spec.Hash())

	w1, reply := c.join(t, cd, "w1")
	if reply.JobHash != c.spec.Hash() || reply.JobID != JobID(c.spec.Hash()) || reply.StoreDir != c.store.Dir() ||
		reply.HeartbeatMillis != 50 || !slices.Equal(reply.Gossip, []string{cd.member.Addr()}) {
		t.Errorf("join reply %+v", reply)
	}
	if spec, err := job.Parse([]byte(reply.Job), "reply"); err != nil || spec.Hash() != c.spec.Hash() {
		t.Errorf("join reply's job file: %v, hash %s, want %s", err, spec.Hash(), c.spec.Hash())
	}
	// An empty job hash accepts the coordinator's job.
	if _, err := cd.client.Join(ctx, &api.JoinRequest{Name: "w2", Token: testToken, DataAddr: "127.0.0.1:7200"}); err != nil {
		t.Fatalf("join without a job hash: %v", err)
	}
	_, err = cd.client.Join(ctx, &api.JoinRequest{Name: "w3", Token: testToken, JobHash: c.spec.Hash()})
	wantCode(t, err, codes.ResourceExhausted, "max 2")

	_, err = cd.client.Heartbeat(ctx, &api.HeartbeatRequest{Name: "w3", Token: testToken})
	wantCode(t, err, codes.NotFound, "join again")
	_, err = cd.client.Heartbeat(ctx, &api.HeartbeatRequest{Name: "w1", Token: "wrong"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = cd.client.ReportCheckpoint(ctx, &api.CheckpointReport{Name: "w1", Token: "wrong", World: 1,
		Checkpoint: checkpoint.NameForStep(1), Step: 1, Files: []api.FileInfo{{Name: "a"}}})
	wantCode(t, err, codes.PermissionDenied)
	_, err = cd.client.Leave(ctx, &api.LeaveRequest{Name: "w1", Token: "wrong"})
	wantCode(t, err, codes.PermissionDenied)
	w1.heartbeat(t, 0, 0, false) // a member's heartbeat is fine
}

func TestServerGenerations(t *testing.T) {
	c := newCluster(t)
	cd := c.start("coord-a", nil)
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	w2, _ := c.join(t, cd, "w2")

	g1 := w1.waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	if !slices.Equal(ringNames(g1), []string{"w1", "w2"}) || g1.Ring[0].DataAddr != w1.data || g1.Ring[1].DataAddr != w2.data {
		t.Fatalf("generation %+v, want ring w1 (%s), w2 (%s)", g1, w1.data, w2.data)
	}
	if g1.ResumeStep != 0 || g1.Source != "" || g1.Restore != "" {
		t.Errorf("first generation %+v, want a fresh start", g1)
	}
	if n := c.etcdGeneration(t); n != g1.Number {
		t.Errorf("etcd holds generation %d, workers got %d", n, g1.Number)
	}

	// Heartbeats carry steps: w1 is ahead.
	w1.heartbeat(t, g1.Number, 3, false)
	w2.heartbeat(t, g1.Number, 2, false)
	st := cd.srv.StatusReply()
	if st.State != "running" || st.Coordinator != "coord-a" || st.Codec != "bf16" || st.Generation != g1.Number || st.Step != 3 || len(st.Workers) != 2 ||
		st.Workers[0].Step != 3 || st.Workers[1].Step != 2 || st.Workers[1].Rank != 1 || st.ImagesPerSecond != 200 {
		t.Errorf("status %+v", st)
	}
	if got := metric(t, cd.srv, "ringtrain_step"); got != 3 {
		t.Errorf("ringtrain_step %v, want 3", got)
	}

	// w2 finds the ring broken: a new generation of the same two, from w1,
	// the survivor with the highest step, 3 steps of 2×4 samples on.
	for range 3 { // a worker repeats the report until a new generation comes
		w2.heartbeat(t, g1.Number, 2, true)
	}
	g2 := w2.waitGeneration(t, g1.Number, nil)
	if n := strings.Count(c.log.String(), "w2 reports the ring of generation 1 broken"); n != 1 {
		t.Errorf("the broken ring was logged %d times, want once", n)
	}
	if !slices.Equal(ringNames(g2), []string{"w1", "w2"}) || g2.Source != "w1" || g2.ResumeStep != 3 || g2.Epoch != 0 || g2.Consumed != 24 {
		t.Errorf("generation after a broken ring %+v, want w1, w2 from w1 at step 3, consumed 24", g2)
	}
	if n := c.etcdGeneration(t); n != g2.Number {
		t.Errorf("etcd holds generation %d, workers got %d", n, g2.Number)
	}

	// HTTP: alive, ready (the leader), metrics and status.
	if rec := httpGet(cd.srv, "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("/healthz: %d", rec.Code)
	}
	if rec := httpGet(cd.srv, "/readyz"); rec.Code != http.StatusOK {
		t.Errorf("/readyz of the leader: %d", rec.Code)
	}
	if got := metric(t, cd.srv, "ringtrain_generation"); got != float64(g2.Number) {
		t.Errorf("ringtrain_generation %v, want %d", got, g2.Number)
	}
	for name, want := range map[string]float64{"ringtrain_workers": 2, "ringtrain_members": 2, "ringtrain_is_leader": 1} {
		if got := metric(t, cd.srv, name); got != want {
			t.Errorf("%s %v, want %v", name, got, want)
		}
	}
	if metric(t, cd.srv, "ringtrain_heartbeats_total") < 4 {
		t.Errorf("ringtrain_heartbeats_total below the heartbeats sent")
	}
	var js api.StatusReply
	if err := json.Unmarshal(httpGet(cd.srv, "/status").Body.Bytes(), &js); err != nil || js.Generation != g2.Number || js.State != "running" {
		t.Errorf("/status: %+v, %v", js, err)
	}

	// w2 leaves: the ring goes on with w1 alone, from w1.
	if _, err := w2.c.Leave(c.ctx(), &api.LeaveRequest{Name: "w2", Token: testToken}); err != nil {
		t.Fatal(err)
	}
	g3 := w1.waitGeneration(t, g2.Number, nil)
	if !slices.Equal(ringNames(g3), []string{"w1"}) || g3.Source != "w1" {
		t.Errorf("generation after a leave %+v, want w1 alone from w1", g3)
	}
}

// A worker that heartbeats but never reaches the ring (hung in a file
// operation) is evicted from the next generation after StuckAfter, though
// every ring it breaks is followed by a new one; it is told why, and may
// join again StuckAfter later. The members that reach every ring stay.
func TestServerEvictsAStuckMember(t *testing.T) {
	c := newCluster(t)
	c.spec.Workers, c.spec.MaxWorkers = 3, 3
	const stuckAfter = 600 * time.Millisecond
	cd := c.start("coord-a", func(cfg *ServerConfig) { cfg.StuckAfter = stuckAfter })
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	w2, _ := c.join(t, cd, "w2")
	w3, _ := c.join(t, cd, "w3")
	g := w1.waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 3 })
	start := time.Now()

	// w1 and w2 reach every ring and, as the all-reduce times out on w3
	// 100 ms later, w2 reports it broken; w3 heartbeats the newest
	// generation but never says it is in the ring.
	var evicted error
	deadline, since := time.Now().Add(hang), time.Now()
	for evicted == nil && time.Now().Before(deadline) {
		r := w1.heartbeat(t, g.Number, 0, false)
		w2.heartbeat(t, g.Number, 0, time.Since(since) > 100*time.Millisecond)
		if r.Generation.Number > g.Number {
			g, since = r.Generation, time.Now()
		}
		_, evicted = w3.c.Heartbeat(c.ctx(), &api.HeartbeatRequest{Name: "w3", Token: testToken, Generation: g.Number})
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	wantCode(t, evicted, codes.NotFound, "w3 was evicted", "stuck: not in the ring of generation")
	if took < stuckAfter {
		t.Errorf("w3 evicted after %v, before StuckAfter %v", took, stuckAfter)
	}
	eventually(t, "a generation without w3", func() bool {
		r := w1.heartbeat(t, g.Number, 0, false)
		w2.heartbeat(t, g.Number, 0, false)
		g = r.Generation
		return len(g.Ring) == 2
	})
	if !slices.Equal(ringNames(g), []string{"w1", "w2"}) {
		t.Errorf("generation after the eviction %+v, want w1, w2", g)
	}
	if !strings.Contains(c.log.String(), "w3 removed (stuck: not in the ring of generation") {
		t.Errorf("the eviction is not logged:\n%s", c.log.String())
	}

	// It may join again, but not at once.
	_, err := w3.c.Join(c.ctx(), &api.JoinRequest{Name: "w3", Token: testToken, JobHash: c.spec.Hash(), DataAddr: w3.data})
	wantCode(t, err, codes.Unavailable, "w3 was evicted", "may join again")
	eventually(t, "w3 to be admitted again", func() bool {
		w1.heartbeat(t, g.Number, 0, false)
		w2.heartbeat(t, g.Number, 0, false)
		_, err := w3.c.Join(c.ctx(), &api.JoinRequest{Name: "w3", Token: testToken, JobHash: c.spec.Hash(), DataAddr: w3.data})
		return err == nil
	})
	g = w3.waitGeneration(t, g.Number, func(g *api.Generation) bool { return len(g.Ring) == 3 })
	// Now all three reach the ring: nobody is evicted.
	for end := time.Now().Add(2 * stuckAfter); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for _, w := range []*worker{w1, w2, w3} {
			if r := w.heartbeat(t, g.Number, 0, false); r.Generation.Number != g.Number {
				t.Fatalf("generation %d after %d, with every member in the ring", r.Generation.Number, g.Number)
			}
		}
	}
}

// startMember starts a worker's memberlist member, shut down when the test
// ends.
func startMember(t *testing.T, name string) *membership.Member {
	t.Helper()
	m, err := membership.Start(membership.Config{Name: name, Bind: "127.0.0.1:0", Secret: testToken, Probe: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func TestServerDeadWorkerFromGossip(t *testing.T) {
	c := newCluster(t)
	cd := c.start("coord-a", nil)
	cd.waitLeader(t)
	ws := map[string]*worker{}
	members := map[string]*membership.Member{}
	for _, name := range []string{"w1", "w2"} {
		w, reply := c.join(t, cd, name)
		m := startMember(t, name)
		if err := m.Join(reply.Gossip); err != nil {
			t.Fatal(err)
		}
		ws[name], members[name] = w, m
	}
	g1 := ws["w1"].waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	ws["w1"].heartbeat(t, g1.Number, 2, false)
	ws["w2"].heartbeat(t, g1.Number, 2, false)

	// w2's process dies without a word (the coordinator declares silent
	// workers dead after a minute): memberlist calls it gone, which alone
	// removes nobody (a live process too busy to answer probes looks the
	// same), and w1 finds the ring broken, which confirms it.
	members["w2"].Shutdown()
	eventually(t, "memberlist to call w2 gone", func() bool { return strings.Contains(c.log.String(), "w2 stopped answering probes") })
	if r := ws["w1"].heartbeat(t, g1.Number, 2, false); r.Generation == nil || r.Generation.Number != g1.Number {
		t.Fatalf("after memberlist alone called w2 gone: %+v, want generation %d still", r, g1.Number)
	}
	ws["w1"].heartbeat(t, g1.Number, 2, true)
	g2 := ws["w1"].waitGeneration(t, g1.Number, func(g *api.Generation) bool { return len(g.Ring) == 1 })
	if !slices.Equal(ringNames(g2), []string{"w1"}) || g2.Source != "w1" || g2.ResumeStep != 2 || g2.Consumed != 16 {
		t.Errorf("generation after w2 died %+v, want w1 alone from w1 at step 2, consumed 16", g2)
	}
	_, err := ws["w2"].c.Heartbeat(c.ctx(), &api.HeartbeatRequest{Name: "w2", Token: testToken, Generation: g1.Number, InRing: true, Step: 3})
	wantCode(t, err, codes.NotFound)
}

// A worker restarted under its name (a new process, a new pod) may join
// before gossip has declared its predecessor dead; that late news is about
// the predecessor and must not remove the replacement.
func TestServerKeepsAReplacementWhenItsPredecessorIsDeclaredDead(t *testing.T) {
	c := newCluster(t)
	cd := c.start("coord-a", nil)
	cd.waitLeader(t)
	ws := map[string]*worker{}
	members := map[string]*membership.Member{}
	joinAs := func(name string, m *membership.Member) *worker {
		w := &worker{name: name, data: "127.0.0.1:7" + name[len(name)-1:] + "00", c: cd.client}
		reply, err := w.c.Join(c.ctx(), &api.JoinRequest{Name: name, Token: testToken, JobHash: c.spec.Hash(), DataAddr: w.data, GossipAddr: m.Addr()})
		if err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
		if err := m.Join(reply.Gossip); err != nil {
			t.Logf("%s: gossip join: %v", name, err)
		}
		return w
	}
	for _, name := range []string{"w1", "w2"} {
		members[name] = startMember(t, name)
		ws[name] = joinAs(name, members[name])
	}
	g1 := ws["w1"].waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	ws["w1"].heartbeat(t, g1.Number, 2, false)
	ws["w2"].heartbeat(t, g1.Number, 2, false)

	// w2's process dies and its replacement joins at once, from another
	// gossip address, before memberlist has noticed.
	old := members["w2"].Addr()
	members["w2"].Shutdown()
	replacement := startMember(t, "w2")
	w2 := joinAs("w2", replacement)
	eventually(t, "gossip to declare the first w2 dead", func() bool {
		log := c.log.String()
		return strings.Contains(log, "an earlier w2 ("+old+") is gone") || strings.Contains(log, "w2 is gone")
	})
	if _, err := w2.c.Heartbeat(c.ctx(), &api.HeartbeatRequest{Name: "w2", Token: testToken, Generation: g1.Number, InRing: true, Step: 2}); err != nil {
		t.Fatalf("the replacement w2 was removed with its predecessor: %v", err)
	}
	if strings.Contains(c.log.String(), "w2 is gone") {
		t.Errorf("the coordinator took the predecessor's death for the replacement's:\n%s", c.log.String())
	}
}

func TestServerCheckpointsEtcdOutageAndDone(t *testing.T) {
	c := newCluster(t)
	runDir := t.TempDir()
	cd := c.start("coord-a", func(cfg *ServerConfig) {
		cfg.RunDir = runDir
		cfg.LeaseTTL = 20 // outlives the etcd outage below
	})
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	w2, _ := c.join(t, cd, "w2")
	ws := map[string]*worker{"w1": w1, "w2": w2}
	g := w1.waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })

	name := c.checkpointAll(t, g, ws, 4, 0, 32, nil)
	m := c.waitCommitted(t, name)
	if m.JobHash != c.spec.Hash() || m.Step != 4 || m.Epoch != 0 || m.Position != 32 || m.WorldSize != 2 ||
		m.Generation != int(g.Number) || len(m.Files) != 2 || m.Files[0].Name != "rank-0.safetensors" || m.Metrics.TrainLoss != 0.25 {
		t.Errorf("committed manifest %+v", m)
	}
	if _, err := c.store.Verify(name); err != nil {
		t.Errorf("the sealed checkpoint does not verify: %v", err)
	}
	eventually(t, "status to show the checkpoint", func() bool { return cd.srv.StatusReply().LastCheckpoint == name })

	// etcd goes away: the commit fails, nothing crashes, heartbeats are
	// still answered.
	c.log.logf("stopping etcd")
	c.etcd.Stop()
	c.log.logf("stopped etcd")
	failures := metric(t, cd.srv, "ringtrain_checkpoint_commit_failures_total")
	c.checkpointAll(t, g, ws, 6, 0, 48, nil)
	eventually(t, "the commit to fail", func() bool {
		return metric(t, cd.srv, "ringtrain_checkpoint_commit_failures_total") > failures
	})
	if r := w1.heartbeat(t, g.Number, 6, false); r.Generation == nil || r.Generation.Number != g.Number || r.Stop {
		t.Errorf("heartbeat while etcd is down: %+v", r)
	}
	c.etcd.Restart()
	c.log.logf("restarted etcd")
	eventually(t, "etcd to answer again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.cli.Get(ctx, "x")
		return err == nil
	})
	if got, _ := c.latest(t); got.Name != name {
		t.Errorf("latest is %s after a failed commit, want %s", got.Name, name)
	}
	if !cd.srv.IsLeader() {
		t.Fatal("the coordinator lost its leadership in a short etcd outage")
	}
	name = c.checkpointAll(t, g, ws, 7, 0, 56, nil)
	c.waitCommitted(t, name)

	// The final checkpoint (epoch 1, nothing consumed) ends the job.
	select {
	case <-cd.srv.Done():
		t.Fatal("done before the final checkpoint")
	default:
	}
	eval := &api.Eval{Epoch: 0, Loss: 0.1, Accuracy: 0.97}
	final := c.checkpointAll(t, g, ws, 8, 1, 0, eval)
	select {
	case <-cd.srv.Done():
	case <-time.After(hang):
		t.Fatal("not done after the final checkpoint")
	}
	if got, _ := c.latest(t); got.Name != final || got.Metrics.TestAccuracy != 0.97 {
		t.Errorf("latest %+v, want %s with the evaluation", got, final)
	}
	if r := w2.heartbeat(t, g.Number, 8, false); !r.Stop {
		t.Errorf("heartbeat after the job is done: %+v, want Stop", r)
	}
	st := cd.srv.StatusReply()
	if st.State != "done" || st.LastEval == nil || st.LastEval.Accuracy != 0.97 || st.LastCheckpoint != final {
		t.Errorf("status after the job is done: %+v", st)
	}
	eventually(t, "etcd to say the job is done", func() bool {
		resp, err := c.cli.Get(c.ctx(), EtcdStateKey(JobName(c.spec)))
		var js JobState
		return err == nil && len(resp.Kvs) == 1 && json.Unmarshal(resp.Kvs[0].Value, &js) == nil && js.State == "done"
	})
	evals := 0
	for _, r := range records(t, runDir) {
		if r.Kind == "eval" && r.Step == 8 && r.Accuracy == 0.97 {
			evals++
		}
	}
	if evals != 1 {
		t.Errorf("%d eval records of the final evaluation, want 1", evals)
	}
	if err := cd.stop(); err != nil {
		t.Fatal(err)
	}

	// A coordinator that takes over a finished job tells everyone to stop.
	cd2 := c.start("coord-b", nil)
	cd2.waitLeader(t)
	select {
	case <-cd2.srv.Done():
	case <-time.After(hang):
		t.Fatal("a coordinator of a finished job is not done")
	}
	w3, _ := c.join(t, cd2, "w1")
	if r := w3.heartbeat(t, 0, 0, false); !r.Stop {
		t.Errorf("heartbeat to the new leader of a finished job: %+v, want Stop", r)
	}
	if st := cd2.srv.StatusReply(); st.State != "done" {
		t.Errorf("status of a finished job: %+v", st)
	}
	if err := cd2.stop(); err != nil {
		t.Fatal(err)
	}

	// A coordinator of another job under the same name refuses to lead.
	other := c.spec
	other.Seed++
	c.spec = other
	cd3 := c.start("coord-c", nil)
	select {
	case err := <-cd3.runErr:
		cd3.runErr <- err // for stop
		if err == nil || !strings.Contains(err.Error(), testSpec().Hash()) || !strings.Contains(err.Error(), other.Hash()) {
			t.Errorf("Run of a coordinator of another job: %v, want an error naming both hashes", err)
		}
	case <-time.After(hang):
		t.Fatal("a coordinator of another job leads it")
	}
}

func TestServerFailover(t *testing.T) {
	c := newCluster(t)
	runDir := t.TempDir() // shared by both, as on a shared volume
	shared := func(cfg *ServerConfig) { cfg.RunDir, cfg.ControlAddr = runDir, cfg.Name+".example:7070" }
	a := c.start("coord-a", shared)
	a.waitLeader(t)
	b := c.start("coord-b", shared)

	// A standby's status names the leader and where it answers.
	if st := b.srv.StatusReply(); st.State != "standby" || st.Coordinator != "coord-a" || st.LeaderAddr != "coord-a.example:7070" {
		t.Errorf("standby status %+v", st)
	}
	_, err := b.client.Join(c.ctx(), &api.JoinRequest{Name: "w1", Token: testToken, JobHash: c.spec.Hash()})
	wantCode(t, err, codes.Unavailable, "standby coordinator coord-b", "the leader is coord-a")
	if rec := httpGet(b.srv, "/readyz"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz of a standby: %d", rec.Code)
	}
	if got := metric(t, b.srv, "ringtrain_is_leader"); got != 0 {
		t.Errorf("ringtrain_is_leader of a standby: %v", got)
	}

	w1, _ := c.join(t, a, "w1")
	w2, _ := c.join(t, a, "w2")
	ws := map[string]*worker{"w1": w1, "w2": w2}
	g := w1.waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	name := c.checkpointAll(t, g, ws, 4, 0, 32, &api.Eval{Epoch: 0, Accuracy: 0.5})
	c.waitCommitted(t, name)
	w1.heartbeat(t, g.Number, 5, false)
	ws[g.Ring[0].Name].heartbeat(t, g.Number, 50, false)
	last := c.etcdGeneration(t)
	// The leader writes the run's records; the standby, sharing the
	// directory, leaves them alone.
	rs := records(t, runDir)
	if len(rs) != 2 || rs[0].Kind != "eval" || rs[0].Step != 4 || rs[1].Kind != "train" || rs[1].Step != 50 {
		t.Fatalf("records before the failover %+v", rs)
	}

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	b.waitLeader(t)
	// The workers are strangers to the new leader: they join again.
	_, err = b.client.Heartbeat(c.ctx(), &api.HeartbeatRequest{Name: "w1", Token: testToken, Generation: g.Number, InRing: true, Step: 5})
	wantCode(t, err, codes.NotFound)
	for _, n := range []string{"w1", "w2"} {
		w, _ := c.join(t, b, n)
		ws[n] = w
	}
	g2 := ws["w1"].waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	if g2.Number <= last {
		t.Errorf("new leader's first generation %d, want above the old one's %d", g2.Number, last)
	}
	if g2.Source != "" || g2.Restore != name || g2.ResumeStep != 4 || g2.Epoch != 0 || g2.Consumed != 32 {
		t.Errorf("new leader's first generation %+v, want a restore of %s at step 4, consumed 32", g2, name)
	}
	if st := b.srv.StatusReply(); st.Coordinator != "coord-b" || st.LastCheckpoint != name {
		t.Errorf("new leader's status %+v", st)
	}
	// The new leader continues the records; those past the checkpoint it
	// restores are trained again, and go.
	if rs := records(t, runDir); len(rs) != 1 || rs[0].Kind != "eval" || rs[0].Step != 4 {
		t.Errorf("records after the restore at step 4: %+v", rs)
	}
}

func TestServerStepsDownWhenItsLeaseIsRevoked(t *testing.T) {
	c := newCluster(t)
	a := c.start("coord-a", nil)
	a.waitLeader(t)
	w1, _ := c.join(t, a, "w1")
	g := w1.waitGeneration(t, 0, nil)

	// Someone revokes the leader's lease (as etcd does when it expires).
	resp, err := c.cli.Get(c.ctx(), checkpoint.EtcdLeaderPrefix(JobName(c.spec))+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("leader keys: %v, %v", resp, err)
	}
	if _, err := c.cli.Revoke(c.ctx(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	// It steps down, campaigns again, wins (it is the only candidate) and
	// continues with a higher generation; the worker re-joins.
	eventually(t, "the worker to be told to join again", func() bool {
		_, err := w1.c.Heartbeat(c.ctx(), &api.HeartbeatRequest{Name: "w1", Token: testToken, Generation: g.Number, InRing: true})
		return status.Code(err) == codes.NotFound
	})
	a.waitLeader(t)
	w1, _ = c.join(t, a, "w1")
	if g2 := w1.waitGeneration(t, 0, nil); g2.Number <= g.Number {
		t.Errorf("generation %d after a new term, want above %d", g2.Number, g.Number)
	}
}

func TestJobID(t *testing.T) {
	if got := JobID("0123456789abcdef"); got != 0x0123456789abcdef {
		t.Errorf("JobID = %#x", got)
	}
	if JobID("not hex at all!!") == JobID("not hex at all!?") {
		t.Error("JobID of different non-hex strings collides")
	}
	if _, err := NewServer(ServerConfig{}); err == nil {
		t.Error("NewServer accepts an empty config")
	}
	if !errors.Is(&fatalError{err: context.Canceled}, context.Canceled) {
		t.Error("fatalError does not unwrap")
	}
}

func TestServerEtcdOutageLongerThanTheLease(t *testing.T) {
	c := newCluster(t)
	a := c.start("coord-a", func(cfg *ServerConfig) { cfg.LeaseTTL = 2 })
	a.waitLeader(t)
	w1, _ := c.join(t, a, "w1")
	g := w1.waitGeneration(t, 0, nil)

	// etcd is gone for longer than the lease: the leader steps down and
	// answers as a standby, without crashing.
	c.log.logf("stopping etcd")
	c.etcd.Stop()
	c.log.logf("stopped etcd")
	eventually(t, "the leader to step down", func() bool { return !a.srv.IsLeader() })
	_, err := w1.c.Heartbeat(c.ctx(), &api.HeartbeatRequest{Name: "w1", Token: testToken, Generation: g.Number, InRing: true})
	wantCode(t, err, codes.Unavailable, "standby coordinator coord-a")

	// etcd returns: it leads again, with a higher generation.
	c.log.logf("restarting etcd")
	c.etcd.Restart()
	c.log.logf("restarted etcd")
	a.waitLeader(t)
	w1, _ = c.join(t, a, "w1")
	if g2 := w1.waitGeneration(t, 0, nil); g2.Number <= g.Number {
		t.Errorf("generation %d after etcd returned, want above %d", g2.Number, g.Number)
	}
}

func TestServerPausesBelowMinWorkersAndLogsTraining(t *testing.T) {
	c := newCluster(t)
	c.spec.MinWorkers = 2
	runDir := t.TempDir()
	cd := c.start("coord-a", func(cfg *ServerConfig) { cfg.RunDir = runDir })
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	eventually(t, "status to say why the job waits", func() bool {
		st := cd.srv.StatusReply()
		return st.State == "waiting" && strings.Contains(st.Reason, "1 of min 2")
	})
	w2, _ := c.join(t, cd, "w2")
	g := w1.waitGeneration(t, 0, nil)

	// Rank 0's heartbeats become "train" records; 50 steps of 2×4 samples
	// are 6 epochs of 64 and a quarter.
	w2.heartbeat(t, g.Number, 50, false)
	w1.heartbeat(t, g.Number, 50, false)
	var train []runlog.Record
	for _, r := range records(t, runDir) {
		if r.Kind == "train" {
			train = append(train, r)
		}
	}
	if len(train) != 1 || train[0].Step != 50 || train[0].Progress != 6.25 || train[0].Loss != 0.5 || train[0].ImagesPerSecond != 200 {
		t.Errorf("train records %+v, want one at step 50, progress 6.25", train)
	}

	// w2 leaves: below min_workers the ring pauses, and status says why.
	if _, err := w2.c.Leave(c.ctx(), &api.LeaveRequest{Name: "w2", Token: testToken}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ring to pause", func() bool {
		r := w1.heartbeat(t, g.Number, 50, false)
		return r.Paused && r.Generation != nil && r.Generation.Number == g.Number
	})
	if st := cd.srv.StatusReply(); st.State != "paused" || !strings.Contains(st.Reason, "1 of min 2") {
		t.Errorf("status of a paused job %+v", st)
	}
	if got := metric(t, cd.srv, "ringtrain_workers"); got != 0 {
		t.Errorf("ringtrain_workers of a paused ring: %v", got)
	}

	// A new worker joins: the ring runs again, from w1.
	w3, _ := c.join(t, cd, "w3")
	g2 := w3.waitGeneration(t, g.Number, nil)
	if !slices.Equal(ringNames(g2), []string{"w1", "w3"}) || g2.Source != "w1" || g2.ResumeStep != 50 {
		t.Errorf("generation after the pause %+v, want w1, w3 from w1 at step 50", g2)
	}
	if r := w1.heartbeat(t, g2.Number, 50, false); r.Paused {
		t.Errorf("heartbeat after the pause: %+v", r)
	}
}

// records reads the records of a run directory's metrics log.
func records(t *testing.T, dir string) []runlog.Record {
	t.Helper()
	rs, err := runlog.ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestServerFlagsStragglers: the phase figures of the ring's heartbeats
// feed the straggler detector; a flagged worker shows in the status, in
// /status, in the ringtrain_worker_straggler gauge and in the log, and
// all of it clears once it keeps up again.
func TestServerFlagsStragglers(t *testing.T) {
	c := newCluster(t)
	c.spec.Workers, c.spec.MinWorkers, c.spec.MaxWorkers = 3, 3, 3
	var mu sync.Mutex
	clock := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	cd := c.start("coord-a", func(cfg *ServerConfig) {
		cfg.Now = now
		cfg.Stragglers = StragglerConfig{Window: 3, Hold: time.Second}
	})
	cd.waitLeader(t)
	ws := map[string]*worker{}
	for _, n := range []string{"w1", "w2", "w3"} {
		ws[n], _ = c.join(t, cd, n)
	}
	g := ws["w1"].waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 3 })
	step := int64(0)
	// beats sends every worker's heartbeat n times, 200 ms apart on the
	// server's clock, w2 with slowCompute seconds of compute per step.
	beats := func(n int, slowCompute float64) {
		for range n {
			mu.Lock()
			clock = clock.Add(200 * time.Millisecond)
			mu.Unlock()
			step += 10
			for _, name := range []string{"w1", "w2", "w3"} {
				st := &api.WorkerStats{PhaseSteps: 10, ComputeSeconds: 0.004, ReduceSeconds: 0.006, StepSeconds: 0.010}
				if name == "w2" {
					st.ComputeSeconds, st.ReduceSeconds = slowCompute, 0.010-slowCompute
				}
				_, err := ws[name].c.Heartbeat(c.ctx(), &api.HeartbeatRequest{Name: name, Token: testToken, Generation: g.Number, InRing: true, Step: step, Stats: st})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	straggler := func(name string) *api.Straggler {
		for _, w := range cd.srv.StatusReply().Workers {
			if w.Name == name {
				return w.Straggler
			}
		}
		t.Fatalf("no %s in the status", name)
		return nil
	}
	gauge := func(name, phase string) float64 {
		return metric(t, cd.srv, fmt.Sprintf("ringtrain_worker_straggler{phase=%q,worker=%q}", phase, name))
	}

	beats(8, 0.009) // the window of 3 fills, then 1 s of hold
	st := straggler("w2")
	if st == nil || st.Phase != PhaseCompute || st.Factor < 2.24 || st.Factor > 2.26 {
		t.Fatalf("w2's straggler status %+v, want compute at 2.25×", st)
	}
	for _, n := range []string{"w1", "w3"} {
		if s := straggler(n); s != nil {
			t.Errorf("%s flagged too: %+v", n, s)
		}
	}
	var js api.StatusReply
	if err := json.Unmarshal(httpGet(cd.srv, "/status").Body.Bytes(), &js); err != nil || len(js.Workers) != 3 ||
		js.Workers[1].Straggler == nil || js.Workers[1].Straggler.Phase != "compute" || js.Workers[1].Stats.ComputeSeconds != 0.009 {
		t.Errorf("/status %+v, %v", js.Workers, err)
	}
	for _, tc := range []struct {
		name, phase string
		want        float64
	}{{"w2", "compute", 1}, {"w2", "data", 0}, {"w2", "network", 0}, {"w1", "compute", 0}, {"w3", "network", 0}} {
		if got := gauge(tc.name, tc.phase); got != tc.want {
			t.Errorf("ringtrain_worker_straggler of %s in %s: %v, want %v", tc.name, tc.phase, got, tc.want)
		}
	}
	if !strings.Contains(c.log.String(), "w2 is a straggler: compute 2.") {
		t.Errorf("no flag in the log:\n%s", c.log)
	}

	beats(8, 0.004) // the window turns over, then 1 s of keeping up
	if st := straggler("w2"); st != nil {
		t.Errorf("w2 still flagged after it recovered: %+v", st)
	}
	if got := gauge("w2", "compute"); got != 0 {
		t.Errorf("ringtrain_worker_straggler of w2 after it recovered: %v", got)
	}
	if !strings.Contains(c.log.String(), "w2 is no longer a straggler: it keeps up with the ring") {
		t.Errorf("no clearing in the log:\n%s", c.log)
	}
}

// A new leader continues from the state the workers kept, not from the
// last committed checkpoint: workers that trained past it report their
// generation, step and data position when they join again, and the first
// generation of the new leader resumes at the furthest of them, with it as
// the Source.
func TestServerFailoverContinuesFromTheWorkers(t *testing.T) {
	c := newCluster(t)
	a := c.start("coord-a", nil)
	a.waitLeader(t)
	b := c.start("coord-b", nil)

	w1, _ := c.join(t, a, "w1")
	w2, _ := c.join(t, a, "w2")
	ws := map[string]*worker{"w1": w1, "w2": w2}
	g := w1.waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	name := c.checkpointAll(t, g, ws, 4, 0, 32, nil)
	c.waitCommitted(t, name)
	for _, w := range ws {
		w.heartbeat(t, g.Number, 6, false)
	}
	last := c.etcdGeneration(t)
	if last != g.Number {
		t.Fatalf("generation in etcd %d, want the ring's %d", last, g.Number)
	}

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	b.waitLeader(t)
	// Both trained to step 6 (6*8 = 48 samples into epoch 0), two steps
	// past the checkpoint, and say so when they join the new leader.
	for _, n := range []string{"w1", "w2"} {
		w := &worker{name: n, data: ws[n].data, c: b.client}
		if _, err := w.c.Join(c.ctx(), &api.JoinRequest{Name: n, Token: testToken, JobHash: c.spec.Hash(), DataAddr: w.data,
			Generation: last, Step: 6, Epoch: 0, Consumed: 48}); err != nil {
			t.Fatalf("join %s: %v", n, err)
		}
		ws[n] = w
	}
	g2 := ws["w1"].waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	if g2.Number <= last {
		t.Errorf("new leader's first generation %d, want above the old one's %d", g2.Number, last)
	}
	if g2.Restore != "" || g2.Source != g2.Ring[0].Name || g2.ResumeStep != 6 || g2.Epoch != 0 || g2.Consumed != 48 {
		t.Errorf("new leader's first generation %+v, want step 6, consumed 48 from source %s, not a restore of %s at step 4",
			g2, g2.Ring[0].Name, name)
	}
	if !strings.Contains(c.log.String(), "from source") {
		t.Errorf("the new leader's log does not say it resumes from a source:\n%s", c.log.String())
	}
}
