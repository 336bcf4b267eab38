// Package etcdlocal runs a single-member etcd server inside the process
// (go.etcd.io/etcd/server/v3/embed): the job store of single-node cluster
// mode (`ringtrain train --workers N`), and of tests (see etcdtest). Its
// data lives in a directory, so a job restarted on the same directory finds
// its committed checkpoints and generation again.
package etcdlocal

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/ringtrain/ringtrain/internal/freeport"
)

// ReadyTimeout bounds the wait for a starting server.
const ReadyTimeout = 30 * time.Second

// Config says where the server keeps its data and listens.
type Config struct {
	Dir     string // data directory
	LogPath string // etcd's log file
	// Client and Peer are the loopback URLs to listen on; zero values pick
	// free ports.
	Client, Peer url.URL
}

// Server is a running embedded etcd.
type Server struct {
	e      *embed.Etcd
	client url.URL
	peer   url.URL
}

// Start starts the server and waits until it serves clients.
func Start(cfg Config) (*Server, error) {
	var err error
	if cfg.Client.Host == "" {
		if cfg.Client, err = FreeLoopbackURL(); err != nil {
			return nil, err
		}
	}
	if cfg.Peer.Host == "" {
		if cfg.Peer, err = FreeLoopbackURL(); err != nil {
			return nil, err
		}
	}
	ec := embed.NewConfig()
	ec.Name = "ringtrain"
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{cfg.Client}
	ec.AdvertiseClientUrls = []url.URL{cfg.Client}
	ec.ListenPeerUrls = []url.URL{cfg.Peer}
	ec.AdvertisePeerUrls = []url.URL{cfg.Peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.InitialClusterToken = "ringtrain-local"
	ec.TickMs = 10
	ec.ElectionMs = 100
	ec.Logger = "zap"
	ec.LogLevel = "error"
	ec.LogOutputs = []string{cfg.LogPath}
	ec.ListenMetricsUrls = nil
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcd: starting in %s: %w (log in %s)", cfg.Dir, err, cfg.LogPath)
	}
	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: in %s failed while starting: %w (log in %s)", cfg.Dir, err, cfg.LogPath)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("etcd: in %s not ready after %v (log in %s)", cfg.Dir, ReadyTimeout, cfg.LogPath)
	}
	return &Server{e: e, client: cfg.Client, peer: cfg.Peer}, nil
}

// Endpoints are the client URLs.
func (s *Server) Endpoints() []string { return []string{s.client.String()} }

// Client and Peer are the URLs the server listens on.
func (s *Server) Client() url.URL { return s.client }
func (s *Server) Peer() url.URL   { return s.peer }

// Close stops the server; its data stays.
func (s *Server) Close() { s.e.Close() }

// FreeLoopbackURL returns an http URL on a loopback port free right now.
func FreeLoopbackURL() (url.URL, error) {
	port, err := freeport.Loopback()
	if err != nil {
		return url.URL{}, fmt.Errorf("etcd: finding a free port: %w", err)
	}
	return url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}, nil
}
