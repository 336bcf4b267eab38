package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Comm. All ranks of a ring must use the same values.
type Config struct {
	// Job and Generation are stamped on every frame and checked on receipt,
	// so frames of another job or of an older ring are rejected.
	Job, Generation uint64
	// Codec encodes all-reduce payloads (nil: FP32). Broadcast and Barrier
	// always use FP32, so state sync is exact.
	Codec Codec
	// Chunk is the most elements one frame carries (0: 512 Ki, i.e. 2 MiB
	// of fp32).
	Chunk int
}

// DefaultChunk is the default number of elements per frame.
const DefaultChunk = 1 << 19

// OpKind names a collective operation.
type OpKind uint8

const (
	// OpAllReduce sums Buf across ranks with the ring algorithm.
	OpAllReduce OpKind = iota + 1
	// OpNaiveAllReduce sums Buf with NaiveSchedule (a reference).
	OpNaiveAllReduce
	// OpBroadcast copies Root's Buf to every rank.
	OpBroadcast
	// OpBarrier returns on each rank only after every rank has entered it.
	OpBarrier
)

// Op is one collective operation. Every rank must submit the same sequence
// of operations, with the same kinds, lengths and roots.
type Op struct {
	Kind OpKind
	Buf  []float32
	Root int
	// Exact makes an all-reduce use fp32 whatever the Comm's codec: for
	// sums that must not be rounded (counts, statistics). Broadcasts and
	// barriers are always exact.
	Exact bool
}

// Handle tracks an operation submitted with Start.
type Handle struct {
	ctx  context.Context
	op   Op
	done chan struct{}
	err  error
}

// Wait blocks until the operation has finished and returns its error. The
// operation's buffer belongs to the Comm until Wait returns.
func (h *Handle) Wait() error {
	<-h.done
	return h.err
}

// Done is closed when the operation has finished.
func (h *Handle) Done() <-chan struct{} { return h.done }

func (h *Handle) finish(err error) {
	h.err = err
	close(h.done)
}

// Comm runs collective operations for one rank over a Transport.
//
// Operations are queued by Start (from any goroutine) and executed strictly
// in submission order by Run, the one goroutine that owns the transport's
// send and receive sides. After the first failed operation the Comm is
// broken: it closes its transport (so neighbours fail fast too) and every
// later operation returns the same error. Recovery is a new Comm, on a new
// generation.
type Comm struct {
	t     Transport
	cfg   Config
	rank  int
	n     int
	codec Codec

	mu      sync.Mutex
	queue   []*Handle
	stopped bool
	wake    chan struct{}
	closed  chan struct{}
	once    sync.Once

	// Owned by the Run goroutine.
	sendSeq, recvSeq uint64
	broken           error
	scratch          [][]byte
	schedules        map[schedKey]plan
	fusedSends       int              // sends whose payload the receiver wrote (fuse.go)
	fwdPending       []pendingPayload // their buffers, until acknowledged
	roundedRecvs     int              // receives that rounded the owned segment (fuse.go)

	// Shared by the sender and the receiver of one operation.
	causeMu  sync.Mutex
	cause    error
	recvDone atomic.Int64
	notify   chan struct{}
	cur      recvState
	onFrame  func(Header, [][]byte) error
	gather   []byte   // receiver's scratch for variable-width codecs
	fwdReady [][]byte // receive index -> the payload it wrote
	fwdFree  chan []byte
	rounded  []bool  // receive index -> it rounded its span (fuse.go)
	carry    [8]byte // an element split across two pieces of a frame
}

type schedKey struct {
	kind   OpKind
	length int
	root   int
}

type recvState struct {
	buf   []float32
	op    RecvOp
	idx   int // index of op in the schedule
	codec Codec
	// Fusion (see fuse.go), fixed for the operation before it starts.
	fuse       bool
	roundEarly bool
	opCodec    Codec
	sends      []SendOp
	feeds      []int
}

