package worker

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/job"
)

// tinySpec is a job a worker sets up in moments: an MLP on a few
// synthetic samples.
func tinySpec() job.Spec {
	s := job.Default()
	s.Model, s.Dataset, s.Epochs, s.BatchSize, s.Threads = "mlp", "synthetic", 1, 8, 1
	s.TrainLimit, s.TestLimit = 64, 16
	return s
}

// runAgainst runs one worker against f until it returns or 20s pass.
func runAgainst(t *testing.T, f *fakeCoordinator, addr string) (error, *lineLog, time.Duration) {
	t.Helper()
	return joinOnly(t, addr, 20*time.Second, func(o *ClusterOptions) { o.Token = f.token })
}

// A worker checks every field of the coordinator's join reply it uses
// before it uses it: a bad one ends the worker with an error saying which
// field is wrong, and never a panic.
func TestWorkerRefusesBadJoinReplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*api.JoinReply)
		want string
	}{
		{"huge heartbeat interval", func(r *api.JoinReply) { r.HeartbeatMillis = math.MaxInt64 / 1000 }, "heartbeat interval"},
		{"heartbeat interval of an hour", func(r *api.JoinReply) { r.HeartbeatMillis = 3_600_000 }, "heartbeat interval"},
		{"relative store", func(r *api.JoinReply) { r.StoreDir = "shared/checkpoints" }, `"shared/checkpoints" is not absolute`},
		// (under the fake's store: a worker that took it would write there)
		{"store with dot-dot", func(r *api.JoinReply) { r.StoreDir += "/shared/../elsewhere" }, `/shared/../elsewhere" is not clean`},
		{"gossip address without a port", func(r *api.JoinReply) { r.Gossip = []string{"coordinator"} }, "gossip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, addr := newFake(t, tinySpec(), 1, api.Generation{})
			f.editJoin = tc.edit
			err, log, took := runAgainst(t, f, addr)
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("worker given a join reply with %s: %v after %v, want an error saying %q; log:\n%s", tc.name, err, took, tc.want, log)
			}
			t.Logf("%v", err)
		})
	}
}

// A heartbeat reply whose generation a worker cannot run as given ends the
// worker with an error saying what is wrong, before it dials a peer or
// opens a file.
func TestWorkerRefusesBadHeartbeatReplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*api.Generation)
		want string
	}{
		{"a name twice", func(g *api.Generation) { g.Ring = append(g.Ring, g.Ring[0]) }, "twice"},
		{"a peer without a port", func(g *api.Generation) {
			g.Ring = append(g.Ring, api.Peer{Name: "w9", DataAddr: "10.0.0.9"})
		}, `"10.0.0.9"`},
		{"restore out of the store", func(g *api.Generation) { g.Restore = "../../etc/passwd" }, "not a checkpoint name"},
		{"restore with a separator", func(g *api.Generation) { g.Restore = "ckpt-1/x" }, "not a checkpoint name"},
		{"source not in the ring", func(g *api.Generation) { g.Source = "w7" }, "source w7"},
		{"negative resume step", func(g *api.Generation) { g.ResumeStep = -3 }, "resume step -3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, addr := newFake(t, tinySpec(), 1, api.Generation{})
			f.editBeat = func(r *api.HeartbeatReply) {
				if r.Generation != nil {
					g := *r.Generation
					g.Ring = append([]api.Peer(nil), g.Ring...)
					tc.edit(&g)
					r.Generation = &g
				}
			}
			err, log, took := runAgainst(t, f, addr)
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("worker given a generation with %s: %v after %v, want an error saying %q; log:\n%s", tc.name, err, took, tc.want, log)
			}
			t.Logf("%v", err)
		})
	}
}

func goodHeartbeatReply() *api.HeartbeatReply {
	return &api.HeartbeatReply{Status: "running: generation 3, 2 workers", Generation: &api.Generation{
		Number: 3, Ring: []api.Peer{{Name: "w0", DataAddr: "10.0.0.1:7080"}, {Name: "w1", DataAddr: "worker-1.worker:7080"}},
		ResumeStep: 40, Epoch: 1, Consumed: 320, Restore: "ckpt-000000000040",
	}}
}

