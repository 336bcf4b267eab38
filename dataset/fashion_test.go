package dataset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// debianFashionMNIST returns the folder of Debian's Fashion-MNIST package,
// skipping the test when it is not installed.
func debianFashionMNIST(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(DebianFashionMNISTDir); err != nil {
		t.Skipf("Fashion-MNIST is not installed in %s (apt-get install dataset-fashion-mnist; CI installs it): %v", DebianFashionMNISTDir, err)
	}
	return DebianFashionMNISTDir
}

// upstreamFashionMNIST rebuilds the upstream Fashion-MNIST files from
// Debian's: the same deflate stream under the upstream gzip header (file
// name set, upstream time stamp). It checks Debian's files against their
// pins on the way.
func upstreamFashionMNIST(t *testing.T) map[string][]byte {
	t.Helper()
	dir := debianFashionMNIST(t)
	stamp := map[string]string{"train": "2017-08-31T10:50:06Z", "t10k": "2017-08-31T10:50:27Z"}
	size := map[string]int{
		"train-images-idx3-ubyte.gz": 26421880, "train-labels-idx1-ubyte.gz": 29515,
		"t10k-images-idx3-ubyte.gz": 4422102, "t10k-labels-idx1-ubyte.gz": 5148,
	}
	out := map[string][]byte{}
	for _, f := range fashionPinned {
		deb, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(deb); hex.EncodeToString(sum[:]) != f.also {
			t.Fatalf("Debian's %s: SHA-256 %x, pinned %s", f.name, sum, f.also)
		}
		// Debian's header: magic, deflate, no flags, its own time, XFL 0, Unix.
		if len(deb) < 10 || deb[0] != 0x1f || deb[1] != 0x8b || deb[2] != 8 || deb[3] != 0 || deb[8] != 0 || deb[9] != 3 {
			t.Fatalf("Debian's %s has an unexpected gzip header % x", f.name, deb[:min(10, len(deb))])
		}
		when, err := time.Parse(time.RFC3339, stamp[strings.SplitN(f.name, "-", 2)[0]])
		if err != nil {
			t.Fatal(err)
		}
		up := []byte{0x1f, 0x8b, 8, 8 /* FNAME */}
		up = binary.LittleEndian.AppendUint32(up, uint32(when.Unix()))
		up = append(up, 0, 3)
		up = append(up, strings.TrimSuffix(f.name, ".gz")...)
		up = append(up, 0)
		up = append(up, deb[10:]...)
		if len(up) != size[f.name] {
			t.Fatalf("rebuilt upstream %s has %d bytes, upstream has %d", f.name, len(up), size[f.name])
		}
		out[f.name] = up
	}
	return out
}

// TestFashionMNISTDebianIsUpstream: Debian's files are the upstream files
// re-gzipped without the file name; restoring the header gives bytes with
// the upstream pinned sums, so the two pins of each file hold the same
// images and labels.
func TestFashionMNISTDebianIsUpstream(t *testing.T) {
	files := upstreamFashionMNIST(t)
	for _, f := range fashionPinned {
		up := files[f.name]
		if sum := sha256.Sum256(up); hex.EncodeToString(sum[:]) != f.sha256 {
			t.Errorf("%s rebuilt from Debian's: SHA-256 %x, upstream pin %s", f.name, sum, f.sha256)
		}
		x, err := ReadIDX(bytes.NewReader(up), f.name)
		if err != nil {
			t.Fatal(err)
		}
		want := 60000
		if strings.HasPrefix(f.name, "t10k") {
			want = 10000
		}
		if x.Dims[0] != want {
			t.Errorf("%s: %d samples, want %d", f.name, x.Dims[0], want)
		}
	}
}

