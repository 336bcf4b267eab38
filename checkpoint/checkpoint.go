// Package checkpoint owns ringtrain's checkpoints: tensors in safetensors
// files plus a JSON manifest that records the training position and the
// SHA-256 of every file, stored in a directory with atomic commits, a
// `latest` pointer and keep-last-K retention.
//
// Layout of a store directory:
//
//	ckpt-000000001200/manifest.json
//	ckpt-000000001200/model.safetensors
//	ckpt-000000001200/optimizer.safetensors
//	latest                   (the name of the newest committed checkpoint)
//
// A checkpoint is committed once its directory has its final name and the
// `latest` pointer names it; both steps are write-temp, fsync, rename (and
// an fsync of the store directory), so a crash at any moment leaves the
// previous committed checkpoint intact and loadable. A checkpoint whose
// files fail their checksums is never loaded: LoadLatest falls back to the
// one before, with a warning.
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
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/renameio/v2"

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

// Store is a directory of checkpoints. It is not safe for concurrent use by
// several writers; one process writes a store at a time.
type Store struct {
	dir string
}

const (
	dirPrefix   = "ckpt-"
	tmpSuffix   = ".tmp"
	latestName  = "latest"
	manifestNam = "manifest.json"
)

// Open opens (creating if needed) the store at dir and removes the
// leftovers of writes that never committed. Only the process that owns the
// store (the trainer, or a cluster's leading coordinator) opens it so; the
// others use OpenShared.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tmpSuffix) || isPointerLeftover(e.Name()) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("checkpoint: removing unfinished %s: %w", e.Name(), err)
			}
		}
	}
	return &Store{dir: dir}, nil
}

// isPointerLeftover reports whether name is the temporary file of a
// `latest` pointer that was never renamed into place: a dot, the pointer's
// name and a random number (see renameio.NewPendingFile).
func isPointerLeftover(name string) bool {
	rest, ok := strings.CutPrefix(name, "."+latestName)
	return ok && allDigits(rest)
}

// OpenShared opens (creating if needed) the store at dir and changes
// nothing in it: for readers (ringtrain checkpoint list, verify; a read-only
// volume) and for a cluster's workers, which write their shards next to the
// coordinator's writes in progress.
func OpenShared(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &Store{dir: dir}, nil
}

// IsStore reports whether dir holds a store: a `latest` pointer or
// checkpoint directories (committed, or still being written). It opens
// nothing and creates nothing.
func IsStore(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, latestName)); err == nil {
		return true
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
func (s *Store) Save(m Manifest, parts []Part) (Manifest, error) {
	m, err := s.Write(m, parts)
	if err != nil {
		return m, err
	}
	if err := s.setLatest(m.Name); err != nil {
		return m, err
	}
	return m, nil
}

// Write does all that Save does except moving the local `latest` pointer:
// the checkpoint's directory gets its final name, but the store does not
// count it as committed. It is for stores whose commits live elsewhere (see
// EtcdCommitter). The manifest's Name, Version, Created and Files are filled
// in and the written manifest is returned.
func (s *Store) Write(m Manifest, parts []Part) (Manifest, error) {
	m.Version = FormatVersion
	m.Name = NameForStep(m.Step)
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	final := filepath.Join(s.dir, m.Name)
	tmp := final + tmpSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return m, fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return m, fmt.Errorf("checkpoint: %w", err)
	}
	m.Files = m.Files[:0:0]
	for _, p := range parts {
		if err := validFileName(p.Name); err != nil {
			os.RemoveAll(tmp)
			return m, err
		}
		fi, err := writeFileSync(filepath.Join(tmp, p.Name), func(w io.Writer) error {
			return safetensors.Write(w, p.Tensors, p.Metadata)
		})
		if err != nil {
			os.RemoveAll(tmp)
			return m, fmt.Errorf("checkpoint: %s/%s: %w", m.Name, p.Name, err)
		}
		m.Files = append(m.Files, fi)
	}
	if err := s.publish(tmp, m); err != nil {
		os.RemoveAll(tmp)
		return m, err
	}
	return m, nil
}

// publish writes m's manifest into the finished directory dir and gives
// dir the checkpoint's final name, replacing a checkpoint of the same step
// (a retry after a failure); every step is synced.
func (s *Store) publish(dir string, m Manifest) error {
	man, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	mp := filepath.Join(dir, manifestNam)
	os.Remove(mp)
	if _, err := writeFileSync(mp, func(w io.Writer) error {
		_, err := w.Write(append(man, '\n'))
		return err
	}); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", m.Name, err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	final := filepath.Join(s.dir, m.Name)
	if err := os.RemoveAll(final); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Rename(dir, final); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return syncDir(s.dir)
}

func validFileName(name string) error {
	if name == "" || name == manifestNam || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("checkpoint: invalid part name %q", name)
	}
	return nil
}

// writeFileSync writes a new file (mode 0644) through fn, fsyncs it and
// returns its size and SHA-256.
func writeFileSync(path string, fn func(io.Writer) error) (FileInfo, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := writeHashed(f, filepath.Base(path), fn)
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
// to a temporary file in the store, synced and renamed over the old one,
// and the store directory is synced.
func (s *Store) setLatest(name string) error {
	if err := renameio.WriteFile(filepath.Join(s.dir, latestName), []byte(name+"\n"), 0o644, renameio.WithTempDir(s.dir)); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
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
		if e.IsDir() && strings.HasPrefix(n, dirPrefix) && !isStaging(n) && n <= latest {
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

// Retain deletes all but the newest keep committed checkpoints.
func (s *Store) Retain(keep int) error {
	if keep < 1 {
		return fmt.Errorf("checkpoint: retain %d: must keep at least one", keep)
	}
	names, err := s.List()
	if err != nil {
		return err
	}
	for i := 0; i < len(names)-keep; i++ {
		if err := os.RemoveAll(filepath.Join(s.dir, names[i])); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return nil
}
