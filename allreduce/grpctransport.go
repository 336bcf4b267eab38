package allreduce

import (
	"context"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ringtrain/ringtrain/internal/netlimit"
)

// GRPCConfig configures one rank's GRPCTransport. All ranks use the same
// Addrs, Job and Generation.
type GRPCConfig struct {
	Rank  int
	Addrs []string // every rank's listening address, indexed by rank
	// Listener accepts this rank's incoming link (from the left
	// neighbour). The transport owns it from DialRing on; a
	// RingListener's Generation view keeps the port bound after the
	// transport closes it.
	Listener        net.Listener
	Job, Generation uint64
	// Timeout bounds every wait for a neighbour: connecting, a frame from
	// the left, an acknowledgement from the right (0: 10s).
	Timeout time.Duration
	// Window is the most payload bytes in flight per link (0: 32 MiB);
	// MaxInflight the most frames (0: 16).
	Window      int
	MaxInflight int
	// MaxFrame is the largest payload a frame may carry (0: 16 MiB).
	// Larger frames are rejected before any allocation.
	MaxFrame int
	// ServerTLS and ClientTLS enable TLS on every link; set ClientAuth to
	// tls.RequireAndVerifyClientCert and give the client a certificate
	// for mutual TLS. Both nil: plaintext.
	ServerTLS, ClientTLS *tls.Config
	// CheckPeer, with TLS, is asked whether the certificate a neighbour
	// presented (its connection's TLS state) may act as rank: the left
	// neighbour's when it opens its link, the right neighbour's when this
	// rank dials it. A peer it refuses is refused as one without the ring
	// key (ErrLinkAuth). nil: any certificate ServerTLS and ClientTLS
	// accept.
	CheckPeer func(rank int, cs tls.ConnectionState) error
	// ShmDir is where ring buffers shared with a neighbour on the same
	// host are created ("": /dev/shm); see shm.go. NoSharedMemory keeps
	// every frame on gRPC. With TLS, frames to a neighbour on the same
	// host still take the ring (its file is created 0600 and unlinked
	// once both ends have mapped it); set NoSharedMemory to keep them
	// inside TLS.
	ShmDir         string
	NoSharedMemory bool
	// RingKey authenticates every link of the ring (see ringauth.go):
	// both ends of a link prove they hold it before the link carries
	// anything. Every rank of the ring has the same key, RingKey(join
	// token, Job, Generation); at least 16 bytes, required.
	RingKey []byte
	// Logf receives notices about links and connections this rank
	// refused (at most one a second); nil discards them.
	Logf func(format string, args ...any)
}

// Limits of a rank's ring listener. A rank's only legitimate peer is its
// left neighbour, with one link stream at a time (and a few left over
// from earlier attempts); the rest are strangers.
const (
	ringMaxConns   = 16 // connections held at once; more are closed at once
	ringMaxStreams = 4  // concurrent streams per connection
)

const (
	ringService = "ringtrain.allreduce.Ring"
	linkMethod  = "/" + ringService + "/Link"
)

// frameCodec is the gRPC codec of ring links: a message is a frame header
// followed by raw payload bytes, marshalled without copying.
type frameCodec struct{}

func (frameCodec) Name() string { return "ringtrain-frame" }

// txMsg is an outgoing frame: hdr and payload are referenced, not copied.
type txMsg struct {
	hdr     []byte
	payload []byte
}

// rxMsg receives one frame: Unmarshal checks the header and calls fn with
// the payload while gRPC's buffers are still valid.
type rxMsg struct {
	maxFrame int
	fn       func(Header, [][]byte) error
	h        Header
	frags    [][]byte
	fnErr    error
	hello    []byte // a hello's payload (a shared-memory offer), copied
}

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*txMsg)
	if !ok {
		return nil, fmt.Errorf("allreduce: cannot marshal %T", v)
	}
	if len(m.payload) == 0 {
		return mem.BufferSlice{mem.SliceBuffer(m.hdr)}, nil
	}
	return mem.BufferSlice{mem.SliceBuffer(m.hdr), mem.SliceBuffer(m.payload)}, nil
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rxMsg)
	if !ok {
		return fmt.Errorf("allreduce: cannot unmarshal into %T", v)
	}
	var hb [HeaderLen]byte
	total := data.Len()
	if total < HeaderLen {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBadFrame, total, HeaderLen)
	}
	data.CopyTo(hb[:])
	// Validate the header against the real message length before
	// touching the payload.
	h, err := parseHeader(hb[:], total-HeaderLen, m.maxFrame)
	if err != nil {
		return err
	}
	m.h = h
	if h.Kind == KindHello {
		if h.Len > 0 {
			m.hello = data.Materialize()[HeaderLen:]
		}
		return nil
	}
	if m.fn == nil || h.Kind != KindData {
		if h.Len != 0 {
			return fmt.Errorf("%w: unexpected %d payload bytes", ErrBadFrame, h.Len)
		}
		return nil
	}
	// The payload is handed over in the pieces gRPC received it in, while
	// gRPC still holds them: no copy.
	m.frags = m.frags[:0]
	skip := HeaderLen
	for _, b := range data {
		d := b.ReadOnlyData()
		if skip >= len(d) {
			skip -= len(d)
			continue
		}
		m.frags = append(m.frags, d[skip:])
		skip = 0
	}
	m.fnErr = m.fn(h, m.frags)
	return nil
}

