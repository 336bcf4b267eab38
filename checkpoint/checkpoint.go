// Package checkpoint owns ringtrain's checkpoints: tensors in safetensors
// files plus a JSON manifest that records the training position and the
// SHA-256 of every file, stored in a directory with atomic commits, a
// `latest` pointer and keep-last-K retention.
//
// Stores are separated by job. A store root (a run directory's
// checkpoints/, a cluster's --store) holds one store per job, in a
// directory named after the job (see OpenJob):
//
//	<job>/job.json                    (the job's name and hash)
//	<job>/ckpt-000000001200/manifest.json
//	<job>/ckpt-000000001200/model.safetensors
//	<job>/ckpt-000000001200/optimizer.safetensors
//	<job>/latest                      (the name of the newest committed checkpoint)
//
// A store of the layout before stores were separated (checkpoints and
// `latest` directly in the root) is used in place by the job whose
// checkpoints it holds.
//
// A checkpoint is committed once its directory has its final name and the
// `latest` pointer names it (on a cluster: once etcd records it, see
// EtcdCommitter); both steps are write-temp, fsync, rename (and an fsync of
// the store directory), so a crash at any moment leaves the previous
// committed checkpoint intact and loadable. A checkpoint whose files fail
// their checksums is never loaded: LoadLatest falls back to the one before,
// with a warning.
//
// A checkpoint directory, once it has its final name, is never removed or
// replaced by a write: each writer builds its checkpoint in a staging
// directory of a name of its own and renames it into place only where no
// checkpoint of that name exists. Only retention removes checkpoints, and
// only those its job's commit records list (see Store.Retain and
// EtcdCommitter.Retain).
//
// What files a training run's checkpoint holds is State's to say: the
// model and optimizer files, whole or dealt out among the ranks of a ring
// (model-00001-of-00004.safetensors, …), and each rank's codec file;
// State.Parts makes them and Checkpoint.ReadState reads them back.
package checkpoint

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/safetensors"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// Manifest describes one checkpoint: where training stood and what files
// hold its tensors.
type Manifest struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	JobHash string `json:"job_hash"`
	Model   string `json:"model"`
	// Step is the number of optimizer steps taken; Epoch is the epoch in
	// progress and Position the number of samples of it already consumed
	// (so resume continues mid-epoch with the same data order).
	Step       int    `json:"step"`
	Epoch      int    `json:"epoch"`
	Position   int    `json:"position"`
	Seed       uint64 `json:"seed"`
	WorldSize  int    `json:"world_size"`
	Generation int    `json:"generation"`
	// RNG is the state of the training RNG (dropout, augmentation).
	RNG     []byte     `json:"rng,omitempty"`
	Metrics Metrics    `json:"metrics"`
	Created time.Time  `json:"created"`
	Files   []FileInfo `json:"files"`
}

// Metrics are the figures of the run at checkpoint time, for `checkpoint
// list` and for resuming the progress display.
type Metrics struct {
	TrainLoss    float64 `json:"train_loss,omitempty"`
	TestAccuracy float64 `json:"test_accuracy,omitempty"`
	TestLoss     float64 `json:"test_loss,omitempty"`
}

// FileInfo names one file of a checkpoint with its size and SHA-256.
type FileInfo struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Part is one safetensors file to be written into a checkpoint.
type Part struct {
	Name     string // file name, e.g. "model.safetensors"
	Tensors  map[string]safetensors.Tensor
	Metadata map[string]string
}

// Checkpoint is a loaded, verified checkpoint.
type Checkpoint struct {
	Manifest Manifest
	Files    map[string]*safetensors.File
}

// Store is a directory of checkpoints. One process writes a store's
// commits (the trainer, or a cluster's leading coordinator); a cluster's
// workers write their shards beside it (WriteShard).
type Store struct {
	dir string
	// filter, when set, is what every file write goes through (see
	// WithWriteFilter).
	filter func(path string, w io.Writer) io.Writer
	// owner tags the names of this writer's staging directories and
	// pointer files (see Owned); "" for a store with one writer.
	owner string
	// job and jobHash are the job whose store this is ("" when not opened
	// by OpenJob); legacy is set for a store of the layout before stores
	// were separated per job, which other jobs' checkpoints may share.
	job, jobHash string
	legacy       bool
}

