package imageset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/renameio/v2"
)

// ManifestName is the file in a shard directory that lists its shards.
const ManifestName = "manifest.json"

// manifestFormat is a manifest's format field.
const manifestFormat = "ringtrain-shards 1"

// Manifest lists a shard set: its classes and, per split, every shard
// with its sample count, size and SHA-256.
type Manifest struct {
	Format  string                 `json:"format"`
	Classes []string               `json:"classes"`
	Splits  map[string][]ShardInfo `json:"splits"`
}

// ShardInfo is one shard of a manifest.
type ShardInfo struct {
	Name    string `json:"name"`
	Samples int    `json:"samples"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
}

// ReadManifest reads dir's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	name := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("imageset: %w", err)
	}
	return parseManifest(b, name)
}

// parseManifest parses the manifest b read from name.
func parseManifest(b []byte, name string) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("imageset: %s: %w", name, err)
	}
	if m.Format != manifestFormat {
		return nil, fmt.Errorf("imageset: %s: format %q, want %q", name, m.Format, manifestFormat)
	}
	return &m, nil
}

// ShardNames returns the shards of split in dir: the files named
// <split>-*.tar, in name order.
func ShardNames(dir, split string) ([]string, error) {
	names, err := filepath.Glob(filepath.Join(dir, split+"-*.tar"))
	if err != nil {
		return nil, fmt.Errorf("imageset: %w", err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	slices.Sort(names)
	return names, nil
}

// shards is a split of a shard set: the shards' indexes, and the first
// global sample index of each shard.
type shards struct {
	dir     string
	remote  *remote // nil: dir is a directory
	names   []string
	indexes []*Index
	first   []int // first[k] is the index of shard k's first sample; first[len] the total
}

func (s *shards) len() int { return s.first[len(s.first)-1] }

// locate returns the shard and the entry of sample i.
func (s *shards) locate(i int) (int, *IndexEntry) {
	k := sort.SearchInts(s.first, i+1) - 1
	return k, &s.indexes[k].Samples[i-s.first[k]]
}

func (s *shards) where(i int) string {
	k, e := s.locate(i)
	return s.file(k) + ": member " + e.Member
}

// file names shard k, a path or a URL.
func (s *shards) file(k int) string {
	if s.remote != nil {
		return s.remote.where(s.names[k])
	}
	return filepath.Join(s.dir, s.names[k])
}

func (s *shards) read(i int, buf []byte) ([]byte, int, error) {
	k, e := s.locate(i)
	if cap(buf) < int(e.Size) {
		buf = make([]byte, e.Size)
	}
	buf = buf[:e.Size]
	if s.remote != nil {
		if err := s.remote.readAt(s.names[k], e.Offset, buf); err != nil {
			return nil, 0, fmt.Errorf("imageset: %s: %w", s.where(i), err)
		}
		return buf, e.Label, nil
	}
	f, err := os.Open(filepath.Join(s.dir, s.names[k]))
	if err != nil {
		return nil, 0, fmt.Errorf("imageset: %w", err)
	}
	defer f.Close()
	if _, err := f.ReadAt(buf, e.Offset); err != nil {
		return nil, 0, fmt.Errorf("imageset: %s: %w", s.where(i), err)
	}
	return buf, e.Label, nil
}

// LoadIndex returns the index of shard dir/name: its index file when that
// describes a shard of the same size (modification times are not trusted:
// copies change them, and a needless scan of a large set is costly; a
// shard rewritten at the same size needs its index removed, which Verify
// would report), else a scan of the shard,
// written to the index file for next time (a failure to write is passed
// to logf, not returned: the shard may be on a read-only volume).
func LoadIndex(dir, name string, logf func(string, ...any)) (*Index, error) {
	tarName := filepath.Join(dir, name)
	st, err := os.Stat(tarName)
	if err != nil {
		return nil, fmt.Errorf("imageset: %w", err)
	}
	idxName := tarName + IndexSuffix
	b, err := os.ReadFile(idxName)
	switch {
	case err == nil:
		ix, err := ParseIndex(b, idxName)
		if err != nil {
			return nil, err
		}
		if ix.TarBytes == st.Size() {
			return ix, nil
		}
		logf("%s describes a shard of %d bytes, %s has %d: indexing it again", idxName, ix.TarBytes, tarName, st.Size())
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("imageset: %w", err)
	}
	f, err := os.Open(tarName)
	if err != nil {
		return nil, fmt.Errorf("imageset: %w", err)
	}
	defer f.Close()
	ix, err := ScanShard(f, tarName)
	if err != nil {
		return nil, err
	}
	if err := renameio.WriteFile(idxName, ix.AppendText(nil), 0o644); err != nil {
		logf("%s indexed but its index not saved: %v", tarName, err)
	}
	return ix, nil
}

// OpenShards returns split "train" or "val" ("test" is val) of the shard
// set in dir: the shards its manifest lists for the split when dir has
// one (each must hold the samples listed), else the files <split>-*.tar;
// with their indexes, a shard without one (or with a stale one) indexed
// first, several at once. The classes are the manifest's, else the labels
// 0 … max, named by their numbers. logf, if not nil, receives one-line
// notices.
func OpenShards(ctx context.Context, dir, split string, logf func(string, ...any)) (*Set, error) {
	if split == "test" {
		split = "val"
	}
	if split != "train" && split != "val" {
		return nil, fmt.Errorf("imageset: shard set %s: unknown split %q (want train or val)", dir, split)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if IsURL(dir) {
		return openRemoteShards(ctx, dir, split)
	}
	// With a manifest, its shards are the set (as verified); else the
	// shards in the folder are.
	m, err := ReadManifest(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var names []string
	if m != nil {
		for _, info := range m.Splits[split] {
			if filepath.Base(info.Name) != info.Name {
				return nil, fmt.Errorf("imageset: %s lists a shard named %q, which is not a file name", filepath.Join(dir, ManifestName), info.Name)
			}
			names = append(names, info.Name)
		}
	} else if names, err = ShardNames(dir, split); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("imageset: shard set %s: no %s-*.tar shards", dir, split)
	}
	s := &shards{dir: dir, names: names, indexes: make([]*Index, len(names))}
	if err := forEach(ctx, len(names), func(k int) error {
		ix, err := LoadIndex(dir, names[k], logf)
		if err == nil && m != nil && len(ix.Samples) != m.Splits[split][k].Samples {
			err = fmt.Errorf("imageset: %s: %d samples, %s lists %d", filepath.Join(dir, names[k]), len(ix.Samples), ManifestName, m.Splits[split][k].Samples)
		}
		s.indexes[k] = ix
		return err
	}); err != nil {
		return nil, err
	}
	return s.set(m, dir)
}

// openRemoteShards is OpenShards of a set served over HTTP at base: its
// manifest lists the shards, and each shard's index must be beside it,
// describing a shard of the size the manifest gives.
func openRemoteShards(ctx context.Context, base, split string) (*Set, error) {
	r, err := newRemote(base)
	if err != nil {
		return nil, err
	}
	b, err := r.readFile(ManifestName)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("imageset: shard set %s has no %s: over HTTP the manifest lists the shards (ringtrain data pack writes it)", base, ManifestName)
	}
	if err != nil {
		return nil, fmt.Errorf("imageset: %w", err)
	}
	m, err := parseManifest(b, r.where(ManifestName))
	if err != nil {
		return nil, err
	}
	infos := m.Splits[split]
	if len(infos) == 0 {
		return nil, fmt.Errorf("imageset: shard set %s: %s lists no %s shards", base, ManifestName, split)
	}
	s := &shards{dir: base, remote: r, names: make([]string, len(infos)), indexes: make([]*Index, len(infos))}
	for k, info := range infos {
		if strings.ContainsAny(info.Name, "/\\?#%") || info.Name == "" || info.Name == "." || info.Name == ".." {
			return nil, fmt.Errorf("imageset: %s lists a shard named %q, which is not a file name", r.where(ManifestName), info.Name)
		}
		s.names[k] = info.Name
	}
	if err := forEach(ctx, len(infos), func(k int) error {
		idxName := infos[k].Name + IndexSuffix
		b, err := r.readFile(idxName)
		if errors.Is(err, errNotFound) {
			return fmt.Errorf("imageset: %s has no index %s: shards are not scanned over HTTP; ringtrain data pack writes every index, and opening the set from its directory writes any missing", r.where(infos[k].Name), idxName)
		}
		if err != nil {
			return fmt.Errorf("imageset: %w", err)
		}
		ix, err := ParseIndex(b, r.where(idxName))
		if err != nil {
			return err
		}
		if info := infos[k]; ix.TarBytes != info.Bytes || ix.SHA256 != info.SHA256 || len(ix.Samples) != info.Samples {
			return fmt.Errorf("imageset: %s describes %d samples in %d bytes with SHA-256 %s; %s lists %d in %d bytes with %s",
				r.where(idxName), len(ix.Samples), ix.TarBytes, ix.SHA256, ManifestName, info.Samples, info.Bytes, info.SHA256)
		}
		s.indexes[k] = ix
		return nil
	}); err != nil {
		return nil, err
	}
	return s.set(m, base)
}

// set makes the Set of s once its indexes are loaded: the manifest's
// classes (m may be nil), or the labels' numbers.
func (s *shards) set(m *Manifest, dir string) (*Set, error) {
	names := s.names
	s.first = make([]int, len(names)+1)
	maxLabel := -1
	for k, ix := range s.indexes {
		s.first[k+1] = s.first[k] + len(ix.Samples)
		for _, e := range ix.Samples {
			maxLabel = max(maxLabel, e.Label)
		}
	}
	var classes []string
	if m != nil {
		classes = m.Classes
		if maxLabel >= len(classes) {
			return nil, fmt.Errorf("imageset: shard set %s: label %d, but %s lists %d classes", dir, maxLabel, ManifestName, len(classes))
		}
	} else {
		for k := range maxLabel + 1 {
			classes = append(classes, strconv.Itoa(k))
		}
	}
	return newSet(s, classes), nil
}

// counter adds up work done on several goroutines and tells progress,
// one call at a time, in increasing order.
type counter[T int | int64] struct {
	mu       sync.Mutex
	done     T
	total    T
	progress func(done, total T)
}

func (c *counter[T]) add(n T) {
	if c.progress == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += n
	c.progress(c.done, c.total)
}

// forEach calls f(0), …, f(n−1) on up to GOMAXPROCS goroutines (see
// forEachN).
func forEach(ctx context.Context, n int, f func(int) error) error { return forEachN(ctx, n, -1, f) }

// forEachN calls f(0), …, f(n−1) on up to workers goroutines (GOMAXPROCS
// when workers < 1), which end before it returns; it stops starting calls
// after the first error (or when ctx ends) and returns that error.
func forEachN(ctx context.Context, n, workers int, f func(int) error) error {
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = ctx.Err()
		}
		if first != nil || next >= n {
			return 0, false
		}
		next++
		return next - 1, true
	}
	for range min(n, workers) {
		wg.Go(func() {
			for {
				k, ok := take()
				if !ok {
					return
				}
				if err := f(k); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return first
}