// ringServer is the service implemented by GRPCTransport.
type ringServer interface {
	handleLink(grpc.ServerStream) error
}

// ringDesc is the hand-written descriptor of the ring service: one
// bidirectional streaming method, Link, with the frame codec.
var ringDesc = grpc.ServiceDesc{
	ServiceName: ringService,
	HandlerType: (*ringServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Link",
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(ringServer).handleLink(stream)
		},
		ServerStreams: true,
		ClientStreams: true,
	}},
	Metadata: "allreduce/grpctransport.go",
}

var linkStreamDesc = grpc.StreamDesc{StreamName: "Link", ServerStreams: true, ClientStreams: true}

// GRPCTransport runs the two links of one rank as bidirectional gRPC
// streams: frames flow from each rank to its right neighbour on a stream
// the rank opens, and acknowledgements flow back on the same stream. It
// owns a gRPC server (for the link from the left), a client connection
// (to the right) and their goroutines, all stopped by Close.
type GRPCTransport struct {
	rank, size int
	job, gen   uint64
	timeout    time.Duration
	window     int
	inflight   int
	maxFrame   int
	key        []byte
	checkPeer  func(rank int, cs tls.ConnectionState) error // with TLS; nil: none
	refusals   rateLog                                      // notices of refused links and connections
	lis        *netlimit.Listener                           // the ring listener, bounded

	srv       *grpc.Server
	conn      *grpc.ClientConn
	out       grpc.ClientStream
	outCancel context.CancelFunc
	wg        sync.WaitGroup

	closed    chan struct{}
	closeOnce sync.Once
	sendMu    sync.Mutex // SendMsg vs CloseSend on out

	// Sender side (Send/WaitAcked goroutine), plus the ack reader.
	sendW     *waiter
	hdrs      [][HeaderLen]byte
	sizes     []int
	txs       []txMsg
	sentSeq   atomic.Uint64
	ackedSeq  atomic.Uint64
	ackPtr    uint64 // acks already folded into inflightBytes
	inflightB int
	ackCh     chan struct{}
	ackDone   chan struct{}
	ackErr    error // set before ackDone closes

	// Receiver side. The receiving goroutine reads the left link's stream
	// itself (RecvMsg under recvMu); the gRPC handler only holds the stream
	// open until the transport closes.
	recvMu      sync.Mutex
	rx          rxMsg
	recvTimer   *time.Timer // aborts the transport when a frame is late
	recvTimeout atomic.Bool
	recvPending atomic.Bool   // a Recv is waiting: ping the right neighbour
	inKill      chan struct{} // closed to end the link from the left
	inKillOnce  sync.Once
	inSendMu    sync.Mutex // acks and abort notices on in
	lastRecv    uint64
	leftErr     error // sticky error of the left link, under recvMu
	leftMu      sync.Mutex
	in          grpc.ServerStream
	leftUp      chan struct{} // closed when the left neighbour has attached

	// Shared-memory rings (nil: the link runs on gRPC); see shm.go.
	shmDir       string // "" when shared memory is off
	outShm       *shmRing
	inShm        *shmRing
	shmHead      uint64 // bytes written to outShm (sender goroutine)
	inTail       uint64 // bytes consumed from inShm (receiver goroutine)
	shmPieces    [][]byte
	lastPing     atomic.Int64  // unix nanoseconds of the left neighbour's last ping
	leftGone     chan struct{} // closed when the left link's stream ends (shm mode)
	leftGoneOnce sync.Once
	leftEnd      error // why the left stream ended, set before leftGone closes
}

