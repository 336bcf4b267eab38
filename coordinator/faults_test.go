package coordinator

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/checkpoint"
)

// exits waits for cd's Run to end on its own within limit and returns its
// error; it fails the test if Run is still running.
func (c *cluster) exits(t *testing.T, cd *coord, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-cd.runErr:
		cd.runErr <- err // for stop
		return err
	case <-time.After(limit):
		t.Fatalf("%s still runs after %v; %d lines say it campaigns again; log:\n%s", cd.srv.cfg.Name, limit,
			strings.Count(c.log.String(), "campaigns again"), lastLines(c.log.String(), 30))
		return nil
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// commitOne runs job c.spec on cd with one worker up to a committed
// checkpoint at step 4, stops cd and returns the checkpoint's name and the
// last generation.
func (c *cluster) commitOne(t *testing.T, cd *coord) (string, uint64) {
	t.Helper()
	cd.waitLeader(t)
	w1, _ := c.join(t, cd, "w1")
	g := w1.waitGeneration(t, 0, nil)
	name := c.checkpointAll(t, g, map[string]*worker{"w1": w1}, 4, 0, 32, nil)
	c.waitCommitted(t, name)
	if err := cd.stop(); err != nil {
		t.Fatal(err)
	}
	return name, c.etcdGeneration(t)
}

// A coordinator whose store holds none of the checkpoints committed in
// etcd (a wrong --store) says so once, naming the checkpoints and the
// store, and exits instead of campaigning again twice a second; it does so
// with ReplaceJob too: the state is its own job's.
func TestServerExitsWhenNoCommittedCheckpointVerifies(t *testing.T) {
	c := newCluster(t)
	name, _ := c.commitOne(t, c.start("coord-a", nil))

	wrong, err := checkpoint.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.store = wrong
	for _, replace := range []bool{false, true} {
		before := len(c.log.String())
		start := time.Now()
		cd := c.start("coord-b", func(cfg *ServerConfig) { cfg.ReplaceJob = replace })
		err := c.exits(t, cd, 15*time.Second)
		took := time.Since(start)
		log := c.log.String()[before:]
		if err == nil {
			t.Fatalf("ReplaceJob %v: Run returned nil; log:\n%s", replace, log)
		}
		for _, w := range []string{name, wrong.Dir(), "--store"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ReplaceJob %v: error %q does not say %q", replace, err, w)
			}
		}
		if n := strings.Count(log, "campaigns again"); n > 0 {
			t.Errorf("ReplaceJob %v: %d lines say the coordinator campaigns again; log:\n%s", replace, n, log)
		}
		if n := strings.Count(log, "skipping checkpoint "+name); n > 1 {
			t.Errorf("ReplaceJob %v: %d lines say %s is skipped", replace, n, name)
		}
		if m, ok := c.latest(t); !ok || m.Name != name {
			t.Errorf("ReplaceJob %v: etcd's latest checkpoint is now %+v (%v), want %s kept", replace, m, ok, name)
		}
		t.Logf("ReplaceJob %v: exited after %v: %v", replace, took.Round(time.Millisecond), err)
	}
}

// anotherJob is c.spec with another hash, under the same name.
func anotherJob(c *cluster) {
	c.spec.Seed++
}

