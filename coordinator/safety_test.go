package coordinator

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
	"github.com/ringtrain/ringtrain/job"
)

// failingWriter fails every write with err.
type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

// A standby coordinator removes nothing from the store: not the leader's
// `latest` pointer being moved, nor a checkpoint being written.
func TestStandbyRemovesNothingFromTheStore(t *testing.T) {
	c := newCluster(t)
	root := t.TempDir()
	onRoot := func(cfg *ServerConfig) { cfg.Store, cfg.StoreDir = nil, root }
	a := c.start("coord-a", onRoot)
	a.waitLeader(t)
	// The leader's writes in progress, where it writes them.
	var inFlight []string
	for _, dir := range []string{root, a.srv.cfg.Store.Dir()} {
		for _, name := range []string{".latest8046925711254791346", ".latest.coord-a.77", checkpoint.NameForStep(3) + ".tmp"} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte("ckpt-"), 0o644); err != nil {
				t.Fatal(err)
			}
			inFlight = append(inFlight, p)
		}
	}
	b := c.start("coord-b", onRoot)
	time.Sleep(200 * time.Millisecond) // a few ticks as a standby
	if b.srv.IsLeader() {
		t.Fatal("coord-b leads beside coord-a")
	}
	for _, p := range inFlight {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a standby removed the leader's write in progress: %v", err)
		}
	}
	// coord-b's own leftovers (of an earlier run under its name) go when
	// it leads; coord-a's stay, for all it knows a deposed leader's writes
	// still in progress.
	jobDir := a.srv.cfg.Store.Dir()
	own := []string{filepath.Join(jobDir, checkpoint.NameForStep(5)+".coord-b.x1.tmp"), filepath.Join(jobDir, ".latest.coord-b.x2")}
	for _, p := range own {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	b.waitLeader(t)
	for _, p := range own {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("the new leader left its own leftover %s: %v", p, err)
		}
	}
	for _, p := range inFlight {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the new leader removed another coordinator's file: %v", err)
		}
	}
}

// The store's copy of the `latest` pointer failing to be written is a
// warning: the commits stand (etcd records them), retention runs, and the
// final checkpoint ends the job instead of being retried forever.
func TestServerCommitsDespiteAFailedPointerCopy(t *testing.T) {
	c := newCluster(t)
	c.spec.KeepCheckpoints = 1
	cd := c.start("coord-a", func(cfg *ServerConfig) {
		cfg.Store = c.store.WithWriteFilter(func(path string, w io.Writer) io.Writer {
			if strings.HasPrefix(filepath.Base(path), ".latest") {
				return failingWriter{syscall.EIO}
			}
			return w
		})
	})
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	g := w1.waitGeneration(t, 0, nil)
	ws := map[string]*worker{"w1": w1}
	first := c.checkpointAll(t, g, ws, 4, 0, 32, nil)
	c.waitCommitted(t, first)
	final := c.checkpointAll(t, g, ws, 8, 1, 0, &api.Eval{Epoch: 0, Loss: 0.1, Accuracy: 0.9})
	select {
	case <-cd.srv.Done():
	case <-time.After(hang):
		t.Fatalf("the job is not done after its final checkpoint\n%s", c.log)
	}
	eventually(t, "retention to delete "+first, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ms, err := checkpoint.NewEtcdCommitter(c.cli, JobName(c.spec), c.store).Committed(ctx)
		return err == nil && len(ms) == 1 && ms[0].Name == final
	})
	if _, err := os.Stat(filepath.Join(c.store.Dir(), first)); !os.IsNotExist(err) {
		t.Errorf("retention left %s: %v", first, err)
	}
}

// Jobs that share a --store keep their checkpoints apart: one job's
// retention never deletes another's.
func TestServerJobsSharingAStoreKeepTheirCheckpoints(t *testing.T) {
	c := newCluster(t)
	root := t.TempDir()
	onRoot := func(cfg *ServerConfig) { cfg.Store, cfg.StoreDir = nil, root }
	specA, specB := testSpec(), testSpec()
	specA.Name, specB.Name = "job-a", "job-b"
	specB.Seed = 99
	specA.KeepCheckpoints, specB.KeepCheckpoints = 1, 1

	run := func(spec job.Spec, name string, steps ...int64) (last string) {
		c.spec = spec
		cd := c.start(name, onRoot)
		cd.waitLeader(t)
		w1, reply := c.join(t, cd, "w1")
		store, err := checkpoint.OpenShared(reply.StoreDir)
		if err != nil {
			t.Fatal(err)
		}
		c.store = store
		g := w1.waitGeneration(t, 0, nil)
		for _, step := range steps {
			last = c.checkpointAll(t, g, map[string]*worker{"w1": w1}, step, 0, int(step)*8, nil)
			c.waitCommitted(t, last)
		}
		if err := cd.stop(); err != nil {
			t.Fatal(err)
		}
		return last
	}
	lastB := run(specB, "coord-b", 2, 3)
	storeB := c.store
	run(specA, "coord-a", 4, 5, 6)
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	ck, err := checkpoint.NewEtcdCommitter(c.cli, JobName(specB), storeB).LoadLatest(ctx, t.Logf)
	if err != nil || ck == nil || ck.Manifest.Name != lastB {
		t.Fatalf("job-b's latest checkpoint after job-a's retention: %v, %v", ck, err)
	}
}

