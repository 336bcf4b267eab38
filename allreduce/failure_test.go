package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// killingTransport kills (aborts) its rank when the kill-th transport call
// begins, as a crash at that point would.
type killingTransport struct {
	Transport
	calls atomic.Int64
	kill  int64
}

func (k *killingTransport) tick() error {
	if k.calls.Add(1) == k.kill {
		if a, ok := k.Transport.(interface{ Abort() error }); ok {
			a.Abort()
		} else {
			k.Transport.Close()
		}
		return errors.New("killed")
	}
	if k.calls.Load() > k.kill {
		return errors.New("killed")
	}
	return nil
}

// LocalLinks, MaxFrame and Acked pass through what the wrapped transport
// says, so that the victim picks its links' codecs and fuses its receives
// as it would unwrapped.
func (k *killingTransport) LocalLinks() (right, left bool) {
	if l, ok := k.Transport.(LocalLinker); ok {
		return l.LocalLinks()
	}
	return false, false
}

func (k *killingTransport) MaxFrame() int {
	if l, ok := k.Transport.(LocalLinker); ok {
		return l.MaxFrame()
	}
	return 0
}

func (k *killingTransport) Acked() uint64 {
	if a, ok := k.Transport.(ackReporter); ok {
		return a.Acked()
	}
	return 0
}

func (k *killingTransport) Send(ctx context.Context, h Header, p []byte) error {
	if err := k.tick(); err != nil {
		return err
	}
	return k.Transport.Send(ctx, h, p)
}

func (k *killingTransport) Recv(ctx context.Context, fn func(Header, [][]byte) error) error {
	if err := k.tick(); err != nil {
		return err
	}
	return k.Transport.Recv(ctx, fn)
}

// opsPerRank is the workload of the kill tests: a few all-reduces of
// different lengths, a broadcast and a barrier.
func killWorkload(ctx context.Context, c *Comm, ops int) error {
	for i := 0; i < ops; i++ {
		buf := make([]float32, 50+37*i)
		for j := range buf {
			buf[j] = float32(c.Rank())
		}
		var err error
		switch i % 4 {
		case 0, 1:
			err = c.AllReduce(ctx, buf)
		case 2:
			err = c.Broadcast(ctx, i%c.Size(), buf)
		case 3:
			err = c.Barrier(ctx)
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
	}
	return nil
}

// TestKillRandomPoints kills one rank at 100 random points (a random
// transport call of a random rank in a random ring) and checks that every
// survivor returns an error naming a peer, and that nothing hangs or leaks.
func TestKillRandomPoints(t *testing.T) {
	const ops = 8
	r := newTestRand(77)
	for trial := 0; trial < 100; trial++ {
		n := 2 + r.IntN(7)
		victim := r.IntN(n)
		// Every other trial sends bf16, where survivors' receivers write
		// the next payloads themselves.
		codec := killCodecs[trial%len(killCodecs)]
		// Killing the victim within its first ops-1 operations guarantees
		// that the last operation cannot complete anywhere.
		kill := 1 + r.Int64N(countCalls(t, n, victim, ops-1, codec))
		net, err := NewMemNetwork(n, 1+r.IntN(4), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ts := make([]Transport, n)
		var killer *killingTransport
		for i := range ts {
			ts[i] = net.Transport(i)
			if i == victim {
				killer = &killingTransport{Transport: ts[i], kill: kill}
				ts[i] = killer
			}
		}
		errs := runRing(t, ts, fixedCfg(Config{Chunk: 16, Codec: codec}), func(ctx context.Context, c *Comm) error {
			return killWorkload(ctx, c, ops)
		})
		if killer.calls.Load() < kill {
			t.Fatalf("trial %d: victim made %d calls, never reached its kill point %d", trial, killer.calls.Load(), kill)
		}
		for rank, err := range errs {
			if rank == victim {
				continue
			}
			var pe *PeerError
			if !errors.As(err, &pe) || pe.Peer != victim {
				t.Fatalf("trial %d (n=%d victim=%d kill=%d): survivor %d returned %v, want a PeerError naming %d", trial, n, victim, kill, rank, err, victim)
			}
		}
	}
}

// killCodecs are the codecs the kill tests alternate between.
var killCodecs = []Codec{FP32{}, BF16{}}

// countCalls returns how many transport calls rank makes in ops
// operations of killWorkload with codec.
func countCalls(t *testing.T, n, rank, ops int, codec Codec) int64 {
	net, err := NewMemNetwork(n, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]Transport, n)
	var counter *killingTransport
	for i := range ts {
		ts[i] = net.Transport(i)
		if i == rank {
			counter = &killingTransport{Transport: ts[i], kill: 1 << 62}
			ts[i] = counter
		}
	}
	for r, err := range runRing(t, ts, fixedCfg(Config{Chunk: 16, Codec: codec}), func(ctx context.Context, c *Comm) error {
		return killWorkload(ctx, c, ops)
	}) {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return counter.calls.Load()
}

// TestStalledPeerMem checks that a rank that stops taking part (alive,
// links open, silent) makes every other rank fail within the timeout, and
// that its neighbours name it.
func TestStalledPeerMem(t *testing.T) {
	const n, stalled = 5, 2
	var survivors sync.WaitGroup
	survivors.Add(n - 1)
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 8}), 200*time.Millisecond, func(ctx context.Context, c *Comm) error {
		if c.Rank() == stalled {
			survivors.Wait() // silent until every other rank has given up
			return nil
		}
		defer survivors.Done()
		return c.AllReduce(ctx, make([]float32, 100))
	})
	checkStallErrors(t, errs, n, stalled)
}

// checkStallErrors holds the rank fed by the stalled one to a timeout
// naming it, and every other survivor to some PeerError: the other ranks'
// own timers race with the abort notices, so who they name depends on
// timing.
func checkStallErrors(t *testing.T, errs []error, n, stalled int) {
	t.Helper()
	for rank, err := range errs {
		var pe *PeerError
		if rank != stalled && !errors.As(err, &pe) {
			t.Fatalf("rank %d: %v, want a PeerError", rank, err)
		}
	}
	right := mod(stalled+1, n) // receives from the stalled rank
	var pe *PeerError
	if !errors.As(errs[right], &pe) || pe.Peer != stalled || !errors.Is(errs[right], ErrPeerTimeout) {
		t.Errorf("rank %d: %v, want a timeout naming peer %d", right, errs[right], stalled)
	}
}