// DialRing starts this rank's server, connects to the right neighbour and
// waits until the left neighbour has connected, or ctx ends, or Timeout
// passes.
func DialRing(ctx context.Context, cfg GRPCConfig) (*GRPCTransport, error) {
	n := len(cfg.Addrs)
	if n < 1 || cfg.Rank < 0 || cfg.Rank >= n {
		return nil, fmt.Errorf("allreduce: rank %d of %d addresses", cfg.Rank, n)
	}
	if cfg.Listener == nil {
		return nil, fmt.Errorf("allreduce: rank %d: no listener", cfg.Rank)
	}
	if len(cfg.RingKey) < minRingKey {
		return nil, fmt.Errorf("allreduce: rank %d: a ring key of %d bytes, want at least %d (GRPCConfig.RingKey; see RingKey)", cfg.Rank, len(cfg.RingKey), minRingKey)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 32 << 20
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 16
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = 16 << 20
	}
	t := &GRPCTransport{
		rank: cfg.Rank, size: n, job: cfg.Job, gen: cfg.Generation,
		timeout: cfg.Timeout, window: cfg.Window, inflight: cfg.MaxInflight, maxFrame: cfg.MaxFrame,
		key: cfg.RingKey, refusals: rateLog{logf: cfg.Logf}, checkPeer: cfg.CheckPeer,
		closed:   make(chan struct{}),
		sendW:    newWaiter(cfg.Timeout),
		hdrs:     make([][HeaderLen]byte, cfg.MaxInflight+1),
		sizes:    make([]int, cfg.MaxInflight+1),
		txs:      make([]txMsg, cfg.MaxInflight+1),
		ackCh:    make(chan struct{}, 1),
		ackDone:  make(chan struct{}),
		leftUp:   make(chan struct{}),
		inKill:   make(chan struct{}),
		leftGone: make(chan struct{}),
	}
	if !cfg.NoSharedMemory && shmSupported && shmRingSize(cfg.MaxFrame) > 0 {
		t.shmDir = cfg.ShmDir
		if t.shmDir == "" {
			t.shmDir = "/dev/shm"
		}
	}
	t.rx.maxFrame = cfg.MaxFrame
	t.recvTimer = time.AfterFunc(time.Hour, func() {
		// End only the link from the left (its handler returns, so the
		// pending RecvMsg fails); the right link stays up for the abort
		// notice.
		t.recvTimeout.Store(true)
		t.inKillOnce.Do(func() { close(t.inKill) })
	})
	t.recvTimer.Stop()
	// gRPC's own flow control must never be the bottleneck: our window
	// (plus headers) always fits in it.
	grpcWin := int32(min(int64(cfg.Window)+int64(cfg.MaxFrame)+1<<20, 1<<30))
	sopts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(frameCodec{}),
		grpc.MaxRecvMsgSize(cfg.MaxFrame + HeaderLen),
		grpc.InitialWindowSize(grpcWin),
		grpc.InitialConnWindowSize(grpcWin),
		grpc.WriteBufferSize(1 << 20),
		grpc.ReadBufferSize(1 << 20),
		grpc.WaitForHandlers(true),
		// Bounds on what strangers can hold: a connection must finish its
		// handshake (TLS, HTTP/2) within half the timeout (a second at
		// least, so a loaded machine's handshakes pass), carries a few
		// streams at most, and is closed once it has had no stream for a
		// timeout; nobody needs to ping (the ring has its own).
		// (ConnectionTimeout is experimental in grpc-go;
		// TestGRPCRingConnLimits notices if it stops working.)
		grpc.ConnectionTimeout(max(cfg.Timeout/2, time.Second)),
		grpc.MaxConcurrentStreams(ringMaxStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.Timeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Minute}),
	}
	if cfg.ServerTLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(cfg.ServerTLS)))
	}
	t.lis = netlimit.New(cfg.Listener, ringMaxConns)
	t.lis.OnRefuse = func(remote net.Addr) {
		t.refusals.printf("allreduce: rank %d: closed a connection from %v: %d are open, the most a ring listener holds", t.rank, remote, ringMaxConns)
	}
	t.srv = grpc.NewServer(sopts...)
	t.srv.RegisterService(&ringDesc, t)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.srv.Serve(t.lis)
	}()
	if err := t.connect(ctx, cfg); err != nil {
		t.Abort()
		return nil, err
	}
	w := newWaiter(cfg.Timeout)
	defer w.stop()
	select {
	case <-t.leftUp:
		return t, nil
	case <-ctx.Done():
		t.Abort()
		return nil, fmt.Errorf("allreduce: rank %d: waiting for peer %d: %w", t.rank, t.leftRank(), ctx.Err())
	case <-w.arm():
		t.Abort()
		return nil, t.peerErr(t.leftRank(), "accept", timeoutErr(cfg.Timeout))
	}
}

