package imageset

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A shard set may live on an HTTP(S) server instead of a directory:
// shards:https://host/path names the folder that `ringtrain data pack`
// wrote, served as is by any server that answers byte ranges (nginx, a
// bucket's web endpoint, `python3 -m http.server` does not). The manifest
// lists the shards (there is no directory listing), every shard's index
// must be there (a shard is never scanned over the network), and each
// sample is one ranged GET of its member's bytes.

// IsURL reports whether a shard set's location is an http:// or https://
// URL rather than a directory.
func IsURL(dir string) bool {
	return strings.HasPrefix(dir, "http://") || strings.HasPrefix(dir, "https://")
}

// remoteMaxFile bounds the manifest and index files read over HTTP.
const remoteMaxFile = 64 << 20

// remoteTries is how many times a read is tried before its error is
// returned; a network blip mid-epoch should not end a job.
const remoteTries = 3

// remote reads a shard set's files from base, a URL ending in "/".
type remote struct {
	base   string
	client *http.Client
	sleep  func(time.Duration)
}

func newRemote(base string) (*remote, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("imageset: %q is not a URL with a host", base)
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16 // data threads read in parallel
	return &remote{base: base, client: &http.Client{Transport: t, Timeout: time.Minute}, sleep: time.Sleep}, nil
}

// where names file name in the set.
func (r *remote) where(name string) string { return r.base + name }

// readFile reads the whole file name (at most remoteMaxFile bytes).
// A missing file is an error wrapping errNotFound.
func (r *remote) readFile(name string) ([]byte, error) {
	var out []byte
	err := r.retry(func() error {
		resp, err := r.client.Get(r.where(name))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return permanent{fmt.Errorf("%s: %w", r.where(name), errNotFound)}
		}
		if resp.StatusCode != http.StatusOK {
			return statusError(r.where(name), resp)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, remoteMaxFile+1))
		if err != nil {
			return err
		}
		if len(b) > remoteMaxFile {
			return permanent{fmt.Errorf("%s: larger than %d bytes", r.where(name), remoteMaxFile)}
		}
		out = b
		return nil
	})
	return out, err
}

// readAt fills buf with the bytes of file name from offset off, by one
// ranged GET; a server that ignores the range is an error.
func (r *remote) readAt(name string, off int64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	return r.retry(func() error {
		req, err := http.NewRequest(http.MethodGet, r.where(name), nil)
		if err != nil {
			return permanent{err}
		}
		last := off + int64(len(buf)) - 1
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(last, 10))
		resp, err := r.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return permanent{fmt.Errorf("%s: the server ignores byte ranges (answered 200 to a range request); serve the shards with one that honours them", r.where(name))}
		case resp.StatusCode != http.StatusPartialContent:
			return statusError(r.where(name), resp)
		}
		if got := resp.Header.Get("Content-Range"); !strings.HasPrefix(got, fmt.Sprintf("bytes %d-%d/", off, last)) {
			return permanent{fmt.Errorf("%s: asked for bytes %d-%d, the server sent %q", r.where(name), off, last, got)}
		}
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return fmt.Errorf("%s: bytes %d-%d: %w", r.where(name), off, last, err)
		}
		return nil
	})
}

// retry runs f up to remoteTries times, a second apart, while it fails
// with an error that is not permanent.
func (r *remote) retry(f func() error) error {
	var err error
	for try := 0; try < remoteTries; try++ {
		if try > 0 {
			r.sleep(time.Second)
		}
		if err = f(); err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
	}
	return fmt.Errorf("%w (tried %d times)", err, remoteTries)
}

// permanent marks an error that trying again cannot cure.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// statusError describes an unexpected answer; a 4xx one is permanent.
func statusError(where string, resp *http.Response) error {
	err := fmt.Errorf("%s: the server answered %s", where, resp.Status)
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return permanent{err}
	}
	return err
}

// errNotFound is a file the server does not have.
var errNotFound = errors.New("not found")
