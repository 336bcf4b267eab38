package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/ringtrain/ringtrain/api"
	"github.com/ringtrain/ringtrain/dashboard"
	"github.com/ringtrain/ringtrain/internal/netlimit"
	"github.com/ringtrain/ringtrain/membership"
)

// ProcessConfig configures a coordinator process (see Listen).
type ProcessConfig struct {
	// Server configures the process's server. Listen sets its Gossip and
	// GossipAddr from the memberlist member it starts.
	Server ServerConfig
	// Listen is the control-plane gRPC address, e.g. ":7070"; workers and
	// `ringtrain status` connect there.
	Listen string
	// Gossip is the memberlist address (TCP and UDP) and Advertise the
	// host other processes reach this one at (by gossip, and the control
	// plane: Server.ControlAddr defaults to it with the bound port).
	Gossip, Advertise string
	// HTTP is the address serving /healthz, /readyz, /metrics, /status
	// and the dashboard (Server.HTTPHandler); empty: none. Bound to a
	// loopback address, it serves the status and the dashboard without a
	// token (only this machine reaches it); bound to any other, they need
	// the join token or the status token. The probes and the metrics are
	// always open.
	HTTP string
	// TLS, when set, is the control plane's server configuration (mutual
	// TLS); nil: plaintext.
	TLS *tls.Config
	// MaxConns is the most connections the control plane holds at once
	// (0: DefaultMaxConns); one more is closed at once. HandshakeTimeout
	// is how long a new connection may take to finish its handshake (TLS,
	// HTTP/2) before it is closed (0: DefaultHandshakeTimeout).
	MaxConns         int
	HandshakeTimeout time.Duration
	// HTTPMaxConns is the most connections the HTTP listener holds at
	// once (0: netlimit.HTTPMaxConns).
	HTTPMaxConns int
}

// Defaults of ProcessConfig's limits of the control plane. A worker holds
// one connection to each coordinator it knows, `ringtrain status` one
// while it asks.
const (
	DefaultMaxConns         = 1024
	DefaultHandshakeTimeout = 5 * time.Second
	// controlMaxStreams is the most concurrent calls on one connection
	// (a worker makes one at a time).
	controlMaxStreams = 64
)

// Process is a coordinator process: a Server with its control-plane gRPC
// and HTTP listeners and its memberlist member. Listen binds them and
// starts nothing; Run serves until its context ends. A Process that Listen
// returned must be run or closed.
type Process struct {
	srv     *Server
	member  *membership.Member
	control net.Listener
	http    net.Listener // nil: none
	httpMax int
	tls     *tls.Config
	hsTime  time.Duration // the control plane's handshake deadline
	once    sync.Once     // Run or Close, once
}

// Listen checks the job and makes the server (NewServer: the job is
// checked before anything else), starts the process's memberlist member
// and binds its listeners.
func Listen(cfg ProcessConfig) (*Process, error) {
	srv, err := NewServer(cfg.Server)
	if err != nil {
		return nil, err
	}
	member, err := membership.Start(membership.Config{
		Name: cfg.Server.Name, Bind: cfg.Gossip, Advertise: cfg.Advertise, Secret: cfg.Server.Token, Meta: []byte("coordinator"),
	})
	if err != nil {
		return nil, err
	}
	// Run is the first to read them.
	srv.cfg.Gossip, srv.cfg.GossipAddr = member, member.Addr()
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.HTTPMaxConns <= 0 {
		cfg.HTTPMaxConns = netlimit.HTTPMaxConns
	}
	p := &Process{srv: srv, member: member, tls: cfg.TLS, hsTime: cfg.HandshakeTimeout, httpMax: cfg.HTTPMaxConns}
	control, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		member.Shutdown()
		return nil, fmt.Errorf("coordinator: control-plane address: %w", err)
	}
	limited := netlimit.New(control, cfg.MaxConns)
	var refusals atomic.Int64
	limited.OnRefuse = func(remote net.Addr) {
		// One line for the first, then one every power of two.
		if n := refusals.Add(1); n&(n-1) == 0 {
			srv.logf("coordinator: closed a connection from %v: %d control connections are open, the most it holds (%d closed so far)", remote, cfg.MaxConns, n)
		}
	}
	p.control = limited
	if srv.cfg.ControlAddr == "" && cfg.Advertise != "" {
		_, port, _ := net.SplitHostPort(p.control.Addr().String())
		srv.cfg.ControlAddr = net.JoinHostPort(cfg.Advertise, port)
	}
	if cfg.HTTP != "" {
		if p.http, err = net.Listen("tcp", cfg.HTTP); err != nil {
			p.control.Close()
			member.Shutdown()
			return nil, fmt.Errorf("coordinator: HTTP address: %w", err)
		}
	}
	return p, nil
}

// Server is the process's server: its status, Done and RequestCheckpoint
// are for the process's owner.
func (p *Process) Server() *Server { return p.srv }

// ControlAddr is the bound control-plane address.
func (p *Process) ControlAddr() string { return p.control.Addr().String() }

// GossipAddr is the memberlist address.
func (p *Process) GossipAddr() string { return p.member.Addr() }

// HTTPAddr is the bound HTTP address, or "" when none is served.
func (p *Process) HTTPAddr() string {
	if p.http == nil {
		return ""
	}
	return p.http.Addr().String()
}

// Run serves the control plane and HTTP and runs the server (Server.Run)
// until ctx ends (nil) or the server fails. Then it stops serving, leaves
// gossip, and returns once every goroutine it started has ended. Run may
// be called once; a second call returns an error at once.
func (p *Process) Run(ctx context.Context) error {
	ran := false
	p.once.Do(func() { ran = true })
	if !ran {
		return errors.New("coordinator: process already ran or closed")
	}
	opts := []grpc.ServerOption{
		grpc.ConnectionTimeout(p.hsTime),
		grpc.MaxConcurrentStreams(controlMaxStreams),
		grpc.MaxRecvMsgSize(api.MaxMessage),
		// Close connections idle for 5 minutes, ping one silent for a
		// minute (a dead peer's connection is closed 20 s later), and cut
		// off a client that pings more often than once a minute.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute, Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Minute}),
	}
	if p.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(p.tls)))
	}
	g := grpc.NewServer(opts...)
	p.srv.Register(g)
	var wg sync.WaitGroup
	wg.Go(func() { g.Serve(p.control) })
	var hs *http.Server
	if p.http != nil {
		open := dashboard.IsLoopback(p.http.Addr())
		if !open {
			p.srv.logf("coordinator: HTTP %s: /status and the dashboard need the join token or the status token (/healthz, /readyz and /metrics are open)", p.http.Addr())
		}
		var refusals atomic.Int64
		hs, _ = netlimit.HTTP(p.http, p.srv.httpHandler(open), p.httpMax, func(remote net.Addr) {
			if n := refusals.Add(1); n&(n-1) == 0 { // the first, then every power of two
				p.srv.logf("coordinator: closed an HTTP connection from %v: %d are open, the most it holds (%d closed so far)", remote, p.httpMax, n)
			}
		})
	}
	err := p.srv.Run(ctx)
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		hs.Shutdown(sctx)
		cancel()
	}
	g.Stop()
	wg.Wait()
	p.member.Leave(time.Second)
	return err
}

// Close releases a process that will not run: its listeners and its
// memberlist member. It does nothing after Run.
func (p *Process) Close() {
	p.once.Do(func() {
		p.control.Close()
		if p.http != nil {
			p.http.Close()
		}
		p.member.Shutdown()
	})
}
