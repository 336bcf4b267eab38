package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/dataset"
)

// mnistFolder returns a folder holding the four real MNIST files, as
// `ringtrain data get mnist` leaves them.
func mnistFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := dataset.EnsureMNIST(context.Background(), dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDataImport imports MNIST from a folder into the default data
// directory and verifies it; a second import changes nothing.
func TestDataImport(t *testing.T) {
	src := mnistFolder(t)
	data := t.TempDir()
	t.Setenv("RINGTRAIN_DATA", data)
	out, err := runCLI(t, "data", "import", "mnist", src)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dst := filepath.Join(data, "mnist")
	if !strings.Contains(out, "mnist imported from "+src+" into "+dst) {
		t.Errorf("import output:\n%s", out)
	}
	for _, f := range dataset.MNISTFileNames() {
		if !strings.Contains(out, filepath.Join(dst, f)) {
			t.Errorf("import output does not list %s:\n%s", f, out)
		}
	}
	out, err = runCLI(t, "data", "verify", "mnist")
	if err != nil || !strings.Contains(out, "4 files verified") {
		t.Fatalf("verify after import: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "data", "import", "mnist", src); err != nil || !strings.Contains(out, "already in") {
		t.Errorf("second import: %v\n%s", err, out)
	}
}

// TestDataImportCorrupt: a file that fails its sum is refused with a
// message naming it, the sum found and the one wanted, and the destination
// keeps what it held.
func TestDataImportCorrupt(t *testing.T) {
	good := mnistFolder(t)
	bad := t.TempDir()
	const corrupt = "t10k-images-idx3-ubyte.gz"
	var gotSum string
	for _, f := range dataset.MNISTFileNames() {
		b, err := os.ReadFile(filepath.Join(good, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == corrupt {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 1
			s := sha256.Sum256(b)
			gotSum = hex.EncodeToString(s[:])
		}
		if err := os.WriteFile(filepath.Join(bad, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The destination already holds two of the files and one of its own.
	dst := filepath.Join(t.TempDir(), "mnist")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{"README": []byte("kept")}
	for _, f := range []string{corrupt, "train-labels-idx1-ubyte.gz"} {
		b, err := os.ReadFile(filepath.Join(good, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = b
	}
	for f, b := range before {
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	out, err := runCLI(t, "data", "import", "mnist", bad, "--dir", dst)
	if err == nil {
		t.Fatalf("a corrupt file was imported:\n%s", out)
	}
	for _, want := range []string{
		filepath.Join(bad, corrupt), "got " + gotSum,
		"want 8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	ents, err := os.ReadDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(before) {
		t.Errorf("%s holds %d entries after the refused import, want %d", dst, len(ents), len(before))
	}
	for f, want := range before {
		if b, err := os.ReadFile(filepath.Join(dst, f)); err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s changed by the refused import (%v)", f, err)
		}
	}
}

func TestDataCommandsName(t *testing.T) {
	for _, args := range [][]string{
		{"data", "import", "mnsit", t.TempDir()},
		{"data", "get", "mnsit"},
		{"data", "verify", "mnsit"},
	} {
		_, err := runCLI(t, args...)
		if want := `dataset: unknown data set "mnsit" (known: fashion-mnist, mnist, synthetic, imagefolder:DIR, shards:DIR)`; err == nil || err.Error() != want {
			t.Errorf("%v: error %v, want %s", args, err, want)
		}
	}
	for _, args := range [][]string{
		{"data", "import", "synthetic", t.TempDir()},
		{"data", "get", "synthetic"},
		{"data", "verify", "synthetic"},
	} {
		if _, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), "synthetic is generated from a seed and has no files") {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestDataFashionMNIST gets, imports and verifies the real Fashion-MNIST
// from Debian's package (no network).
func TestDataFashionMNIST(t *testing.T) {
	if _, err := os.Stat(dataset.DebianFashionMNISTDir); err != nil {
		t.Skipf("Fashion-MNIST is not installed in %s (apt-get install dataset-fashion-mnist; CI installs it): %v", dataset.DebianFashionMNISTDir, err)
	}
	dst := filepath.Join(t.TempDir(), "imported")
	out, err := runCLI(t, "data", "import", "fashion-mnist", dataset.DebianFashionMNISTDir, "--dir", dst)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := runCLI(t, "data", "verify", "fashion-mnist", "--dir", dst); err != nil || !strings.Contains(out, "4 files verified") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	got := filepath.Join(t.TempDir(), "got")
	out, err = runCLI(t, "data", "get", "fashion-mnist", "--dir", got)
	if err != nil || !strings.Contains(out, "copied from "+dataset.DebianFashionMNISTDir) {
		t.Fatalf("get: %v\n%s", err, out)
	}
	if err := dataset.VerifyFashionMNIST(got); err != nil {
		t.Fatal(err)
	}
}
