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
	"net/url"
	"path/filepath"
	"testing"

	"github.com/ringtrain/ringtrain/etcdlocal"
)

// Server is one embedded etcd member. Its methods must be called from the
// test goroutine (they call t.Fatal).
type Server struct {
	t       testing.TB
	dir     string // data directory
	logPath string
	client  url.URL
	peer    url.URL
	e       *etcdlocal.Server // nil while stopped
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
	var urls [2]url.URL
	for i := range urls {
		u, err := etcdlocal.FreeLoopbackURL()
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		urls[i] = u
	}
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
	e, err := etcdlocal.Start(etcdlocal.Config{Dir: s.dir, LogPath: s.logPath, Client: s.client, Peer: s.peer})
	if err != nil {
		s.t.Fatalf("etcdtest: %v", err)
	}
	s.e = e
}

func (s *Server) String() string {
	return fmt.Sprintf("etcd at %s (data %s)", s.client.String(), s.dir)
}
