package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// jobFile names the file in which a job's store records its job: a
// JobRecord in JSON.
const jobFile = "job.json"

// JobRecord is what a job's store records of its job.
type JobRecord struct {
	Name    string `json:"name"`
	JobHash string `json:"job_hash"`
}

// ValidJobName checks that name can name a job's store under a root: not
// empty, no path separator, not hidden (a leading dot), and nothing a store
// itself holds (a checkpoint name, `latest`, job.json).
func ValidJobName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
	case strings.ContainsAny(name, "/\\\x00"):
	case strings.HasPrefix(name, "."):
	case strings.HasPrefix(name, dirPrefix):
	case name == latestName || name == jobFile:
	default:
		return nil
	}
	return fmt.Errorf("checkpoint: job name %q cannot name a store (no path separators, no leading dot, not %s…, %s or %s)", name, dirPrefix, latestName, jobFile)
}

// JobDir returns the directory of job's store under root: root/<job>, or
// root itself when root holds a store of the layout before stores were
// separated per job (checkpoints and `latest` directly in root) whose
// newest committed checkpoint with a readable manifest has hash: that
// store continues in place (legacy is true). It reads, and creates nothing.
func JobDir(root, job, hash string) (dir string, legacy bool, err error) {
	if err := ValidJobName(job); err != nil {
		return "", false, err
	}
	if hash != "" && legacyHash(root) == hash {
		return root, true, nil
	}
	return filepath.Join(root, job), false, nil
}

// legacyHash is the job hash of a store of the layout before stores were
// separated per job at dir: that of its newest committed checkpoint whose
// manifest reads; "" when dir holds no committed checkpoint of its own.
func legacyHash(dir string) string {
	s := &Store{dir: dir}
	names, err := s.List()
	if err != nil {
		return ""
	}
	for i := len(names) - 1; i >= 0; i-- {
		if m, err := s.ReadManifest(names[i]); err == nil {
			return m.JobHash
		}
	}
	return ""
}

// OpenJob opens (creating if needed) the store of job, whose hash is hash,
// under root (see JobDir), as its only writer: like Open it removes the
// leftovers of writes that never committed. A store that records another
// hash for the job and holds checkpoints is refused, before anything is
// changed, with an error naming both hashes; else the store records the
// job (job.json). The store's Retain then deletes only checkpoints of
// this hash.
func OpenJob(root, job, hash string) (*Store, error) {
	return openJob(root, job, hash, Open)
}

// OpenJobShared is OpenJob for the processes that share a store (a
// cluster's coordinators and workers): it removes nothing (see
// OpenShared). It records the job when the store records none.
func OpenJobShared(root, job, hash string) (*Store, error) {
	return openJob(root, job, hash, OpenShared)
}

func openJob(root, job, hash string, open func(string) (*Store, error)) (*Store, error) {
	if hash == "" {
		return nil, fmt.Errorf("checkpoint: the store of job %s: no job hash", job)
	}
	dir, legacy, err := JobDir(root, job, hash)
	if err != nil {
		return nil, err
	}
	if !legacy {
		if err := CheckJob(dir, job, hash); err != nil {
			return nil, err
		}
	}
	s, err := open(dir)
	if err != nil {
		return nil, err
	}
	s.job, s.jobHash, s.legacy = job, hash, legacy
	if !legacy {
		if err := s.recordJob(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Legacy reports whether the store has the layout before stores were
// separated per job (see JobDir).
func (s *Store) Legacy() bool { return s.legacy }

// ReadJob reads the job record of the store at dir; ok is false when it
// has none.
func ReadJob(dir string) (rec JobRecord, ok bool, err error) {
	path := filepath.Join(dir, jobFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.JobHash == "" {
		return rec, false, fmt.Errorf("checkpoint: %s holds no job record (%v)", path, err)
	}
	return rec, true, nil
}

// CheckJob checks that the store at dir may be job's, whose hash is hash:
// it is refused when it records another hash and holds checkpoints (a
// store that holds none is taken over). It reads, and creates nothing.
func CheckJob(dir, job, hash string) error {
	rec, ok, err := ReadJob(dir)
	if err != nil || !ok || rec.JobHash == hash || !holdsCheckpoints(dir) {
		return err
	}
	return fmt.Errorf("checkpoint: the store %s holds checkpoints of job %s with hash %s, and this job %s has hash %s: "+
		"the model, data set or hyper-parameters differ (give this job another name, or move that store away)",
		dir, rec.Name, rec.JobHash, job, hash)
}

// holdsCheckpoints reports whether dir holds a `latest` pointer or
// checkpoint directories (committed, sealed or being written).
func holdsCheckpoints(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, latestName)); err == nil {
		return true
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), dirPrefix) {
			return true
		}
	}
	return false
}

// recordJob writes the store's job record (write-temp, rename) unless it
// holds it already.
func (s *Store) recordJob() error {
	want := JobRecord{Name: s.job, JobHash: s.jobHash}
	if rec, ok, _ := ReadJob(s.dir); ok && rec == want {
		return nil
	}
	b, err := json.Marshal(want)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp := filepath.Join(s.dir, "."+jobFile+"."+s.tag())
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: recording the job of %s: %w", s.dir, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, jobFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("checkpoint: recording the job of %s: %w", s.dir, err)
	}
	return nil
}

// Found is a store FindStores found.
type Found struct {
	// Dir is the store's directory and Job the job it records ("" when it
	// records none: a store of the layout before stores were separated
	// per job).
	Dir, Job string
	// JobHash is the job's hash as the store records it, or as its newest
	// readable committed manifest says; "" when unknown.
	JobHash string
}

// FindStores finds the stores at root, reading only: root itself when it
// is a job's store named directly (it records its job), else root when it
// is a store of the layout before stores were separated per job, and every
// subdirectory of root that is a job's store, by name. A root that does
// not exist holds none.
func FindStores(root string) ([]Found, error) {
	if _, ok, _ := ReadJob(root); ok {
		return []Found{describe(root)}, nil
	}
	var out []Found
	if IsStore(root) {
		out = append(out, describe(root))
	}
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if e.IsDir() && ValidJobName(e.Name()) == nil && IsStore(dir) {
			f := describe(dir)
			if f.Job == "" {
				f.Job = e.Name()
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// describe says what the store at dir records of its job.
func describe(dir string) Found {
	f := Found{Dir: dir}
	if rec, ok, err := ReadJob(dir); ok && err == nil {
		f.Job, f.JobHash = rec.Name, rec.JobHash
	} else {
		f.JobHash = legacyHash(dir)
	}
	return f
}
