package allreduce

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestRingListenerOutlivesGenerations checks that closing one generation's
// view leaves the port bound for the next, and that closing the listener
// frees it.
func TestRingListenerOutlivesGenerations(t *testing.T) {
	r, err := ListenRing(context.Background(), "127.0.0.1:0", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr := r.Addr().String()
	for gen := 1; gen <= 3; gen++ {
		ln := r.Generation()
		if ln.Addr().String() != addr {
			t.Fatalf("generation %d listens on %s, want %s", gen, ln.Addr(), addr)
		}
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Close()
			}
			accepted <- err
		}()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("generation %d: %v", gen, err)
		}
		c.Close()
		if err := <-accepted; err != nil {
			t.Fatalf("generation %d: accept: %v", gen, err)
		}
		ln.Close()
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("generation %d: accept after close: %v", gen, err)
		}
		// Between generations the port stays taken.
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			t.Fatalf("generation %d: port %s was free after the view closed", gen, addr)
		}
	}
	// A view blocked in Accept returns when the listener closes.
	ln := r.Generation()
	blocked := make(chan error, 1)
	go func() { _, err := ln.Accept(); blocked <- err }()
	r.Close()
	select {
	case err := <-blocked:
		if err == nil {
			t.Fatal("accept succeeded on a closed listener")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("accept hung after the listener closed")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still bound after Close: %v", err)
	}
	l.Close()
}
