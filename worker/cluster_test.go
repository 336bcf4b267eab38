package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/membership"
)

// fakeCoordinator is the in-memory twin of the coordinator's control
// service: it forms one ring of the first world joiners (optionally
// restoring a checkpoint), seals checkpoints every rank reported, and stops
// the job after the final one. The real coordinator is tested in its own
// package and end to end in cmd/ringtrain.
type fakeCoordinator struct {
	spec   job.Spec
	token  string
	world  int
	store  *checkpoint.Store
	gossip *membership.Member
	first  api.Generation // template of the first generation: position, Restore

	mu      sync.Mutex
	members map[string]string // name → data address
	gen     *api.Generation
	reports map[string][]*api.CheckpointReport
	sealed  []checkpoint.Manifest
	done    bool
	// phases sums the phase figures of each worker's heartbeats.
	phases map[string]*phaseSums
	// editJoin and editBeat, when set, change every join and heartbeat
	// reply (tests of a coordinator's bad replies).
	editJoin func(*api.JoinReply)
	editBeat func(*api.HeartbeatReply)
	// stats are each worker's newest heartbeat stats.
	stats map[string]api.WorkerStats
}

// phaseSums are the phase figures of a worker's heartbeats, summed over
// their steps.
type phaseSums struct {
	steps                       int
	step, data, compute, reduce float64
}

func (f *fakeCoordinator) Join(_ context.Context, r *api.JoinRequest) (*api.JoinReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Token != f.token {
		return nil, status.Error(codes.PermissionDenied, "wrong join token")
	}
	if r.JobHash != "" && r.JobHash != f.spec.Hash() {
		return nil, status.Errorf(codes.FailedPrecondition, "job hash %s, this job is %s", r.JobHash, f.spec.Hash())
	}
	y, err := f.spec.YAML()
	if err != nil {
		return nil, err
	}
	f.members[r.Name] = r.DataAddr
	if len(f.members) == f.world && f.gen == nil {
		g := f.first
		g.Number = 1
		for _, name := range slices.Sorted(mapKeys(f.members)) {
			g.Ring = append(g.Ring, api.Peer{Name: name, DataAddr: f.members[name]})
		}
		f.gen = &g
	}
	rep := &api.JoinReply{Job: string(y), JobHash: f.spec.Hash(), JobID: 7, Gossip: []string{f.gossip.Addr()}, HeartbeatMillis: 20, StoreDir: f.store.Dir()}
	if f.editJoin != nil {
		f.editJoin(rep)
	}
	return rep, nil
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (f *fakeCoordinator) Heartbeat(_ context.Context, r *api.HeartbeatRequest) (*api.HeartbeatReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.members[r.Name]; !ok {
		return nil, status.Error(codes.NotFound, "not a member")
	}
	if st := r.Stats; st != nil {
		if f.stats == nil {
			f.stats = map[string]api.WorkerStats{}
		}
		f.stats[r.Name] = *st
	}
	if st := r.Stats; st != nil && st.PhaseSteps > 0 {
		if f.phases == nil {
			f.phases = map[string]*phaseSums{}
		}
		p := f.phases[r.Name]
		if p == nil {
			p = &phaseSums{}
			f.phases[r.Name] = p
		}
		n := float64(st.PhaseSteps)
		p.steps += st.PhaseSteps
		p.step += n * st.StepSeconds
		p.data += n * st.DataWaitSeconds
		p.compute += n * st.ComputeSeconds
		p.reduce += n * st.ReduceSeconds
	}
	rep := &api.HeartbeatReply{Generation: f.gen, Status: "running", Stop: f.done}
	if f.editBeat != nil {
		f.editBeat(rep)
	}
	return rep, nil
}

func (f *fakeCoordinator) ReportCheckpoint(_ context.Context, r *api.CheckpointReport) (*api.CheckpointAck, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports[r.Checkpoint] = append(f.reports[r.Checkpoint], r)
	reps := f.reports[r.Checkpoint]
	if len(reps) < r.World {
		return &api.CheckpointAck{}, nil
	}
	m := checkpoint.Manifest{
		Name: r.Checkpoint, JobHash: f.spec.Hash(), Model: f.spec.Model, Step: int(r.Step), Epoch: r.Epoch,
		Position: r.Consumed, Seed: f.spec.Seed, WorldSize: r.World, Generation: int(r.Generation),
	}
	for _, rep := range reps {
		for _, fi := range rep.Files {
			m.Files = append(m.Files, checkpoint.FileInfo{Name: fi.Name, Size: fi.Size, SHA256: fi.SHA256})
		}
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Name < m.Files[j].Name })
	m, err := f.store.Seal(m)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	f.sealed = append(f.sealed, m)
	if r.Epoch == f.spec.Epochs && r.Consumed == 0 {
		f.done = true
	}
	return &api.CheckpointAck{}, nil
}

