package faults

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on loopback in front of one address, which can cut
// the link, reset its connections or slow it: a coordinator whose etcd
// endpoints are proxies is cut off etcd alone while every other process
// still reaches it; a worker advertising its proxy's port gets slow or
// flaky ring links.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	delay time.Duration
	conns map[net.Conn]struct{}
}

// SetDelay delays every write through the proxy by d (0: none).
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Reset closes every connection through the proxy; new ones are forwarded.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// pipe copies src to dst, each write delayed by the proxy's delay, until
// either fails.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.delay
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// NewProxy listens on a free loopback port for connections to forward to
// target. Nothing is forwarded until Run.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the address to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection through the proxy and refuses new ones (they
// are accepted and closed at once) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore forwards new connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// track adds c to the open connections, or reports false (and closes c)
// while the link is cut.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// Run forwards connections until ctx ends; it returns once the listener
// and every connection are closed and their goroutines done.
func (p *Proxy) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		p.ln.Close()
		p.Cut()
	})
	defer stop()
	defer wg.Wait()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if !p.track(in) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.untrack(in)
			var d net.Dialer
			out, err := d.DialContext(ctx, "tcp", p.target)
			if err != nil {
				return
			}
			if !p.track(out) {
				return
			}
			defer p.untrack(out)
			done := make(chan struct{})
			go func() {
				p.pipe(out, in)
				out.Close()
				close(done)
			}()
			p.pipe(in, out)
			in.Close()
			<-done
		}()
	}
}
