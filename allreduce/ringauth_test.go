package allreduce

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The tests in this file attack a rank's ring listener over real gRPC on
// loopback: a stranger who knows the job, the generation and the rank it
// claims (all three are public) but not the ring key, a replay of a
// genuine link's hello, and a flood of idle connections.

// ringCfg is the configuration of rank of a test ring of len(addrs) ranks
// of job 7, generation 3.
func ringCfg(rank int, addrs []string, lis net.Listener, noShm bool) GRPCConfig {
	cfg := GRPCConfig{Rank: rank, Addrs: addrs, Listener: lis, Job: 7, Generation: 3, Timeout: 5 * time.Second}
	withMode(noShm, nil)(&cfg)
	return keyed(cfg)
}

// listeners binds n loopback listeners.
func listeners(t *testing.T, n int) ([]net.Listener, []string) {
	t.Helper()
	lis := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[i], addrs[i] = l, l.Addr().String()
	}
	return lis, addrs
}

// helloMsg is one frame a test sends on a link: a header and its payload.
type helloMsg struct {
	h       Header
	payload []byte
}

// playLink opens a Link stream to addr and plays msgs: it sends the first,
// then waits for an answer before sending each of the others, then waits
// for one more answer. It returns nil if the link is still open hold after
// the last message (the listener took it), else the error that ended it.
func playLink(t *testing.T, addr string, msgs []helloMsg, hold time.Duration) error {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(frameCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := conn.NewStream(ctx, &linkStreamDesc, linkMethod, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	recv := func() error {
		done := make(chan error, 1)
		go func() {
			m := rxMsg{maxFrame: 1 << 20, fn: func(Header, [][]byte) error { return nil }}
			done <- s.RecvMsg(&m)
		}()
		select {
		case err := <-done:
			return err
		case <-time.After(hold):
			cancel()
			<-done
			return nil
		}
	}
	for i, m := range msgs {
		if i > 0 {
			if err := recv(); err != nil {
				return err
			}
		}
		hb := make([]byte, HeaderLen)
		m.h.Len = uint32(len(m.payload))
		PutHeader(hb, m.h)
		if err := s.SendMsg(&txMsg{hdr: hb, payload: m.payload}); err != nil {
			if err == io.EOF {
				m := rxMsg{maxFrame: 1 << 20}
				err = s.RecvMsg(&m)
			}
			return err
		}
	}
	return recv()
}

// attackThenRing starts rank 1 of a ring of two, lets attack loose on its
// listener before rank 0 exists, and checks that the attack was turned
// away at once and that the real rank 0 then forms the ring with it.
func attackThenRing(t *testing.T, noShm bool, attack func(addr string) error) {
	t.Helper()
	lis, addrs := listeners(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	var ts [2]*GRPCTransport
	var errs [2]error
	var wg sync.WaitGroup
	var mu sync.Mutex
	var logged []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		cfg := ringCfg(1, addrs, lis[1], noShm)
		cfg.Logf = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			logged = append(logged, fmt.Sprintf(format, args...))
		}
		ts[1], errs[1] = DialRing(ctx, cfg)
	}()
	start := time.Now()
	if err := attack(addrs[1]); err == nil {
		t.Errorf("the attacker holds an open link to rank 1")
	} else if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the attacker's link was closed after %v (%v), not at once", took, err)
	} else {
		t.Logf("the attacker's link was closed after %v: %v", took.Round(time.Millisecond), err)
	}
	mu.Lock()
	if len(logged) != 1 || !strings.Contains(logged[0], "rank 1: refused a link from 127.0.0.1:") || !strings.Contains(logged[0], "ring key") {
		t.Errorf("rank 1 logged %q, want the refused link", logged)
	} else {
		t.Logf("rank 1 logged: %s", logged[0])
	}
	mu.Unlock()
	ts[0], errs[0] = DialRing(ctx, ringCfg(0, addrs, lis[0], noShm))
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, tr := range ts {
				if tr != nil {
					tr.Close()
				}
			}
			t.Fatalf("rank %d could not form the ring after the attack: %v", i, err)
		}
	}
	defer ts[0].Close()
	defer ts[1].Close()
	if !noShm && shmSupported {
		for i, tr := range ts {
			if r, l := tr.LocalLinks(); !r || !l {
				t.Errorf("rank %d: shared-memory links right %v left %v, want both", i, r, l)
			}
		}
	}
	reduceAndCheck(t, asTransports(ts[:]), 10_007, "fp32")
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// A stranger who names the right job, generation and rank but has no ring
// key cannot take a link, whatever it answers: its link is closed at once
// and the real neighbour then forms the ring.
func TestGRPCRingRefusesStranger(t *testing.T) {
	for _, mode := range linkModes {
		t.Run(mode.name, func(t *testing.T) {
			attackThenRing(t, mode.noShm, func(addr string) error {
				hello := Header{Kind: KindHello, Job: 7, Generation: 3, From: 0}
				// Its hello, then a made-up answer to whatever it is asked.
				return playLink(t, addr, []helloMsg{{hello, random(32)}, {hello, random(32)}}, time.Second)
			})
		})
	}
}