// scratchSlots is the number of encode buffers a sender rotates through.
const scratchSlots = 8

// New returns a Comm over t. It starts nothing: call Run.
func New(t Transport, cfg Config) (*Comm, error) {
	if t == nil {
		return nil, errors.New("allreduce: nil transport")
	}
	if cfg.Codec == nil {
		cfg.Codec = FP32{}
	}
	if cfg.Chunk == 0 {
		cfg.Chunk = DefaultChunk
	}
	if cfg.Chunk < 1 {
		return nil, fmt.Errorf("allreduce: chunk %d elements", cfg.Chunk)
	}
	c := &Comm{
		t: t, cfg: cfg, rank: t.Rank(), n: t.Size(), codec: cfg.Codec,
		wake:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
		scratch:   make([][]byte, scratchSlots),
		schedules: make(map[schedKey]plan),
		notify:    make(chan struct{}, 1),
	}
	c.onFrame = c.handleFrame
	return c, nil
}

// Rank and Size describe the ring.
func (c *Comm) Rank() int { return c.rank }
func (c *Comm) Size() int { return c.n }

// Start queues op and returns at once. ctx bounds the operation itself:
// if it ends before or during the operation, the operation fails and, as
// the other ranks cannot finish the collective without this one, the Comm
// is broken. The caller must not touch op.Buf until the handle's Wait
// returns.
func (c *Comm) Start(ctx context.Context, op Op) *Handle {
	h := &Handle{ctx: ctx, op: op, done: make(chan struct{})}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		h.finish(ErrClosed)
		return h
	}
	c.queue = append(c.queue, h)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return h
}

// StartAllReduce queues the ring all-reduce of buf (for example one
// gradient bucket) and returns at once; see Start.
func (c *Comm) StartAllReduce(ctx context.Context, buf []float32) *Handle {
	return c.Start(ctx, Op{Kind: OpAllReduce, Buf: buf})
}

// AllReduce sums buf across all ranks in place (ring algorithm).
func (c *Comm) AllReduce(ctx context.Context, buf []float32) error {
	return c.Start(ctx, Op{Kind: OpAllReduce, Buf: buf}).Wait()
}

// AllReduceExact sums buf across all ranks in fp32 whatever the codec.
func (c *Comm) AllReduceExact(ctx context.Context, buf []float32) error {
	return c.Start(ctx, Op{Kind: OpAllReduce, Buf: buf, Exact: true}).Wait()
}

// Broadcast copies root's buf to every rank's buf, exactly.
func (c *Comm) Broadcast(ctx context.Context, root int, buf []float32) error {
	return c.Start(ctx, Op{Kind: OpBroadcast, Buf: buf, Root: root}).Wait()
}

// Barrier returns once every rank has entered it.
func (c *Comm) Barrier(ctx context.Context) error {
	return c.Start(ctx, Op{Kind: OpBarrier}).Wait()
}

// Close stops Run, fails queued operations and closes the transport.
func (c *Comm) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.t.Close()
}

// Run executes queued operations in order until ctx ends or Close is
// called, then fails whatever is still queued and returns. It must be
// called exactly once; the goroutines it starts end before it returns.
func (c *Comm) Run(ctx context.Context) error {
	defer c.stop()
	for {
		h := c.next()
		if h == nil {
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-c.closed:
				return nil
			}
		}
		h.finish(c.exec(ctx, h))
	}
}

func (c *Comm) next() *Handle {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		return nil
	}
	h := c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	return h
}

func (c *Comm) stop() {
	c.mu.Lock()
	q := c.queue
	c.queue = nil
	c.stopped = true
	c.mu.Unlock()
	for _, h := range q {
		h.finish(ErrClosed)
	}
	c.t.Close()
}

