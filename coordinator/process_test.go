package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/runlog"
	"github.com/ringtrain/ringtrain/safetensors"
)

// The job is checked before anything else: a job the workers cannot run
// fails NewServer (and Listen) with the check's error, having opened no
// store, joined no gossip and bound no port.
func TestTheJobIsCheckedFirst(t *testing.T) {
	bad := errors.New("job: codec: unknown codec \"bf17\"")
	var checked []job.Spec
	check := func(s job.Spec) error {
		checked = append(checked, s)
		return bad
	}
	store := filepath.Join(t.TempDir(), "store")
	cfg := ServerConfig{Name: "c", Spec: testSpec(), CheckJob: check, Token: testToken, StoreDir: store} // no etcd client either
	if _, err := NewServer(cfg); !errors.Is(err, bad) {
		t.Errorf("NewServer: %v, want the check's error", err)
	}
	if _, err := Listen(ProcessConfig{Server: cfg, Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", HTTP: "127.0.0.1:0"}); !errors.Is(err, bad) {
		t.Errorf("Listen: %v, want the check's error", err)
	}
	if len(checked) != 2 || checked[0].Hash() != testSpec().Hash() {
		t.Errorf("CheckJob saw %d specs, want the job once per call", len(checked))
	}
	if _, err := os.Stat(store); err == nil {
		t.Error("a refused job opened the store")
	}
	// Without a check, the server takes the job as Validate leaves it.
	cfg.CheckJob = nil
	if _, err := NewServer(cfg); err == nil || errors.Is(err, bad) {
		t.Errorf("NewServer without a check nor etcd: %v, want the missing etcd client", err)
	}
}

// A coordinator process with a run directory leaves what `ringtrain
// train` leaves: metrics.jsonl while the job runs, and summary.json,
// curves.png and the final model, its ranks' shards merged, when it is
// complete.
func TestProcessLeavesTheRunProducts(t *testing.T) {
	c := newCluster(t)
	c.spec.Epochs = 14 // 112 steps of 8 samples: one "train" record, at step 50
	runDir := filepath.Join(t.TempDir(), "run")
	proc, err := Listen(ProcessConfig{
		Server: ServerConfig{
			Name: "coord-a", Spec: c.spec, Token: testToken, Etcd: c.cli, Store: c.store, Samples: testSamples, RunDir: runDir,
			HeartbeatInterval: 50 * time.Millisecond, Settle: 50 * time.Millisecond,
			Logf: func(f string, a ...any) { c.log.logf("coord-a: "+f, a...) },
		},
		Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Advertise: "127.0.0.1", HTTP: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- proc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Error(err)
		}
	}()
	srv := proc.Server()
	eventually(t, "coord-a to lead", srv.IsLeader)
	resp, err := http.Get("http://" + proc.HTTPAddr() + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz of the leader: %v %v", resp, err)
	}
	resp.Body.Close()
	// The leader publishes where it answers, for standbys to name.
	kv, err := c.cli.Get(c.ctx(), EtcdStateKey(JobName(c.spec)))
	var js JobState
	if err != nil || len(kv.Kvs) != 1 || json.Unmarshal(kv.Kvs[0].Value, &js) != nil || js.LeaderAddr != proc.ControlAddr() {
		t.Errorf("job state %s (%v), want the leader's address %s", kv.Kvs, err, proc.ControlAddr())
	}

	client := dial(t, proc.ControlAddr())
	ws := map[string]*worker{}
	for _, name := range []string{"w1", "w2"} {
		ws[name] = &worker{name: name, data: "127.0.0.1:1", c: client}
		if _, err := client.Join(c.ctx(), &api.JoinRequest{Name: name, Token: testToken, JobHash: c.spec.Hash(), DataAddr: "127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	g := ws["w1"].waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	rank0 := ws[g.Ring[0].Name]
	rank0.heartbeat(t, g.Number, 50, false)

	// Checkpoints with an evaluation, each rank writing its shard of the
	// model; the last one is final.
	shards := []map[string]safetensors.Tensor{
		{"conv1.weight": f32(1, 2, 3), "fc.bias": f32(4)},
		{"conv1.bias": f32(5)},
	}
	meta := map[string]string{"model": "lenet5", "format": "pt"}
	checkpointAt := func(step, epoch int, acc float64) string {
		name := checkpoint.NameForStep(step)
		for rank, p := range g.Ring {
			fi, err := c.store.WriteShard(name, checkpoint.Part{Name: fmt.Sprintf("model-%05d-of-%05d.safetensors", rank+1, 2), Tensors: shards[rank], Metadata: meta})
			if err != nil {
				t.Fatal(err)
			}
			req := &api.CheckpointReport{
				Name: p.Name, Token: testToken, Generation: g.Number, Rank: rank, World: 2,
				Checkpoint: name, Step: int64(step), Epoch: epoch, Consumed: 0, TrainLoss: 0.25,
				Files: []api.FileInfo{{Name: fi.Name, Size: fi.Size, SHA256: fi.SHA256}},
			}
			if rank == 1 {
				req.Eval = &api.Eval{Epoch: epoch - 1, Loss: 0.05, Accuracy: acc}
			}
			if _, err := client.ReportCheckpoint(c.ctx(), req); err != nil {
				t.Fatal(err)
			}
		}
		return name
	}
	checkpointAt(104, 13, 0.98)
	// Rank 0's heartbeat for step 104 may arrive after that step's
	// evaluation was recorded: it adds no "train" record behind it.
	rank0.heartbeat(t, g.Number, 104, false)
	name := checkpointAt(112, 14, 0.991)
	select {
	case <-srv.Done():
	case <-time.After(hang):
		t.Fatal("the job is not done after its final checkpoint")
	}
	launch := time.Now().Add(-time.Minute)
	sum, err := srv.WriteRunProducts(runlog.Summary{Threads: 2, WallSeconds: 60}, launch)
	if err != nil {
		t.Fatal(err)
	}

	rs := records(t, runDir)
	if len(rs) != 3 || rs[0].Kind != "train" || rs[0].Step != 50 || rs[1].Kind != "eval" || rs[1].Step != 104 ||
		rs[2].Kind != "eval" || rs[2].Step != 112 || rs[2].Accuracy != 0.991 {
		t.Errorf("metrics.jsonl records %+v, want a train record at step 50 and evaluations at 104 and 112", rs)
	}
	// The same scalars in the run directory's TensorBoard event file.
	if files, err := runlog.EventFiles(runDir); err != nil || len(files) != 1 {
		t.Errorf("event files %v, %v; want one", files, err)
	} else if events, err := runlog.ReadEvents(files[0]); err != nil {
		t.Error(err)
	} else {
		var got []string
		for _, ev := range events {
			if ev.FileVersion == "" && len(ev.Scalars) > 0 {
				got = append(got, fmt.Sprintf("%d %s=%g", ev.Step, ev.Scalars[0].Tag, ev.Scalars[0].Value))
			}
		}
		if want := []string{"50 train/loss=" + fmt.Sprint(float32(rs[0].Loss)), "104 test/loss=0.05", "112 test/loss=0.05"}; !slices.Equal(got, want) {
			t.Errorf("event file holds %q, want %q", got, want)
		}
	}
	got, err := runlog.ReadSummary(runDir)
	if err != nil {
		t.Fatal(err)
	}
	want := runlog.Summary{
		Model: c.spec.Model, Dataset: c.spec.Dataset, Epochs: 14, BatchSize: 8, Seed: c.spec.Seed, Threads: 2, Steps: 112,
		TestAccuracy: 0.991, TestLoss: 0.05, TrainLoss: 0.25, ImagesPerSecond: 100, WallSeconds: 60, Checkpoint: name,
		SecondsTo99: rs[2].Time.Sub(launch).Seconds(),
	}
	if got != want || sum != want {
		t.Errorf("summary.json %+v\nreturned    %+v\nwant        %+v", got, sum, want)
	}
	png, err := os.ReadFile(filepath.Join(runDir, runlog.PlotFile))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("curves.png: %v (%d bytes)", err, len(png))
	}
	model, err := safetensors.ReadFile(filepath.Join(runDir, checkpoint.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if names := model.Names(); !slices.Equal(names, []string{"conv1.bias", "conv1.weight", "fc.bias"}) || model.Metadata["format"] != "pt" {
		t.Errorf("model.safetensors holds %v (metadata %v), want the merged state_dict", names, model.Metadata)
	}
	if w, _ := model.Tensor("conv1.weight"); !slices.Equal(w.Shape, []int{3}) {
		t.Errorf("conv1.weight has shape %v", w.Shape)
	}
}

func f32(vs ...float32) safetensors.Tensor { return safetensors.F32([]int{len(vs)}, vs) }
