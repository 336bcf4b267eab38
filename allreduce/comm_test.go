package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	goleak.VerifyTestMain(m)
}

// hangTimeout only catches hangs; no test depends on it.
const hangTimeout = 60 * time.Second

// ringFunc is run on every rank of a ring with that rank's Comm.
type ringFunc func(ctx context.Context, c *Comm) error

// runMemRing runs fn on n ranks over a MemNetwork and returns each rank's
// error.
func runMemRing(t testing.TB, n int, cfg func(rank int) Config, timeout time.Duration, fn ringFunc) []error {
	t.Helper()
	net, err := NewMemNetwork(n, 4, timeout)
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]Transport, n)
	for i := range ts {
		ts[i] = net.Transport(i)
	}
	return runRing(t, ts, cfg, fn)
}

// runRing runs fn on every transport's Comm, each with its own Run loop.
func runRing(t testing.TB, ts []Transport, cfg func(rank int) Config, fn ringFunc) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, tr := range ts {
		c, err := New(tr, cfg(i))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		var runWG sync.WaitGroup
		runWG.Add(1)
		go func() { defer runWG.Done(); c.Run(runCtx) }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx, c)
			stop()
			runWG.Wait()
			c.Close()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("ring hung")
	}
	return errs
}

func fillRank(buf []float32, rank int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, uint64(rank)))
	for i := range buf {
		buf[i] = float32(r.NormFloat64())
	}
}

// sequentialSum is the plain reference: out[i] = x0[i] + x1[i] + … in rank
// order.
func sequentialSum(n, length int, seed uint64) []float32 {
	out := make([]float32, length)
	x := make([]float32, length)
	for r := 0; r < n; r++ {
		fillRank(x, r, seed)
		for i := range out {
			out[i] += x[i]
		}
	}
	return out
}

func fixedCfg(c Config) func(int) Config { return func(int) Config { return c } }

// allReduceSuite is the shared test suite: every implementation (naive,
// ring, compressed ring) over every transport must pass it.
func allReduceSuite(t *testing.T, kind OpKind, codecName string, transports func(t *testing.T, n int) []Transport) {
	cases := []struct{ n, length, chunk int }{
		{1, 10, 4}, {2, 0, 4}, {2, 1, 4}, {2, 7, 3}, {3, 100, 7}, {4, 1000, 64},
		{5, 3, 2}, {4, 4096, 4096}, {7, 12345, 100}, {16, 5000, 37},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("n%d_len%d_chunk%d", tc.n, tc.length, tc.chunk), func(t *testing.T) {
			seed := uint64(tc.n*1000 + tc.length)
			want := sequentialSum(tc.n, tc.length, seed)
			bufs := make([][]float32, tc.n)
			errs := runRing(t, transports(t, tc.n), func(int) Config {
				codec, err := NewCodec(codecName, 0)
				if err != nil {
					t.Fatal(err)
				}
				return Config{Job: 7, Generation: 3, Chunk: tc.chunk, Codec: codec}
			}, func(ctx context.Context, c *Comm) error {
				buf := make([]float32, tc.length)
				fillRank(buf, c.Rank(), seed)
				bufs[c.Rank()] = buf
				if cl, ok := c.codec.(interface{ Close() error }); ok {
					defer cl.Close()
				}
				return c.Start(ctx, Op{Kind: kind, Buf: buf}).Wait()
			})
			for r, err := range errs {
				if err != nil {
					t.Fatalf("rank %d: %v", r, err)
				}
			}
			// Every rank holds bit-identical sums.
			for r := 1; r < tc.n; r++ {
				for i := range bufs[0] {
					if math.Float32bits(bufs[r][i]) != math.Float32bits(bufs[0][i]) {
						t.Fatalf("rank %d element %d = %v, rank 0 has %v", r, i, bufs[r][i], bufs[0][i])
					}
				}
			}
			tol := 1e-5
			switch codecName[:4] {
			case "bf16":
				tol = 0.02 * float64(tc.n)
			case "fp16":
				tol = 0.004 * float64(tc.n)
			}
			for i := range want {
				got := float64(bufs[0][i])
				if d := math.Abs(got - float64(want[i])); d > tol*math.Max(1, math.Abs(float64(want[i]))) {
					t.Fatalf("element %d = %v, want %v (codec %s)", i, got, want[i], codecName)
				}
				if kind == OpNaiveAllReduce && codecName == "fp32" && bufs[0][i] != want[i] {
					t.Fatalf("naive element %d = %v, want exactly %v", i, bufs[0][i], want[i])
				}
			}
		})
	}
}

