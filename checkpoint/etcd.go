package checkpoint

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ringtrain/ringtrain/safetensors"
)

// On a cluster a checkpoint is committed in etcd, not by the store's local
// `latest` pointer. The keys of one job, all under /ringtrain/<job>/:
//
//	/ringtrain/<job>/leader/<lease-id>          the coordinator's leader key, held with
//	                                            its session lease (concurrency.Election
//	                                            on the prefix /ringtrain/<job>/leader)
//	/ringtrain/<job>/generation                 the job's generation, in decimal
//	/ringtrain/<job>/checkpoints/<name>         one committed checkpoint's manifest (JSON)
//	/ringtrain/<job>/checkpoints/latest         the name of the newest committed checkpoint
//
// A checkpoint is committed by one transaction that writes its manifest and
// moves `latest`, only if the caller's leader key still exists with the
// create revision it won the election with, and the generation is still the
// caller's. A coordinator whose lease has expired or been revoked, or whose
// generation has moved on, therefore cannot commit; and since both keys are
// written in one transaction, no reader ever sees half a commit.
//
// The files stay in the job's Store directory (on a cluster a shared
// volume, <store>/<job>/, see OpenJob): workers write them with write-temp,
// fsync, rename; etcd only records which checkpoints are committed. The
// store's own `latest` pointer is a copy kept for readers of the store
// alone (ringtrain checkpoint list); etcd never reads it.

const (
	etcdRoot       = "/ringtrain/"
	etcdLatestName = "latest"
)

// EtcdLeaderPrefix is the election prefix of a job's coordinators: each
// candidate's key is this prefix, a slash and its lease ID.
func EtcdLeaderPrefix(job string) string { return etcdRoot + job + "/leader" }

// EtcdGenerationKey is the key that holds a job's generation in decimal.
func EtcdGenerationKey(job string) string { return etcdRoot + job + "/generation" }

// EtcdCheckpointsPrefix is the prefix of a job's committed manifests and its
// `latest` pointer (it ends in a slash).
func EtcdCheckpointsPrefix(job string) string { return etcdRoot + job + "/checkpoints/" }

// ErrNotLeader is wrapped by the errors of commits and deletions refused
// because the caller no longer holds the job's leader key.
var ErrNotLeader = errors.New("not the leader")

// ErrStaleGeneration is wrapped by the errors of commits and deletions
// refused because the job's generation is no longer the caller's.
var ErrStaleGeneration = errors.New("stale generation")

// EtcdCommitter commits a Store's checkpoints in etcd and reads them back.
// It holds no goroutines and no state besides its arguments; it is safe for
// concurrent use as far as its client and store are, but one coordinator (the
// leader) commits at a time by design.
type EtcdCommitter struct {
	cli    *clientv3.Client
	job    string
	store  *Store
	jobErr error // non-nil when job is not a valid job name

	// Warnf, when set, is told what goes wrong without failing a call:
	// the store's copy of the `latest` pointer not moved after a commit.
	Warnf func(format string, args ...any)
}

// NewEtcdCommitter returns a committer for job's checkpoints, whose files
// live in store. A job name must be non-empty and hold no slash; with a bad
// one every method returns an error.
func NewEtcdCommitter(cli *clientv3.Client, job string, store *Store) *EtcdCommitter {
	c := &EtcdCommitter{cli: cli, job: job, store: store}
	if job == "" || strings.ContainsAny(job, "/\\") || job == "." || job == ".." {
		c.jobErr = fmt.Errorf("checkpoint: invalid job name %q for etcd", job)
	}
	return c
}

func (c *EtcdCommitter) checkpointKey(name string) string {
	return EtcdCheckpointsPrefix(c.job) + name
}

func (c *EtcdCommitter) latestKey() string { return EtcdCheckpointsPrefix(c.job) + etcdLatestName }