// abort tears the transport down at once, so that neighbours fail fast,
// telling them which rank caused it where the transport can: the peer of
// the first PeerError seen, else this rank itself.
func (c *Comm) abort() {
	failed := c.rank
	c.causeMu.Lock()
	var pe *PeerError
	if errors.As(c.cause, &pe) {
		failed = pe.Peer
	}
	c.causeMu.Unlock()
	if a, ok := c.t.(Aborter); ok {
		a.AbortWith(failed)
		return
	}
	if a, ok := c.t.(interface{ Abort() error }); ok {
		a.Abort()
		return
	}
	c.t.Close()
}

// setCause records the first error of the running operation's halves.
func (c *Comm) setCause(err error) {
	c.causeMu.Lock()
	if c.cause == nil || firstCause(c.cause, err) != c.cause {
		c.cause = err
	}
	c.causeMu.Unlock()
}

func (c *Comm) exec(runCtx context.Context, h *Handle) error {
	if c.broken != nil {
		return c.broken
	}
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	stopRun := context.AfterFunc(runCtx, cancel)
	defer stopRun()
	stopClose := context.AfterFunc(closedContext{c.closed}, cancel)
	defer stopClose()

	err := c.run(ctx, h.op)
	if err != nil {
		c.broken = err
		c.setCause(err)
		c.abort()
	}
	return err
}

// closedContext adapts a channel to context.AfterFunc.
type closedContext struct{ ch chan struct{} }

func (closedContext) Deadline() (deadline time.Time, ok bool) { return }
func (c closedContext) Done() <-chan struct{}                 { return c.ch }
func (c closedContext) Err() error {
	select {
	case <-c.ch:
		return ErrClosed
	default:
		return nil
	}
}
func (closedContext) Value(any) any { return nil }

// plan is a schedule with what is derived from it once, when it is cached.
type plan struct {
	Schedule
	feeds []int // receive index -> the send that forwards its span, or -1 (fuse.go)
}

func (c *Comm) schedule(op Op) (plan, error) {
	length := len(op.Buf)
	if op.Kind == OpBarrier {
		length = c.n
	}
	k := schedKey{kind: op.Kind, length: length, root: op.Root}
	if p, ok := c.schedules[k]; ok {
		return p, nil
	}
	var s Schedule
	var err error
	switch op.Kind {
	case OpAllReduce, OpBarrier:
		s, err = RingSchedule(c.n, c.rank, length, c.cfg.Chunk)
	case OpNaiveAllReduce:
		s, err = NaiveSchedule(c.n, c.rank, length, c.cfg.Chunk)
	case OpBroadcast:
		s, err = BroadcastSchedule(c.n, c.rank, op.Root, length, c.cfg.Chunk)
	default:
		err = fmt.Errorf("allreduce: unknown operation kind %d", op.Kind)
	}
	if err != nil {
		return plan{}, err
	}
	if len(c.schedules) > 64 {
		clear(c.schedules)
	}
	p := plan{Schedule: s, feeds: feeds(s)}
	c.schedules[k] = p
	return p, nil
}

func (c *Comm) run(ctx context.Context, op Op) error {
	sc, err := c.schedule(op)
	if err != nil {
		return err
	}
	codec := c.codec
	if op.Exact {
		codec = FP32{}
	}
	buf := op.Buf
	switch op.Kind {
	case OpBroadcast:
		codec = FP32{}
	case OpBarrier:
		codec = FP32{}
		buf = make([]float32, c.n)
	}
	return c.execute(ctx, buf, sc, codec)
}