// ErrExists is wrapped by the errors of writes refused because a
// checkpoint of the same name exists that is not the same checkpoint, or
// does not verify: it is kept as it is.
var ErrExists = errors.New("a checkpoint of that name exists")

const (
	dirPrefix   = "ckpt-"
	tmpSuffix   = ".tmp"
	latestName  = "latest"
	manifestNam = "manifest.json"
)

// Open opens (creating if needed) the store at dir as its only writer and
// removes the leftovers of writes that never committed: every staging
// directory and temporary pointer file, whoever made it. Only the process
// that alone writes the store (the single-node trainer) opens it so; the
// others use OpenShared.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	s := &Store{dir: dir}
	if _, err := s.removeStaging(func(string) bool { return true }); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenShared opens (creating if needed) the store at dir and changes
// nothing in it: for readers (ringtrain checkpoint list, verify; a read-only
// volume), for a cluster's workers, which write their shards next to the
// coordinator's writes in progress, and for its coordinators, which remove
// only their own leftovers, and only while they lead (RemoveOwnStaging).
func OpenShared(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &Store{dir: dir}, nil
}

// WithWriteFilter returns a Store on the same directory whose file writes
// (checkpoint files, shards, manifests, the `latest` pointer) go through
// filter: it is given the path being written (a temporary name) and the
// file, and returns the writer to use. It is the store's seam for
// injecting faults, such as a full disk, and changes nothing else.
func (s *Store) WithWriteFilter(filter func(path string, w io.Writer) io.Writer) *Store {
	c := *s
	c.filter = filter
	return &c
}

// Owned returns a Store on the same directory whose staging directories
// and temporary pointer files carry owner in their names, so that
// RemoveOwnStaging finds them, and never another writer's: a cluster's
// coordinators are owned by their names. Characters other than letters,
// digits, '-' and '_' become '_'.
func (s *Store) Owned(owner string) *Store {
	c := *s
	c.owner = strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return r
		}
		return '_'
	}, owner)
	return &c
}

// writer is w as the store writes to it: through the filter, if any.
func (s *Store) writer(path string, w io.Writer) io.Writer {
	if s.filter == nil {
		return w
	}
	return s.filter(path, w)
}

// tag is the middle of this writer's temporary names: a random number,
// after the owner's name when the store has one.
func (s *Store) tag() string {
	r := strconv.FormatUint(rand.Uint64(), 36)
	if s.owner == "" {
		return r
	}
	return s.owner + "." + r
}

// Temporary names. A staging directory is the checkpoint's name, its
// writer's tag and .tmp (ckpt-000000001200.coordinator-0.k3j9x.tmp, or
// ckpt-000000001200.k3j9x.tmp with no owner); a pointer being written is
// .latest, a dot and the writer's tag. Earlier versions named them
// ckpt-000000001200.tmp and .latest<digits>.

// stagingOwner reports whether name is a staging directory and, if so,
// whose: the owner's name, or "" for one with no owner (or of an earlier
// version).
func stagingOwner(name string) (owner string, ok bool) {
	if !strings.HasPrefix(name, dirPrefix) || !strings.HasSuffix(name, tmpSuffix) {
		return "", false
	}
	parts := strings.Split(strings.TrimSuffix(name, tmpSuffix), ".")
	if len(parts) == 3 {
		return parts[1], true
	}
	return "", true
}

// pointerOwner reports whether name is a temporary file of the `latest`
// pointer or of the job record and, if so, whose (as stagingOwner). The
// pointer's temporary files of earlier versions are a dot, the pointer's
// name and a random number.
func pointerOwner(name string) (owner string, ok bool) {
	for _, f := range []string{latestName, jobFile} {
		rest, found := strings.CutPrefix(name, "."+f)
		switch {
		case !found:
		case f == latestName && allDigits(rest):
			return "", true
		case strings.HasPrefix(rest, "."):
			if parts := strings.Split(rest[1:], "."); len(parts) == 2 {
				return parts[0], true
			}
			return "", true
		}
	}
	return "", false
}

// RemoveOwnStaging removes the leftovers of this store's owner (see
// Owned): its staging directories and temporary pointer files, left by a
// write that never finished (a crash, or a term that ended mid-write). A
// cluster's coordinator calls it when it begins to lead; another writer's
// files are never touched (the checkpoints of old steps go with
// retention). It returns how many it removed. A store with no owner
// removes nothing.
func (s *Store) RemoveOwnStaging() (int, error) {
	if s.owner == "" {
		return 0, nil
	}
	return s.removeStaging(func(owner string) bool { return owner == s.owner })
}