// guard is the compare of every write: the caller still holds its leader key
// (same create revision) and the generation is still its.
func (c *EtcdCommitter) guard(leaderKey string, leaderRev int64, generation int) []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(leaderKey), "=", leaderRev),
		clientv3.Compare(clientv3.Value(EtcdGenerationKey(c.job)), "=", strconv.Itoa(generation)),
	}
}

// checkGuard rejects guards that cannot name a held leader key: a missing
// key has create revision 0, so a zero revision would match nobody's key.
func (c *EtcdCommitter) checkGuard(leaderKey string, leaderRev int64) error {
	if leaderRev <= 0 {
		return fmt.Errorf("leader revision %d: not a revision", leaderRev)
	}
	if !strings.HasPrefix(leaderKey, EtcdLeaderPrefix(c.job)+"/") {
		return fmt.Errorf("leader key %q is not under %s/", leaderKey, EtcdLeaderPrefix(c.job))
	}
	return nil
}

// refusalOps read what a refused write reports: the current leader and the
// current generation.
func (c *EtcdCommitter) refusalOps(leaderKey string) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpGet(leaderKey),
		clientv3.OpGet(EtcdLeaderPrefix(c.job)+"/", clientv3.WithFirstCreate()...), // prefix, oldest, limit 1
		clientv3.OpGet(EtcdGenerationKey(c.job)),
	}
}

// refusal explains a failed guard from the responses of refusalOps.
func refusal(what string, resp *clientv3.TxnResponse, leaderRev int64, generation int) error {
	if len(resp.Responses) != 3 {
		return fmt.Errorf("checkpoint: %s refused (etcd returned %d responses)", what, len(resp.Responses))
	}
	mine := resp.Responses[0].GetResponseRange()
	first := resp.Responses[1].GetResponseRange()
	gen := resp.Responses[2].GetResponseRange()
	if mine == nil || len(mine.Kvs) == 0 || mine.Kvs[0].CreateRevision != leaderRev {
		leader := "nobody"
		if first != nil && len(first.Kvs) > 0 {
			leader = fmt.Sprintf("%s, elected at revision %d", first.Kvs[0].Key, first.Kvs[0].CreateRevision)
		}
		return fmt.Errorf("checkpoint: %s refused: %w (leader is %s)", what, ErrNotLeader, leader)
	}
	now := "<unset>"
	if gen != nil && len(gen.Kvs) > 0 {
		now = strconv.Quote(string(gen.Kvs[0].Value))
		if _, err := strconv.Atoi(string(gen.Kvs[0].Value)); err == nil {
			now = string(gen.Kvs[0].Value)
		}
	}
	return fmt.Errorf("checkpoint: %s refused: %w: generation moved to %s (caller has %d)", what, ErrStaleGeneration, now, generation)
}