// TestFashionMNISTFromDebian puts the real Fashion-MNIST in place from
// Debian's package, verifies it, opens both splits and checks their sizes,
// classes, first labels and the normalization constants.
func TestFashionMNISTFromDebian(t *testing.T) {
	deb := debianFashionMNIST(t)
	if err := VerifyFashionMNIST(deb); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "fashion-mnist")
	var log []string
	if err := (FashionMNISTSource{Local: deb}).Ensure(context.Background(), dir, logTo(t, &log)); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, FashionMNISTFileNames()...)
	if err := Verify("fashion-mnist", dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		split string
		n     int
	}{{"test", 10000}, {"train", 60000}} {
		if tc.split == "train" && testing.Short() {
			continue
		}
		// The files are in place: Open takes them as they are.
		s, err := Open(context.Background(), "fashion-mnist", dir, tc.split, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		m := s.(*MNIST)
		if m.Name() != "fashion-mnist" || m.N != tc.n || m.Shape() != (Shape{1, 28, 28}) || m.Classes() != 10 {
			t.Fatalf("%s: %s, %d samples, %v, %d classes", tc.split, m.Name(), m.N, m.Shape(), m.Classes())
		}
		if m.Labels[0] != 9 { // an ankle boot, in both splits
			t.Errorf("%s: first label %d, want 9", tc.split, m.Labels[0])
		}
		var hist [10]int
		for _, l := range m.Labels {
			hist[l]++
		}
		for k, c := range hist {
			if c != tc.n/10 {
				t.Errorf("%s: class %d has %d samples, want %d", tc.split, k, c, tc.n/10)
			}
		}
		x, y := make([]float32, 2*784), make([]int, 2)
		if err := m.Fill(x, y, []int{0, tc.n - 1}, Transform{Out: m.Shape()}); err != nil {
			t.Fatal(err)
		}
		for j, p := range m.Pixels[:784] {
			if want := float32((float64(p)/255 - FashionMNISTMean) / FashionMNISTStd); x[j] != want {
				t.Fatalf("%s: x[0, %d] = %v for pixel %d, want %v", tc.split, j, x[j], p, want)
			}
		}
		if tc.split == "train" {
			var s1, s2 float64
			for _, p := range m.Pixels {
				v := float64(p) / 255
				s1 += v
				s2 += v * v
			}
			n := float64(len(m.Pixels))
			mean := s1 / n
			std := math.Sqrt(s2/n - mean*mean)
			if math.Abs(mean-FashionMNISTMean) > 5e-4 || math.Abs(std-FashionMNISTStd) > 5e-4 {
				t.Errorf("training pixels: mean %.5f, std %.5f; the constants say %v and %v", mean, std, FashionMNISTMean, FashionMNISTStd)
			}
		}
	}
}

