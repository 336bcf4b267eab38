package faults

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"
)

// echo serves lines back on a loopback listener until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line through addr on c (dialled if nil) and reads the
// echo; it returns the connection, or the error.
func roundTrip(c net.Conn, addr string) (net.Conn, error) {
	var err error
	if c == nil {
		if c, err = net.DialTimeout("tcp", addr, time.Second); err != nil {
			return nil, err
		}
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return c, err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return c, err
}

func TestProxyForwardsCutsAndRestores(t *testing.T) {
	p, err := NewProxy(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	c, err := roundTrip(nil, p.Addr())
	if err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Cut()
	if _, err := roundTrip(c, ""); err == nil {
		t.Fatal("a connection open across the cut still works")
	}
	if c2, err := roundTrip(nil, p.Addr()); err == nil {
		c2.Close()
		t.Fatal("a new connection works while cut")
	}
	p.Restore()
	c3, err := roundTrip(nil, p.Addr())
	if err != nil {
		t.Fatalf("after the restore: %v", err)
	}
	c3.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestProxyDelaysAndResets(t *testing.T) {
	p, err := NewProxy(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	p.SetDelay(100 * time.Millisecond)
	start := time.Now()
	c, err := roundTrip(nil, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	// The request and its echo are each delayed.
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("a round trip took %v with 100ms a write", d)
	}
	p.SetDelay(0)
	p.Reset()
	if _, err := roundTrip(c, ""); err == nil {
		t.Fatal("a connection open across the reset still works")
	}
	c2, err := roundTrip(nil, p.Addr())
	if err != nil {
		t.Fatalf("a new connection after the reset: %v", err)
	}
	c2.Close()
}
