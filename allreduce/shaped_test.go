package allreduce

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

// TestShapedRing all-reduces over a shaped 4-rank ring: the sums are
// bit-identical to the unshaped ring's, and the all-reduce takes at least
// the time the links need to carry each rank's 2(N−1)/N of the buffer.
// shapedRing returns the transports of an in-memory ring of n ranks, each
// wrapped by Shaped with shape when shaped is set.
func shapedRing(t *testing.T, n int, shaped bool, shape LinkShape) []Transport {
	t.Helper()
	net, err := NewMemNetwork(n, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]Transport, n)
	for i := range ts {
		ts[i] = net.Transport(i)
		if shaped {
			ts[i] = Shaped(ts[i], shape)
		}
	}
	return ts
}

func TestShapedRing(t *testing.T) {
	const n, length = 4, 1 << 20
	shape := LinkShape{BytesPerSecond: 20e6, Latency: time.Millisecond}
	run := func(shaped bool) ([][]float32, time.Duration) {
		ts := shapedRing(t, n, shaped, shape)
		bufs := make([][]float32, n)
		for r := range bufs {
			bufs[r] = make([]float32, length)
			fillRank(bufs[r], r, 5)
		}
		start := time.Now()
		errs := runRing(t, ts, fixedCfg(Config{}), func(ctx context.Context, c *Comm) error {
			return c.AllReduce(ctx, bufs[c.Rank()])
		})
		elapsed := time.Since(start)
		for r, err := range errs {
			if err != nil {
				t.Fatalf("shaped %v: rank %d: %v", shaped, r, err)
			}
		}
		return bufs, elapsed
	}
	want, _ := run(false)
	got, elapsed := run(true)
	for r := range got {
		for i := range got[r] {
			if math.Float32bits(got[r][i]) != math.Float32bits(want[0][i]) {
				t.Fatalf("rank %d element %d = %v, unshaped ring has %v", r, i, got[r][i], want[0][i])
			}
		}
	}
	bound := time.Duration(2 * (n - 1) * 4 * length / n / shape.BytesPerSecond * float64(time.Second))
	if elapsed < bound {
		t.Fatalf("shaped all-reduce took %v, under the links' lower bound %v", elapsed, bound)
	}
}

// TestShapedFusedBF16 runs a lossy fixed-width codec over shaped links,
// where the Comm fuses its receives: the payload buffers it hands to Send
// come back to it only once the shaped link reports them acknowledged, so
// a frame still queued must never count as acknowledged.
func TestShapedFusedBF16(t *testing.T) {
	const n, length, chunk = 3, 1 << 16, 1024
	var fused [n]int
	run := func(shaped bool) [][]float32 {
		ts := shapedRing(t, n, shaped, LinkShape{BytesPerSecond: 50e6})
		bufs := make([][]float32, n)
		errs := runRing(t, ts, fixedCfg(Config{Codec: BF16{}, Chunk: chunk}), func(ctx context.Context, c *Comm) error {
			buf := make([]float32, length)
			fillRank(buf, c.Rank(), 9)
			bufs[c.Rank()] = buf
			for range 2 {
				if err := c.AllReduce(ctx, buf); err != nil {
					return err
				}
			}
			fused[c.Rank()] = c.fusedSends
			return nil
		})
		for r, err := range errs {
			if err != nil {
				t.Fatalf("shaped %v: rank %d: %v", shaped, r, err)
			}
		}
		return bufs
	}
	want := run(false)
	got := run(true)
	for r := range got {
		for i := range got[r] {
			if math.Float32bits(got[r][i]) != math.Float32bits(want[0][i]) {
				t.Fatalf("rank %d element %d = %v, unshaped ring has %v", r, i, got[r][i], want[0][i])
			}
		}
	}
	if fused == [n]int{} {
		t.Fatal("no rank fused a send over shaped links")
	}
}

// manualClock is a Clock the test advances by hand. slept receives each
// time a goroutine starts waiting on it.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []manualWaiter
	slept   chan time.Duration
}

type manualWaiter struct {
	at time.Time
	ch chan time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Unix(1000, 0), slept: make(chan time.Duration, 16)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	w := manualWaiter{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	c.slept <- d
	return w.ch
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// recordingTransport records when each frame was sent, by clock.
type recordingTransport struct {
	clock  *manualClock
	mu     sync.Mutex
	sent   []uint64
	at     []time.Time
	closed chan struct{}
	once   sync.Once
}

func (r *recordingTransport) Rank() int { return 0 }
func (r *recordingTransport) Size() int { return 2 }
func (r *recordingTransport) Send(ctx context.Context, h Header, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, h.Seq)
	r.at = append(r.at, r.clock.Now())
	return nil
}
func (r *recordingTransport) WaitAcked(context.Context, uint64) error { return nil }
func (r *recordingTransport) Recv(ctx context.Context, fn func(Header, [][]byte) error) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.closed:
		return ErrClosed
	}
}
func (r *recordingTransport) Close() error { r.once.Do(func() { close(r.closed) }); return nil }