func (t *GRPCTransport) connect(ctx context.Context, cfg GRPCConfig) error {
	right := t.rightRank()
	creds := insecure.NewCredentials()
	if cfg.ClientTLS != nil {
		c := cfg.ClientTLS
		if cfg.CheckPeer != nil {
			c = c.Clone()
			verify := c.VerifyConnection
			c.VerifyConnection = func(cs tls.ConnectionState) error {
				if verify != nil {
					if err := verify(cs); err != nil {
						return err
					}
				}
				if err := cfg.CheckPeer(right, cs); err != nil {
					err = fmt.Errorf("%w: the listener at rank %d's address: %v", ErrLinkAuth, right, err)
					t.refusals.printf("allreduce: rank %d: %s", t.rank, strings.TrimPrefix(err.Error(), "allreduce: "))
					return err
				}
				return nil
			}
		}
		creds = credentials.NewTLS(c)
	}
	grpcWin := int32(min(int64(cfg.Window)+int64(cfg.MaxFrame)+1<<20, 1<<30))
	conn, err := grpc.NewClient("passthrough:///"+cfg.Addrs[right],
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(grpcWin),
		grpc.WithInitialConnWindowSize(grpcWin),
		grpc.WithWriteBufferSize(1<<20),
		grpc.WithReadBufferSize(1<<20),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: cfg.Timeout,
		}),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(frameCodec{}), grpc.MaxCallRecvMsgSize(HeaderLen+1<<10)),
	)
	if err != nil {
		return t.peerErr(right, "dial", err)
	}
	t.conn = conn
	// Bound the set-up by ctx and the timeout; the stream itself lives
	// until Close.
	setup, setupCancel := context.WithTimeout(ctx, cfg.Timeout)
	defer setupCancel()
	for {
		out, cancel, err := t.openLink(setup, conn, right)
		if err == nil {
			t.out, t.outCancel = out, cancel
			break
		}
		// The neighbour refused the link: most likely the listener of its
		// previous generation is still closing on the same address. Try
		// again until the set-up deadline.
		select {
		case <-setup.Done():
			if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				err = setup.Err()
			}
			return t.peerErr(right, "dial", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.wg.Add(2)
	go t.readAcks()
	go t.pings()
	return nil
}

// openLink opens the link stream to the right neighbour and sets it up
// (see ringauth.go): it sends a nonce, checks that the neighbour proves it
// holds the ring key, proves it in turn (offering a shared-memory ring
// once the neighbour is known) and waits for the neighbour to accept, so a
// ring is only formed with a neighbour of the same job and generation that
// holds the key. The stream lives until cancel is called.
func (t *GRPCTransport) openLink(setup context.Context, conn *grpc.ClientConn, right int) (grpc.ClientStream, context.CancelFunc, error) {
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(setup, cancel)
	var ring *shmRing
	accepted := false
	nonceC := newNonce()
	out, err := conn.NewStream(sctx, &linkStreamDesc, linkMethod, grpc.WaitForReady(true))
	if err == nil {
		err = t.sendHello(out, 0, nonceC)
	}
	var nonceS []byte
	if err == nil {
		m := rxMsg{maxFrame: t.maxFrame}
		if err = out.RecvMsg(&m); err == nil {
			err = t.checkAnswer(&m, right)
		}
		if err == nil {
			if len(m.hello) != linkNonceLen+linkMACLen ||
				!hmac.Equal(m.hello[linkNonceLen:], linkMAC(t.key, "server", t.job, t.gen, t.rank, right, nonceC, m.hello[:linkNonceLen], nil)) {
				err = fmt.Errorf("%w: the listener at rank %d's address did not prove it holds the ring key", ErrLinkAuth, right)
				t.refusals.printf("allreduce: rank %d: %s", t.rank, strings.TrimPrefix(err.Error(), "allreduce: "))
			}
			nonceS = m.hello[:min(len(m.hello), linkNonceLen)]
		}
	}
	// Offer a shared-memory ring; the file is removed whatever the
	// answer, since an accepting neighbour has mapped it by then.
	var offer []byte
	if err == nil && t.shmDir != "" {
		size := shmRingSize(t.maxFrame)
		r, path, nonce, cerr := createShmRing(t.shmDir, size)
		if cerr == nil {
			ring, offer = r, shmOffer(nonce, size, path)
			defer os.Remove(path)
		}
	}
	if err == nil {
		mac := linkMAC(t.key, "client", t.job, t.gen, t.rank, right, nonceC, nonceS, offer)
		err = t.sendHello(out, 0, append(mac, offer...))
	}
	if err == nil {
		m := rxMsg{maxFrame: t.maxFrame}
		if err = out.RecvMsg(&m); err == nil {
			err = t.checkAnswer(&m, right)
		}
		accepted = err == nil && m.h.Seq == 1
	}
	if !stop() && err == nil {
		// The set-up deadline fired and cancelled the stream.
		err = setup.Err()
	}
	if ring != nil {
		if err == nil && accepted {
			t.outShm = ring
		} else {
			ring.release()
		}
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return out, cancel, nil
}

// sendHello sends a hello frame of this rank on a link's stream.
func (t *GRPCTransport) sendHello(s interface{ SendMsg(any) error }, seq uint64, payload []byte) error {
	hb := make([]byte, HeaderLen)
	PutHeader(hb, Header{Kind: KindHello, Job: t.job, Generation: t.gen, Seq: seq, From: uint32(t.rank), Len: uint32(len(payload))})
	return s.SendMsg(&txMsg{hdr: hb, payload: payload})
}

// checkAnswer checks that m is a hello of the right neighbour's in this
// job and generation.
func (t *GRPCTransport) checkAnswer(m *rxMsg, right int) error {
	if m.h.Kind != KindHello || m.h.Job != t.job || m.h.Generation != t.gen || int(m.h.From) != right {
		return fmt.Errorf("%w: link accepted by rank %d job %d generation %d (kind %d)", ErrBadFrame, m.h.From, m.h.Job, m.h.Generation, m.h.Kind)
	}
	return nil
}

// errSetupTimeout: a peer did not finish setting a link up in time.
var errSetupTimeout = errors.New("did not finish setting the link up in time")

// recvSetup reads one frame of a link's set-up from the left, giving up
// when deadline fires or the transport closes. (RecvMsg cannot be
// interrupted; a read given up on ends with the stream, when the handler
// returns.)
func (t *GRPCTransport) recvSetup(stream grpc.ServerStream, deadline <-chan time.Time) (rxMsg, error) {
	type result struct {
		m   rxMsg
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m := rxMsg{maxFrame: t.maxFrame}
		err := stream.RecvMsg(&m)
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-deadline:
		return rxMsg{}, errSetupTimeout
	case <-t.closed:
		return rxMsg{}, ErrClosed
	}
}

// refuse turns away a peer that failed to set up an authenticated link:
// it logs why (at most once a second), closes the peer's connection at
// once and returns the stream's error.
func (t *GRPCTransport) refuse(stream grpc.ServerStream, err error) error {
	var from net.Addr
	if p, ok := peer.FromContext(stream.Context()); ok {
		from = p.Addr
	}
	t.refusals.printf("allreduce: rank %d: refused a link from %v (for rank %d's): %s", t.rank, from, t.leftRank(), strings.TrimPrefix(err.Error(), "allreduce: "))
	t.lis.Drop(from)
	return status.Errorf(codes.Unauthenticated, "allreduce: rank %d: %v", t.rank, err)
}

// checkLeft asks CheckPeer whether the TLS peer of stream may act as
// rank left.
func (t *GRPCTransport) checkLeft(stream grpc.ServerStream, left int) error {
	p, ok := peer.FromContext(stream.Context())
	if !ok {
		return fmt.Errorf("%w: the link's peer is unknown", ErrLinkAuth)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return fmt.Errorf("%w: the link is not over TLS", ErrLinkAuth)
	}
	if err := t.checkPeer(left, info.State); err != nil {
		return fmt.Errorf("%w: %v", ErrLinkAuth, err)
	}
	return nil
}

// handleLink is the server side of the link from the left neighbour: it
// sets the link up (see ringauth.go; within the timeout), publishes the
// stream for Recv and holds it open until the transport closes.
func (t *GRPCTransport) handleLink(stream grpc.ServerStream) error {
	deadline := time.NewTimer(t.timeout)
	defer deadline.Stop()
	m, err := t.recvSetup(stream, deadline.C)
	if err != nil {
		if errors.Is(err, errSetupTimeout) {
			return t.refuse(stream, err)
		}
		return err
	}
	left := t.leftRank()
	if m.h.Kind != KindHello || m.h.Job != t.job || m.h.Generation != t.gen || int(m.h.From) != left {
		return fmt.Errorf("allreduce: rank %d: rejected link from rank %d (job %d generation %d, kind %d); want rank %d job %d generation %d",
			t.rank, m.h.From, m.h.Job, m.h.Generation, m.h.Kind, left, t.job, t.gen)
	}
	if t.checkPeer != nil {
		if err := t.checkLeft(stream, left); err != nil {
			return t.refuse(stream, err)
		}
	}
	if len(m.hello) != linkNonceLen {
		return t.refuse(stream, fmt.Errorf("%w: its hello carries %d bytes, not a %d-byte nonce", ErrLinkAuth, len(m.hello), linkNonceLen))
	}
	nonceC, nonceS := m.hello, newNonce()
	if err := t.sendHello(stream, 0, append(nonceS, linkMAC(t.key, "server", t.job, t.gen, left, t.rank, nonceC, nonceS, nil)...)); err != nil {
		return err
	}
	if m, err = t.recvSetup(stream, deadline.C); err != nil {
		if errors.Is(err, errSetupTimeout) {
			return t.refuse(stream, err)
		}
		return err
	}
	if m.h.Kind != KindHello || m.h.Job != t.job || m.h.Generation != t.gen || int(m.h.From) != left || len(m.hello) < linkMACLen {
		return t.refuse(stream, fmt.Errorf("%w: no proof of the ring key (kind %d, %d bytes)", ErrLinkAuth, m.h.Kind, len(m.hello)))
	}
	offer := m.hello[linkMACLen:]
	if !hmac.Equal(m.hello[:linkMACLen], linkMAC(t.key, "client", t.job, t.gen, left, t.rank, nonceC, nonceS, offer)) {
		return t.refuse(stream, fmt.Errorf("%w: it did not prove it holds the ring key", ErrLinkAuth))
	}
	t.leftMu.Lock()
	if t.in != nil {
		t.leftMu.Unlock()
		return fmt.Errorf("allreduce: rank %d: second link from rank %d", t.rank, left)
	}
	t.in = stream
	t.leftMu.Unlock()
	// Take the neighbour's shared-memory ring if it offered one that this
	// process can map: then it is on this host.
	var ring *shmRing
	if len(offer) > 0 && t.shmDir != "" {
		if nonce, size, path, err := parseShmOffer(offer, t.shmDir, t.maxFrame); err == nil {
			ring, _ = openShmRing(path, nonce, size)
		}
	}
	// Accept the link (Seq 1: and the ring): the neighbour's set-up waits
	// for this answer.
	var seq uint64
	if ring != nil {
		seq = 1
	}
	t.inSendMu.Lock()
	err = t.sendHello(stream, seq, nil)
	t.inSendMu.Unlock()
	if err != nil {
		if ring != nil {
			ring.release()
		}
		t.leftMu.Lock()
		t.in = nil // the neighbour may try again
		t.leftMu.Unlock()
		return err
	}
	t.inShm = ring
	close(t.leftUp)
	if ring != nil {
		t.watchLeft(stream)
	}
	select {
	case <-t.closed:
	case <-t.inKill:
	case <-stream.Context().Done():
	}
	return nil
}

// watchLeft reads the left link's stream while frames come through the
// shared-memory ring: pings, an abort notice or the end of the stream,
// which it reports through leftGone.
func (t *GRPCTransport) watchLeft(stream grpc.ServerStream) {
	var err error
	for {
		m := rxMsg{maxFrame: t.maxFrame}
		if err = stream.RecvMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				err = ErrPeerClosed
			} else if !errors.Is(err, ErrBadFrame) {
				err = fmt.Errorf("%w: %v", ErrPeerClosed, err)
			}
			err = t.peerErr(t.leftRank(), "recv", err)
			break
		}
		if m.h.Kind == KindHello {
			t.lastPing.Store(time.Now().UnixNano())
			continue
		}
		if m.h.Kind == KindAbort && m.h.Job == t.job && m.h.Generation == t.gen {
			err = t.peerErr(t.failedRank(m.h, t.leftRank()), "recv", reportedErr(t.leftRank()))
		} else {
			err = t.peerErr(t.leftRank(), "recv", fmt.Errorf("%w: kind %d beside a shared-memory link", ErrBadFrame, m.h.Kind))
		}
		break
	}
	t.leftGoneOnce.Do(func() {
		t.leftEnd = err
		close(t.leftGone)
	})
	if r := t.inShm; r.acquire() {
		notify(&r.ctl.dataEv, &r.ctl.dataWait)
		r.release()
	}
}