// execute runs one schedule: the receiver in a goroutine that ends before
// execute returns, the sender on the calling goroutine.
func (c *Comm) execute(ctx context.Context, buf []float32, sc plan, codec Codec) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A receive blocked inside the transport is interrupted by aborting
	// the transport; the Comm is broken after a failed operation anyway.
	stopAbort := context.AfterFunc(ctx, c.abort)
	defer stopAbort()
	c.recvDone.Store(0)
	select {
	case <-c.notify:
	default:
	}
	// A codec exists for the wire: a link through shared memory has none
	// to save, and converting would only cost time, so such links carry
	// fp32 when its frames fit (lossy codecs still round each segment's
	// owner copy, so every rank ends bit-identical). Both ends of a link
	// decide alike: they share the chunk and the frame limit.
	sendCodec, recvCodec := codec, codec
	sameCodecs := true
	if l, ok := c.t.(LocalLinker); ok && 4*c.cfg.Chunk <= l.MaxFrame() {
		right, left := l.LocalLinks()
		if right {
			sendCodec = FP32{}
		}
		if left {
			recvCodec = FP32{}
		}
		sameCodecs = !right && !left
	}
	c.planFusion(sc, codec, sendCodec, sameCodecs)
	c.cur.opCodec = codec
	c.cur.sends = sc.Sends
	recvErr := make(chan error, 1)
	go func() {
		err := c.recvLoop(ctx, buf, sc.Recvs, recvCodec)
		if err != nil {
			c.setCause(err)
			cancel()
		}
		recvErr <- err
	}()
	sendErr := c.sendLoop(ctx, buf, sc.Sends, codec, sendCodec)
	if sendErr != nil {
		c.setCause(sendErr)
		cancel()
	}
	rErr := <-recvErr
	if sendErr == nil && rErr == nil {
		// The buffer goes back to the caller: the transport must be done
		// reading it.
		sendErr = c.t.WaitAcked(ctx, c.sendSeq)
		if sendErr == nil {
			c.releaseFused(c.sendSeq)
		}
	}
	if sendErr == nil && rErr == nil {
		return nil
	}
	// The half that failed first explains the failure; the other half
	// usually saw only the abort that followed.
	c.causeMu.Lock()
	cause := c.cause
	c.causeMu.Unlock()
	return firstCause(cause, sendErr, rErr)
}

// firstCause picks the error that explains a failed operation: a
// PeerError, else any other error, before the ErrClosed or cancellation
// that one half caused in the other.
func firstCause(errs ...error) error {
	rank := func(e error) int {
		var pe *PeerError
		switch {
		case errors.As(e, &pe):
			return 0
		case errors.Is(e, ErrClosed):
			return 2
		case errors.Is(e, context.Canceled), errors.Is(e, context.DeadlineExceeded):
			return 3
		default:
			return 1
		}
	}
	var best error
	for _, e := range errs {
		if e != nil && (best == nil || rank(e) < rank(best)) {
			best = e
		}
	}
	return best
}