func TestCheckHeartbeatReply(t *testing.T) {
	if err := checkHeartbeatReply(goodHeartbeatReply()); err != nil {
		t.Fatalf("a good reply: %v", err)
	}
	if err := checkHeartbeatReply(&api.HeartbeatReply{Status: "waiting: 1 of min 2 workers"}); err != nil {
		t.Fatalf("a reply without a generation: %v", err)
	}
	for _, tc := range []struct {
		edit func(*api.HeartbeatReply)
		want string
	}{
		{func(r *api.HeartbeatReply) { r.Generation.Number = 0 }, "generation 0"},
		{func(r *api.HeartbeatReply) { r.Generation.Ring = nil }, "empty ring"},
		{func(r *api.HeartbeatReply) { r.Generation.Ring[1].Name = "w0" }, "twice"},
		{func(r *api.HeartbeatReply) { r.Generation.Ring[1].Name = "" }, "worker name"},
		{func(r *api.HeartbeatReply) { r.Generation.Ring[1].Name = "a/b" }, "worker name"},
		{func(r *api.HeartbeatReply) { r.Generation.Ring[0].DataAddr = ":7080" }, "no host"},
		{func(r *api.HeartbeatReply) { r.Generation.Ring[0].DataAddr = "10.0.0.1:0" }, "port"},
		{func(r *api.HeartbeatReply) { r.Generation.Ring[0].DataAddr = "10.0.0.1:99999" }, "port"},
		{func(r *api.HeartbeatReply) { r.Generation.Epoch = -1 }, "position"},
		{func(r *api.HeartbeatReply) { r.Generation.Consumed = -1 }, "position"},
		{func(r *api.HeartbeatReply) { r.Generation.Restore = ".." }, "not a checkpoint name"},
		{func(r *api.HeartbeatReply) { r.Generation.Restore = `ckpt-1\x` }, "not a checkpoint name"},
		{func(r *api.HeartbeatReply) { r.Generation.Source = "w1" }, "both"},
		{func(r *api.HeartbeatReply) { r.Generation.Restore, r.Generation.Source = "", "w5" }, "source w5"},
		{func(r *api.HeartbeatReply) { r.CheckpointAt = -1 }, "checkpoint step -1"},
		{func(r *api.HeartbeatReply) { r.Status = "running\x1b[2J" }, "status"},
	} {
		r := goodHeartbeatReply()
		tc.edit(r)
		b, _ := json.Marshal(r)
		if err := checkHeartbeatReply(r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("reply %s: %v, want an error saying %q", b, err, tc.want)
		}
	}
}

func TestCheckJoinReply(t *testing.T) {
	good := func() *api.JoinReply {
		return &api.JoinReply{Job: "model: mlp\n", JobHash: "abc", HeartbeatMillis: 200, Gossip: []string{"10.0.0.2:7946"}, StoreDir: "/shared/checkpoints"}
	}
	if d, err := checkJoinReply(good(), false); err != nil || d != 200*time.Millisecond {
		t.Fatalf("a good reply: %v, %v", d, err)
	}
	r := good()
	r.StoreDir = ""
	if _, err := checkJoinReply(r, true); err != nil {
		t.Fatalf("no store with the worker's own --store: %v", err)
	}
	for _, tc := range []struct {
		edit func(*api.JoinReply)
		want string
	}{
		{func(r *api.JoinReply) { r.HeartbeatMillis = 0 }, "heartbeat interval"},
		{func(r *api.JoinReply) { r.HeartbeatMillis = 9 }, "heartbeat interval"},
		{func(r *api.JoinReply) { r.HeartbeatMillis = 60_001 }, "heartbeat interval"},
		{func(r *api.JoinReply) { r.HeartbeatMillis = math.MaxInt }, "heartbeat interval"},
		{func(r *api.JoinReply) { r.HeartbeatMillis = math.MinInt }, "heartbeat interval"},
		{func(r *api.JoinReply) { r.StoreDir = "" }, "no checkpoint store"},
		{func(r *api.JoinReply) { r.StoreDir = "." }, "not absolute"},
		{func(r *api.JoinReply) { r.StoreDir = "/shared/checkpoints/" }, "not clean"},
		{func(r *api.JoinReply) { r.Gossip = []string{"10.0.0.2"} }, "gossip"},
		{func(r *api.JoinReply) { r.Job = "" }, "no job"},
	} {
		r := good()
		tc.edit(r)
		if _, err := checkJoinReply(r, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("reply %+v: %v, want an error saying %q", r, err, tc.want)
		}
	}
}

// FuzzHeartbeatReply feeds decoded replies to a waiting worker's
// lifecycle: it never panics, trains only a generation that passes
// checkHeartbeatReply and names this worker, and ends the worker with an
// error on any reply that fails the check.
func FuzzHeartbeatReply(f *testing.F) {
	for _, r := range []*api.HeartbeatReply{
		goodHeartbeatReply(),
		{Status: "waiting: 1 of min 2 workers"},
		{Status: "done: the job is complete", Stop: true},
		{Status: "paused", Paused: true, Generation: goodHeartbeatReply().Generation},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"generation":{"number":1,"ring":[{"name":"w1","data_addr":"h:1"},{"name":"w1","data_addr":"h:2"}]},"status":"x"}`))
	f.Add([]byte(`{"generation":{"number":2,"ring":[{"name":"w1","data_addr":"h:1"}],"restore":"../../etc"},"status":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rep api.HeartbeatReply
		if json.Unmarshal(data, &rep) != nil {
			return
		}
		checkErr := checkHeartbeatReply(&rep)
		l := newLifecycle("w1")
		l.Joined()
		l.Advance()
		l.Reply(&rep)
		rd := l.Ready()
		if checkErr != nil {
			if !rd.Exit || rd.Err == nil || rd.Train != nil || !errors.As(rd.Err, new(*fatalError)) {
				t.Fatalf("reply %s fails the check (%v), but the lifecycle asks %+v", data, checkErr, rd)
			}
			return
		}
		if g := rd.Train; g != nil {
			rank := g.Rank("w1")
			if g != rep.Generation || rank < 0 || rank >= len(g.Ring) || rep.Stop || rep.Paused {
				t.Fatalf("reply %s: trains %+v (rank %d)", data, g, rank)
			}
		}
		if rd.Exit && rd.Err != nil {
			t.Fatalf("reply %s passes the check, but the worker fails: %v", data, rd.Err)
		}
	})
}