// Commit commits the checkpoint m, whose files the store holds, in etcd:
// first it checks every file of m against m's sizes and SHA-256 (what does
// not verify is never committed), then in one transaction, guarded by the
// caller's leader key (leaderKey must exist with create revision leaderRev,
// as concurrency.Election's Key and Rev report once Campaign has returned)
// and by the job's generation, it writes m's manifest and moves `latest` to
// it.
//
// A refused commit changes nothing and returns an error wrapping
// ErrNotLeader or ErrStaleGeneration. When etcd cannot be reached, Commit
// returns the context's error by its deadline; then the commit either
// happened whole or not at all, and committing the same m again is
// harmless. `latest` names the checkpoint committed last, which after a
// rollback to an older checkpoint is older than some records (see
// Committed). The store's own `latest` pointer follows etcd's.
func (c *EtcdCommitter) Commit(ctx context.Context, m Manifest, leaderKey string, leaderRev int64, generation int) error {
	if c.jobErr != nil {
		return c.jobErr
	}
	if err := c.checkGuard(leaderKey, leaderRev); err != nil {
		return fmt.Errorf("checkpoint: commit of %s: %w", m.Name, err)
	}
	if err := validManifest(m); err != nil {
		return fmt.Errorf("checkpoint: commit of %s: %w", m.Name, err)
	}
	if len(m.Files) == 0 {
		return fmt.Errorf("checkpoint: commit of %s: manifest lists no files", m.Name)
	}
	for _, f := range m.Files {
		if err := verifyFile(filepath.Join(c.store.dir, m.Name, f.Name), f); err != nil {
			return fmt.Errorf("%w (commit of %s refused: its files do not verify)", err, m.Name)
		}
	}
	val, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("checkpoint: commit of %s: %w", m.Name, err)
	}
	resp, err := c.cli.Txn(ctx).
		If(c.guard(leaderKey, leaderRev, generation)...).
		Then(clientv3.OpPut(c.checkpointKey(m.Name), string(val)), clientv3.OpPut(c.latestKey(), m.Name)).
		Else(c.refusalOps(leaderKey)...).
		Commit()
	if err != nil {
		return fmt.Errorf("checkpoint: commit of %s: etcd: %w", m.Name, err)
	}
	if !resp.Succeeded {
		return refusal("commit of "+m.Name, resp, leaderRev, generation)
	}
	// Mirror the commit in the store's own `latest` pointer, so the store
	// also describes itself (ringtrain checkpoint list, single-node
	// resume). etcd stays the record: a mirror left behind (by a crash
	// here, or a write that failed) only lags, and the next commit moves
	// it; the commit has happened either way.
	if err := c.store.setLatest(m.Name); err != nil && c.Warnf != nil {
		c.Warnf("checkpoint %s is committed in etcd, but the store's copy of the latest pointer was not moved: %v", m.Name, err)
	}
	return nil
}

// record is one checkpoint key read from etcd: its name, and its manifest
// or why the manifest is unusable.
type record struct {
	name     string
	manifest Manifest
	err      error
}

// snapshot reads all of the job's checkpoint records and `latest` at one
// revision. Records are sorted by name, oldest first; keys that do not name
// a checkpoint are reported as records with an error.
func (c *EtcdCommitter) snapshot(ctx context.Context) (recs []record, latest string, err error) {
	if c.jobErr != nil {
		return nil, "", c.jobErr
	}
	prefix := EtcdCheckpointsPrefix(c.job)
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint: reading %s from etcd: %w", prefix, err)
	}
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), prefix)
		if name == etcdLatestName {
			latest = string(kv.Value)
			if err := validCheckpointName(latest); err != nil {
				return nil, "", fmt.Errorf("checkpoint: etcd key %s: %w", kv.Key, err)
			}
			continue
		}
		r := record{name: name}
		r.manifest, r.err = parseManifestRecord(name, kv.Value)
		if r.err != nil {
			r.err = fmt.Errorf("checkpoint: etcd key %s: %w", kv.Key, r.err)
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].name < recs[j].name })
	return recs, latest, nil
}

// Committed returns the manifests of the job's committed checkpoints, oldest
// first: the records at or before `latest` (a record newer than `latest` is
// left from a run that was rolled back to an older checkpoint, and is
// replaced when training reaches its step again). A record that is not a
// valid manifest is an error.
func (c *EtcdCommitter) Committed(ctx context.Context) ([]Manifest, error) {
	recs, latest, err := c.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	ms := make([]Manifest, 0, len(recs))
	for _, r := range recs {
		if r.name > latest {
			continue
		}
		if r.err != nil {
			return nil, r.err
		}
		ms = append(ms, r.manifest)
	}
	return ms, nil
}

// Latest returns the manifest of the checkpoint `latest` names, without
// checking its files; ok is false when none is committed.
func (c *EtcdCommitter) Latest(ctx context.Context) (m Manifest, ok bool, err error) {
	recs, latest, err := c.snapshot(ctx)
	if err != nil || latest == "" {
		return Manifest{}, false, err
	}
	for _, r := range recs {
		if r.name == latest {
			return r.manifest, r.err == nil, r.err
		}
	}
	return Manifest{}, false, fmt.Errorf("checkpoint: etcd `latest` names %s, which has no record", latest)
}

