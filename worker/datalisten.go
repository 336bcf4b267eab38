package worker

import (
	"context"
	"net"
	"sync"
	"time"
)

// dataListener is a worker's all-reduce listener for its whole life. Each
// generation's ring transport gets a view of it (generation) that it may
// close; the port itself stays bound between generations. A port left
// unbound even for a moment between two generations can be taken as the
// ephemeral source port of an outgoing connection on the same host, and
// then the worker can neither listen on it nor be told apart from the
// connection's owner by neighbours dialling it.
type dataListener struct {
	ln      net.Listener
	conns   chan net.Conn
	closing chan struct{}
	ended   chan struct{} // closed when ln stopped accepting; err says why
	err     error
	once    sync.Once
}

// listenData binds addr, retrying until timeout while it is in use (a
// previous process's port that the kernel has not released yet).
func listenData(ctx context.Context, addr string, timeout time.Duration) (*dataListener, error) {
	deadline := time.Now().Add(timeout)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			d := &dataListener{ln: ln, conns: make(chan net.Conn), closing: make(chan struct{}), ended: make(chan struct{})}
			go d.accept()
			return d, nil
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
func (d *dataListener) accept() {
	defer close(d.ended)
	for {
		c, err := d.ln.Accept()
		if err != nil {
			d.err = err
			return
		}
		select {
		case d.conns <- c:
		case <-d.closing:
			c.Close()
			return
		}
	}
}

// Close unbinds the port; every view's Accept returns an error.
func (d *dataListener) Close() error {
	d.once.Do(func() { close(d.closing) })
	err := d.ln.Close()
	<-d.ended
	return err
}

// generation returns a listener for one generation's transport: closing
// it ends only that view.
func (d *dataListener) generation() net.Listener {
	return &genListener{d: d, done: make(chan struct{})}
}

type genListener struct {
	d    *dataListener
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
	case c := <-g.d.conns:
		return c, nil
	case <-g.done:
		return nil, net.ErrClosed
	case <-g.d.ended:
		return nil, g.d.err
	}
}

func (g *genListener) Close() error {
	g.once.Do(func() { close(g.done) })
	return nil
}

func (g *genListener) Addr() net.Addr { return g.d.ln.Addr() }
