// Package etcdtest runs a real, single-member etcd server inside a test
// process, for the tests of packages that keep state in etcd (checkpoint
// commits, leader election, job state).
//
// The server keeps its data in a directory under t.TempDir(), listens on
// loopback ports chosen at start, and writes its log to etcd.log in that
// directory instead of the test output. It can be stopped and started again
// on the same data directory and the same client URL, so tests can check
// what a client sees while etcd is down and after it returns.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// readyTimeout bounds how long Start waits for the server to serve; it only
// catches hangs.
const readyTimeout = 30 * time.Second

// Server is one embedded etcd member. Its methods must be called from the
// test goroutine (they call t.Fatal).
type Server struct {
	t       testing.TB
	dir     string // data directory
	logPath string
	client  url.URL
	peer    url.URL
	e       *embed.Etcd // nil while stopped
}

// Start starts an embedded etcd and returns its client endpoints and a stop
// function. stop is idempotent and is also run by t.Cleanup, so the server
// never outlives the test.
func Start(t testing.TB) (endpoints []string, stop func()) {
	s := New(t)
	return s.Endpoints(), s.Stop
}

// New starts an embedded etcd with its data in a fresh directory under
// t.TempDir() and registers its Stop with t.Cleanup. It fails the test if the
// server does not become ready within 30 s.
func New(t testing.TB) *Server {
	t.Helper()
	root := t.TempDir()
	urls := freeLoopbackURLs(t, 2)
	s := &Server{
		t:       t,
		dir:     filepath.Join(root, "etcd"),
		logPath: filepath.Join(root, "etcd.log"),
		client:  urls[0],
		peer:    urls[1],
	}
	t.Cleanup(s.Stop)
	s.start()
	return s
}

// Endpoints are the client URLs to pass to clientv3.Config.Endpoints. They
// stay the same across Stop and Restart.
func (s *Server) Endpoints() []string { return []string{s.client.String()} }

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.dir }

// LogPath is the file the server logs to.
func (s *Server) LogPath() string { return s.logPath }

// Running reports whether the server is started.
func (s *Server) Running() bool { return s.e != nil }

// Stop shuts the server down and waits until it has released its ports and
// data directory. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.e == nil {
		return
	}
	s.e.Close()
	s.e = nil
}

// Restart starts a stopped server again on the same data directory and the
// same URLs; every key written before Stop is still there. Restarting a
// running server fails the test.
func (s *Server) Restart() {
	s.t.Helper()
	if s.e != nil {
		s.t.Fatalf("etcdtest: restart of a running server")
	}
	s.start()
}

func (s *Server) start() {
	s.t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.client}
	cfg.AdvertiseClientUrls = []url.URL{s.client}
	cfg.ListenPeerUrls = []url.URL{s.peer}
	cfg.AdvertisePeerUrls = []url.URL{s.peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = "etcdtest"
	// A lone member elects itself after one election timeout; a short one
	// makes start and restart quick. With no peers there is no heartbeat to
	// miss, so a loaded machine cannot cost it its leadership.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{s.logPath}
	// No metrics listener and no pprof: nothing the tests do not use.
	cfg.ListenMetricsUrls = nil
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		s.t.Fatalf("etcdtest: starting etcd in %s: %v (log in %s)", s.dir, err, s.logPath)
	}
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		s.t.Fatalf("etcdtest: etcd in %s failed while starting: %v (log in %s)", s.dir, err, s.logPath)
	case <-timer.C:
		e.Close()
		s.t.Fatalf("etcdtest: etcd in %s not ready after %v (log in %s)", s.dir, readyTimeout, s.logPath)
	}
	s.e = e
}

// freeLoopbackURLs picks n distinct free TCP ports on 127.0.0.1, holding
// them all open until all are chosen. The ports are released before etcd
// binds them, so another process could take one in between; on a test
// machine that is rare and shows as a clear start failure.
func freeLoopbackURLs(t testing.TB, n int) []url.URL {
	t.Helper()
	urls := make([]url.URL, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("etcdtest: finding a free port: %v", err)
		}
		defer l.Close()
		urls = append(urls, url.URL{Scheme: "http", Host: l.Addr().String()})
	}
	return urls
}

// String describes the server for test logs.
func (s *Server) String() string {
	return fmt.Sprintf("etcd at %s (data %s)", s.client.String(), s.dir)
}