// A coordinator started for another job (another hash) under the name of
// a job whose checkpoints the store holds is refused at start, with an
// error that names both hashes, before it campaigns.
func TestServerRefusesAnotherJobUnderItsNameAtStart(t *testing.T) {
	c := newCluster(t)
	root := t.TempDir()
	onRoot := func(cfg *ServerConfig) { cfg.Store, cfg.StoreDir = nil, root }
	a := c.start("coord-a", onRoot)
	a.waitLeader(t)
	w1, reply := c.join(t, a, "w1")
	store, err := checkpoint.OpenShared(reply.StoreDir)
	if err != nil {
		t.Fatal(err)
	}
	c.store = store
	g := w1.waitGeneration(t, 0, nil)
	c.waitCommitted(t, c.checkpointAll(t, g, map[string]*worker{"w1": w1}, 2, 0, 16, nil))
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	other := c.spec
	other.Seed++
	cfg := ServerConfig{Name: "coord-x", Spec: other, Token: testToken, Etcd: c.cli, StoreDir: root, Samples: testSamples}
	srv, err := NewServer(cfg)
	if err == nil {
		t.Fatalf("a coordinator of job %s with hash %s started on a store of hash %s (store %s)", JobName(other), other.Hash(), c.spec.Hash(), srv.storeDir)
	}
	if msg := err.Error(); !strings.Contains(msg, other.Hash()) || !strings.Contains(msg, c.spec.Hash()) {
		t.Errorf("refusal %q does not name both hashes", msg)
	}
}

// A checkpoint one rank skipped (its shard write failed) is dropped, with
// a warning naming the rank, once a later checkpoint of the generation is
// complete; the later one commits.
func TestServerDropsACheckpointARankSkipped(t *testing.T) {
	c := newCluster(t)
	cd := c.start("coord-a", nil)
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	w2, _ := c.join(t, cd, "w2")
	ws := map[string]*worker{"w1": w1, "w2": w2}
	g := w1.waitGeneration(t, 0, func(g *api.Generation) bool { return len(g.Ring) == 2 })
	// Only rank 0 writes and reports step 4.
	skipped := checkpoint.NameForStep(4)
	fi, err := c.store.WriteShard(skipped, checkpoint.Part{Name: "rank-0.safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws[g.Ring[0].Name].c.ReportCheckpoint(c.ctx(), &api.CheckpointReport{
		Name: g.Ring[0].Name, Token: testToken, Generation: g.Number, Rank: 0, World: 2,
		Checkpoint: skipped, Step: 4, Consumed: 32, Files: []api.FileInfo{{Name: fi.Name, Size: fi.Size, SHA256: fi.SHA256}},
	}); err != nil {
		t.Fatal(err)
	}
	failures := metric(t, cd.srv, "ringtrain_checkpoint_commit_failures_total")
	c.waitCommitted(t, c.checkpointAll(t, g, ws, 6, 0, 48, nil))
	if got := metric(t, cd.srv, "ringtrain_checkpoint_commit_failures_total"); got != failures+1 {
		t.Errorf("commit failures %v → %v, want one more", failures, got)
	}
	if want := "checkpoint " + skipped + " of generation"; !strings.Contains(c.log.String(), want) ||
		!strings.Contains(c.log.String(), "["+g.Ring[1].Name+"] never reported it") {
		t.Errorf("the log does not say %s was dropped for want of %s:\n%s", skipped, g.Ring[1].Name, c.log)
	}
	cd.srv.mu.Lock()
	pending := len(cd.srv.term.reports)
	cd.srv.mu.Unlock()
	if pending != 0 {
		t.Errorf("%d report sets still pending", pending)
	}
}
