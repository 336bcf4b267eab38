package dataset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// realMNISTDir puts the real MNIST files into a temporary directory from
// the module cache only (never the network).
func realMNISTDir(t *testing.T) string {
	t.Helper()
	t.Setenv("GOMODCACHE", goModCache(t))
	t.Setenv("GOPROXY", "off")
	dir := t.TempDir()
	if err := EnsureMNIST(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFilesVerifyEnsureNames(t *testing.T) {
	for _, name := range []string{"mnist", "fashion-mnist"} {
		files, err := Files(name)
		if err != nil || !slices.Equal(files, MNISTFileNames()) {
			t.Errorf("Files(%s) = %v, %v", name, files, err)
		}
	}
	for _, name := range []string{"synthetic", "mnsit"} {
		want := "has no files"
		if name == "mnsit" {
			want = `unknown data set "mnsit" (known: fashion-mnist, mnist, synthetic, imagefolder:DIR, shards:DIR)`
		}
		_, errFiles := Files(name)
		errVerify := Verify(name, t.TempDir())
		errEnsure := Ensure(context.Background(), name, t.TempDir(), nil)
		errImport := Import(context.Background(), name, t.TempDir(), t.TempDir(), nil)
		for _, err := range []error{errFiles, errVerify, errEnsure, errImport} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v, want one containing %q", name, err, want)
			}
		}
	}
	err := Verify("fashion-mnist", t.TempDir())
	if err == nil || strings.Count(err.Error(), "no such file") != 4 {
		t.Errorf("Verify of an empty folder: %v", err)
	}
}

func TestImport(t *testing.T) {
	src := realMNISTDir(t)
	ctx := context.Background()
	dst := filepath.Join(t.TempDir(), "data", "mnist")
	var log []string
	if err := Import(ctx, "mnist", src, dst, logTo(t, &log)); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dst, MNISTFileNames()...)
	if err := VerifyMNIST(dst); err != nil {
		t.Fatal(err)
	}
	// Again: nothing to copy.
	log = nil
	if err := Import(ctx, "mnist", src, dst, logTo(t, &log)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(log, "\n"), "already in") {
		t.Errorf("a second import does not say the files are there: %q", log)
	}

	// A corrupt file in the source: refused, naming the file and both
	// sums, and nothing in dst is lost or replaced.
	bad := t.TempDir()
	for _, name := range MNISTFileNames() {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "train-labels-idx1-ubyte.gz" {
			b = append(bytes.Clone(b), 0)
		}
		if err := os.WriteFile(filepath.Join(bad, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dst, "t10k-images-idx3-ubyte.gz")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(bad, "train-labels-idx1-ubyte.gz"))
	got := sha256.Sum256(b)
	err := Import(ctx, "mnist", bad, dst, nil)
	if err == nil {
		t.Fatal("a corrupt file was imported")
	}
	for _, want := range []string{
		filepath.Join(bad, "train-labels-idx1-ubyte.gz"), "got " + hex.EncodeToString(got[:]),
		"want " + mnistPinned[3].sha256, "nothing imported",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Nothing was copied, not even the good files dst lacked.
	assertOnly(t, dst, "notes.txt", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
	if err := verifyAll(dst, mnistPinned[1:]); err != nil {
		t.Fatal(err)
	}

	// A missing source file is named too.
	if err := os.Remove(filepath.Join(src, "t10k-labels-idx1-ubyte.gz")); err != nil {
		t.Fatal(err)
	}
	if err := Import(ctx, "mnist", src, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "t10k-labels-idx1-ubyte.gz: no such file") {
		t.Errorf("missing source file: %v", err)
	}
}

func TestImportFashionMNISTFromDebian(t *testing.T) {
	deb := debianFashionMNIST(t)
	dst := t.TempDir()
	if err := Import(context.Background(), "fashion-mnist", deb, dst, t.Logf); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFashionMNIST(dst); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dst, FashionMNISTFileNames()...)
}