// removeStaging removes the staging directories and temporary pointer
// files whose owner mine accepts.
func (s *Store) removeStaging(mine func(owner string) bool) (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	n := 0
	for _, e := range entries {
		owner, staging := stagingOwner(e.Name())
		if !staging {
			owner, staging = pointerOwner(e.Name())
		}
		if !staging && strings.HasSuffix(e.Name(), tmpSuffix) && s.owner == "" {
			staging = true // any other unfinished write, for a store with one writer
		}
		if !staging || !mine(owner) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			return n, fmt.Errorf("checkpoint: removing unfinished %s: %w", e.Name(), err)
		}
		n++
	}
	return n, nil
}

// IsStore reports whether dir holds a store: a `latest` pointer, a job
// record or checkpoint directories (committed, or still being written). It
// opens nothing and creates nothing.
func IsStore(dir string) bool {
	for _, f := range []string{latestName, jobFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), dirPrefix) {
			return true
		}
	}
	return false
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// NameForStep is the checkpoint name used for a step.
func NameForStep(step int) string { return fmt.Sprintf("%s%012d", dirPrefix, step) }

// Save writes the parts and the manifest as a new checkpoint and commits it
// (moves `latest` to it). The manifest's Name, Version, Created and Files
// are filled in; the committed manifest is returned.
//
// A committed checkpoint is never written again: when the store holds a
// checkpoint of the same name that verifies and is the same checkpoint
// (job hash, step and position), Save writes nothing and returns its
// manifest; when it holds one that is not, or that does not verify, Save
// refuses with an error wrapping ErrExists and leaves it as it is. The
// pointer never moves back: a checkpoint older than `latest` (written after
// a resume from an older one, the newer ones failing their checksums) is
// committed by its directory's final name alone, as List counts every one
// at or before `latest`.
func (s *Store) Save(m Manifest, parts []Part) (Manifest, error) {
	latest, err := s.Latest()
	if err != nil {
		return m, err
	}
	m, err = s.Write(m, parts)
	if err != nil {
		return m, err
	}
	if m.Name > latest {
		if err := s.setLatest(m.Name); err != nil {
			return m, err
		}
	}
	return m, nil
}

// Write does all that Save does except moving the local `latest` pointer:
// the checkpoint's directory gets its final name, but the store does not
// count it as committed (unless it is older than `latest`, see Save). It
// is for stores whose commits live elsewhere (see EtcdCommitter). The
// manifest's Name, Version, Created and Files are filled in and the
// written manifest is returned.
//
// The files are written into a staging directory of this write's own and
// renamed into place only where no checkpoint of the name exists. Where
// one exists (committed, or written by an earlier attempt at this step),
// Write writes nothing: it returns that one's manifest when it verifies
// and is the same checkpoint (job hash, step and position), and else an
// error wrapping ErrExists, leaving it as it is.
func (s *Store) Write(m Manifest, parts []Part) (Manifest, error) {
	m.Version = FormatVersion
	m.Name = NameForStep(m.Step)
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	for _, p := range parts {
		if err := validFileName(p.Name); err != nil {
			return m, err
		}
	}
	if kept, found, err := s.existing(m); found {
		return kept, err
	}
	staging, err := s.newStaging(m.Name)
	if err != nil {
		return m, err
	}
	m.Files = m.Files[:0:0]
	for _, p := range parts {
		fi, err := s.writeFileSync(filepath.Join(staging, p.Name), func(w io.Writer) error {
			return safetensors.Write(w, p.Tensors, p.Metadata)
		})
		if err != nil {
			os.RemoveAll(staging)
			return m, fmt.Errorf("checkpoint: %s/%s: %w", m.Name, p.Name, err)
		}
		m.Files = append(m.Files, fi)
	}
	return s.publish(staging, m)
}

// newStaging makes a new staging directory for checkpoint name, of a name
// no other writer uses.
func (s *Store) newStaging(name string) (string, error) {
	for {
		p := filepath.Join(s.dir, name+"."+s.tag()+tmpSuffix)
		err := os.Mkdir(p, 0o755)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("checkpoint: %w", err)
		}
	}
}

