package checkpoint

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/ringtrain/ringtrain/safetensors"
)

// partsSuffix names the staging directory where the workers of a ring
// write their shards of one checkpoint before the coordinator seals it.
const partsSuffix = ".parts"

// WriteShard writes one file of checkpoint name (see NameForStep) into the
// store's staging directory for it, with write-temp, fsync and rename, and
// returns its size and SHA-256. The workers of a ring call it in parallel
// on a shared store, each with file names of its own; Seal then finishes
// the checkpoint. Writing the same file again (a retry) replaces it.
func (s *Store) WriteShard(name string, p Part) (FileInfo, error) {
	if err := validCheckpointName(name); err != nil {
		return FileInfo{}, err
	}
	if err := validFileName(p.Name); err != nil {
		return FileInfo{}, err
	}
	dir := filepath.Join(s.dir, name+partsSuffix)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return FileInfo{}, fmt.Errorf("checkpoint: %w", err)
	}
	// The temporary file has a name of its own (the part's name and a
	// random number), so writers never meet; Seal removes the leftovers of
	// crashed writers with the other files nobody reported.
	tmp, err := renameio.NewPendingFile(filepath.Join(dir, p.Name), renameio.WithTempDir(dir), renameio.WithPermissions(0o644))
	if err != nil {
		return FileInfo{}, fmt.Errorf("checkpoint: %w", err)
	}
	defer tmp.Cleanup()
	fi, err := writeHashed(s.writer(tmp.Name(), tmp), p.Name, func(w io.Writer) error { return safetensors.Write(w, p.Tensors, p.Metadata) })
	if err != nil {
		return FileInfo{}, fmt.Errorf("checkpoint: %s/%s: %w", name, p.Name, err)
	}
	if err := tmp.CloseAtomicallyReplace(); err != nil {
		return FileInfo{}, fmt.Errorf("checkpoint: %s/%s: %w", name, p.Name, err)
	}
	if err := syncDir(dir); err != nil {
		return FileInfo{}, err
	}
	return fi, nil
}

// Seal finishes checkpoint m, whose Files the workers wrote with
// WriteShard: it checks every file against its size and SHA-256, moves the
// shards into a staging directory of this sealer's own, writes the
// manifest there and gives it the checkpoint's final name. Like Write it
// does not move the local `latest` pointer: the checkpoint counts once
// committed (EtcdCommitter.Commit). m's Name must be NameForStep(m.Step);
// Version and Created are filled in and the sealed manifest is returned.
//
// A checkpoint of the same name that exists already (committed, perhaps,
// by a commit whose answer was lost) is never replaced: Seal returns its
// manifest when it verifies and is the same checkpoint (job hash, step and
// position), so that the caller commits that one, and else an error
// wrapping ErrExists; the shards stay where the workers wrote them, for
// retention.
func (s *Store) Seal(m Manifest) (Manifest, error) {
	m.Version = FormatVersion
	if want := NameForStep(m.Step); m.Name != want {
		return m, fmt.Errorf("checkpoint: seal: manifest named %q for step %d (want %q)", m.Name, m.Step, want)
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	if len(m.Files) == 0 {
		return m, fmt.Errorf("checkpoint: seal %s: no files", m.Name)
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if err := validFileName(f.Name); err != nil {
			return m, err
		}
		if seen[f.Name] {
			return m, fmt.Errorf("checkpoint: seal %s: file %s listed twice", m.Name, f.Name)
		}
		seen[f.Name] = true
	}
	if kept, found, err := s.existing(m); found {
		return kept, err
	}
	parts := filepath.Join(s.dir, m.Name+partsSuffix)
	for _, f := range m.Files {
		if err := verifyFile(filepath.Join(parts, f.Name), f); err != nil {
			return m, fmt.Errorf("checkpoint: seal %s: %w", m.Name, err)
		}
	}
	// The shards move into a directory nobody else writes: a worker still
	// writing into the shared one (a rank of a later ring) makes a new one.
	staging := filepath.Join(s.dir, m.Name+"."+s.tag()+tmpSuffix)
	if err := os.Rename(parts, staging); err != nil {
		return m, fmt.Errorf("checkpoint: seal %s: %w", m.Name, err)
	}
	// Files nobody reported (a worker of a broken ring) do not belong.
	entries, err := os.ReadDir(staging)
	if err != nil {
		os.RemoveAll(staging)
		return m, fmt.Errorf("checkpoint: %w", err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			if err := os.RemoveAll(filepath.Join(staging, e.Name())); err != nil {
				os.RemoveAll(staging)
				return m, fmt.Errorf("checkpoint: %w", err)
			}
		}
	}
	return s.publish(staging, m)
}

// isStaging reports whether a directory entry is unfinished work: a Write
// in progress or a checkpoint's shards not yet sealed.
func isStaging(name string) bool {
	return strings.HasSuffix(name, tmpSuffix) || strings.HasSuffix(name, partsSuffix)
}
