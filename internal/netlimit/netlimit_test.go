package netlimit

import (
	"net"
	"testing"
	"time"
)

// Connections over the limit are closed at once; closing one frees its
// place; Drop and Close close the connections still open.
func TestListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan net.Addr, 10)
	l := New(inner, 2)
	l.OnRefuse = func(a net.Addr) { refused <- a }
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		ne, ok := err.(net.Error)
		return err != nil && !(ok && ne.Timeout())
	}
	a, b := dial(), dial()
	sa, sb := <-accepted, <-accepted
	c := dial()
	if !closed(c) || l.Open() != 2 {
		t.Fatalf("a third connection: open %d", l.Open())
	}
	if a := <-refused; a.String() != c.LocalAddr().String() {
		t.Errorf("refused %v, want %v", a, c.LocalAddr())
	}
	sa.Close()
	sa.Close() // frees its place once
	d := dial()
	sd := <-accepted
	if closed(d) || l.Open() != 2 {
		t.Fatalf("a connection after one closed: open %d", l.Open())
	}
	l.Drop(sb.RemoteAddr())
	if !closed(b) || l.Open() != 1 {
		t.Fatalf("after Drop: open %d", l.Open())
	}
	_ = a
	l.Close()
	if !closed(d) || l.Open() != 0 {
		t.Fatalf("after Close: open %d", l.Open())
	}
	if _, ok := <-accepted; ok {
		t.Fatal("Accept after Close")
	}
	_ = sd
}
