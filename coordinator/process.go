package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

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
	// HTTP is the address serving /healthz, /readyz, /metrics and /status
	// (Server.HTTPHandler); empty: none.
	HTTP string
	// TLS, when set, is the control plane's server configuration (mutual
	// TLS); nil: plaintext.
	TLS *tls.Config
}

// Process is a coordinator process: a Server with its control-plane gRPC
// and HTTP listeners and its memberlist member. Listen binds them and
// starts nothing; Run serves until its context ends. A Process that Listen
// returned must be run or closed.
type Process struct {
	srv     *Server
	member  *membership.Member
	control net.Listener
	http    net.Listener // nil: none
	tls     *tls.Config
	once    sync.Once // Run or Close, once
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
	p := &Process{srv: srv, member: member, tls: cfg.TLS}
	if p.control, err = net.Listen("tcp", cfg.Listen); err != nil {
		member.Shutdown()
		return nil, fmt.Errorf("coordinator: control-plane address: %w", err)
	}
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
	var opts []grpc.ServerOption
	if p.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(p.tls)))
	}
	g := grpc.NewServer(opts...)
	p.srv.Register(g)
	var wg sync.WaitGroup
	wg.Go(func() { g.Serve(p.control) })
	var hs *http.Server
	if p.http != nil {
		hs = &http.Server{Handler: p.srv.HTTPHandler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() { hs.Serve(p.http) })
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