// LoadLatest loads the newest checkpoint committed in etcd (at or before
// `latest`) whose files in the store verify against its committed manifest.
// Each one that fails, or whose record is unusable, is reported through
// warnf and skipped, so the previous one is used. It returns nil and no
// error when nothing is committed, and an error wrapping ErrNoneVerifies,
// naming each checkpoint and why it fails, when nothing committed
// verifies.
func (c *EtcdCommitter) LoadLatest(ctx context.Context, warnf func(format string, args ...any)) (*Checkpoint, error) {
	recs, latest, err := c.snapshot(ctx)
	if err != nil || latest == "" {
		return nil, err
	}
	var names, whys []string
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.name > latest {
			continue
		}
		err := r.err
		var ck *Checkpoint
		if err == nil {
			ck, err = c.store.loadManifest(r.manifest)
		}
		if err == nil {
			return ck, nil
		}
		names, whys = append(names, r.name), append(whys, err.Error())
		if warnf != nil {
			warnf("skipping checkpoint %s: %v", r.name, err)
		}
	}
	return nil, &noneVerifiesError{fmt.Sprintf("checkpoint: none of job %s's %d checkpoints committed in etcd (%s) verifies in %s: %s",
		c.job, len(names), strings.Join(names, ", "), c.store.dir, strings.Join(whys, "; "))}
}

// ErrNoneVerifies is matched (errors.Is) by the error of
// EtcdCommitter.LoadLatest when checkpoints are committed but the files of
// none of them verify in the store: it is not the store they were written
// to, or their files are gone or damaged.
var ErrNoneVerifies = errors.New("checkpoint: no committed checkpoint verifies")

// noneVerifiesError says which committed checkpoints fail and why.
type noneVerifiesError struct{ msg string }

func (e *noneVerifiesError) Error() string        { return e.msg }
func (e *noneVerifiesError) Is(target error) bool { return target == ErrNoneVerifies }

// Retain keeps the newest keep committed checkpoints (counted back from
// `latest`) and deletes the older records in one transaction with the same
// guard as Commit; then it removes from the store what is this job's and
// older than the oldest one kept:
//
//   - a checkpoint directory whose own manifest carries the job hash of
//     the records (the records just deleted, and the leftovers of an
//     earlier Retain that stopped between its two steps, or of a seal that
//     was never committed); in a store opened for the job (OpenJob), also
//     one named by a deleted record whose manifest cannot be read;
//   - shards never sealed and staging directories of those steps, except
//     in a store of the layout before stores were separated per job, which
//     may be another job's.
//
// Another job's checkpoints are never removed, even where jobs share a
// directory. Nothing newer than the oldest one kept is touched, so a
// checkpoint being written survives.
func (c *EtcdCommitter) Retain(ctx context.Context, keep int, leaderKey string, leaderRev int64, generation int) error {
	if keep < 1 {
		return fmt.Errorf("checkpoint: retain %d: must keep at least one", keep)
	}
	if c.jobErr != nil {
		return c.jobErr
	}
	if err := c.checkGuard(leaderKey, leaderRev); err != nil {
		return fmt.Errorf("checkpoint: retain %d: %w", keep, err)
	}
	recs, latest, err := c.snapshot(ctx)
	if err != nil || latest == "" {
		return err
	}
	var kept []record
	for _, r := range recs {
		if r.name <= latest && validCheckpointName(r.name) == nil {
			kept = append(kept, r)
		}
	}
	if len(kept) <= keep {
		return nil
	}
	oldest := kept[len(kept)-keep]
	oldestKept := oldest.name
	doomed := make(map[string]bool)
	for _, r := range recs {
		if r.name < oldestKept {
			doomed[r.name] = true
		}
	}
	// Every record key that sorts before the oldest kept one goes, in one
	// range deletion; `latest` sorts after every checkpoint name.
	from := EtcdCheckpointsPrefix(c.job) + dirPrefix
	resp, err := c.cli.Txn(ctx).
		If(c.guard(leaderKey, leaderRev, generation)...).
		Then(clientv3.OpDelete(from, clientv3.WithRange(c.checkpointKey(oldestKept)))).
		Else(c.refusalOps(leaderKey)...).
		Commit()
	if err != nil {
		return fmt.Errorf("checkpoint: retaining %d: etcd: %w", keep, err)
	}
	if !resp.Succeeded {
		return refusal(fmt.Sprintf("deletion of checkpoints before %s", oldestKept), resp, leaderRev, generation)
	}
	hash := oldest.manifest.JobHash
	if oldest.err != nil {
		hash = c.store.jobHash
	}
	s := c.store
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() {
			continue
		}
		var base string
		var gone bool
		if isCheckpointName(n) {
			base = n
			m, err := s.ReadManifest(n)
			if err == nil {
				gone = m.JobHash == hash
			} else {
				gone = doomed[n] && s.jobHash != "" && !s.legacy
			}
		} else {
			// Shards never sealed and staging directories go with their
			// step.
			base, _, _ = strings.Cut(n, ".")
			_, staging := stagingOwner(n)
			gone = (strings.HasSuffix(n, partsSuffix) || staging) && !s.legacy
		}
		if !gone || !isCheckpointName(base) || base >= oldestKept {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, n)); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}