// relay is a man in the middle of one ring link that passes every frame
// on and records the hellos the dialling side sends.
type relay struct {
	conn *grpc.ClientConn // to the real listener
	mu   sync.Mutex
	sent []helloMsg
}

func (r *relay) handleLink(down grpc.ServerStream) error {
	up, err := r.conn.NewStream(down.Context(), &linkStreamDesc, linkMethod, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	forward := func(dst interface{ SendMsg(any) error }, m *rxMsg, payload []byte) error {
		hb := make([]byte, HeaderLen)
		PutHeader(hb, m.h)
		return dst.SendMsg(&txMsg{hdr: hb, payload: payload})
	}
	go func() {
		for {
			m := rxMsg{maxFrame: 1 << 20}
			if up.RecvMsg(&m) != nil || forward(down, &m, m.hello) != nil {
				return
			}
		}
	}()
	for {
		var payload []byte
		m := rxMsg{maxFrame: 1 << 20, fn: func(_ Header, frags [][]byte) error {
			for _, f := range frags {
				payload = append(payload, f...)
			}
			return nil
		}}
		if err := down.RecvMsg(&m); err != nil {
			up.CloseSend()
			return nil
		}
		if m.h.Kind == KindHello {
			payload = m.hello
			r.mu.Lock()
			if len(r.sent) < 2 {
				r.sent = append(r.sent, helloMsg{m.h, payload})
			}
			r.mu.Unlock()
		}
		if err := forward(up, &m, payload); err != nil {
			return err
		}
	}
}

// recordHello forms a ring of two whose link from rank 0 to rank 1 passes
// through a relay, and returns the hellos rank 0 sent on it.
func recordHello(t *testing.T, noShm bool) []helloMsg {
	t.Helper()
	lis, addrs := listeners(t, 3) // rank 0, rank 1, the relay
	conn, err := grpc.NewClient("passthrough:///"+addrs[1], grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(frameCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := &relay{conn: conn}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(frameCodec{}))
	srv.RegisterService(&ringDesc, r)
	go srv.Serve(lis[2])
	defer srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	var ts [2]*GRPCTransport
	var errs [2]error
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Rank 0 reaches rank 1 through the relay.
			seen := []string{addrs[0], addrs[1]}
			if i == 0 {
				seen[1] = addrs[2]
			}
			ts[i], errs[i] = DialRing(ctx, ringCfg(i, seen, lis[i], noShm))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d through the relay: %v", i, err)
		}
	}
	for _, tr := range ts {
		wg.Go(func() { tr.Close() })
	}
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sent) == 0 {
		t.Fatal("the relay recorded no hello")
	}
	return r.sent
}

// A recorded hello of a genuine rank 0, replayed to a rank 1 of the same
// job, generation and key, does not take the link.
func TestGRPCRingRefusesReplay(t *testing.T) {
	for _, mode := range linkModes {
		t.Run(mode.name, func(t *testing.T) {
			recorded := recordHello(t, mode.noShm)
			wantOffer := !mode.noShm && shmSupported
			if len(recorded) != 2 || (len(recorded[1].payload) > linkMACLen) != wantOffer {
				t.Fatalf("recorded %d hellos, want the nonce and the proof (with an offer on shared memory)", len(recorded))
			}
			attackThenRing(t, mode.noShm, func(addr string) error {
				return playLink(t, addr, recorded, time.Second)
			})
		})
	}
}

// ringListenerLimit is the most connections a ring listener holds at once.
const ringListenerLimit = 16