// readAcks receives acknowledgements from the right neighbour.
func (t *GRPCTransport) readAcks() {
	defer t.wg.Done()
	err := func() error {
		for {
			m := rxMsg{maxFrame: t.maxFrame}
			if err := t.out.RecvMsg(&m); err != nil {
				if errors.Is(err, io.EOF) {
					return ErrPeerClosed
				}
				return fmt.Errorf("%w: %v", ErrPeerClosed, err)
			}
			if m.h.Kind == KindAbort && m.h.Job == t.job && m.h.Generation == t.gen {
				return &PeerError{Rank: t.rank, Peer: t.failedRank(m.h, t.rightRank()), Op: "ack", Err: reportedErr(t.rightRank())}
			}
			if m.h.Kind != KindAck || m.h.Job != t.job || m.h.Generation != t.gen {
				return fmt.Errorf("%w: unexpected frame kind %d job %d generation %d on the ack stream", ErrBadFrame, m.h.Kind, m.h.Job, m.h.Generation)
			}
			if m.h.Seq < t.ackedSeq.Load() || m.h.Seq > t.sentSeq.Load() {
				return fmt.Errorf("%w: ack %d outside (%d, %d]", ErrBadFrame, m.h.Seq, t.ackedSeq.Load(), t.sentSeq.Load())
			}
			t.ackedSeq.Store(m.h.Seq)
			select {
			case t.ackCh <- struct{}{}:
			default:
			}
		}
	}()
	var pe *PeerError
	if errors.As(err, &pe) {
		t.ackErr = err
	} else {
		t.ackErr = t.peerErr(t.rightRank(), "ack", err)
	}
	close(t.ackDone)
}