func memTransports(t *testing.T, n int) []Transport {
	net, err := NewMemNetwork(n, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]Transport, n)
	for i := range ts {
		ts[i] = net.Transport(i)
	}
	return ts
}

func TestAllReduceMem(t *testing.T) {
	for _, kind := range []OpKind{OpNaiveAllReduce, OpAllReduce} {
		for _, codec := range []string{"fp32", "bf16", "fp16", "fp32+s2", "bf16+zstd"} {
			t.Run(fmt.Sprintf("kind%d_%s", kind, codec), func(t *testing.T) {
				allReduceSuite(t, kind, codec, memTransports)
			})
		}
	}
}

func TestBroadcastAndBarrierMem(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		for root := 0; root < n; root++ {
			bufs := make([][]float32, n)
			errs := runMemRing(t, n, fixedCfg(Config{Chunk: 3}), 0, func(ctx context.Context, c *Comm) error {
				buf := make([]float32, 11)
				if c.Rank() == root {
					for i := range buf {
						buf[i] = float32(i) + 0.25
					}
				}
				bufs[c.Rank()] = buf
				if err := c.Barrier(ctx); err != nil {
					return err
				}
				return c.Broadcast(ctx, root, buf)
			})
			for r, err := range errs {
				if err != nil {
					t.Fatalf("n=%d root=%d rank %d: %v", n, root, r, err)
				}
				for i, v := range bufs[r] {
					if v != float32(i)+0.25 {
						t.Fatalf("n=%d root=%d rank %d element %d = %v", n, root, r, i, v)
					}
				}
			}
		}
	}
}

// TestAsyncBuckets submits several buckets before waiting for any.
func TestAsyncBuckets(t *testing.T) {
	const n, buckets, length = 4, 6, 300
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 16}), 0, func(ctx context.Context, c *Comm) error {
		bufs := make([][]float32, buckets)
		hs := make([]*Handle, buckets)
		for b := range bufs {
			bufs[b] = make([]float32, length)
			for i := range bufs[b] {
				bufs[b][i] = float32(c.Rank() + b)
			}
			hs[b] = c.Start(ctx, Op{Kind: OpAllReduce, Buf: bufs[b]})
		}
		for b, h := range hs {
			if err := h.Wait(); err != nil {
				return err
			}
			want := float32(n*(n-1)/2 + n*b)
			for i, v := range bufs[b] {
				if v != want {
					return fmt.Errorf("bucket %d element %d = %v, want %v", b, i, v, want)
				}
			}
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// TestForeignFrames checks that a frame of another job or generation is
// rejected on receipt.
func TestForeignFrames(t *testing.T) {
	for _, bad := range []Config{{Job: 8, Generation: 3}, {Job: 7, Generation: 2}} {
		errs := runMemRing(t, 3, func(rank int) Config {
			if rank == 1 {
				return bad
			}
			return Config{Job: 7, Generation: 3}
		}, 0, func(ctx context.Context, c *Comm) error {
			return c.AllReduce(ctx, make([]float32, 30))
		})
		if errs[2] == nil {
			t.Fatalf("rank 2 accepted frames from job %d generation %d", bad.Job, bad.Generation)
		}
		for r, err := range errs {
			if err == nil {
				t.Errorf("rank %d: no error", r)
			}
		}
	}
}

func TestClosedComm(t *testing.T) {
	net, _ := NewMemNetwork(2, 0, 0)
	c, _ := New(net.Transport(0), Config{})
	c.Close()
	if err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.AllReduce(context.Background(), make([]float32, 3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("AllReduce on closed comm: %v", err)
	}
}