// More idle connections than a ring listener takes do not disturb the
// ring: the ones over the limit are closed at once, the others once the
// connection handshake deadline (half the timeout) passes, and the ring's
// all-reduce works throughout.
func TestGRPCRingConnLimits(t *testing.T) {
	lis, addrs := listeners(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	var gs [2]*GRPCTransport
	var errs [2]error
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := ringCfg(i, addrs, lis[i], true)
			cfg.Timeout = 2 * time.Second
			gs[i], errs[i] = DialRing(ctx, cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
	defer gs[0].Close()
	defer gs[1].Close()
	const idle = 40
	conns := make([]net.Conn, idle)
	for i := range conns {
		c, err := net.Dial("tcp", addrs[1])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	start := time.Now()
	closedBy := func(deadline time.Time) int {
		n := 0
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetReadDeadline(deadline)
				if err := drain(c); !isTimeout(err) {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return n
	}
	if n := closedBy(start.Add(500 * time.Millisecond)); n < idle-ringListenerLimit {
		t.Errorf("%d of %d idle connections closed at once, want at least %d (over the limit of %d)", n, idle, idle-ringListenerLimit, ringListenerLimit)
	}
	if n := closedBy(start.Add(2500 * time.Millisecond)); n != idle {
		t.Errorf("%d of %d idle connections closed by the handshake deadline, want all", n, idle)
	}
	// The ring still works, and closes (at the end of the all-reduce)
	// without waiting for any idle connection.
	reduceAndCheck(t, asTransports(gs[:]), 10_007, "fp32")

	// A ring forms though its listeners are full of idle connections
	// when it starts: its links get in once those reach the deadline.
	lis, addrs = listeners(t, 2)
	for _, a := range addrs {
		for range idle {
			c, err := net.Dial("tcp", a)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
	}
	start = time.Now()
	for i := range 2 {
		wg.Go(func() {
			cfg := ringCfg(i, addrs, lis[i], true)
			cfg.Timeout = 2 * time.Second
			gs[i], errs[i] = DialRing(ctx, cfg)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d of a ring formed behind idle connections: %v", i, err)
		}
	}
	t.Logf("a ring formed behind %d idle connections per listener in %v", idle, time.Since(start).Round(time.Millisecond))
	reduceAndCheck(t, asTransports(gs[:]), 10_007, "fp32")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), "i/o timeout")
}

// drain reads what the server sends (its HTTP/2 settings) until the
// connection ends or the read deadline passes, and returns why it stopped.
func drain(c net.Conn) error {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			return err
		}
	}
}

// Notices come at most once a second; the next one says how many were
// left out.
func TestRateLog(t *testing.T) {
	var lines []string
	r := rateLog{logf: func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }}
	for range 5 {
		r.printf("refused %d", 1)
	}
	if len(lines) != 1 || lines[0] != "refused 1" {
		t.Fatalf("five notices at once logged %q", lines)
	}
	time.Sleep(linkLogEvery + 50*time.Millisecond)
	r.printf("refused %d", 2)
	if len(lines) != 2 || lines[1] != "refused 2 (and 4 more like it since the last notice)" {
		t.Fatalf("a notice a second later logged %q", lines[1:])
	}
}

// Ranks whose keys differ (another join token) form no ring, and say why;
// a ring without a key is refused at once.
func TestGRPCRingWrongKey(t *testing.T) {
	lis, addrs := listeners(t, 2)
	var errs [2]error
	var mu sync.Mutex
	var logged []string
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			cfg := ringCfg(i, addrs, lis[i], true)
			cfg.Timeout = 500 * time.Millisecond
			if i == 1 {
				cfg.RingKey = RingKey("another token", cfg.Job, cfg.Generation)
			}
			cfg.Logf = func(format string, args ...any) {
				mu.Lock()
				defer mu.Unlock()
				logged = append(logged, fmt.Sprintf(format, args...))
			}
			tr, err := DialRing(context.Background(), cfg)
			if err == nil {
				tr.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if errs[0] == nil || errs[1] == nil {
		t.Fatalf("ranks of different keys formed a ring: %v", errs)
	}
	mu.Lock()
	if len(logged) == 0 || !strings.Contains(strings.Join(logged, "\n"), "did not prove it holds the ring key") {
		t.Errorf("logged %q, want a failed proof", logged)
	}
	mu.Unlock()

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	cfg := ringCfg(0, []string{l.Addr().String()}, l, true)
	cfg.RingKey = nil
	if _, err := DialRing(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "ring key") {
		t.Errorf("DialRing without a key: %v", err)
	}
}
