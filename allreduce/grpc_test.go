package allreduce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// grpcRing dials n GRPCTransports on loopback; tweak may edit each config.
func grpcRing(t testing.TB, n int, tweak func(*GRPCConfig)) []*GRPCTransport {
	t.Helper()
	lis := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[i] = l
		addrs[i] = l.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	ts := make([]*GRPCTransport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := GRPCConfig{Rank: i, Addrs: addrs, Listener: lis[i], Job: 7, Generation: 3, Timeout: 5 * time.Second}
			if tweak != nil {
				tweak(&cfg)
			}
			ts[i], errs[i] = DialRing(ctx, keyed(cfg))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, tr := range ts {
				if tr != nil {
					tr.Close()
				}
			}
			t.Fatalf("rank %d: %v", i, err)
		}
	}
	return ts
}

// testToken is the join token of the test rings.
const testToken = "test-token"

// keyed gives cfg the ring key of its job and generation.
func keyed(cfg GRPCConfig) GRPCConfig {
	if cfg.RingKey == nil {
		cfg.RingKey = RingKey(testToken, cfg.Job, cfg.Generation)
	}
	return cfg
}

// linkModes are the two data paths of a GRPCTransport: frames on the
// gRPC stream, and frames through shared-memory rings (ranks on one host).
var linkModes = []struct {
	name  string
	noShm bool
}{{"grpc", true}, {"shm", false}}

// withMode applies a link mode, then tweak, to a config. Test frames are
// small: a 1 MiB limit keeps the shared rings at their 1 MiB minimum
// rather than the 64 MiB the default limit implies.
func withMode(noShm bool, tweak func(*GRPCConfig)) func(*GRPCConfig) {
	return func(c *GRPCConfig) {
		c.NoSharedMemory = noShm
		c.MaxFrame = 1 << 19
		if tweak != nil {
			tweak(c)
		}
	}
}

func grpcTransports(noShm bool) func(t *testing.T, n int) []Transport {
	return func(t *testing.T, n int) []Transport {
		gs := grpcRing(t, n, withMode(noShm, func(c *GRPCConfig) { c.MaxInflight = 3; c.Window = 1 << 10 }))
		ts := make([]Transport, n)
		for i := range gs {
			if got := gs[i].outShm != nil; got == noShm {
				t.Fatalf("rank %d: shared memory %v, want %v", i, got, !noShm)
			}
			ts[i] = gs[i]
		}
		return ts
	}
}

func TestAllReduceGRPC(t *testing.T) {
	for _, mode := range linkModes {
		for _, kind := range []OpKind{OpNaiveAllReduce, OpAllReduce} {
			for _, codec := range []string{"fp32", "bf16", "fp16+s2"} {
				t.Run(mode.name+"/"+codec, func(t *testing.T) {
					allReduceSuite(t, kind, codec, grpcTransports(mode.noShm))
				})
			}
		}
	}
}

// TestGRPCKill aborts one rank's gRPC transport (its server, connection
// and streams go away, as when the process dies) at random points; every
// survivor must fail with a PeerError.
func TestGRPCKill(t *testing.T) {
	for _, mode := range linkModes {
		t.Run(mode.name, func(t *testing.T) { testGRPCKill(t, mode.noShm) })
	}
}

func testGRPCKill(t *testing.T, noShm bool) {
	const ops = 6
	r := newTestRand(99)
	trials := 12
	if testing.Short() {
		trials = 4
	}
	misnamed, survivors := 0, 0
	defer func() { t.Logf("%d of %d survivors named another rank than the victim", misnamed, survivors) }()
	for trial := 0; trial < trials; trial++ {
		n := 2 + r.IntN(4)
		victim := r.IntN(n)
		codec := killCodecs[trial%len(killCodecs)]
		kill := 1 + r.Int64N(countCalls(t, n, victim, ops-1, codec))
		gs := grpcRing(t, n, withMode(noShm, func(c *GRPCConfig) { c.Timeout = 5 * time.Second; c.MaxInflight = 2 }))
		ts := make([]Transport, n)
		var killer *killingTransport
		for i := range gs {
			ts[i] = gs[i]
			if i == victim {
				killer = &killingTransport{Transport: gs[i], kill: kill}
				ts[i] = killer
			}
		}
		errs := runRing(t, ts, fixedCfg(Config{Job: 7, Generation: 3, Chunk: 16, Codec: codec}), func(ctx context.Context, c *Comm) error {
			return killWorkload(ctx, c, ops)
		})
		for rank, err := range errs {
			// Every survivor fails with a PeerError. Nearly all name the
			// victim (directly or through abort notices), but a notice can
			// lose the race with the teardown behind it; the rate is logged.
			var pe *PeerError
			if rank != victim && !errors.As(err, &pe) {
				t.Fatalf("trial %d (n=%d victim=%d kill=%d): survivor %d returned %v, want a PeerError", trial, n, victim, kill, rank, err)
			}
			if rank != victim && pe.Peer != victim {
				misnamed++
			}
			if rank != victim {
				survivors++
			}
		}
	}
}

// TestGRPCStall checks that a silent rank (process alive, links open) is
// named by its neighbours within the timeout and that every rank fails.
func TestGRPCStall(t *testing.T) {
	for _, mode := range linkModes {
		t.Run(mode.name, func(t *testing.T) { testGRPCStall(t, mode.noShm) })
	}
}

