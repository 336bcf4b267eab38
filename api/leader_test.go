package api

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// coordStub is a coordinator whose Status answers with answer (nil: a
// normal reply) and counts the calls.
type coordStub struct {
	answer func(context.Context) error
	calls  atomic.Int32
}

func (s *coordStub) Join(context.Context, *JoinRequest) (*JoinReply, error) {
	return nil, status.Error(codes.Unimplemented, "stub")
}
func (s *coordStub) Heartbeat(context.Context, *HeartbeatRequest) (*HeartbeatReply, error) {
	return nil, status.Error(codes.Unimplemented, "stub")
}
func (s *coordStub) ReportCheckpoint(context.Context, *CheckpointReport) (*CheckpointAck, error) {
	return nil, status.Error(codes.Unimplemented, "stub")
}
func (s *coordStub) Leave(context.Context, *LeaveRequest) (*LeaveReply, error) {
	return nil, status.Error(codes.Unimplemented, "stub")
}
func (s *coordStub) Status(ctx context.Context, _ *StatusRequest) (*StatusReply, error) {
	s.calls.Add(1)
	if s.answer != nil {
		if err := s.answer(ctx); err != nil {
			return nil, err
		}
	}
	return &StatusReply{State: "running"}, nil
}

// standby answers like a coordinator that is not the leader.
func standby(msg string) *coordStub {
	return &coordStub{answer: func(context.Context) error { return status.Error(codes.Unavailable, msg) }}
}

// serve runs s on a loopback port until the test ends.
func serve(t *testing.T, s *coordStub) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	RegisterControlServer(g, s)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

func newLeaderClient(t *testing.T, timeout time.Duration, addrs ...string) *LeaderClient {
	t.Helper()
	c, err := NewLeaderClient(addrs, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func callStatus(ctx context.Context, c *LeaderClient) error {
	return c.Call(ctx, func(ctx context.Context, cl *ControlClient) error {
		_, err := cl.Status(ctx, &StatusRequest{})
		return err
	})
}

// TestLeaderClientFollowsLeader checks that Call moves past a standby to
// the leader and starts with the leader from then on.
func TestLeaderClientFollowsLeader(t *testing.T) {
	sb, leader := standby("not the leader"), &coordStub{}
	c := newLeaderClient(t, 5*time.Second, serve(t, sb), serve(t, leader))
	for i := 1; i <= 3; i++ {
		if err := callStatus(context.Background(), c); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := leader.calls.Load(); got != int32(i) {
			t.Fatalf("call %d: the leader got %d calls, want %d", i, got, i)
		}
		if got := sb.calls.Load(); got != 1 {
			t.Fatalf("call %d: the standby got %d calls, want 1 (the leader is remembered)", i, got)
		}
	}
}

// TestLeaderClientSkipsHungCoordinator checks that a coordinator that does
// not answer within the timeout is passed over like a standby.
func TestLeaderClientSkipsHungCoordinator(t *testing.T) {
	hung := &coordStub{answer: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	leader := &coordStub{}
	c := newLeaderClient(t, 200*time.Millisecond, serve(t, hung), serve(t, leader))
	if err := callStatus(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if hung.calls.Load() != 1 || leader.calls.Load() != 1 {
		t.Fatalf("calls: hung %d, leader %d; want 1, 1", hung.calls.Load(), leader.calls.Load())
	}
}

// TestLeaderClientNoLeader checks that when every coordinator is a standby
// Call tries each once and returns the last one's error.
func TestLeaderClientNoLeader(t *testing.T) {
	a, b := standby("standby a"), standby("standby b")
	c := newLeaderClient(t, 5*time.Second, serve(t, a), serve(t, b))
	err := callStatus(context.Background(), c)
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "standby b" {
		t.Fatalf("err = %v, want Unavailable from standby b", err)
	}
	if a.calls.Load() != 1 || b.calls.Load() != 1 {
		t.Fatalf("calls: a %d, b %d; want 1, 1", a.calls.Load(), b.calls.Load())
	}
}

// TestLeaderClientStopsWhenCancelled checks that once ctx ends Call tries
// no further coordinator.
func TestLeaderClientStopsWhenCancelled(t *testing.T) {
	sb, leader := standby("not the leader"), &coordStub{}
	c := newLeaderClient(t, 5*time.Second, serve(t, sb), serve(t, leader))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := c.Call(ctx, func(ctx context.Context, cl *ControlClient) error {
		_, err := cl.Status(ctx, &StatusRequest{})
		cancel() // the caller gives up while the standby answers
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if sb.calls.Load() != 1 || leader.calls.Load() != 0 {
		t.Fatalf("calls: standby %d, leader %d; want 1, 0", sb.calls.Load(), leader.calls.Load())
	}
}

func TestNewLeaderClientNeedsAnAddress(t *testing.T) {
	if _, err := NewLeaderClient(nil, time.Second); err == nil || err.Error() != "api: no coordinator address" {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckAddress(t *testing.T) {
	for _, ok := range []string{"coordinator:7070", "10.0.0.1:1", "[::1]:65535", "a.b.svc.cluster.local:7070"} {
		if err := CheckAddress(ok); err != nil {
			t.Errorf("CheckAddress(%q) = %v", ok, err)
		}
	}
	for addr, want := range map[string]string{
		"coordinator":       "not HOST:PORT",
		"coordinator:":      "no port",
		":7070":             "no host",
		"coordinator:0":     "port",
		"coordinator:65536": "port",
		"coordinator:grpc":  "port",
		"a:b:c":             "not HOST:PORT",
		"":                  "not HOST:PORT",
	} {
		if err := CheckAddress(addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckAddress(%q) = %v, want an error saying %q", addr, err, want)
		}
	}
	if _, err := NewLeaderClient([]string{"ok:1", "coordinator:"}, time.Second); err == nil || !strings.Contains(err.Error(), "coordinator:") {
		t.Errorf("NewLeaderClient with an address without a port: %v", err)
	}
}

// Diagnose calls transient what may cure itself (a refused connection, a
// standby) and names what cannot (a server without the control service).
func TestDiagnose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	c := newLeaderClient(t, time.Second, closed)
	err = callStatus(context.Background(), c)
	if status.Code(err) != codes.Unavailable || c.Diagnose(context.Background(), err) != nil {
		t.Errorf("a closed port: %v, diagnosed %v; want transient", err, c.Diagnose(context.Background(), err))
	}
	sb := newLeaderClient(t, time.Second, serve(t, standby("standby coordinator b")))
	err = callStatus(context.Background(), sb)
	if d := sb.Diagnose(context.Background(), err); status.Code(err) != codes.Unavailable || d != nil {
		t.Errorf("a standby: %v, diagnosed %v; want transient", err, d)
	}
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	other := newLeaderClient(t, time.Second, ln.Addr().String())
	err = callStatus(context.Background(), other)
	if d := other.Diagnose(context.Background(), err); d == nil || !strings.Contains(d.Error(), ln.Addr().String()) {
		t.Errorf("a gRPC server without the control service: %v, diagnosed %v; want an error naming it", err, d)
	}
}
