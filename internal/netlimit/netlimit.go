// Package netlimit bounds the connections a server holds: a listener that
// keeps at most a fixed number of accepted connections open at once and
// closes at once any connection over that number, instead of letting it
// wait (a waiting connection would let idle ones starve a legitimate
// peer until they go away). gRPC servers have no such limit of their own;
// their handshake deadline (grpc.ConnectionTimeout) is what frees the
// places held by connections that never complete a handshake.
package netlimit

import (
	"net"
	"sync"
)

// Listener is a net.Listener that holds at most Max connections.
type Listener struct {
	net.Listener
	max int

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
	// OnRefuse, when set, is called (without locks held) for each
	// connection closed for being over the limit, with its remote
	// address. Set it before the first Accept.
	OnRefuse func(remote net.Addr)
}

// New wraps ln so that at most max (≥ 1) of its connections are open at
// once.
func New(ln net.Listener, max int) *Listener {
	return &Listener{Listener: ln, max: max, conns: map[*conn]struct{}{}}
}

// Accept returns the next connection while fewer than the limit are open;
// a connection over the limit is closed at once and Accept waits for the
// next.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		}
		if len(l.conns) >= l.max {
			l.mu.Unlock()
			c.Close()
			if l.OnRefuse != nil {
				l.OnRefuse(c.RemoteAddr())
			}
			continue
		}
		w := &conn{Conn: c, l: l}
		l.conns[w] = struct{}{}
		l.mu.Unlock()
		return w, nil
	}
}

// Close closes the listener and every connection it accepted that is
// still open, so that a server's Stop never waits for a connection stuck
// in its handshake.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return err
}

// Open is the number of accepted connections open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Drop closes the open connections whose remote address is addr: a
// server calls it to cut off a peer that failed to authenticate.
func (l *Listener) Drop(addr net.Addr) {
	if addr == nil {
		return
	}
	s := addr.String()
	l.mu.Lock()
	var drop []*conn
	for c := range l.conns {
		if c.RemoteAddr().String() == s {
			drop = append(drop, c)
		}
	}
	l.mu.Unlock()
	for _, c := range drop {
		c.Close()
	}
}

// conn frees its place in the listener when closed.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return err
}
