package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// failingWriter fails every write with err, as a full disk does.
type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

// failPointer is a write filter that fails every write of the store's
// `latest` pointer (its temporary file) with EIO.
func failPointer(path string, w io.Writer) io.Writer {
	if strings.HasPrefix(filepath.Base(path), "."+latestName) {
		return failingWriter{syscall.EIO}
	}
	return w
}

// A later generation that reaches the step of a committed checkpoint
// again (its leader saw the commit's transaction fail, though it landed)
// seals its own shards of that step: the committed checkpoint stays as
// committed, its files those its etcd record lists.
func TestSealNeverReplacesACommittedCheckpoint(t *testing.T) {
	e := newEtcdEnv(t)
	committed := e.commitShards(t, 10)
	again := writeShards(t, e.store, 10, 7)
	// The same checkpoint (job, step, position) verifies: it is kept, and
	// its manifest returned for the caller to commit.
	kept, err := e.store.Seal(again)
	if err != nil || kept.Created != committed.Created || kept.Files[0] != committed.Files[0] {
		t.Errorf("Seal over a committed checkpoint: %v; returned %+v, want the committed one", err, kept)
	}
	if err := e.c.Commit(e.ctx, kept, e.lead.key, e.lead.rev, 1); err != nil {
		t.Errorf("committing the kept checkpoint again: %v", err)
	}
	for _, f := range committed.Files {
		if err := verifyFile(filepath.Join(e.store.Dir(), committed.Name, f.Name), f); err != nil {
			t.Errorf("the committed checkpoint's file changed: %v", err)
		}
	}
	ck, err := e.c.LoadLatest(e.ctx, func(f string, a ...any) { t.Errorf("warning: "+f, a...) })
	if err != nil || ck == nil || ck.Manifest.Name != committed.Name {
		t.Fatalf("LoadLatest = %v, %v; want %s", ck, err, committed.Name)
	}
	tb, _ := ck.Files["model-00002-of-00002.safetensors"].Tensor("b")
	if xs, _ := tb.Float32s(); xs[0] != 1 {
		t.Errorf("the committed checkpoint holds %v, the later generation's values", xs)
	}
}

// Writing a checkpoint of a step that is committed leaves the committed
// one as it is.
func TestWriteNeverReplacesACommittedCheckpoint(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	saveSteps(t, s, 10)
	name := NameForStep(10)
	mpath := filepath.Join(s.Dir(), name, manifestNam)
	before, err := os.Stat(mpath)
	if err != nil {
		t.Fatal(err)
	}
	// saveSteps saved step 10 at epoch 1, position 0: the same checkpoint
	// is kept as it is, another one of the name refused.
	orig, err := s.ReadManifest(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, save := range []func(Manifest, []Part) (Manifest, error){s.Write, s.Save} {
		m, err := save(Manifest{Step: 10, JobHash: "j", Epoch: 1}, parts(99))
		if err != nil || m.Created != orig.Created {
			t.Errorf("writing the committed checkpoint again: %v, %+v; want the committed one", err, m)
		}
		if _, err := save(Manifest{Step: 10, JobHash: "j", Epoch: 1, Position: 3}, parts(98)); !errors.Is(err, ErrExists) {
			t.Errorf("writing another checkpoint of a committed name: %v, want ErrExists", err)
		}
	}
	after, err := os.Stat(mpath)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the committed checkpoint's manifest was replaced (%v)", err)
	}
	ck, err := s.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	if v := modelValue(t, ck); v != 10 {
		t.Errorf("the committed checkpoint holds %v, want 10", v)
	}
}

// A commit whose etcd transaction succeeded is committed even when the
// store's own copy of the `latest` pointer cannot be written: that copy
// is a convenience, etcd holds the record.
func TestEtcdCommitSurvivesAFailedPointerCopy(t *testing.T) {
	e := newEtcdEnv(t)
	c := NewEtcdCommitter(e.cli, testJob, e.store.WithWriteFilter(failPointer))
	var warnings []string
	c.Warnf = func(f string, a ...any) { warnings = append(warnings, fmt.Sprintf(f, a...)) }
	for _, step := range []int{10, 20} {
		if err := c.Commit(e.ctx, e.write(t, step), e.lead.key, e.lead.rev, 1); err != nil {
			t.Fatalf("commit of step %d: %v", step, err)
		}
	}
	if got, want := e.committedNames(t), names(10, 20); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[1], NameForStep(20)+" is committed in etcd, but the store's copy of the latest pointer was not moved") {
		t.Errorf("warnings %q", warnings)
	}
	if err := c.Retain(e.ctx, 1, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := e.committedNames(t), names(20); got != want {
		t.Fatalf("after Retain Committed = %s, want %s", got, want)
	}
}

