package allreduce

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// LinkShape is the rate and latency a Shaped transport gives each link.
type LinkShape struct {
	// BytesPerSecond (> 0) is the most payload+header bytes a link carries
	// per second; +Inf leaves only the latency.
	BytesPerSecond float64
	// Latency (≥ 0) is added to every frame's delivery.
	Latency time.Duration
}

// Check reports whether s is a shape Shaped accepts.
func (s LinkShape) Check() error {
	if !(s.BytesPerSecond > 0) || s.Latency < 0 {
		return fmt.Errorf("allreduce: link shape of %v bytes/s and latency %v (want a rate > 0 and a latency ≥ 0)",
			s.BytesPerSecond, s.Latency)
	}
	return nil
}

// occupancy is how long a frame of b bytes (header included) holds the
// link.
func (s LinkShape) occupancy(b int) time.Duration {
	return time.Duration(math.Ceil(float64(b) / s.BytesPerSecond * 1e9))
}

// Clock is the time source of a shaped link: real time (Shaped) or one
// a test or a simulator drives (ShapedWith).
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// shapedQueue is the most frames a shaped link holds between Send and the
// wrapped transport; Send blocks while it is full, i.e. while the frames
// ahead are being serialised.
const shapedQueue = 64

// Shaped wraps t so that frames to the right neighbour leave no faster
// than shape allows. The link is a queue (a serialisation model): a frame
// of b bytes (payload and header) occupies the link for b/rate seconds
// after the previous one, or from when Send is called if the link is idle,
// and is handed to t Latency after that. Receiving is t's own.
//
// Send stamps each frame with its departure time and queues it without
// copying; one goroutine of the wrapper sleeps until that time and
// forwards the frame with t.Send, and is the only caller of t.Send and
// t.WaitAcked. A frame that Send accepted is forwarded whatever becomes of
// Send's ctx, as a real link's would be. WaitAcked(seq) returns once frame
// seq has been forwarded and t.WaitAcked(seq) has returned, so the caller's
// payload is read until then, as Transport requires. Close and AbortWith
// stop that goroutine, drop the frames still queued, and close (abort) t.
// If the goroutine's t.Send fails, every later call returns that error.
//
// A shaped link is a network link: the wrapper does not implement
// LocalLinker, so a Comm encodes with its codec on it even where t's links
// stay on one host. It implements Aborter (with t's AbortWith, Abort or
// Close), and it reports acknowledgements without waiting (what a Comm uses
// to fuse its receives, fuse.go) only where t does: then a frame counts as
// acknowledged once it is forwarded and t reports it acknowledged.
//
// Shaped panics if shape.Check fails.
func Shaped(t Transport, shape LinkShape) Transport {
	return ShapedWith(t, shape, realClock{})
}

// ShapedWith is Shaped with the time taken from clock.
func ShapedWith(t Transport, shape LinkShape, clock Clock) Transport {
	if err := shape.Check(); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &shaped{
		t: t, shape: shape, clock: clock,
		ctx: ctx, cancel: cancel,
		queue: make(chan shapedFrame, shapedQueue),
		acks:  make(chan ackRequest),
		done:  make(chan struct{}),
	}
	go s.forward()
	if _, ok := t.(ackReporter); ok {
		return shapedAcked{s}
	}
	return s
}

type shapedFrame struct {
	h       Header
	payload []byte
	at      time.Time // when it is handed to the wrapped transport
}

type ackRequest struct {
	ctx   context.Context
	seq   uint64
	reply chan error
}

type shaped struct {
	t     Transport
	shape LinkShape
	clock Clock

	free time.Time // owned by the sender: when the link finishes the last queued frame

	ctx      context.Context // the forwarder's sends; ended by halt
	cancel   context.CancelFunc
	queue    chan shapedFrame
	acks     chan ackRequest
	haltOnce sync.Once
	done     chan struct{} // closed when the forwarder has returned
	err      error         // why it returned; written before done is closed

	forwarded atomic.Uint64 // the last frame handed to t
}

// shapedAcked is a shaped link over a transport that reports
// acknowledgements.
type shapedAcked struct{ *shaped }

