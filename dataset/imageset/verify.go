package imageset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Verify checks the shard set in dir against its manifest: every shard
// listed is present with its size and SHA-256, and its index describes it
// (the same size, SHA-256 and sample count). It reads every shard, jobs at
// a time (GOMAXPROCS when jobs < 1). The error names every bad shard; a
// missing manifest or shard gives one wrapping fs.ErrNotExist. progress,
// if not nil, is told the bytes read so far and the total, one call at a
// time, from the goroutines Verify runs (which end before it returns).
func Verify(ctx context.Context, dir string, jobs int, progress func(done, total int64)) (*Manifest, error) {
	return verify(ctx, dir, jobs, progress, true)
}

// VerifyQuick is Verify without reading the shards: every shard listed is
// present with its size and its index describes it, but no SHA-256 is
// computed, so a corrupt byte inside a shard of the right size passes. It
// reads the manifest and the indexes only: seconds for ImageNet's ~1,300
// shards where Verify reads ~150 GB, which suits a check that every
// worker makes before it starts (after one full Verify of the set).
func VerifyQuick(ctx context.Context, dir string, jobs int) (*Manifest, error) {
	return verify(ctx, dir, jobs, nil, false)
}

func verify(ctx context.Context, dir string, jobs int, progress func(done, total int64), hash bool) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	var shards []ShardInfo
	var total int64
	for _, split := range PackSplits {
		for _, s := range m.Splits[split] {
			shards = append(shards, s)
			total += s.Bytes
		}
	}
	if len(shards) == 0 {
		return nil, fmt.Errorf("imageset: %s lists no shards", filepath.Join(dir, ManifestName))
	}
	errs := make([]error, len(shards))
	done := &counter[int64]{total: total, progress: progress}
	err = forEachN(ctx, len(shards), jobs, func(k int) error {
		errs[k] = verifyShard(ctx, dir, shards[k], done.add, hash)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// ctxReader stops reading when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	n   func(int64)
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if n > 0 {
		c.n(int64(n))
	}
	return n, err
}

// verifyShard checks one shard against its manifest entry and its index,
// by its contents' SHA-256 when hash is set, else by its size.
func verifyShard(ctx context.Context, dir string, s ShardInfo, read func(int64), hash bool) error {
	if filepath.Base(s.Name) != s.Name || s.Name == "." || s.Name == ".." {
		return fmt.Errorf("imageset: %s lists a shard named %q, which is not a file name", ManifestName, s.Name)
	}
	path := filepath.Join(dir, s.Name)
	if !hash {
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("imageset: %w", err)
		}
		if fi.Size() != s.Bytes {
			return fmt.Errorf("imageset: %s: %d bytes, the manifest lists %d", path, fi.Size(), s.Bytes)
		}
		return checkIndex(path, s)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("imageset: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f, read})
	if err != nil {
		return fmt.Errorf("imageset: %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != s.Bytes || got != s.SHA256 {
		return fmt.Errorf("imageset: %s: %d bytes with SHA-256 %s, the manifest lists %d bytes with %s", path, n, got, s.Bytes, s.SHA256)
	}
	return checkIndex(path, s)
}

// checkIndex checks that the index of the shard at path describes the
// shard the manifest lists.
func checkIndex(path string, s ShardInfo) error {
	b, err := os.ReadFile(path + IndexSuffix)
	if err != nil {
		return fmt.Errorf("imageset: %w", err)
	}
	ix, err := ParseIndex(b, path+IndexSuffix)
	if err != nil {
		return err
	}
	if ix.TarBytes != s.Bytes || ix.SHA256 != s.SHA256 || len(ix.Samples) != s.Samples {
		return fmt.Errorf("imageset: %s describes %d samples in %d bytes with SHA-256 %s, the manifest %d in %d bytes with %s",
			path+IndexSuffix, len(ix.Samples), ix.TarBytes, ix.SHA256, s.Samples, s.Bytes, s.SHA256)
	}
	return nil
}