// LocalLinks reports which links run through shared-memory rings.
func (t *GRPCTransport) LocalLinks() (right, left bool) { return t.outShm != nil, t.inShm != nil }

// MaxFrame is the configured frame payload limit.
func (t *GRPCTransport) MaxFrame() int { return t.maxFrame }

func (t *GRPCTransport) Rank() int      { return t.rank }
func (t *GRPCTransport) Size() int      { return t.size }
func (t *GRPCTransport) rightRank() int { return mod(t.rank+1, t.size) }
func (t *GRPCTransport) leftRank() int  { return mod(t.rank-1, t.size) }

func (t *GRPCTransport) peerErr(peer int, op string, err error) error {
	return &PeerError{Rank: t.rank, Peer: peer, Op: op, Err: err}
}

// foldAcks moves acknowledged frames out of the in-flight byte count.
func (t *GRPCTransport) foldAcks() {
	acked := t.ackedSeq.Load()
	for t.ackPtr < acked {
		t.ackPtr++
		t.inflightB -= t.sizes[t.ackPtr%uint64(len(t.sizes))]
	}
}

// waitAck blocks until an acknowledgement arrives (or an error).
func (t *GRPCTransport) waitAck(ctx context.Context, timer <-chan time.Time) error {
	select {
	case <-t.ackCh:
		return nil
	case <-t.ackDone:
		// Acks that arrived before the link ended still count.
		select {
		case <-t.ackCh:
			return nil
		default:
		}
		return t.ackErr
	case <-t.closed:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("allreduce: rank %d: %w", t.rank, ctx.Err())
	case <-timer:
		return t.peerErr(t.rightRank(), "ack", timeoutErr(t.timeout))
	}
}