// Acked is the last frame both forwarded and acknowledged by t.
func (s shapedAcked) Acked() uint64 {
	return min(s.forwarded.Load(), s.t.(ackReporter).Acked())
}

func (s *shaped) Rank() int { return s.t.Rank() }
func (s *shaped) Size() int { return s.t.Size() }

func (s *shaped) closedErr(op string) error {
	return fmt.Errorf("allreduce: rank %d: %s: %w", s.t.Rank(), op, ErrClosed)
}

// Send stamps the frame with its departure time and queues it.
func (s *shaped) Send(ctx context.Context, h Header, payload []byte) error {
	select {
	case <-s.done:
		return s.err
	default:
	}
	start := s.clock.Now()
	if s.free.After(start) {
		start = s.free
	}
	finish := start.Add(s.shape.occupancy(HeaderLen + len(payload)))
	select {
	case s.queue <- shapedFrame{h: h, payload: payload, at: finish.Add(s.shape.Latency)}:
		s.free = finish
		return nil
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return fmt.Errorf("allreduce: rank %d: send: %w", s.t.Rank(), ctx.Err())
	}
}

// WaitAcked waits until frame seq has been forwarded and t has it
// acknowledged.
func (s *shaped) WaitAcked(ctx context.Context, seq uint64) error {
	if a, ok := s.t.(ackReporter); ok && s.forwarded.Load() >= seq && a.Acked() >= seq {
		return nil
	}
	req := ackRequest{ctx: ctx, seq: seq, reply: make(chan error, 1)}
	select {
	case s.acks <- req:
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return fmt.Errorf("allreduce: rank %d: ack: %w", s.t.Rank(), ctx.Err())
	}
	select {
	case err := <-req.reply:
		return err
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return fmt.Errorf("allreduce: rank %d: ack: %w", s.t.Rank(), ctx.Err())
	}
}

func (s *shaped) Recv(ctx context.Context, fn func(Header, [][]byte) error) error {
	return s.t.Recv(ctx, fn)
}

// halt stops the forwarder's waits and sends.
func (s *shaped) halt() {
	s.haltOnce.Do(s.cancel)
}

// Close stops the forwarder, dropping queued frames, and closes t.
func (s *shaped) Close() error {
	s.halt()
	err := s.t.Close()
	<-s.done
	return err
}

// AbortWith stops the forwarder like Close and aborts t, telling the
// neighbours that rank failed where t can.
func (s *shaped) AbortWith(failed int) error {
	s.halt()
	var err error
	switch a := s.t.(type) {
	case Aborter:
		err = a.AbortWith(failed)
	case interface{ Abort() error }:
		err = a.Abort()
	default:
		err = s.t.Close()
	}
	<-s.done
	return err
}

// forward is the wrapper's goroutine: it hands each queued frame to t at
// its departure time and serves WaitAcked between frames. At most one
// acknowledgement request is pending (WaitAcked is called by the sender
// only); a newer one replaces one its caller gave up on.
func (s *shaped) forward() {
	defer close(s.done)
	var (
		f       shapedFrame
		have    bool
		timer   <-chan time.Time
		pending ackRequest
	)
	stopped := s.ctx.Done()
	for {
		if pending.reply != nil && s.forwarded.Load() >= pending.seq {
			pending.reply <- s.t.WaitAcked(pending.ctx, pending.seq)
			pending = ackRequest{}
		}
		if !have {
			select {
			case f = <-s.queue:
				have = true
				timer = nil
				if d := f.at.Sub(s.clock.Now()); d > 0 {
					timer = s.clock.After(d)
				}
			case pending = <-s.acks:
			case <-stopped:
				s.err = s.closedErr("send")
				return
			}
			continue
		}
		if timer != nil {
			select {
			case <-timer:
				timer = nil
			case pending = <-s.acks:
				continue
			case <-stopped:
				s.err = s.closedErr("send")
				return
			}
		}
		if err := s.t.Send(s.ctx, f.h, f.payload); err != nil {
			if s.ctx.Err() != nil {
				err = s.closedErr("send")
			}
			s.err = err
			return
		}
		s.forwarded.Store(f.h.Seq)
		f, have = shapedFrame{}, false
	}
}
