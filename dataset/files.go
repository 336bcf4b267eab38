package dataset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// pins returns the pinned files of the named data set. The synthetic set
// has none: it is generated, and asking for its files is an error.
func pins(name string) ([]pinnedFile, error) {
	switch name {
	case "mnist":
		return mnistPinned, nil
	case "fashion-mnist":
		return fashionPinned, nil
	case "synthetic":
		return nil, fmt.Errorf("dataset: synthetic is generated from a seed and has no files")
	}
	if _, _, ok := imageSetDir(name); ok {
		return nil, fmt.Errorf("dataset: %s is an image set: it has no pinned files to fetch (`ringtrain data synth` and `ringtrain data pack` make image sets, `ringtrain data verify shards:DIR` checks shards)", name)
	}
	return nil, CheckName(name)
}

// Files returns the names of the files the named data set keeps in its
// directory.
func Files(name string) ([]string, error) {
	files, err := pins(name)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.name
	}
	return out, nil
}

// Verify checks that dir holds the named data set's files with their pinned
// SHA-256 sums. The error lists every missing or mismatching file.
func Verify(name, dir string) error {
	files, err := pins(name)
	if err != nil {
		return err
	}
	return verifyAll(dir, files)
}

// Ensure makes dir hold the named data set's files, verified, taking the
// missing ones from the set's default sources: EnsureMNIST for mnist,
// EnsureFashionMNIST for fashion-mnist. An image set is read where its
// name says, so there is nothing to ensure. logf, if not nil, receives
// progress lines.
func Ensure(ctx context.Context, name, dir string, logf func(string, ...any)) error {
	switch name {
	case "mnist":
		return EnsureMNIST(ctx, dir, logf)
	case "fashion-mnist":
		return EnsureFashionMNIST(ctx, dir, logf)
	}
	if _, _, ok := imageSetDir(name); ok {
		return CheckName(name) // read where it is: nothing to fetch
	}
	_, err := pins(name)
	return err
}

// Import copies the named data set's files from the folder src (such as
// /usr/share/datasets/fashion-mnist) into dst, created if needed. Every file
// of src is checked against its pinned SHA-256 first: if one is missing or
// fails, Import copies nothing and its error names each such file, with the
// sum found and the one wanted. Files are then installed through temporary
// files (checked again while copied, synced, renamed), so dst never holds an
// unverified file under a data set's name and keeps whatever it held when
// Import fails; files dst already holds verified are left as they are.
func Import(ctx context.Context, name, src, dst string, logf func(string, ...any)) error {
	files, err := pins(name)
	if err != nil {
		return err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var bad []error
	for _, f := range files {
		if err := verifyFile(filepath.Join(src, f.name), f); err != nil {
			bad = append(bad, err)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("dataset: %s: nothing imported from %s: %w", name, src, errors.Join(bad...))
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	for _, f := range files {
		if verifyFile(filepath.Join(dst, f.name), f) == nil {
			logf("%s: %s is already in %s, verified", name, f.name, dst)
			continue
		}
		if err := copyFromFile(ctx, filepath.Join(src, f.name), dst, f); err != nil {
			return err
		}
		logf("%s: %s imported from %s", name, f.name, src)
	}
	return syncDir(dst)
}