// Send queues one frame for the right neighbour; see Transport.
func (t *GRPCTransport) Send(ctx context.Context, h Header, payload []byte) error {
	if len(payload) > t.maxFrame {
		return fmt.Errorf("allreduce: rank %d: frame of %d bytes over limit %d", t.rank, len(payload), t.maxFrame)
	}
	seq := t.sentSeq.Load() + 1
	if h.Seq != seq {
		return fmt.Errorf("allreduce: rank %d: send sequence %d, want %d", t.rank, h.Seq, seq)
	}
	if t.outShm != nil {
		return t.sendShm(ctx, h, payload)
	}
	armed := false
	var timer <-chan time.Time
	for {
		t.foldAcks()
		unacked := int(seq - 1 - t.ackPtr)
		if unacked < t.inflight && (unacked == 0 || t.inflightB+len(payload) <= t.window) {
			break
		}
		if !armed {
			timer = t.sendW.arm()
			armed = true
		}
		if err := t.waitAck(ctx, timer); err != nil {
			t.sendW.stop()
			return err
		}
	}
	if armed {
		t.sendW.stop()
	}
	slot := seq % uint64(len(t.hdrs))
	h.Len = uint32(len(payload))
	PutHeader(t.hdrs[slot][:], h)
	t.sizes[slot] = len(payload)
	t.inflightB += len(payload)
	tx := &t.txs[slot]
	tx.hdr = t.hdrs[slot][:]
	tx.payload = payload
	t.sentSeq.Store(seq)
	t.sendMu.Lock()
	err := t.out.SendMsg(tx)
	t.sendMu.Unlock()
	if err != nil {
		select {
		case <-t.closed:
			return ErrClosed
		default:
		}
		return t.peerErr(t.rightRank(), "send", fmt.Errorf("%w: %v", ErrPeerClosed, err))
	}
	return nil
}

// Acked returns the last frame the right neighbour has consumed, without
// waiting.
func (t *GRPCTransport) Acked() uint64 {
	if r := t.outShm; r != nil {
		if !r.acquire() {
			return 0
		}
		defer r.release()
		return r.ctl.acked.Load()
	}
	return t.ackedSeq.Load()
}

// WaitAcked blocks until frame seq has been consumed by the right
// neighbour.
func (t *GRPCTransport) WaitAcked(ctx context.Context, seq uint64) error {
	if t.outShm != nil {
		return t.waitAckedShm(ctx, seq)
	}
	if t.ackedSeq.Load() >= seq {
		return nil
	}
	timer := t.sendW.arm()
	defer t.sendW.stop()
	for t.ackedSeq.Load() < seq {
		if err := t.waitAck(ctx, timer); err != nil {
			if t.ackedSeq.Load() >= seq {
				return nil
			}
			return err
		}
	}
	return nil
}

// Recv reads the next frame from the left neighbour, hands its payload
// to fn in the pieces gRPC received it in, then acknowledges it. If no
// frame arrives within the timeout, the transport is aborted and Recv
// returns a *PeerError naming the left neighbour; the caller aborts the
// transport to interrupt a Recv when ctx ends.
func (t *GRPCTransport) Recv(ctx context.Context, fn func(Header, [][]byte) error) error {
	t.recvMu.Lock()
	defer t.recvMu.Unlock()
	if t.leftErr != nil {
		return t.leftErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("allreduce: rank %d: recv: %w", t.rank, err)
	}
	select {
	case <-t.closed:
		return ErrClosed
	default:
	}
	if t.inShm != nil {
		return t.recvShm(fn)
	}
	m := &t.rx
	m.fn, m.fnErr = fn, nil
	t.recvPending.Store(true)
	start := time.Now()
	t.recvTimer.Reset(t.timeout)
	var err error
	for {
		err = t.in.RecvMsg(m)
		if err != nil || m.h.Kind != KindHello {
			break
		}
		// A ping: the left neighbour is alive and itself waiting for a
		// frame. Wait for it up to one more timeout, so that the rank next
		// to a stalled one reports it first and its notice reaches us.
		if rest := start.Add(2 * t.timeout).Sub(time.Now()); rest > 0 && t.recvTimer.Stop() {
			t.recvTimer.Reset(min(rest, t.timeout))
		}
	}
	stopped := t.recvTimer.Stop()
	t.recvPending.Store(false)
	m.fn = nil
	left := t.leftRank()
	switch {
	case !stopped && t.recvTimeout.Load():
		t.leftErr = t.peerErr(left, "recv", timeoutErr(t.timeout))
		return t.leftErr
	case err != nil:
		select {
		case <-t.closed:
			return ErrClosed
		default:
		}
		if errors.Is(err, io.EOF) {
			err = ErrPeerClosed
		} else if !errors.Is(err, ErrBadFrame) {
			err = fmt.Errorf("%w: %v", ErrPeerClosed, err)
		}
		t.leftErr = t.peerErr(left, "recv", err)
		return t.leftErr
	case m.h.Kind == KindAbort:
		t.leftErr = t.peerErr(t.failedRank(m.h, left), "recv", reportedErr(left))
		return t.leftErr
	case m.h.Kind != KindData:
		t.leftErr = t.peerErr(left, "recv", fmt.Errorf("%w: kind %d on a data link", ErrBadFrame, m.h.Kind))
		return t.leftErr
	case t.lastRecv != 0 && m.h.Seq != t.lastRecv+1:
		t.leftErr = t.peerErr(left, "recv", fmt.Errorf("%w: sequence %d after %d", ErrBadFrame, m.h.Seq, t.lastRecv))
		return t.leftErr
	}
	t.lastRecv = m.h.Seq
	if m.fnErr != nil {
		return m.fnErr
	}
	ack := make([]byte, HeaderLen)
	PutHeader(ack, Header{Kind: KindAck, Job: t.job, Generation: t.gen, Seq: m.h.Seq, From: uint32(t.rank)})
	t.inSendMu.Lock()
	t.in.SendMsg(&txMsg{hdr: ack})
	t.inSendMu.Unlock()
	// A failed ack means the left neighbour is going away; the frame was
	// still consumed, and the next Recv reports why (its abort notice,
	// if it sent one, comes first).
	return nil
}

