package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/ringtrain/ringtrain/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hangTimeout bounds every etcd call of these tests; it only catches hangs.
const hangTimeout = 30 * time.Second

const testJob = "mnist-lenet"

// etcdEnv is one embedded etcd, a client, a store and a committer, with the
// caller elected leader of testJob at generation 1.
type etcdEnv struct {
	srv   *etcdtest.Server
	cli   *clientv3.Client
	store *Store
	c     *EtcdCommitter
	ctx   context.Context
	lead  leader
}

// leader is a campaign that won: its session, key and revision.
type leader struct {
	sess *concurrency.Session
	key  string
	rev  int64
}

func newEtcdEnv(t *testing.T) *etcdEnv {
	t.Helper()
	srv := etcdtest.New(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	t.Cleanup(cancel)
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &etcdEnv{srv: srv, cli: cli, store: store, c: NewEtcdCommitter(cli, testJob, store), ctx: ctx}
	e.setGeneration(t, 1)
	e.lead = e.campaign(t, "coordinator-a")
	return e
}

func (e *etcdEnv) campaign(t *testing.T, who string, opts ...concurrency.SessionOption) leader {
	t.Helper()
	sess, err := concurrency.NewSession(e.cli, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	el := concurrency.NewElection(sess, EtcdLeaderPrefix(testJob))
	if err := el.Campaign(e.ctx, who); err != nil {
		t.Fatal(err)
	}
	return leader{sess: sess, key: el.Key(), rev: el.Rev()}
}

func (e *etcdEnv) setGeneration(t *testing.T, g int) {
	t.Helper()
	if _, err := e.cli.Put(e.ctx, EtcdGenerationKey(testJob), strconv.Itoa(g)); err != nil {
		t.Fatal(err)
	}
}

// write writes the files of the checkpoint of a step (without committing).
func (e *etcdEnv) write(t *testing.T, step int) Manifest {
	t.Helper()
	m, err := e.store.Write(Manifest{Step: step, JobHash: "j", Epoch: step / 10, Position: step % 10, Generation: 1}, parts(float32(step)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *etcdEnv) commitSteps(t *testing.T, steps ...int) {
	t.Helper()
	for _, step := range steps {
		if err := e.c.Commit(e.ctx, e.write(t, step), e.lead.key, e.lead.rev, 1); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *etcdEnv) committedNames(t *testing.T) string {
	t.Helper()
	ms, err := e.c.Committed(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

func names(steps ...int) string {
	var ns []string
	for _, s := range steps {
		ns = append(ns, NameForStep(s))
	}
	return strings.Join(ns, ",")
}

func (e *etcdEnv) latestName(t *testing.T) string {
	t.Helper()
	m, ok, err := e.c.Latest(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return m.Name
}

func TestEtcdCommitAndReadBack(t *testing.T) {
	e := newEtcdEnv(t)
	if ck, err := e.c.LoadLatest(e.ctx, nil); ck != nil || err != nil {
		t.Fatalf("nothing committed: LoadLatest = %v, %v", ck, err)
	}
	if _, ok, err := e.c.Latest(e.ctx); ok || err != nil {
		t.Fatalf("nothing committed: Latest ok=%v err=%v", ok, err)
	}
	e.commitSteps(t, 10, 20)
	e.write(t, 30) // written, never committed: invisible

	if got, want := e.committedNames(t), names(10, 20); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}
	if got := e.latestName(t); got != NameForStep(20) {
		t.Fatalf("Latest = %s", got)
	}
	ck, err := e.c.LoadLatest(e.ctx, func(f string, a ...any) { t.Errorf("unexpected warning: "+f, a...) })
	if err != nil {
		t.Fatal(err)
	}
	if m := ck.Manifest; m.Step != 20 || m.Epoch != 2 || m.Position != 0 || len(m.Files) != 2 {
		t.Fatalf("loaded manifest %+v", m)
	}
	if v := modelValue(t, ck); v != 20 {
		t.Fatalf("model value %v, want 20", v)
	}
	// The store's own pointer mirrors etcd's.
	if local, err := e.store.Latest(); err != nil || local != NameForStep(20) {
		t.Fatalf("store latest = %q, %v", local, err)
	}
	// Committing the same checkpoint again (a retry) is harmless.
	m, _, _ := e.c.Latest(e.ctx)
	if err := e.c.Commit(e.ctx, m, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := e.committedNames(t), names(10, 20); got != want {
		t.Fatalf("after retry Committed = %s, want %s", got, want)
	}
}

func TestEtcdDeposedLeaderRefused(t *testing.T) {
	e := newEtcdEnv(t)
	e.commitSteps(t, 10)
	old := e.lead
	// The old coordinator's lease is revoked; another campaign wins.
	if err := old.sess.Close(); err != nil {
		t.Fatal(err)
	}
	next := e.campaign(t, "coordinator-b")

	m := e.write(t, 20)
	err := e.c.Commit(e.ctx, m, old.key, old.rev, 1)
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed commit: %v, want ErrNotLeader", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "commit of "+m.Name+" refused: not the leader (leader is "+next.key) {
		t.Fatalf("error %q does not name the new leader %s", msg, next.key)
	}
	if got, want := e.committedNames(t), names(10); got != want {
		t.Fatalf("after refused commit Committed = %s, want %s", got, want)
	}
	if got := e.latestName(t); got != NameForStep(10) {
		t.Fatalf("after refused commit Latest = %s", got)
	}
	if err := e.c.Retain(e.ctx, 1, old.key, old.rev, 1); err != nil {
		t.Fatalf("Retain with nothing to delete: %v", err)
	}

	// The new leader commits the same checkpoint.
	if err := e.c.Commit(e.ctx, m, next.key, next.rev, 1); err != nil {
		t.Fatal(err)
	}
	if got := e.latestName(t); got != NameForStep(20) {
		t.Fatalf("Latest = %s", got)
	}
	// And the deposed one cannot delete records either.
	if err := e.c.Retain(e.ctx, 1, old.key, old.rev, 1); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed Retain: %v, want ErrNotLeader", err)
	}
	if got, want := e.committedNames(t), names(10, 20); got != want {
		t.Fatalf("after refused Retain Committed = %s, want %s", got, want)
	}
}

func TestEtcdWaitingCandidateKeyIsNotEnough(t *testing.T) {
	e := newEtcdEnv(t)
	// A key with the right prefix but a revision the caller never won with.
	m := e.write(t, 10)
	err := e.c.Commit(e.ctx, m, e.lead.key, e.lead.rev+1, 1)
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("wrong revision: %v, want ErrNotLeader", err)
	}
	for _, bad := range []struct {
		key string
		rev int64
	}{
		{EtcdLeaderPrefix(testJob) + "/nobody", 0}, // missing key has create revision 0
		{"/elsewhere/leader/1", e.lead.rev},
		{"", e.lead.rev},
	} {
		if err := e.c.Commit(e.ctx, m, bad.key, bad.rev, 1); err == nil {
			t.Errorf("Commit with leader key %q rev %d succeeded", bad.key, bad.rev)
		}
	}
	if got := e.committedNames(t); got != "" {
		t.Fatalf("Committed = %s, want none", got)
	}
}

func TestEtcdStaleGenerationRefused(t *testing.T) {
	e := newEtcdEnv(t)
	e.commitSteps(t, 10)
	e.setGeneration(t, 2)
	err := e.c.Commit(e.ctx, e.write(t, 20), e.lead.key, e.lead.rev, 1)
	if !errors.Is(err, ErrStaleGeneration) || !strings.Contains(err.Error(), "generation moved to 2") {
		t.Fatalf("stale generation: %v", err)
	}
	if got, want := e.committedNames(t), names(10); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}
	if _, err := e.cli.Delete(e.ctx, EtcdGenerationKey(testJob)); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Commit(e.ctx, e.write(t, 20), e.lead.key, e.lead.rev, 1); !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("no generation key: %v", err)
	}
	e.setGeneration(t, 2)
	if err := e.c.Commit(e.ctx, e.write(t, 20), e.lead.key, e.lead.rev, 2); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEtcdCorruptCheckpointFallsBack(t *testing.T) {
	e := newEtcdEnv(t)
	e.commitSteps(t, 10, 20)
	flipByte(t, filepath.Join(e.store.Dir(), NameForStep(20), "model.safetensors"))

	var warnings []string
	ck, err := e.c.LoadLatest(e.ctx, func(f string, a ...any) { warnings = append(warnings, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	if ck.Manifest.Step != 10 || modelValue(t, ck) != 10 {
		t.Fatalf("loaded step %d, want the previous one (10)", ck.Manifest.Step)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], NameForStep(20)) || !strings.Contains(warnings[0], "SHA-256") {
		t.Fatalf("warnings %q", warnings)
	}

	// A checkpoint whose files do not verify is never committed.
	m := e.write(t, 30)
	flipByte(t, filepath.Join(e.store.Dir(), m.Name, "optimizer.safetensors"))
	if err := e.c.Commit(e.ctx, m, e.lead.key, e.lead.rev, 1); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("commit of corrupt files: %v", err)
	}
	if got, want := e.committedNames(t), names(10, 20); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}

	// When nothing verifies, LoadLatest says so.
	flipByte(t, filepath.Join(e.store.Dir(), NameForStep(10), "model.safetensors"))
	if ck, err := e.c.LoadLatest(e.ctx, nil); ck != nil || !errors.Is(err, ErrNoneVerifies) ||
		!strings.Contains(err.Error(), NameForStep(20)+", "+NameForStep(10)) ||
		!strings.Contains(err.Error(), e.store.Dir()) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("all corrupt: LoadLatest = %v, %v; want ErrNoneVerifies, on one line naming both and the store", ck, err)
	}
}

func TestEtcdUnreachableThenBack(t *testing.T) {
	e := newEtcdEnv(t)
	e.commitSteps(t, 10, 20)
	m := e.write(t, 30)

	e.srv.Stop()
	ctx, cancel := context.WithTimeout(e.ctx, 500*time.Millisecond)
	err := e.c.Commit(ctx, m, e.lead.key, e.lead.rev, 1)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("commit with etcd down: %v, want the context's deadline", err)
	}
	ctx, cancel = context.WithTimeout(e.ctx, 500*time.Millisecond)
	_, err = e.c.LoadLatest(ctx, nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LoadLatest with etcd down: %v", err)
	}

	e.srv.Restart()
	if got, want := e.committedNames(t), names(10, 20); got != want {
		t.Fatalf("after restart Committed = %s, want %s", got, want)
	}
	// The leader's lease survived the short outage; it commits again.
	if err := e.c.Commit(e.ctx, m, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	ck, err := e.c.LoadLatest(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Manifest.Step != 30 {
		t.Fatalf("loaded step %d, want 30", ck.Manifest.Step)
	}
}

func TestEtcdRetain(t *testing.T) {
	e := newEtcdEnv(t)
	e.commitSteps(t, 10, 20, 30, 40, 50)
	e.write(t, 60) // being written: must survive
	if err := e.c.Retain(e.ctx, 0, e.lead.key, e.lead.rev, 1); err == nil {
		t.Fatal("Retain(0) succeeded")
	}
	if err := e.c.Retain(e.ctx, 2, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := e.committedNames(t), names(40, 50); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}
	for step, want := range map[int]bool{10: false, 20: false, 30: false, 40: true, 50: true, 60: true} {
		_, err := os.Stat(filepath.Join(e.store.Dir(), NameForStep(step)))
		if exists := err == nil; exists != want {
			t.Errorf("directory of step %d exists=%v, want %v", step, exists, want)
		}
	}
	if err := e.c.Retain(e.ctx, 2, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	e.setGeneration(t, 2)
	if err := e.c.Retain(e.ctx, 1, e.lead.key, e.lead.rev, 1); !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("stale Retain: %v", err)
	}
	if got, want := e.committedNames(t), names(40, 50); got != want {
		t.Fatalf("after refused Retain Committed = %s, want %s", got, want)
	}
}

func TestEtcdHostileRecords(t *testing.T) {
	e := newEtcdEnv(t)
	e.commitSteps(t, 10)
	good, _, err := e.c.Latest(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	traversal := good
	traversal.Name = NameForStep(20)
	traversal.Files = append([]FileInfo(nil), good.Files...)
	traversal.Files[0].Name = "../../../../etc/passwd"
	travJSON, _ := json.Marshal(traversal)
	other := good
	other.Name = NameForStep(20)
	otherJSON, _ := json.Marshal(good) // names step 10 under the key of step 20
	badDigest := other
	badDigest.Files = append([]FileInfo(nil), good.Files...)
	badDigest.Files[1].SHA256 = "zz"
	badDigestJSON, _ := json.Marshal(badDigest)

	prefix := EtcdCheckpointsPrefix(testJob)
	for _, tc := range []struct{ name, value string }{
		{"bad JSON", "{not json"},
		{"trailing data", `{"version":1} {}`},
		{"unknown field", `{"version":1,"name":"ckpt-000000000020","evil":1}`},
		{"wrong version", `{"version":99,"name":"ckpt-000000000020"}`},
		{"path traversal", string(travJSON)},
		{"name mismatch", string(otherJSON)},
		{"bad digest", string(badDigestJSON)},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.cli.Put(e.ctx, prefix+NameForStep(20), tc.value); err != nil {
				t.Fatal(err)
			}
			if _, err := e.cli.Put(e.ctx, prefix+"latest", NameForStep(20)); err != nil {
				t.Fatal(err)
			}
			if _, err := e.c.Committed(e.ctx); err == nil {
				t.Error("Committed accepted the record")
			}
			if _, ok, err := e.c.Latest(e.ctx); ok || err == nil {
				t.Errorf("Latest accepted the record (ok=%v, err=%v)", ok, err)
			}
			var warned int
			ck, err := e.c.LoadLatest(e.ctx, func(string, ...any) { warned++ })
			if err != nil {
				t.Fatal(err)
			}
			if ck.Manifest.Name != good.Name || warned != 1 {
				t.Fatalf("LoadLatest = %s with %d warnings, want %s after 1", ck.Manifest.Name, warned, good.Name)
			}
		})
	}

	for _, latest := range []string{"../../etc", "ckpt-1/../../x", "", "latest"} {
		if _, err := e.cli.Put(e.ctx, prefix+"latest", latest); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.LoadLatest(e.ctx, nil); err == nil && latest != "" {
			t.Errorf("latest %q: LoadLatest accepted it", latest)
		}
	}
	if _, err := e.cli.Put(e.ctx, prefix+"latest", NameForStep(10)); err != nil {
		t.Fatal(err)
	}
	// A key whose name is a path is an unusable record, not a directory to read.
	if _, err := e.cli.Put(e.ctx, prefix+"ckpt-0/../../../x", string(otherJSON)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Committed(e.ctx); err == nil {
		t.Error("Committed accepted a path as a checkpoint name")
	}
	if ck, err := e.c.LoadLatest(e.ctx, nil); err != nil || ck.Manifest.Name != good.Name {
		t.Fatalf("LoadLatest = %v, %v", ck, err)
	}
}

func TestEtcdInvalidJob(t *testing.T) {
	for _, job := range []string{"", "a/b", "..", `a\b`} {
		c := NewEtcdCommitter(nil, job, nil)
		ctx := context.Background()
		if err := c.Commit(ctx, Manifest{}, "k", 1, 1); err == nil {
			t.Errorf("job %q: Commit succeeded", job)
		}
		if _, err := c.Committed(ctx); err == nil {
			t.Errorf("job %q: Committed succeeded", job)
		}
		if _, err := c.LoadLatest(ctx, nil); err == nil {
			t.Errorf("job %q: LoadLatest succeeded", job)
		}
		if err := c.Retain(ctx, 1, "k", 1, 1); err == nil {
			t.Errorf("job %q: Retain succeeded", job)
		}
	}
}

func FuzzEtcdManifestRecord(f *testing.F) {
	valid := Manifest{Version: FormatVersion, Name: NameForStep(7), Step: 7, Files: []FileInfo{
		{Name: "model.safetensors", Size: 12, SHA256: strings.Repeat("ab", 32)},
	}}
	b, _ := json.Marshal(valid)
	f.Add(valid.Name, b)
	f.Add(valid.Name, []byte(`{"version":1,"name":"ckpt-000000000007","files":[{"name":"../x","size":1,"sha256":""}]}`))
	f.Add("ckpt-../x", b)
	f.Add("latest", []byte("{"))
	f.Add(valid.Name, []byte(`{"version":1,"name":"ckpt-000000000007","files":[{"name":"a","size":-1}]}`))
	f.Fuzz(func(t *testing.T, name string, value []byte) {
		m, err := parseManifestRecord(name, value)
		if err != nil {
			return
		}
		if m.Name != name || validManifest(m) != nil {
			t.Fatalf("accepted %+v under %q", m, name)
		}
		for _, fi := range m.Files {
			if p := filepath.Join("/store", name, fi.Name); filepath.Dir(filepath.Dir(p)) != "/store" {
				t.Fatalf("file %q of %q escapes the store: %s", fi.Name, name, p)
			}
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseManifestRecord(name, again); err != nil {
			t.Fatalf("re-encoded manifest rejected: %v", err)
		}
	})
}

func TestEtcdRollbackHidesNewerRecords(t *testing.T) {
	e := newEtcdEnv(t)
	e.commitSteps(t, 10, 20, 30)
	// Training resumed from step 20 and committed step 25: the record of
	// step 30 belongs to the abandoned run.
	e.commitSteps(t, 25)
	if got, want := e.committedNames(t), names(10, 20, 25); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}
	ck, err := e.c.LoadLatest(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Manifest.Step != 25 {
		t.Fatalf("loaded step %d, want 25", ck.Manifest.Step)
	}
	if err := e.c.Retain(e.ctx, 1, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := e.committedNames(t), names(25); got != want {
		t.Fatalf("after Retain Committed = %s, want %s", got, want)
	}
	// Reaching step 30 again replaces the abandoned record.
	e.commitSteps(t, 30)
	if got, want := e.committedNames(t), names(25, 30); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}
}

func TestEtcdExpiredLeaseRefused(t *testing.T) {
	e := newEtcdEnv(t)
	if err := e.lead.sess.Close(); err != nil {
		t.Fatal(err)
	}
	short := e.campaign(t, "coordinator-c", concurrency.WithTTL(1))
	if err := e.c.Commit(e.ctx, e.write(t, 10), short.key, short.rev, 1); err != nil {
		t.Fatal(err)
	}
	// The coordinator stops renewing its lease (a partition, a pause); etcd
	// deletes its leader key when the lease expires.
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	watch := e.cli.Watch(ctx, short.key, clientv3.WithRev(short.rev))
	short.sess.Orphan()
	for deleted := false; !deleted; {
		resp, ok := <-watch
		if !ok {
			t.Fatal("watch ended before the leader key expired")
		}
		if err := resp.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			deleted = deleted || ev.Type == clientv3.EventTypeDelete
		}
	}
	err := e.c.Commit(e.ctx, e.write(t, 20), short.key, short.rev, 1)
	if !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "(leader is nobody)") {
		t.Fatalf("commit after lease expiry: %v", err)
	}
	if got, want := e.committedNames(t), names(10); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}
}