func (r *recordingTransport) log() ([]uint64, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.sent...), append([]time.Time(nil), r.at...)
}

// TestShapedSchedule checks, on a clock the test drives, that frames leave
// back to back at the link's rate, each Latency after its serialisation
// ends, that an idle link starts a frame at once, and that WaitAcked
// waits for the frame to be forwarded.
func TestShapedSchedule(t *testing.T) {
	clk := newManualClock()
	t0 := clk.Now()
	rec := &recordingTransport{clock: clk, closed: make(chan struct{})}
	shape := LinkShape{BytesPerSecond: 1000, Latency: 500 * time.Millisecond}
	tr := ShapedWith(rec, shape, clk)
	defer tr.Close()
	if _, ok := tr.(ackReporter); ok {
		t.Fatal("shaped link reports acknowledgements its transport does not")
	}
	ctx := context.Background()
	payload := make([]byte, 1000-HeaderLen) // one second of the link
	send := func(seq uint64) {
		t.Helper()
		if err := tr.Send(ctx, Header{Kind: KindData, Seq: seq}, payload); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want ...time.Duration) {
		t.Helper()
		seqs, at := rec.log()
		if len(seqs) != len(want) {
			t.Fatalf("%d frames forwarded, want %d", len(seqs), len(want))
		}
		for i := range seqs {
			if seqs[i] != uint64(i+1) || at[i].Sub(t0) != want[i] {
				t.Fatalf("frame %d: seq %d forwarded at %v, want seq %d at %v", i, seqs[i], at[i].Sub(t0), i+1, want[i])
			}
		}
	}
	for seq := uint64(1); seq <= 3; seq++ {
		send(seq)
	}
	if d := <-clk.slept; d != 1500*time.Millisecond {
		t.Fatalf("first frame waits %v, want 1.5s", d)
	}
	clk.Advance(1499 * time.Millisecond)
	expect()
	clk.Advance(time.Millisecond)
	<-clk.slept
	expect(1500 * time.Millisecond)
	if err := tr.WaitAcked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	go func() { acked <- tr.WaitAcked(ctx, 2) }()
	select {
	case err := <-acked:
		t.Fatalf("WaitAcked(2) returned %v before frame 2 left", err)
	default:
	}
	clk.Advance(time.Second)
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	<-clk.slept
	expect(1500*time.Millisecond, 2500*time.Millisecond)
	send(4) // queued behind frame 3, whose serialisation ends at 3s
	clk.Advance(10 * time.Second)
	// Frame 4 was due at 4.5s: it leaves at once, after frame 3.
	if err := tr.WaitAcked(ctx, 4); err != nil {
		t.Fatal(err)
	}
	expect(1500*time.Millisecond, 2500*time.Millisecond, 12500*time.Millisecond, 12500*time.Millisecond)
	send(5) // the link is idle: serialised from now, 12.5s
	<-clk.slept
	clk.Advance(1500 * time.Millisecond)
	if err := tr.WaitAcked(ctx, 5); err != nil {
		t.Fatal(err)
	}
	expect(1500*time.Millisecond, 2500*time.Millisecond, 12500*time.Millisecond, 12500*time.Millisecond, 14*time.Second)
}

// TestShapedClose checks that Close returns promptly while frames wait
// for a slow link, and that the sender's blocked calls fail.
func TestShapedClose(t *testing.T) {
	net, err := NewMemNetwork(2, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr := Shaped(net.Transport(0), LinkShape{BytesPerSecond: 1000})
	if _, ok := tr.(LocalLinker); ok {
		t.Fatal("a shaped link reports local links")
	}
	if _, ok := tr.(Aborter); !ok {
		t.Fatal("a shaped link cannot abort")
	}
	if _, ok := tr.(ackReporter); !ok {
		t.Fatal("a shaped link over MemTransport does not report acknowledgements")
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	payload := make([]byte, 1<<20) // about 17 minutes of the link
	sendErr := make(chan error, 1)
	go func() {
		// The forwarder holds one frame and the queue shapedQueue more: the
		// last Send blocks until Close.
		for seq := uint64(1); seq <= shapedQueue+2; seq++ {
			if err := tr.Send(ctx, Header{Kind: KindData, Seq: seq}, payload); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	ackErr := make(chan error, 1)
	go func() { ackErr <- tr.WaitAcked(ctx, 1) }()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan error{"Send": sendErr, "WaitAcked": ackErr} {
		select {
		case err := <-ch:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", name, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s hung after Close", name)
		}
	}
	if err := net.Transport(1).Recv(ctx, func(Header, [][]byte) error { return nil }); err == nil {
		t.Fatal("the neighbour received a frame of a closed shaped link")
	}
}

func TestLinkShapeCheck(t *testing.T) {
	for _, s := range []LinkShape{{}, {BytesPerSecond: -1}, {BytesPerSecond: math.NaN()}, {BytesPerSecond: 1, Latency: -1}} {
		if s.Check() == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	for _, s := range []LinkShape{{BytesPerSecond: 1}, {BytesPerSecond: math.Inf(1), Latency: time.Second}} {
		if err := s.Check(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}