// failedRank reads the failed rank of an abort notice from neighbour.
func (t *GRPCTransport) failedRank(h Header, neighbour int) int {
	if h.Seq >= 1 && h.Seq <= uint64(t.size) {
		return int(h.Seq - 1)
	}
	return neighbour
}

// pings tells the right neighbour, every quarter timeout, that this rank
// is alive while it is itself waiting for a frame.
func (t *GRPCTransport) pings() {
	defer t.wg.Done()
	tick := time.NewTicker(t.timeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-t.closed:
			return
		case <-tick.C:
		}
		if !t.recvPending.Load() {
			continue
		}
		hb := make([]byte, HeaderLen)
		PutHeader(hb, Header{Kind: KindHello, Job: t.job, Generation: t.gen, From: uint32(t.rank)})
		t.sendMu.Lock()
		err := t.out.SendMsg(&txMsg{hdr: hb})
		t.sendMu.Unlock()
		if err != nil {
			return
		}
	}
}

// AbortWith tells both neighbours that rank failed, waits briefly for the
// notices to leave, and aborts.
func (t *GRPCTransport) AbortWith(failed int) error {
	select {
	case <-t.closed:
		return nil
	default:
	}
	hb := make([]byte, HeaderLen)
	PutHeader(hb, Header{Kind: KindAbort, Job: t.job, Generation: t.gen, Seq: uint64(failed) + 1, From: uint32(t.rank)})
	if t.out != nil {
		t.sendMu.Lock()
		t.out.SendMsg(&txMsg{hdr: hb})
		t.out.CloseSend()
		t.sendMu.Unlock()
	}
	t.leftMu.Lock()
	in := t.in
	t.leftMu.Unlock()
	if in != nil {
		t.inSendMu.Lock()
		in.SendMsg(&txMsg{hdr: hb})
		t.inSendMu.Unlock()
	}
	// Each neighbour ends its stream once it has read the notice (or is
	// gone); wait for both, briefly, so the notices are not cut off.
	w := newWaiter(min(t.timeout, 200*time.Millisecond))
	timer := w.arm()
	var inDone <-chan struct{}
	if in != nil {
		inDone = in.Context().Done()
	}
	ackDone := t.ackDone
	for ackDone != nil || inDone != nil {
		select {
		case <-ackDone:
			ackDone = nil
		case <-inDone:
			inDone = nil
		case <-t.closed:
			ackDone, inDone = nil, nil
		case <-timer:
			ackDone, inDone = nil, nil
		}
	}
	w.stop()
	return t.Abort()
}

// Close ends the links cleanly: it closes the sending side (the right
// neighbour sees the end of the stream after every frame sent), waits up to
// the timeout for the left neighbour to do the same (so that the
// acknowledgements already sent reach it), then stops everything and waits
// for the transport's goroutines.
func (t *GRPCTransport) Close() error {
	if t.out != nil {
		t.sendMu.Lock()
		t.out.CloseSend()
		t.sendMu.Unlock()
		// Wait for the left neighbour's end of stream; a Recv in progress
		// means the ring is being torn down anyway.
		if t.inShm != nil {
			w := newWaiter(t.timeout)
			select {
			case <-t.leftGone:
			case <-w.arm():
			}
			w.stop()
		} else if t.in != nil && t.recvMu.TryLock() {
			if t.leftErr == nil {
				m := rxMsg{maxFrame: t.maxFrame, fn: func(Header, [][]byte) error { return nil }}
				t.recvTimer.Reset(t.timeout)
				for t.in.RecvMsg(&m) == nil {
				}
				t.recvTimer.Stop()
			}
			t.recvMu.Unlock()
		}
	}
	return t.Abort()
}

// Abort tears down both links at once; neighbours see their pending and
// later calls fail. It waits for the transport's goroutines.
func (t *GRPCTransport) Abort() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		if t.outCancel != nil {
			t.outCancel()
		}
		if t.conn != nil {
			t.conn.Close()
		}
		t.srv.Stop()
		t.wg.Wait()
		t.recvTimer.Stop()
		// Calls still inside a ring hold references; the last one out
		// unmaps it.
		if t.outShm != nil {
			t.outShm.release()
		}
		if t.inShm != nil {
			t.inShm.release()
		}
	})
	return nil
}