func (f *fakeCoordinator) Leave(context.Context, *api.LeaveRequest) (*api.LeaveReply, error) {
	return &api.LeaveReply{}, nil
}

func (f *fakeCoordinator) Status(context.Context, *api.StatusRequest) (*api.StatusReply, error) {
	return &api.StatusReply{}, nil
}

// newFake returns a fake coordinator of spec for a ring of world workers,
// with a fresh store, served on loopback, and its address.
func newFake(t *testing.T, spec job.Spec, world int, first api.Generation) (*fakeCoordinator, string) {
	t.Helper()
	store, err := checkpoint.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCoordinator{spec: spec, token: "tok", world: world, store: store, first: first}
	return f, startFake(t, f)
}

// startFake serves a fake coordinator on loopback.
func startFake(t *testing.T, f *fakeCoordinator) string {
	t.Helper()
	g, err := membership.Start(membership.Config{Name: "coordinator", Bind: "127.0.0.1:0", Secret: f.token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	f.gossip = g
	f.members = map[string]string{}
	f.reports = map[string][]*api.CheckpointReport{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	api.RegisterControlServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// stepRecord keeps every worker's parameters after every step.
type stepRecord struct {
	mu     sync.Mutex
	params map[string]map[int64][]float32
}

func (s *stepRecord) hook(name string) func(int64, []float32) {
	return func(step int64, p []float32) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.params[name] == nil {
			s.params[name] = map[int64][]float32{}
		}
		s.params[name][step] = slices.Clone(p)
	}
}

// finalLines keeps each worker's FinalParametersLog line.
type finalLines struct {
	mu    sync.Mutex
	lines map[string]string
}

func (f *finalLines) tweak(o *ClusterOptions) {
	logf, name := o.Logf, o.Name
	o.Logf = func(format string, a ...any) {
		if line := fmt.Sprintf(format, a...); strings.HasPrefix(line, FinalParametersLog) {
			f.mu.Lock()
			f.lines[name] = line
			f.mu.Unlock()
		}
		logf(format, a...)
	}
}

// runCluster runs world workers against f until the job completes.
func runCluster(t *testing.T, f *fakeCoordinator, addr string, rec *stepRecord) {
	t.Helper()
	runClusterWith(t, f, addr, rec, nil)
}

// runClusterWith is runCluster with each worker's options edited by tweak.
func runClusterWith(t *testing.T, f *fakeCoordinator, addr string, rec *stepRecord, tweak func(*ClusterOptions)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // catches hangs only
	defer cancel()
	errs := make(chan error, f.world)
	for i := range f.world {
		name := fmt.Sprintf("w%d", i)
		o := ClusterOptions{
			Name: name, Coordinators: []string{addr}, Token: f.token,
			DataListen: freeAddr(t), GossipBind: "127.0.0.1:0", Threads: 1,
			Logf:      func(format string, a ...any) { t.Logf(name+": "+format, a...) },
			AfterStep: rec.hook(name),
		}
		if tweak != nil {
			tweak(&o)
		}
		w, err := NewClusterWorker(o)
		if err != nil {
			t.Fatal(err)
		}
		go func() { errs <- w.Run(ctx) }()
	}
	// The first worker to fail stops the others: the fake forms no second
	// ring, so they would wait for one until the timeout.
	var first error
	for range f.world {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		t.Fatal(first)
	}
}

func clusterSpec(t *testing.T) job.Spec {
	s := job.Default()
	s.Model, s.DataDir, s.Epochs, s.BatchSize, s.Seed = "lenet5", realMNIST(t), 2, 64, 5
	s.Workers, s.TrainLimit, s.TestLimit = 2, 640, 200
	return s
}

// Two workers train in lock step: identical parameters after every step,
// a checkpoint sealed at the end of each epoch from both ranks' shards,
// and a run restored from the first epoch's checkpoint repeats the second
// epoch bit for bit.
func TestClusterWorkersTrainAndResume(t *testing.T) {
	spec := clusterSpec(t)
	f, addr := newFake(t, spec, 2, api.Generation{})
	store := f.store
	rec := &stepRecord{params: map[string]map[int64][]float32{}}
	finals := &finalLines{lines: map[string]string{}}
	runClusterWith(t, f, addr, rec, finals.tweak)

	steps := int64(2 * ((640 + 63) / 64))
	// Each replica logs the parameters it ends with: the same line.
	want := fmt.Sprintf("%s step %d, parameters ", FinalParametersLog, steps)
	if a, b := finals.lines["w0"], finals.lines["w1"]; a != b || !strings.HasPrefix(a, want) || len(a) != len(want)+16 {
		t.Fatalf("the workers' final lines: %q and %q, want both %q and 16 hex digits", a, b, want)
	}
	for _, name := range []string{"w0", "w1"} {
		if got := int64(len(rec.params[name])); got != steps {
			t.Fatalf("%s took %d steps, want %d", name, got, steps)
		}
	}
	for s := int64(1); s <= steps; s++ {
		if !slices.Equal(rec.params["w0"][s], rec.params["w1"][s]) {
			t.Fatalf("step %d: the replicas' parameters differ", s)
		}
	}
	if len(f.sealed) != 2 {
		t.Fatalf("sealed %d checkpoints, want one per epoch", len(f.sealed))
	}
	// The heartbeats carry the phases of every step exactly once; the
	// phases are parts of the step.
	for _, name := range []string{"w0", "w1"} {
		p := f.phases[name]
		if p == nil || int64(p.steps) != steps {
			t.Fatalf("%s's heartbeats cover %+v steps, want %d", name, p, steps)
		}
		if parts := p.data + p.compute + p.reduce; p.compute <= 0 || p.reduce <= 0 || parts > p.step || parts < 0.5*p.step {
			t.Errorf("%s's phases: %+v", name, *p)
		}
		t.Logf("%s: %.2f ms per step: compute %.2f, data %.2f, reduce %.2f", name,
			1e3*p.step/float64(p.steps), 1e3*p.compute/float64(p.steps), 1e3*p.data/float64(p.steps), 1e3*p.reduce/float64(p.steps))
	}
	first := f.sealed[0]
	if first.Step != int(steps/2) || first.Epoch != 1 || first.Position != 0 || len(first.Files) != 4 {
		t.Fatalf("first checkpoint %+v", first)
	}
	ck, err := store.Load(first.Name)
	if err != nil {
		t.Fatal(err)
	}
	// The shards load back into a model (single-node code path).
	e, err := newEngine(context.Background(), spec, spec.BatchSize, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.restore(ck); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.model.Arena.Data, rec.params["w0"][steps/2]) {
		t.Fatal("the checkpoint's parameters are not the ring's at its step")
	}

	// Resume from the first epoch's checkpoint with a new cluster.
	f2 := &fakeCoordinator{spec: spec, token: "tok", world: 2, store: store,
		first: api.Generation{ResumeStep: int64(first.Step), Epoch: first.Epoch, Restore: first.Name}}
	addr2 := startFake(t, f2)
	rec2 := &stepRecord{params: map[string]map[int64][]float32{}}
	finals2 := &finalLines{lines: map[string]string{}}
	runClusterWith(t, f2, addr2, rec2, finals2.tweak)
	if finals2.lines["w0"] != finals.lines["w0"] || finals2.lines["w1"] != finals.lines["w0"] {
		t.Fatalf("the resumed run ends with %q and %q, the uninterrupted one with %q", finals2.lines["w0"], finals2.lines["w1"], finals.lines["w0"])
	}
	for s := steps/2 + 1; s <= steps; s++ {
		for _, name := range []string{"w0", "w1"} {
			if !slices.Equal(rec2.params[name][s], rec.params[name][s]) {
				t.Fatalf("%s step %d: the resumed run differs from the uninterrupted one", name, s)
			}
		}
	}
	if len(rec2.params["w0"]) != int(steps/2) {
		t.Fatalf("resumed run took %d steps, want %d", len(rec2.params["w0"]), steps/2)
	}
}

// With a lossy gradient codec the workers still agree bit for bit after
// every step, on gRPC links (bf16 on the wire) and on shared memory (fp32
// partial sums, rounded sums), and the codec is really in use: the
// parameters differ from an fp32 run's, by about bf16's rounding.
func TestClusterWorkersCompressGradients(t *testing.T) {
	base := clusterSpec(t)
	base.Epochs = 1
	run := func(codec string, noShm bool) map[string]map[int64][]float32 {
		spec := base
		spec.Codec = codec
		f, addr := newFake(t, spec, 2, api.Generation{})
		rec := &stepRecord{params: map[string]map[int64][]float32{}}
		runClusterWith(t, f, addr, rec, func(o *ClusterOptions) { o.NoSharedMemory = noShm })
		return rec.params
	}
	steps := int64((640 + 63) / 64)
	exact := run("fp32", true)
	for _, tc := range []struct {
		codec string
		noShm bool
	}{{"bf16", true}, {"bf16", false}, {"fp16+s2", true}} {
		got := run(tc.codec, tc.noShm)
		for _, name := range []string{"w0", "w1"} {
			if n := int64(len(got[name])); n != steps {
				t.Fatalf("%s (no shm %v): %s took %d steps, want %d", tc.codec, tc.noShm, name, n, steps)
			}
		}
		for s := int64(1); s <= steps; s++ {
			if !slices.Equal(got["w0"][s], got["w1"][s]) {
				t.Fatalf("%s (no shm %v): step %d: the replicas' parameters differ", tc.codec, tc.noShm, s)
			}
		}
		// After one step the parameters differ from fp32's only through
		// the rounded gradient: by no more than the learning rate times
		// the rounding (relative 2^-8 for bf16) of each element.
		p, q := got["w0"][1], exact["w0"][1]
		differ := 0
		var num, den float64
		for i := range p {
			if p[i] != q[i] {
				differ++
			}
			d := float64(p[i] - q[i])
			num += d * d
			den += float64(q[i]) * float64(q[i])
		}
		if differ == 0 {
			t.Fatalf("%s (no shm %v): step 1 is bit-identical to fp32: the codec is not in use", tc.codec, tc.noShm)
		}
		if rel := math.Sqrt(num / den); rel > 1e-3 {
			t.Fatalf("%s (no shm %v): step 1 parameters differ from fp32 by %.2g (relative L2)", tc.codec, tc.noShm, rel)
		}
	}
}

func TestClusterWorkerRefused(t *testing.T) {
	spec := clusterSpec(t)
	_, addr := newFake(t, spec, 2, api.Generation{})
	other := spec
	other.Optimizer.LR = 0.5
	for _, tc := range []struct {
		token string
		spec  *job.Spec
		want  string
	}{
		{"wrong", nil, "wrong join token"},
		{"tok", &other, "job hash"},
	} {
		w, err := NewClusterWorker(ClusterOptions{Name: "w9", Coordinators: []string{addr}, Token: tc.token, Spec: tc.spec,
			DataListen: freeAddr(t), GossipBind: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = w.Run(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("token %q: Run error %v, want a refusal about %q", tc.token, err, tc.want)
		}
	}
	for _, o := range []ClusterOptions{
		{Name: "", Coordinators: []string{addr}, Token: "t", DataListen: ":1"},
		{Name: "a b", Coordinators: []string{addr}, Token: "t", DataListen: ":1"},
		{Name: "w", Coordinators: []string{addr}, Token: "", DataListen: ":1"},
		{Name: "w", Coordinators: nil, Token: "t", DataListen: ":1"},
		{Name: "w", Coordinators: []string{addr}, Token: "t", DataListen: "nonsense"},
	} {
		if _, err := NewClusterWorker(o); err == nil {
			t.Errorf("NewClusterWorker(%+v) accepted bad options", o)
		}
	}
}

// A replica whose parameters drift (here, nudged by the test) is caught at
// the next checksum and stops with ErrDiverged, rather than training on.
func TestClusterWorkerDivergenceIsAnError(t *testing.T) {
	spec := clusterSpec(t)
	spec.TrainLimit, spec.BatchSize, spec.Epochs = 1600, 16, 1 // 100 steps: one checksum
	f, addr := newFake(t, spec, 2, api.Generation{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // catches hangs only
	defer cancel()
	errs := make(map[string]chan error)
	for i := range 2 {
		name := fmt.Sprintf("w%d", i)
		var hook func(int64, []float32)
		if i == 1 {
			hook = func(step int64, p []float32) {
				if step == 50 {
					p[0] += 1e-3
				}
			}
		}
		w, err := NewClusterWorker(ClusterOptions{
			Name: name, Coordinators: []string{addr}, Token: f.token,
			DataListen: freeAddr(t), GossipBind: "127.0.0.1:0", Threads: 1, AfterStep: hook,
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		errs[name] = done
		go func() { done <- w.Run(ctx) }()
	}
	err := <-errs["w1"]
	if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), "step 100") {
		t.Fatalf("the nudged replica returned %v, want ErrDiverged at step 100", err)
	}
	cancel() // rank 0 waits for a generation that this fake never sends
	if err := <-errs["w0"]; err != nil {
		t.Fatalf("rank 0: %v", err)
	}
}

// A checkpoint written by a ring of 2 resumes on a ring of 3: every rank
// reads all the shards, and the rest of the epoch is split three ways.
func TestClusterResumesAtAnotherWorldSize(t *testing.T) {
	spec := clusterSpec(t)
	spec.Epochs, spec.CheckpointEvery = 1, 4
	f, addr := newFake(t, spec, 2, api.Generation{})
	rec := &stepRecord{params: map[string]map[int64][]float32{}}
	runCluster(t, f, addr, rec)
	mid := f.sealed[0] // step 4 of 10
	if mid.Step != 4 || mid.WorldSize != 2 {
		t.Fatalf("first checkpoint %+v", mid)
	}

	// The ring of 3 resumes in a store that holds the checkpoint of step 4
	// alone: in the first one the ring of 2's final checkpoint (step 10)
	// would stay, as a store never replaces a checkpoint, and the ring of
	// 3's final one would not be written.
	store3, err := checkpoint.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(store3.Dir(), mid.Name), os.DirFS(filepath.Join(f.store.Dir(), mid.Name))); err != nil {
		t.Fatal(err)
	}
	f3 := &fakeCoordinator{spec: spec, token: "tok", world: 3, store: store3,
		first: api.Generation{ResumeStep: int64(mid.Step), Epoch: mid.Epoch, Consumed: mid.Position, Restore: mid.Name}}
	rec3 := &stepRecord{params: map[string]map[int64][]float32{}}
	runCluster(t, f3, startFake(t, f3), rec3)
	// 640 − 4·64 = 384 samples left, and every step still takes the
	// job's batch of 64, dealt three ways: 6 steps.
	for _, name := range []string{"w0", "w1", "w2"} {
		if got := len(rec3.params[name]); got != 6 {
			t.Fatalf("%s took %d steps after the resume, want 6", name, got)
		}
		if !slices.Equal(rec3.params[name][10], rec3.params["w0"][10]) {
			t.Fatalf("%s differs from w0 after the last step", name)
		}
	}
	last := f3.sealed[len(f3.sealed)-1]
	if last.Step != 10 || last.Epoch != 1 || last.Position != 0 || last.WorldSize != 3 {
		t.Fatalf("final checkpoint %+v", last)
	}
}
