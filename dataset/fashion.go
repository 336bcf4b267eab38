package dataset

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Where Fashion-MNIST's four files are published: the upstream host (an S3
// website endpoint, which serves plain HTTP only; the pinned sums are what
// make a download trustworthy) and the project's repository.
const (
	FashionMNISTURL       = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
	FashionMNISTMirrorURL = "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"
)

// DebianFashionMNISTDir is where Debian's package dataset-fashion-mnist
// installs the four files.
const DebianFashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// DefaultDownloadTimeout bounds the download of one file.
const DefaultDownloadTimeout = 10 * time.Minute

// fashionPinned lists the Fashion-MNIST files and their pinned SHA-256
// sums. The first sum is the upstream file's (26,421,880, 29,515, 4,422,102
// and 5,148 bytes; it is also what the upstream MD5 sums check). The second
// is Debian's package's: Debian re-gzipped the files, so each is the same
// deflate stream under a gzip header without the file name and with a 2020
// time stamp, 24 or 23 bytes shorter. Putting back the upstream header (the
// file name, and the time 2017-08-31 10:50:06 UTC for train-*, 10:50:27 for
// t10k-*) gives the upstream bytes exactly; TestFashionMNISTDebianIsUpstream
// checks that, so both sums pin the same images and labels.
var fashionPinned = []pinnedFile{
	{name: "t10k-images-idx3-ubyte.gz",
		sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
		also:   "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"},
	{name: "t10k-labels-idx1-ubyte.gz",
		sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
		also:   "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"},
	{name: "train-images-idx3-ubyte.gz",
		sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
		also:   "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"},
	{name: "train-labels-idx1-ubyte.gz",
		sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
		also:   "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"},
}

// FashionMNISTFileNames returns the names of the four Fashion-MNIST files
// (the same as MNIST's).
func FashionMNISTFileNames() []string {
	names, _ := Files("fashion-mnist")
	return names
}

// VerifyFashionMNIST checks that dir holds the four Fashion-MNIST files,
// each with its upstream or its Debian package's pinned SHA-256. The error
// lists every missing or mismatching file.
func VerifyFashionMNIST(dir string) error {
	return verifyAll(dir, fashionPinned)
}

// FashionMNISTSource says where FashionMNISTSource.Ensure may take the
// Fashion-MNIST files from.
type FashionMNISTSource struct {
	// Local is a folder holding the files, such as DebianFashionMNISTDir;
	// "" skips it.
	Local string
	// BaseURLs are tried in order for each file still missing, the file's
	// name appended; none forbids downloading.
	BaseURLs []string
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
	// Timeout bounds each file's download from one URL; 0 means
	// DefaultDownloadTimeout.
	Timeout time.Duration

	files []pinnedFile // nil: fashionPinned (tests substitute their own)
}

// DefaultFashionMNISTSource takes the files from Debian's package when it
// is installed, else from FashionMNISTURL, then FashionMNISTMirrorURL.
func DefaultFashionMNISTSource() FashionMNISTSource {
	return FashionMNISTSource{Local: DebianFashionMNISTDir, BaseURLs: []string{FashionMNISTURL, FashionMNISTMirrorURL}}
}

// EnsureFashionMNIST makes dir hold the four Fashion-MNIST files, each
// verified against its pinned SHA-256, from DefaultFashionMNISTSource.
// logf, if not nil, receives progress lines.
func EnsureFashionMNIST(ctx context.Context, dir string, logf func(string, ...any)) error {
	return DefaultFashionMNISTSource().Ensure(ctx, dir, logf)
}

// Ensure makes dir (created if needed) hold the four Fashion-MNIST files
// with their pinned SHA-256 sums. Files already there and verified are
// kept. Missing or corrupt ones are copied from Local when it holds them
// verified, else downloaded from BaseURLs in order, each response bounded
// in size and time. Every file is written to a temporary file in dir,
// checked, synced and renamed into place, so dir never holds an unverified
// file under a Fashion-MNIST name; a file that fails its sum is never
// installed, and the error names it and both sums.
func (s FashionMNISTSource) Ensure(ctx context.Context, dir string, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	files := s.files
	if files == nil {
		files = fashionPinned
	}
	missing, err := missingFiles(dir, files, logf)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		logf("Fashion-MNIST: the %d files in %s are verified", len(files), dir)
		return nil
	}
	var problems []error
	if s.Local != "" {
		if missing, err = copyMissing(ctx, s.Local, dir, missing, &problems, func(name string) {
			logf("Fashion-MNIST: %s copied from %s", name, s.Local)
		}); err != nil {
			return err
		}
	}
	if len(s.BaseURLs) > 0 {
		var still []pinnedFile
		for _, f := range missing {
			if err := s.download(ctx, dir, f, logf); err != nil {
				if ctx.Err() != nil {
					return err
				}
				problems = append(problems, err)
				still = append(still, f)
			}
		}
		missing = still
	}
	if len(missing) > 0 {
		how := "no download URL is configured"
		if len(s.BaseURLs) > 0 {
			how = "no download succeeded"
		}
		err := fmt.Errorf("dataset: Fashion-MNIST: %s still missing in %s: not in %q and %s",
			joinNames(missing), dir, s.Local, how)
		return errors.Join(append([]error{err}, problems...)...)
	}
	return syncDir(dir)
}

// download installs f in dir from the first of BaseURLs that serves it
// with a pinned sum. The error joins every URL's failure.
func (s FashionMNISTSource) download(ctx context.Context, dir string, f pinnedFile, logf func(string, ...any)) error {
	var errs []error
	for _, base := range s.BaseURLs {
		url := strings.TrimRight(base, "/") + "/" + f.name
		logf("Fashion-MNIST: downloading %s", url)
		err := s.downloadFrom(ctx, url, dir, f)
		if err == nil {
			logf("Fashion-MNIST: %s downloaded and verified", f.name)
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		logf("%v", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// downloadFrom installs f in dir from url, within Timeout and at most
// maxDataFileBytes.
func (s FashionMNISTSource) downloadFrom(ctx context.Context, url, dir string, f pinnedFile) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultDownloadTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("dataset: Fashion-MNIST download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("dataset: Fashion-MNIST download: GET %s: %s", url, resp.Status)
	}
	if resp.ContentLength > maxDataFileBytes {
		return fmt.Errorf("dataset: Fashion-MNIST download: %s declares %d bytes, more than %d", url, resp.ContentLength, maxDataFileBytes)
	}
	return install(ctx, resp.Body, dir, f, url)
}
