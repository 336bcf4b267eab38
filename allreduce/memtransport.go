package allreduce

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// MemNetwork is the in-memory twin of the gRPC transport: n ranks in one
// process, each link a bounded queue of copied frames. Closing a rank's
// transport breaks both of its links, as a crashed process would.
type MemNetwork struct {
	links      []*memLink // links[i] carries frames from rank i to rank i+1
	transports []*MemTransport
}

type memFrame struct {
	h   Header
	buf []byte
}

type memLink struct {
	frames chan memFrame
	free   chan []byte
	closed chan struct{}
	once   sync.Once
	failed int // rank reported failed by the closer, or -1; set before closed
	by     int // the closer
}

func (l *memLink) close(failed, by int) {
	l.once.Do(func() {
		l.failed, l.by = failed, by
		close(l.closed)
	})
}

// closedErr is the error of a call that found the link closed.
func (t *MemTransport) closedErr(l *memLink, neighbour int, op string) error {
	if l.by == t.rank {
		return fmt.Errorf("allreduce: rank %d: %s: %w", t.rank, op, ErrClosed)
	}
	if l.failed >= 0 {
		return t.peerErr(l.failed, op, reportedErr(l.by))
	}
	return t.peerErr(neighbour, op, ErrPeerClosed)
}

// NewMemNetwork returns n connected in-memory transports. window is the
// number of frames a link holds before Send blocks (0: 4); timeout is the
// stall timeout of every blocking call (0: 10s).
func NewMemNetwork(n, window int, timeout time.Duration) (*MemNetwork, error) {
	if n < 1 {
		return nil, fmt.Errorf("allreduce: memory network of %d ranks", n)
	}
	if window <= 0 {
		window = 4
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	m := &MemNetwork{}
	for i := 0; i < n; i++ {
		m.links = append(m.links, &memLink{
			frames: make(chan memFrame, window),
			free:   make(chan []byte, window+1),
			closed: make(chan struct{}),
			failed: -1,
		})
	}
	defer func() {
		for i, t := range m.transports {
			t.leftT = m.transports[mod(i-1, n)]
		}
	}()
	for i := 0; i < n; i++ {
		m.transports = append(m.transports, &MemTransport{
			rank: i, size: n,
			left:  m.links[mod(i-1, n)],
			right: m.links[i],
			sendW: newWaiter(timeout),
			recvW: newWaiter(timeout),
		})
	}
	return m, nil
}

// Transport returns rank's transport.
func (m *MemNetwork) Transport(rank int) *MemTransport { return m.transports[rank] }

// MemTransport is one rank of a MemNetwork.
type MemTransport struct {
	rank, size  int
	left, right *memLink
	sendW       *waiter
	recvW       *waiter
	frag        [1][]byte
	leftT       *MemTransport
	waiting     atomic.Bool // in Recv; the twin of the gRPC transport's pings
}

func (t *MemTransport) Rank() int { return t.rank }
func (t *MemTransport) Size() int { return t.size }

func (t *MemTransport) peerErr(peer int, op string, err error) error {
	return &PeerError{Rank: t.rank, Peer: peer, Op: op, Err: err}
}

func (t *MemTransport) rightRank() int { return mod(t.rank+1, t.size) }
func (t *MemTransport) leftRank() int  { return mod(t.rank-1, t.size) }

// Send copies payload, so WaitAcked never has to wait.
func (t *MemTransport) Send(ctx context.Context, h Header, payload []byte) error {
	select {
	case <-t.right.closed:
		return t.closedErr(t.right, t.rightRank(), "send")
	default:
	}
	var buf []byte
	select {
	case buf = <-t.right.free:
	default:
	}
	if cap(buf) < len(payload) {
		buf = make([]byte, len(payload))
	}
	buf = buf[:len(payload)]
	copy(buf, payload)
	f := memFrame{h: h, buf: buf}
	f.h.Len = uint32(len(payload))
	timer := t.sendW.arm()
	defer t.sendW.stop()
	select {
	case t.right.frames <- f:
		return nil
	case <-t.right.closed:
		return t.closedErr(t.right, t.rightRank(), "send")
	case <-ctx.Done():
		return fmt.Errorf("allreduce: rank %d: send: %w", t.rank, ctx.Err())
	case <-timer:
		return t.peerErr(t.rightRank(), "send", timeoutErr(t.sendW.d))
	}
}

// Acked reports every frame consumed: Send copied the payload.
func (t *MemTransport) Acked() uint64 { return math.MaxUint64 }

// WaitAcked returns at once: Send copied the payload.
func (t *MemTransport) WaitAcked(ctx context.Context, seq uint64) error {
	return nil
}

func (t *MemTransport) Recv(ctx context.Context, fn func(Header, [][]byte) error) error {
	t.waiting.Store(true)
	defer t.waiting.Store(false)
	timer := t.recvW.arm()
	extended := false
	var f memFrame
wait:
	select {
	case f = <-t.left.frames:
		t.recvW.stop()
	case <-t.left.closed:
		t.recvW.stop()
		// Frames sent before the close are still delivered.
		select {
		case f = <-t.left.frames:
		default:
			return t.closedErr(t.left, t.leftRank(), "recv")
		}
	case <-ctx.Done():
		t.recvW.stop()
		return fmt.Errorf("allreduce: rank %d: recv: %w", t.rank, ctx.Err())
	case <-timer:
		// A left neighbour that is itself waiting for a frame is alive:
		// give it one more timeout, so that the rank next to a stalled one
		// reports it first (see GRPCTransport's pings).
		if !extended && t.leftT.waiting.Load() {
			extended = true
			timer = t.recvW.arm()
			goto wait
		}
		return t.peerErr(t.leftRank(), "recv", timeoutErr(t.recvW.d))
	}
	t.frag[0] = f.buf
	err := fn(f.h, t.frag[:])
	t.frag[0] = nil
	select {
	case t.left.free <- f.buf:
	default:
	}
	return err
}

// Close breaks both links of this rank.
func (t *MemTransport) Close() error {
	t.left.close(-1, t.rank)
	t.right.close(-1, t.rank)
	return nil
}

// AbortWith breaks both links, telling the neighbours that rank failed.
func (t *MemTransport) AbortWith(failed int) error {
	t.left.close(failed, t.rank)
	t.right.close(failed, t.rank)
	return nil
}