// existing looks for a checkpoint of m's name in the store. found is false
// when there is none. Else it returns that checkpoint's manifest if it
// verifies and is the same checkpoint as m (job hash, step and position),
// and otherwise an error wrapping ErrExists.
func (s *Store) existing(m Manifest) (kept Manifest, found bool, err error) {
	if _, err := os.Lstat(filepath.Join(s.dir, m.Name)); errors.Is(err, fs.ErrNotExist) {
		return m, false, nil
	}
	em, err := s.Verify(m.Name)
	if err != nil {
		return m, true, fmt.Errorf("checkpoint: %s: %w, and it does not verify (%v): it is kept as it is and this one is not written", m.Name, ErrExists, err)
	}
	if em.JobHash != m.JobHash || em.Step != m.Step || em.Epoch != m.Epoch || em.Position != m.Position {
		return m, true, fmt.Errorf("checkpoint: %s: %w (job hash %s, step %d, epoch %d, position %d; this one has %s, %d, %d, %d): it is kept as it is and this one is not written",
			m.Name, ErrExists, em.JobHash, em.Step, em.Epoch, em.Position, m.JobHash, m.Step, m.Epoch, m.Position)
	}
	return em, true, nil
}

// publish writes m's manifest into the finished staging directory (this
// writer's own) and renames it to the checkpoint's final name, only if no
// checkpoint has that name (a rename never replaces a directory that holds
// files); every step is synced. When another writer got there first, the
// staging directory is removed and the result is existing's. The
// checkpoint published, or kept, is returned.
func (s *Store) publish(staging string, m Manifest) (Manifest, error) {
	fail := func(err error) (Manifest, error) {
		os.RemoveAll(staging)
		return m, err
	}
	man, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(fmt.Errorf("checkpoint: %w", err))
	}
	mp := filepath.Join(staging, manifestNam)
	if _, err := s.writeFileSync(mp, func(w io.Writer) error {
		_, err := w.Write(append(man, '\n'))
		return err
	}); err != nil {
		return fail(fmt.Errorf("checkpoint: %s: %w", m.Name, err))
	}
	if err := syncDir(staging); err != nil {
		return fail(err)
	}
	final := filepath.Join(s.dir, m.Name)
	if _, err := os.Lstat(final); err == nil {
		os.RemoveAll(staging)
		kept, _, err := s.existing(m)
		return kept, err
	}
	if err := os.Rename(staging, final); err != nil {
		if _, serr := os.Lstat(final); serr == nil {
			os.RemoveAll(staging)
			kept, _, err := s.existing(m)
			return kept, err
		}
		return fail(fmt.Errorf("checkpoint: %w", err))
	}
	return m, syncDir(s.dir)
}

func validFileName(name string) error {
	if name == "" || name == manifestNam || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("checkpoint: invalid part name %q", name)
	}
	return nil
}

// writeFileSync writes a new file (mode 0644) through fn, fsyncs it and
// returns its size and SHA-256.
func (s *Store) writeFileSync(path string, fn func(io.Writer) error) (FileInfo, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := writeHashed(s.writer(path, f), filepath.Base(path), fn)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileInfo{}, err
	}
	return fi, nil
}

// writeHashed writes through fn to w, buffered, and returns the FileInfo of
// what it wrote, named name.
func writeHashed(w io.Writer, name string, fn func(io.Writer) error) (FileInfo, error) {
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	if err := fn(bw); err != nil {
		return FileInfo{}, err
	}
	if err := bw.Flush(); err != nil {
		return FileInfo{}, err
	}
	return FileInfo{Name: name, Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("checkpoint: fsync %s: %w", dir, err)
	}
	return nil
}

// setLatest points `latest` at checkpoint name: the new pointer is written
// to a temporary file of this writer's own in the store, synced and
// renamed over the old one, and the store directory is synced.
func (s *Store) setLatest(name string) error {
	tmp := filepath.Join(s.dir, "."+latestName+"."+s.tag())
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	_, err = s.writer(tmp, f).Write([]byte(name + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, latestName))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: moving the latest pointer to %s: %w", name, err)
	}
	return syncDir(s.dir)
}

// Latest is the name of the newest committed checkpoint, or "" if none.
func (s *Store) Latest() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, latestName))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if !strings.HasPrefix(name, dirPrefix) || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("checkpoint: %s: pointer names %q, not a checkpoint", filepath.Join(s.dir, latestName), name)
	}
	return name, nil
}