// ValidName accepts the names NameForStep makes: the ckpt- prefix and no
// path separators or dot segments, so a name stays inside its store.
func ValidName(name string) error { return validCheckpointName(name) }

// validCheckpointName is ValidName.
func validCheckpointName(name string) error {
	if !strings.HasPrefix(name, dirPrefix) || len(name) == len(dirPrefix) ||
		strings.ContainsAny(name, "/\\\x00") || strings.Contains(name, "..") || isStaging(name) {
		return fmt.Errorf("%q is not a checkpoint name", name)
	}
	return nil
}

// validManifest checks what a manifest must hold before it is committed or
// after it is read from etcd: this format version, a checkpoint name, and
// files with safe, distinct names, sizes and SHA-256 digests.
func validManifest(m Manifest) error {
	if m.Version != FormatVersion {
		return fmt.Errorf("format version %d, this ringtrain reads %d", m.Version, FormatVersion)
	}
	if err := validCheckpointName(m.Name); err != nil {
		return err
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if validFileName(f.Name) != nil || strings.ContainsRune(f.Name, 0) {
			return fmt.Errorf("invalid file name %q", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("file %q listed twice", f.Name)
		}
		seen[f.Name] = true
		if f.Size < 0 {
			return fmt.Errorf("file %q: size %d", f.Name, f.Size)
		}
		if d, err := hex.DecodeString(f.SHA256); err != nil || len(d) != 32 {
			return fmt.Errorf("file %q: %q is not a SHA-256 digest", f.Name, f.SHA256)
		}
	}
	return nil
}

// parseManifestRecord decodes the manifest stored under a checkpoint key
// and checks that it is valid and names that checkpoint.
func parseManifestRecord(name string, value []byte) (Manifest, error) {
	var m Manifest
	if err := validCheckpointName(name); err != nil {
		return m, err
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return Manifest{}, errors.New("manifest: data after the JSON object")
	}
	if err := validManifest(m); err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	if m.Name != name {
		return Manifest{}, fmt.Errorf("holds the manifest of %q", m.Name)
	}
	return m, nil
}

// loadManifest verifies and reads the files of a checkpoint as a given
// manifest (not the copy in its directory) describes them.
func (s *Store) loadManifest(m Manifest) (*Checkpoint, error) {
	if err := validManifest(m); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", m.Name, err)
	}
	ck := &Checkpoint{Manifest: m, Files: make(map[string]*safetensors.File, len(m.Files))}
	for _, f := range m.Files {
		path := filepath.Join(s.dir, m.Name, f.Name)
		if err := verifyFile(path, f); err != nil {
			return nil, err
		}
		sf, err := safetensors.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: %w", m.Name, err)
		}
		ck.Files[f.Name] = sf
	}
	return ck, nil
}