func testGRPCStall(t *testing.T, noShm bool) {
	const n, stalled = 4, 1
	gs := grpcRing(t, n, withMode(noShm, func(c *GRPCConfig) { c.Timeout = 300 * time.Millisecond }))
	ts := make([]Transport, n)
	for i := range gs {
		ts[i] = gs[i]
	}
	var survivors sync.WaitGroup
	survivors.Add(n - 1)
	errs := runRing(t, ts, fixedCfg(Config{Job: 7, Generation: 3, Chunk: 1024}), func(ctx context.Context, c *Comm) error {
		if c.Rank() == stalled {
			survivors.Wait()
			return nil
		}
		defer survivors.Done()
		return c.AllReduce(ctx, make([]float32, 1<<16))
	})
	checkStallErrors(t, errs, n, stalled)
}

// TestGRPCForeignRing checks that a rank of another job or generation
// cannot join a ring.
func TestGRPCForeignRing(t *testing.T) {
	lis := make([]net.Listener, 2)
	addrs := make([]string, 2)
	for i := range lis {
		lis[i], _ = net.Listen("tcp", "127.0.0.1:0")
		addrs[i] = lis[i].Addr().String()
	}
	ctx := context.Background()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := GRPCConfig{Rank: i, Addrs: addrs, Listener: lis[i], Job: 7, Generation: uint64(3 + i), Timeout: 500 * time.Millisecond}
			tr, err := DialRing(ctx, keyed(cfg))
			if err == nil {
				tr.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("rank %d joined a ring of another generation", i)
		}
	}
}

// TestGRPCMutualTLS runs a ring over mutual TLS with certificates from a
// throwaway CA, and checks that a client without a certificate is refused.
func TestGRPCMutualTLS(t *testing.T) {
	pki := newTestPKI(t, 3)
	gs := grpcRing(t, 3, func(c *GRPCConfig) {
		c.ServerTLS = pki.serverConfig(c.Rank)
		c.ClientTLS = pki.clientConfig(c.Rank, true)
	})
	ts := make([]Transport, len(gs))
	for i := range gs {
		ts[i] = gs[i]
	}
	errs := runRing(t, ts, fixedCfg(Config{Job: 7, Generation: 3, Chunk: 64}), func(ctx context.Context, c *Comm) error {
		buf := []float32{1, 2, 3, 4, 5}
		if err := c.AllReduce(ctx, buf); err != nil {
			return err
		}
		if buf[4] != 15 {
			return fmt.Errorf("sum %v", buf)
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}

	// Without a client certificate the handshake fails.
	lis := make([]net.Listener, 2)
	addrs := make([]string, 2)
	for i := range lis {
		lis[i], _ = net.Listen("tcp", "127.0.0.1:0")
		addrs[i] = lis[i].Addr().String()
	}
	derrs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr, err := DialRing(context.Background(), keyed(GRPCConfig{Rank: i, Addrs: addrs, Listener: lis[i],
				Timeout: 500 * time.Millisecond, ServerTLS: pki.serverConfig(i), ClientTLS: pki.clientConfig(i, i == 0)}))
			if err == nil {
				tr.Close()
			}
			derrs[i] = err
		}()
	}
	wg.Wait()
	if derrs[0] == nil || derrs[1] == nil {
		t.Fatalf("ring formed with a certificate-less client: %v", derrs)
	}
}

// TestGRPCRetriesRefusedLink forms a ring of generation 4 while rank 1's
// address is still served by its transport of generation 3 (a new
// generation starting while the old listener closes): rank 0's link is
// refused there, retried, and accepted by generation 4, and the ring works.
func TestGRPCRetriesRefusedLink(t *testing.T) {
	l0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{l0.Addr().String(), l1.Addr().String()}
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	// Rank 1 of generation 3 waits in vain for its neighbour, refusing
	// generation 4's link, and gives up.
	old := make(chan error, 1)
	go func() {
		_, err := DialRing(ctx, keyed(GRPCConfig{Rank: 1, Addrs: addrs, Listener: l1, Job: 7, Generation: 3, Timeout: 400 * time.Millisecond}))
		old <- err
	}()
	var ts [2]*GRPCTransport
	var errs [2]error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		ts[0], errs[0] = DialRing(ctx, keyed(GRPCConfig{Rank: 0, Addrs: addrs, Listener: l0, Job: 7, Generation: 4, Timeout: 5 * time.Second}))
	}()
	go func() {
		defer wg.Done()
		if err := <-old; err == nil {
			errs[1] = errors.New("generation 3 formed a ring alone")
			return
		}
		var l net.Listener
		for l == nil {
			l, _ = net.Listen("tcp", addrs[1]) // the old transport may still be closing
			time.Sleep(10 * time.Millisecond)
		}
		ts[1], errs[1] = DialRing(ctx, keyed(GRPCConfig{Rank: 1, Addrs: addrs, Listener: l, Job: 7, Generation: 4, Timeout: 5 * time.Second}))
	}()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
	comms := make([]*Comm, 2)
	for i := range comms {
		comms[i], err = New(ts[i], Config{Job: 7, Generation: 4})
		if err != nil {
			t.Fatal(err)
		}
		go comms[i].Run(ctx)
		defer comms[i].Close()
	}
	bufs := [][]float32{{1, 2, 3}, {10, 20, 30}}
	for i := range comms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = comms[i].AllReduce(ctx, bufs[i])
		}()
	}
	wg.Wait()
	for i := range comms {
		if errs[i] != nil || bufs[i][0] != 11 || bufs[i][2] != 33 {
			t.Fatalf("rank %d: %v %v", i, errs[i], bufs[i])
		}
	}
}