// A coordinator of another job under the same name (another hash) refuses
// to lead it, naming both hashes and how to start over, even where the
// other job committed no checkpoint: it never runs on from the other job's
// generation.
func TestServerRefusesAnotherJobsStateUnderItsName(t *testing.T) {
	c := newCluster(t)
	a := c.start("coord-a", nil)
	a.waitLeader(t)
	w1, _ := c.join(t, a, "w1")
	w1.waitGeneration(t, 0, nil)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	oldHash, gen := c.spec.Hash(), c.etcdGeneration(t)
	if gen == 0 {
		t.Fatal("the first job wrote no generation")
	}

	anotherJob(c)
	c.store, _ = checkpoint.Open(t.TempDir())
	b := c.start("coord-b", nil)
	err := c.exits(t, b, 15*time.Second)
	if err == nil {
		t.Fatal("Run returned nil")
	}
	for _, w := range []string{oldHash, c.spec.Hash(), "--replace-job"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if got := c.etcdGeneration(t); got != gen {
		t.Errorf("the refused coordinator moved the generation from %d to %d", gen, got)
	}
	t.Logf("%v", err)
}

// With ReplaceJob a coordinator of another job under the same name clears
// the old job's etcd state and starts afresh: its first generation is the
// first, from the initial parameters, and etcd lists none of the old
// checkpoints. It says what it replaced.
func TestServerReplaceJobStartsOver(t *testing.T) {
	c := newCluster(t)
	name, gen := c.commitOne(t, c.start("coord-a", nil))
	oldHash := c.spec.Hash()

	anotherJob(c)
	before := len(c.log.String())
	b := c.start("coord-b", func(cfg *ServerConfig) { cfg.ReplaceJob = true })
	b.waitLeader(t)
	log := c.log.String()[before:]
	for _, w := range []string{"replac", oldHash, name} {
		if !strings.Contains(log, w) {
			t.Errorf("the log does not say %q:\n%s", w, log)
		}
	}
	if m, ok := c.latest(t); ok {
		t.Errorf("etcd still lists checkpoint %s", m.Name)
	}
	resp, err := c.cli.Get(c.ctx(), EtcdStateKey(JobName(c.spec)))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("state key: %v, %d keys", err, len(resp.Kvs))
	}
	var st JobState
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil || st.JobHash != c.spec.Hash() {
		t.Errorf("state key %s (%v), want hash %s", resp.Kvs[0].Value, err, c.spec.Hash())
	}
	w1, _ := c.join(t, b, "w1")
	g := w1.waitGeneration(t, 0, nil)
	if g.Number != 1 || g.Restore != "" || g.Source != "" || g.ResumeStep != 0 {
		t.Errorf("first generation of the new job %+v, want number 1 from the initial parameters (the old job reached %d)", g, gen)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}

	// The new job's own state is resumed, ReplaceJob or not.
	c2 := c.start("coord-c", func(cfg *ServerConfig) { cfg.ReplaceJob = true })
	c2.waitLeader(t)
	if got := c.etcdGeneration(t); got < g.Number {
		t.Errorf("generation %d after a restart of the new job, want at least %d", got, g.Number)
	}
}

// A join refused for a wrong token is logged, naming the peer and the
// worker name it claims and never the token, at most once per period with
// a count of those refused since.
func TestServerLogsRefusedJoins(t *testing.T) {
	c := newCluster(t)
	cd := c.start("coord-a", nil)
	cd.waitLeader(t)
	cd.srv.refusals.setEvery(400 * time.Millisecond)
	const bad = "not-the-token-but-long-enough"
	refuse := func(name string) {
		t.Helper()
		_, err := cd.client.Join(c.ctx(), &api.JoinRequest{Name: name, Token: bad, JobHash: c.spec.Hash()})
		wantCode(t, err, codes.PermissionDenied, "token")
	}
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(c.log.String(), "\n") {
			if strings.Contains(l, "wrong join token") {
				out = append(out, l)
			}
		}
		return out
	}
	refuse("intruder-1")
	got := lines()
	if len(got) != 1 || !strings.Contains(got[0], "intruder-1") || !strings.Contains(got[0], "127.0.0.1:") || !strings.Contains(got[0], "join") {
		t.Fatalf("after one refused join the log says %q; want one line naming intruder-1 and its address", got)
	}
	refuse("intruder-2")
	refuse("intruder-3")
	if got := lines(); len(got) != 1 {
		t.Errorf("refusals within the period logged %d lines: %q", len(got), got)
	}
	time.Sleep(500 * time.Millisecond)
	refuse("intruder-4")
	got = lines()
	if len(got) != 2 || !strings.Contains(got[1], "intruder-4") || !strings.Contains(got[1], "2 more") {
		t.Errorf("after the period the log says %q; want a second line naming intruder-4 and the 2 refused since", got)
	}
	if strings.Contains(c.log.String(), bad) {
		t.Error("the log shows the token presented")
	}
	for _, l := range got {
		t.Log(l)
	}
}
