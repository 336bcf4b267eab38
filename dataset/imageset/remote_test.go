package imageset

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A packed shard set served over HTTP reads as the same set read from its
// directory: every sample, label and class, each sample by a ranged GET.
func TestRemoteShardsMatchLocal(t *testing.T) {
	src, dst := packSource(t), t.TempDir()
	if _, err := Pack(context.Background(), src, dst, PackOptions{PerShard: 4, Seed: 1}, nil); err != nil {
		t.Fatal(err)
	}
	var ranged atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		http.FileServer(http.Dir(dst)).ServeHTTP(w, r)
	}))
	defer srv.Close()
	for _, split := range []string{"train", "val"} {
		local, err := OpenShards(context.Background(), dst, split, nil)
		if err != nil {
			t.Fatal(err)
		}
		remote, err := OpenShards(context.Background(), srv.URL+"/", split, nil)
		if err != nil {
			t.Fatal(err)
		}
		if remote.Len() != local.Len() || !slices.Equal(remote.Classes(), local.Classes()) {
			t.Fatalf("%s: %d samples %v over HTTP, %d %v from the folder", split, remote.Len(), remote.Classes(), local.Len(), local.Classes())
		}
		p := Params{H: 12, W: 12, Train: true, Seed: 3}
		before := ranged.Load()
		xl, yl := fillAll(t, local, p)
		xr, yr := fillAll(t, remote, p)
		if !slices.Equal(xl, xr) || !slices.Equal(yl, yr) {
			t.Fatalf("%s: samples over HTTP differ from the folder's", split)
		}
		if got := ranged.Load() - before; got != int64(remote.Len()) {
			t.Fatalf("%s: %d ranged reads for %d samples", split, got, remote.Len())
		}
	}
}

// What cannot work over HTTP says what is wrong and where.
func TestRemoteShardsErrors(t *testing.T) {
	src, dst := packSource(t), t.TempDir()
	if _, err := Pack(context.Background(), src, dst, PackOptions{PerShard: 4, Seed: 1}, nil); err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(dst))
	var mode atomic.Value
	mode.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "no ranges":
			r.Header.Del("Range")
		case "down":
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	open := func(base string) error {
		s, err := OpenShards(context.Background(), base, "train", nil)
		if err != nil {
			return err
		}
		_, _, err = s.src.(*shards).read(0, nil)
		return err
	}
	mode.Store("no ranges")
	if err := open(srv.URL); err == nil || !strings.Contains(err.Error(), "ignores byte ranges") || !strings.Contains(err.Error(), "train-000000.tar: member") {
		t.Errorf("a server without ranges: %v", err)
	}
	mode.Store("")
	if err := os.Remove(filepath.Join(dst, "train-000001.tar.idx")); err != nil {
		t.Fatal(err)
	}
	if err := open(srv.URL); err == nil || !strings.Contains(err.Error(), "train-000001.tar has no index") {
		t.Errorf("a shard without its index: %v", err)
	}
	if err := open(srv.URL + "/nothing/"); err == nil || !strings.Contains(err.Error(), "has no manifest.json") {
		t.Errorf("no manifest: %v", err)
	}
	r, err := newRemote(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	slept := 0
	r.sleep = func(time.Duration) { slept++ }
	mode.Store("down")
	if _, err := r.readFile(ManifestName); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "tried 3 times") || slept != 2 {
		t.Errorf("a server that is down: %v after %d waits", err, slept)
	}
	if _, err := OpenShards(context.Background(), "https://", "train", nil); err == nil || !strings.Contains(err.Error(), "not a URL with a host") {
		t.Errorf("a URL without a host: %v", err)
	}
}