func (c *Comm) recvLoop(ctx context.Context, buf []float32, recvs []RecvOp, codec Codec) error {
	c.cur.buf = buf
	c.cur.codec = codec
	for i, r := range recvs {
		c.cur.op = r
		c.cur.idx = i
		if err := c.t.Recv(ctx, c.onFrame); err != nil {
			return err
		}
		c.recvSeq++
		c.recvDone.Store(int64(i + 1))
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
	return nil
}

// handleFrame checks one received frame and applies it to the buffer.
func (c *Comm) handleFrame(h Header, frags [][]byte) error {
	left := mod(c.rank-1, c.n)
	switch {
	case h.Kind != KindData:
		return fmt.Errorf("allreduce: rank %d: peer %d: frame kind %d, want data", c.rank, left, h.Kind)
	case h.Job != c.cfg.Job || h.Generation != c.cfg.Generation:
		return fmt.Errorf("allreduce: rank %d: peer %d: frame of job %d generation %d, want job %d generation %d",
			c.rank, left, h.Job, h.Generation, c.cfg.Job, c.cfg.Generation)
	case h.Seq != c.recvSeq+1:
		return fmt.Errorf("allreduce: rank %d: peer %d: frame sequence %d, want %d", c.rank, left, h.Seq, c.recvSeq+1)
	case int(h.From) != left:
		return fmt.Errorf("allreduce: rank %d: frame from rank %d, want left neighbour %d", c.rank, h.From, left)
	}
	r := c.cur.op
	dst := c.cur.buf[r.Span.Off:r.Span.End()]
	done, err := c.receiveFused(c.cur.idx, dst, frags)
	if !done {
		done, err = c.receiveRounded(c.cur.idx, dst, frags)
	}
	if !done {
		err = c.decodeFrags(dst, frags, r.Mode == RecvAdd)
	}
	if err != nil {
		return fmt.Errorf("allreduce: rank %d: peer %d: frame %d: %w", c.rank, left, h.Seq, err)
	}
	return nil
}

// decodeFrags decodes a payload that arrived in pieces. Fixed-width codecs
// decode each piece in place, carrying an element split across two pieces;
// others decode a gathered copy.
func (c *Comm) decodeFrags(dst []float32, frags [][]byte, add bool) error {
	codec := c.cur.codec
	dec := codec.Decode
	if add {
		dec = codec.DecodeAdd
	}
	if len(frags) == 1 {
		return dec(dst, frags[0])
	}
	fw, ok := codec.(fixedWidth)
	if !ok {
		c.gather = c.gather[:0]
		for _, f := range frags {
			c.gather = append(c.gather, f...)
		}
		return dec(dst, c.gather)
	}
	if err := c.walkFrags(frags, fw.elemBytes(), len(dst), func(lo, hi int, b []byte) error {
		return dec(dst[lo:hi], b)
	}); err != nil {
		return fmt.Errorf("%s %w", codec.Name(), err)
	}
	return nil
}

// sendLoop sends the schedule's spans encoded with codec, the link's
// codec; opCodec is the operation's, which rounds the owner's copies.
func (c *Comm) sendLoop(ctx context.Context, buf []float32, sends []SendOp, opCodec, codec Codec) error {
	view, _ := codec.(viewEncoder)
	roundFirst := !opCodec.Lossless() && codec.Lossless()
	for j, s := range sends {
		seq := c.sendSeq + 1
		c.pollFused()
		if s.After >= 0 {
			if err := c.waitRecv(ctx, s.After); err != nil {
				return err
			}
		}
		src := buf[s.Span.Off:s.Span.End()]
		if s.Quantize && roundFirst {
			if c.roundedEarly(s) {
				c.roundedRecvs++
			} else {
				opCodec.Quantize(src)
			}
		}
		payload, fused := c.fusedPayload(j, seq, s)
		switch {
		case fused:
			// The receiver encoded (and, where this send rounds, rounded)
			// the span already.
		case view != nil && codec.Lossless():
			payload = view.EncodeView(src)
		default:
			slot := int(seq % scratchSlots)
			if seq > scratchSlots {
				if err := c.t.WaitAcked(ctx, seq-scratchSlots); err != nil {
					return err
				}
			}
			payload = codec.AppendEncode(c.scratch[slot][:0], src)
			c.scratch[slot] = payload
			if s.Quantize && !codec.Lossless() {
				// The payload is src rounded through the codec; for a
				// fixed-width codec decoding it back is that rounding,
				// without a second encoding pass.
				if _, ok := codec.(fixedWidth); !ok || codec.Decode(src, payload) != nil {
					codec.Quantize(src)
				}
			}
		}
		h := Header{Kind: KindData, Job: c.cfg.Job, Generation: c.cfg.Generation, Seq: seq, From: uint32(c.rank)}
		if err := c.t.Send(ctx, h, payload); err != nil {
			return err
		}
		c.sendSeq = seq
	}
	return nil
}

// waitRecv blocks until receive i has completed. Stalls are detected by the
// receiver's transport timeout, which cancels ctx.
func (c *Comm) waitRecv(ctx context.Context, i int) error {
	for c.recvDone.Load() <= int64(i) {
		select {
		case <-c.notify:
		case <-ctx.Done():
			return fmt.Errorf("allreduce: rank %d: %w", c.rank, ctx.Err())
		}
	}
	return nil
}
