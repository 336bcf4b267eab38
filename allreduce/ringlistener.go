package allreduce

import (
	"context"
	"net"
	"sync"
	"time"
)

// RingListener is a rank's all-reduce listener for the whole life of its
// process. Each generation's ring transport gets a view of it
// (Generation) to pass as GRPCConfig.Listener, which the transport may
// close; the port itself stays bound between generations. A port left
// unbound even for a moment between two generations can be taken as the
// ephemeral source port of an outgoing connection on the same host, and
// then the rank can neither listen on it nor be told apart from the
// connection's owner by neighbours dialling it.
type RingListener struct {
	ln      net.Listener
	conns   chan net.Conn
	closing chan struct{}
	ended   chan struct{} // closed when ln stopped accepting; err says why
	err     error
	once    sync.Once
}

// ListenRing binds addr (TCP), retrying for up to retryFor while it is in
// use (a previous process's port that the kernel has not released yet),
// or until ctx ends.
func ListenRing(ctx context.Context, addr string, retryFor time.Duration) (*RingListener, error) {
	deadline := time.Now().Add(retryFor)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			r := &RingListener{ln: ln, conns: make(chan net.Conn), closing: make(chan struct{}), ended: make(chan struct{})}
			go r.accept()
			return r, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// accept hands each connection to whichever generation accepts next.
func (r *RingListener) accept() {
	defer close(r.ended)
	for {
		c, err := r.ln.Accept()
		if err != nil {
			r.err = err
			return
		}
		select {
		case r.conns <- c:
		case <-r.closing:
			c.Close()
			return
		}
	}
}

// Addr is the bound address.
func (r *RingListener) Addr() net.Addr { return r.ln.Addr() }

// Close unbinds the port; every view's Accept returns an error.
func (r *RingListener) Close() error {
	r.once.Do(func() { close(r.closing) })
	err := r.ln.Close()
	<-r.ended
	return err
}

// Generation returns a listener for one generation's transport: closing
// it ends only that view. Its Accept returns net.ErrClosed once the view
// is closed, and the error that stopped the bound port accepting once
// that happens (Close).
func (r *RingListener) Generation() net.Listener {
	return &genListener{r: r, done: make(chan struct{})}
}

// genListener is one generation's view of a RingListener.
type genListener struct {
	r    *RingListener
	done chan struct{}
	once sync.Once
}

func (g *genListener) Accept() (net.Conn, error) {
	select {
	case <-g.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-g.r.conns:
		return c, nil
	case <-g.done:
		return nil, net.ErrClosed
	case <-g.r.ended:
		return nil, g.r.err
	}
}

func (g *genListener) Close() error {
	g.once.Do(func() { close(g.done) })
	return nil
}

func (g *genListener) Addr() net.Addr { return g.r.ln.Addr() }