// Retention of one job never deletes another job's checkpoints, even in
// a directory both wrote (a store shared by jobs before stores were
// separated per job): it deletes what its own records list.
func TestEtcdRetainLeavesOtherJobsAlone(t *testing.T) {
	e := newEtcdEnv(t)
	const otherJob = "other-job"
	if _, err := e.cli.Put(e.ctx, EtcdGenerationKey(otherJob), "1"); err != nil {
		t.Fatal(err)
	}
	sess, err := concurrency.NewSession(e.cli)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	el := concurrency.NewElection(sess, EtcdLeaderPrefix(otherJob))
	if err := el.Campaign(e.ctx, "other-coordinator"); err != nil {
		t.Fatal(err)
	}
	other := NewEtcdCommitter(e.cli, otherJob, e.store)
	for _, step := range []int{5, 15} {
		m, err := e.store.Write(Manifest{Step: step, JobHash: "other-hash", Generation: 1}, parts(float32(step)))
		if err != nil {
			t.Fatal(err)
		}
		if err := other.Commit(e.ctx, m, el.Key(), el.Rev(), 1); err != nil {
			t.Fatal(err)
		}
	}
	e.commitSteps(t, 30, 40, 50)
	if err := e.c.Retain(e.ctx, 1, e.lead.key, e.lead.rev, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := e.committedNames(t), names(50); got != want {
		t.Fatalf("Committed = %s, want %s", got, want)
	}
	ck, err := other.LoadLatest(context.Background(), t.Logf)
	if err != nil || ck == nil || ck.Manifest.Step != 15 {
		t.Fatalf("the other job's latest checkpoint after this job's retention: %v, %v", ck, err)
	}
	if _, err := os.Stat(filepath.Join(e.store.Dir(), NameForStep(5))); err != nil {
		t.Errorf("this job's retention removed the other job's checkpoint: %v", err)
	}
}

// A corrupt checkpoint of a name is kept as it is: a write of that name is
// refused with ErrExists (the caller skips that checkpoint).
func TestWriteKeepsACheckpointThatDoesNotVerify(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	saveSteps(t, s, 10, 20)
	path := filepath.Join(dir, NameForStep(20), "model.safetensors")
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1
	os.WriteFile(path, b, 0o644)
	if _, err := s.Save(Manifest{Step: 20, JobHash: "j", Epoch: 2}, parts(20)); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("Save over a corrupt checkpoint: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(b) {
		t.Error("the corrupt checkpoint was changed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("the store holds %v, want the two checkpoints and latest (no staging left)", entries)
	}
}

// Stores are separated by job: a job's store is its own directory under
// the root, recording the job; a store of another hash under the name is
// refused while it holds checkpoints, and taken over when it holds none.
func TestOpenJob(t *testing.T) {
	root := t.TempDir()
	a, err := OpenJob(root, "job-a", "hash-a")
	if err != nil {
		t.Fatal(err)
	}
	if a.Dir() != filepath.Join(root, "job-a") || a.Legacy() {
		t.Fatalf("job-a's store is %s (legacy %v)", a.Dir(), a.Legacy())
	}
	if rec, ok, err := ReadJob(a.Dir()); !ok || err != nil || rec != (JobRecord{Name: "job-a", JobHash: "hash-a"}) {
		t.Fatalf("job record %+v, %v, %v", rec, ok, err)
	}
	// Nothing committed yet: another hash takes the name over.
	if _, err := OpenJobShared(root, "job-a", "hash-b"); err != nil {
		t.Fatalf("a store with no checkpoints was not taken over: %v", err)
	}
	a, err = OpenJob(root, "job-a", "hash-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Save(Manifest{Step: 1, JobHash: "hash-a"}, parts(1)); err != nil {
		t.Fatal(err)
	}
	for _, open := range []func(string, string, string) (*Store, error){OpenJob, OpenJobShared} {
		_, err := open(root, "job-a", "hash-b")
		if err == nil || !strings.Contains(err.Error(), "hash-a") || !strings.Contains(err.Error(), "hash-b") {
			t.Errorf("a store of another hash: %v, want an error naming both hashes", err)
		}
	}
	if rec, _, _ := ReadJob(a.Dir()); rec.JobHash != "hash-a" {
		t.Errorf("a refused open changed the job record: %+v", rec)
	}
	for _, bad := range []string{"", "..", "a/b", ".hidden", "ckpt-1", "latest", "job.json"} {
		if _, err := OpenJob(root, bad, "h"); err == nil {
			t.Errorf("job name %q accepted", bad)
		}
	}
	found, err := FindStores(root)
	if err != nil || len(found) != 1 || found[0].Job != "job-a" || found[0].JobHash != "hash-a" {
		t.Errorf("FindStores = %+v, %v", found, err)
	}
}

// A store of the layout before stores were separated per job continues in
// place for the job whose checkpoints it holds; another job gets its own
// directory under it, and retention in the old store skips the checkpoints
// of other jobs.
func TestOpenJobContinuesTheLayoutBefore(t *testing.T) {
	root := t.TempDir()
	old, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []int{1, 2, 3} {
		if _, err := old.Save(Manifest{Step: step, JobHash: "hash-a"}, parts(float32(step))); err != nil {
			t.Fatal(err)
		}
	}
	// Another job once wrote into the same directory.
	if _, err := old.Save(Manifest{Step: 4, JobHash: "hash-x"}, parts(4)); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Save(Manifest{Step: 5, JobHash: "hash-a"}, parts(5)); err != nil {
		t.Fatal(err)
	}
	a, err := OpenJob(root, "job-a", "hash-a")
	if err != nil {
		t.Fatal(err)
	}
	if a.Dir() != root || !a.Legacy() {
		t.Fatalf("job-a opened %s (legacy %v), want the old store in place", a.Dir(), a.Legacy())
	}
	if _, err := os.Stat(filepath.Join(root, jobFile)); !os.IsNotExist(err) {
		t.Errorf("the old store got a job record: %v", err)
	}
	if err := a.Retain(1); err != nil {
		t.Fatal(err)
	}
	got, _ := a.List()
	if want := []string{NameForStep(4), NameForStep(5)}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("after Retain(1): %v, want %v (the other job's kept)", got, want)
	}
	b, err := OpenJob(root, "job-b", "hash-b")
	if err != nil {
		t.Fatal(err)
	}
	if b.Dir() != filepath.Join(root, "job-b") || b.Legacy() {
		t.Errorf("job-b opened %s (legacy %v)", b.Dir(), b.Legacy())
	}
	if found, err := FindStores(root); err != nil || len(found) != 2 || found[0].Dir != root || found[0].JobHash != "hash-a" ||
		found[1].Job != "job-b" || found[1].JobHash != "hash-b" {
		t.Errorf("FindStores = %+v, %v", found, err)
	}
}

// A coordinator removes only its own leftovers, and only when asked (as it
// begins to lead); opening a store shared removes nothing.
func TestRemoveOwnStaging(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenShared(dir)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := s.Owned("coord/a"), s.Owned("coord-b")
	// Leftovers of both: a staging directory each, and a pointer file.
	for _, o := range []*Store{mine, theirs} {
		if err := os.Mkdir(filepath.Join(dir, NameForStep(3)+"."+o.tag()+tmpSuffix), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "."+latestName+"."+o.tag()), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	legacy := []string{"." + latestName + "8046925711254791346", NameForStep(4) + tmpSuffix}
	for _, n := range legacy {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := mine.RemoveOwnStaging()
	if err != nil || n != 2 {
		t.Fatalf("RemoveOwnStaging removed %d, %v; want 2", n, err)
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
		if strings.Contains(e.Name(), ".coord_a.") {
			t.Errorf("%s is left", e.Name())
		}
	}
	if len(left) != 4 {
		t.Errorf("left %v, want the other coordinator's two files and the two of an earlier version", left)
	}
	if n, err := s.RemoveOwnStaging(); n != 0 || err != nil {
		t.Errorf("a store with no owner removed %d, %v", n, err)
	}
	// The owner's commits use names of its own, and leave none behind.
	if _, err := mine.Save(Manifest{Step: 9, JobHash: "j"}, parts(9)); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 6 {
		t.Errorf("after a save the store holds %d entries, want 6", len(entries))
	}
}
