package allreduce

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Transport carries frames around one ring: to the right neighbour
// ((rank+1) mod size) and from the left one ((rank-1) mod size).
//
// Send and WaitAcked are called by one goroutine (the sender), Recv by
// another (the receiver); Close may be called from anywhere, at any time,
// and makes every pending and later call return an error.
//
// Every blocking call returns a *PeerError naming the neighbour if the
// link breaks or the neighbour makes no progress within the transport's
// timeout, and ctx.Err() (wrapped) if ctx ends first.
type Transport interface {
	// Rank is this transport's position in the ring; Size the ring's length.
	Rank() int
	Size() int
	// Send queues one data frame for the right neighbour. The transport may
	// read payload until WaitAcked(h.Seq) returns, so the caller must not
	// modify it before then. Send blocks while the link's window is full.
	Send(ctx context.Context, h Header, payload []byte) error
	// WaitAcked blocks until the right neighbour has consumed every frame up
	// to and including seq.
	WaitAcked(ctx context.Context, seq uint64) error
	// Recv waits for the next frame from the left neighbour and calls fn
	// with it. The payload is given as the pieces it arrived in (their
	// concatenation is the payload), valid only during fn. The frame is
	// acknowledged after fn returns nil; fn's error is returned as is. A
	// Recv blocked when ctx ends may only return once the transport is
	// aborted (Abort, or Close for transports without Abort).
	Recv(ctx context.Context, fn func(h Header, payload [][]byte) error) error
	// Close tears down both links. Neighbours see their next (or pending)
	// call fail with a *PeerError naming this rank.
	Close() error
}

// ErrPeerTimeout is wrapped by a PeerError when a neighbour made no
// progress within the timeout.
var ErrPeerTimeout = errors.New("no progress within the timeout")

// ErrPeerClosed is wrapped by a PeerError when a link was closed.
var ErrPeerClosed = errors.New("link closed")

// ErrPeerFailed is wrapped by a PeerError whose Peer was reported failed
// by a neighbour (the neighbour gave up because of it).
var ErrPeerFailed = errors.New("failed")

// LocalLinker is implemented by transports whose links may bypass the
// network (GRPCTransport's shared-memory rings).
type LocalLinker interface {
	// LocalLinks reports whether the link to the right neighbour and the
	// one from the left neighbour stay on this host.
	LocalLinks() (right, left bool)
	// MaxFrame is the largest payload a frame may carry.
	MaxFrame() int
}

// Aborter is implemented by transports that can tell both neighbours
// which rank caused the failure before tearing the links down, so that
// every survivor's error names the same failed rank.
type Aborter interface {
	// AbortWith tears down both links like Close, after a best-effort
	// notice that rank failed.
	AbortWith(failed int) error
}

// reportedErr is the error of a neighbour's abort notice.
func reportedErr(by int) error {
	return fmt.Errorf("%w (reported by rank %d)", ErrPeerFailed, by)
}

// ErrClosed is returned for operations on a closed Comm or Transport.
var ErrClosed = errors.New("allreduce: closed")

// PeerError reports a failure of the link between Rank and Peer.
type PeerError struct {
	Rank int    // the rank that observed the failure
	Peer int    // the neighbour that failed or stalled
	Op   string // what Rank was doing: "send", "recv", "ack", "dial"
	Err  error
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("allreduce: rank %d: peer %d: %s: %v", e.Rank, e.Peer, e.Op, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

// waiter wraps a reusable timer for the stall timeout of one goroutine.
type waiter struct {
	d time.Duration
	t *time.Timer
}

func newWaiter(d time.Duration) *waiter {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{d: d, t: t}
}

// arm (re)starts the timer and returns its channel.
func (w *waiter) arm() <-chan time.Time {
	w.t.Reset(w.d)
	return w.t.C
}

func (w *waiter) stop() { w.t.Stop() }

func timeoutErr(d time.Duration) error {
	return fmt.Errorf("%w (%v)", ErrPeerTimeout, d)
}