// List returns the committed checkpoints, oldest first: those at or before
// the `latest` pointer. Directories newer than it were never committed.
func (s *Store) List() ([]string, error) {
	latest, err := s.Latest()
	if err != nil || latest == "" {
		return nil, err
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() && isCheckpointName(n) && n <= latest {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadManifest reads a checkpoint's manifest without verifying its files.
func (s *Store) ReadManifest(name string) (Manifest, error) {
	var m Manifest
	path := filepath.Join(s.dir, name, manifestNam)
	b, err := os.ReadFile(path)
	if err != nil {
		return m, fmt.Errorf("checkpoint: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	if m.Version != FormatVersion {
		return m, fmt.Errorf("checkpoint: %s: format version %d, this ringtrain reads %d", path, m.Version, FormatVersion)
	}
	if m.Name != name {
		return m, fmt.Errorf("checkpoint: %s: manifest names %q", path, m.Name)
	}
	for _, f := range m.Files {
		if err := validFileName(f.Name); err != nil {
			return m, fmt.Errorf("checkpoint: %s: %w", path, err)
		}
	}
	return m, nil
}

// Verify checks every file of a checkpoint against its manifest's size and
// SHA-256, without parsing the tensors.
func (s *Store) Verify(name string) (Manifest, error) {
	m, err := s.ReadManifest(name)
	if err != nil {
		return m, err
	}
	for _, f := range m.Files {
		if err := verifyFile(filepath.Join(s.dir, name, f.Name), f); err != nil {
			return m, err
		}
	}
	return m, nil
}

func verifyFile(path string, want FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	if n != want.Size {
		return fmt.Errorf("checkpoint: %s: %d bytes, manifest says %d", path, n, want.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		return fmt.Errorf("checkpoint: %s: SHA-256 %s, manifest says %s", path, got, want.SHA256)
	}
	return nil
}

// Load verifies and reads one checkpoint.
func (s *Store) Load(name string) (*Checkpoint, error) {
	m, err := s.Verify(name)
	if err != nil {
		return nil, err
	}
	ck := &Checkpoint{Manifest: m, Files: make(map[string]*safetensors.File, len(m.Files))}
	for _, f := range m.Files {
		sf, err := safetensors.ReadFile(filepath.Join(s.dir, name, f.Name))
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: %w", name, err)
		}
		ck.Files[f.Name] = sf
	}
	return ck, nil
}

// LoadLatest loads the newest committed checkpoint that verifies. Each one
// that fails is reported through warnf and skipped. It returns nil and no
// error when the store holds no committed checkpoint.
func (s *Store) LoadLatest(warnf func(format string, args ...any)) (*Checkpoint, error) {
	names, err := s.List()
	if err != nil {
		return nil, err
	}
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		ck, err := s.Load(names[i])
		if err == nil {
			return ck, nil
		}
		errs = append(errs, err)
		if warnf != nil {
			warnf("skipping checkpoint %s: %v", names[i], err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("checkpoint: no committed checkpoint in %s verifies: %w", s.dir, errors.Join(errs...))
	}
	return nil, nil
}

// Retain deletes all but the newest keep committed checkpoints of the
// store's job. In a store opened for a job (OpenJob) a checkpoint whose
// manifest names another job's hash is neither counted nor deleted (a
// store of the layout before stores were separated per job may hold other
// jobs' checkpoints), nor, in such a store, is one whose manifest cannot
// be read.
func (s *Store) Retain(keep int) error {
	if keep < 1 {
		return fmt.Errorf("checkpoint: retain %d: must keep at least one", keep)
	}
	names, err := s.List()
	if err != nil {
		return err
	}
	var own []string
	for _, n := range names {
		if s.owns(n) {
			own = append(own, n)
		}
	}
	for i := 0; i < len(own)-keep; i++ {
		if err := os.RemoveAll(filepath.Join(s.dir, own[i])); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}

// owns reports whether checkpoint name is the store's job's, as far as its
// manifest says (see Retain).
func (s *Store) owns(name string) bool {
	if s.jobHash == "" {
		return true
	}
	m, err := s.ReadManifest(name)
	if err != nil {
		return !s.legacy
	}
	return m.JobHash == s.jobHash
}

// isCheckpointName reports whether name is one NameForStep makes: the
// ckpt- prefix and decimal digits.
func isCheckpointName(name string) bool {
	rest, ok := strings.CutPrefix(name, dirPrefix)
	return ok && allDigits(rest)
}