// TestFashionMNISTDownloadReal serves the upstream files, rebuilt from
// Debian's, over HTTP and downloads them with the real pins.
func TestFashionMNISTDownloadReal(t *testing.T) {
	files := upstreamFashionMNIST(t)
	srv, hits := fileServer(t, "/data/fashion/", files)
	dir := t.TempDir()
	src := FashionMNISTSource{BaseURLs: []string{srv.URL + "/data/fashion"}}
	if err := src.Ensure(context.Background(), dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 4 {
		t.Errorf("%d requests, want 4", hits.Load())
	}
	for _, f := range fashionPinned {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.sha256 {
			t.Errorf("downloaded %s: SHA-256 %x, want the upstream %s", f.name, sum, f.sha256)
		}
	}
	if _, err := LoadFashionMNIST(dir, "test"); err != nil {
		t.Fatal(err)
	}
}

// fakeFashion returns stand-in file contents under the real names and pins
// that match them (the also sum is that of "repacked " + contents).
func fakeFashion() (map[string][]byte, []pinnedFile) {
	contents := map[string][]byte{}
	var pins []pinnedFile
	for _, name := range FashionMNISTFileNames() {
		b := []byte("stand-in Fashion-MNIST contents of " + name)
		contents[name] = b
		sum := sha256.Sum256(b)
		alt := sha256.Sum256(append([]byte("repacked "), b...))
		pins = append(pins, pinnedFile{name: name, sha256: hex.EncodeToString(sum[:]), also: hex.EncodeToString(alt[:])})
	}
	return contents, pins
}

// fileServer serves files under prefix and counts requests; other paths
// are 404.
func fileServer(t *testing.T, prefix string, files map[string][]byte) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := files[strings.TrimPrefix(r.URL.Path, prefix)]
		if !ok || !strings.HasPrefix(r.URL.Path, prefix) {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// noTemporaries fails if dir holds a leftover temporary file.
func noTemporaries(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
}

func TestFashionEnsureDownloads(t *testing.T) {
	contents, pins := fakeFashion()
	srv, hits := fileServer(t, "/f/", contents)
	dir := filepath.Join(t.TempDir(), "fashion-mnist")
	src := FashionMNISTSource{BaseURLs: []string{srv.URL + "/f/"}, files: pins}
	if err := src.Ensure(context.Background(), dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, FashionMNISTFileNames()...)
	if err := verifyAll(dir, pins); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 4 {
		t.Fatalf("%d requests, want 4", hits.Load())
	}
	// Already there: no request. A corrupt file is replaced.
	if err := os.WriteFile(filepath.Join(dir, pins[1].name), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log []string
	if err := src.Ensure(context.Background(), dir, logTo(t, &log)); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 5 {
		t.Fatalf("%d requests after replacing one file, want 5", hits.Load())
	}
	if !strings.Contains(strings.Join(log, "\n"), "replacing") {
		t.Errorf("log does not mention replacing the corrupt file: %q", log)
	}
	if err := verifyAll(dir, pins); err != nil {
		t.Fatal(err)
	}
}

// TestFashionEnsureCorruptDownload: corrupt bytes are never installed; the
// next URL is tried, and when none serves good bytes the error names the
// file, the sum found and the sums wanted.
func TestFashionEnsureCorruptDownload(t *testing.T) {
	contents, pins := fakeFashion()
	bad := pins[2].name
	corrupt := map[string][]byte{}
	for k, v := range contents {
		corrupt[k] = v
	}
	corrupt[bad] = []byte("tampered")
	badSrv, _ := fileServer(t, "/", corrupt)
	goodSrv, goodHits := fileServer(t, "/", contents)

	dir := t.TempDir()
	var log []string
	src := FashionMNISTSource{BaseURLs: []string{badSrv.URL, goodSrv.URL}, files: pins}
	if err := src.Ensure(context.Background(), dir, logTo(t, &log)); err != nil {
		t.Fatal(err)
	}
	if goodHits.Load() != 1 {
		t.Errorf("the second URL got %d requests, want 1 (for %s)", goodHits.Load(), bad)
	}
	if !strings.Contains(strings.Join(log, "\n"), "SHA-256 mismatch") {
		t.Errorf("log does not mention the mismatch: %q", log)
	}
	if err := verifyAll(dir, pins); err != nil {
		t.Fatal(err)
	}

	dir = t.TempDir()
	err := FashionMNISTSource{BaseURLs: []string{badSrv.URL}, files: pins}.Ensure(context.Background(), dir, nil)
	if err == nil {
		t.Fatal("tampered file accepted")
	}
	sum := sha256.Sum256([]byte("tampered"))
	for _, want := range []string{bad, "got " + hex.EncodeToString(sum[:]), "want " + pins[2].sha256 + " (upstream) or " + pins[2].also} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, bad)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tampered file left in place (stat: %v)", err)
	}
	noTemporaries(t, dir)
}

func TestFashionEnsureFailures(t *testing.T) {
	_, pins := fakeFashion()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/huge/" + pins[0].name:
			w.Header().Set("Content-Length", strconv.Itoa(maxDataFileBytes+1))
			w.WriteHeader(http.StatusOK)
		case "/stall/" + pins[0].name:
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("a first part"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-done:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
	for _, tc := range []struct {
		name string
		src  FashionMNISTSource
		want string
	}{
		{"404", FashionMNISTSource{BaseURLs: []string{srv.URL + "/none"}}, "404 Not Found"},
		{"declared too large", FashionMNISTSource{BaseURLs: []string{srv.URL + "/huge"}}, "declares 67108865 bytes, more than 67108864"},
		{"timeout", FashionMNISTSource{BaseURLs: []string{srv.URL + "/stall"}, Timeout: 50 * time.Millisecond}, "deadline exceeded"},
		{"nowhere", FashionMNISTSource{Local: filepath.Join(t.TempDir(), "none")}, "no download URL is configured"},
	} {
		tc.src.files = pins[:1]
		dir := t.TempDir()
		err := tc.src.Ensure(context.Background(), dir, t.Logf)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), pins[0].name) {
			t.Errorf("%s: error %v, want one naming %s and containing %q", tc.name, err, pins[0].name, tc.want)
		}
		assertOnly(t, dir)
	}
	// A cancelled context stops at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := FashionMNISTSource{BaseURLs: []string{srv.URL + "/stall", srv.URL + "/none"}, files: pins[:1]}.Ensure(ctx, t.TempDir(), nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestFashionEnsureFromLocal: a local folder (Debian's layout) is used
// before any URL; a corrupt local file is downloaded instead.
func TestFashionEnsureFromLocal(t *testing.T) {
	contents, pins := fakeFashion()
	local := t.TempDir()
	for name, b := range contents {
		if err := os.WriteFile(filepath.Join(local, name), b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	// The local copy of one file is a repackaging with the also sum.
	repacked := append([]byte("repacked "), contents[pins[3].name]...)
	if err := os.Remove(filepath.Join(local, pins[3].name)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, pins[3].name), repacked, 0o444); err != nil {
		t.Fatal(err)
	}
	srv, hits := fileServer(t, "/", contents)
	dir := t.TempDir()
	src := FashionMNISTSource{Local: local, BaseURLs: []string{srv.URL}, files: pins}
	if err := src.Ensure(context.Background(), dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 0 {
		t.Errorf("%d requests with every file in the local folder", hits.Load())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, pins[3].name)); !bytes.Equal(b, repacked) {
		t.Error("the repackaged local file was not copied as it is")
	}

	if err := os.Chmod(filepath.Join(local, pins[0].name), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, pins[0].name), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if err := src.Ensure(context.Background(), dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests with one corrupt local file, want 1", hits.Load())
	}
	if err := verifyAll(dir, pins); err != nil {
		t.Fatal(err)
	}
	noTemporaries(t, dir)
}
