package allreduce

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
)

// ringReference is the ring all-reduce of xs through a lossy codec,
// computed element by element: segment k's sum starts at rank k and passes
// ranks k+1, …, k+n-1 (its owner), each adding its own value to the
// decoded wire value (the exact partial sum where links carry fp32,
// exactWire); the owner's rounded total is what every rank ends with.
func ringReference(xs [][]float32, codec Codec, exactWire bool) []float32 {
	n, length := len(xs), len(xs[0])
	round := func(v float32) float32 {
		out := []float32{0}
		if err := codec.Decode(out, codec.AppendEncode(nil, []float32{v})); err != nil {
			panic(err)
		}
		return out[0]
	}
	want := make([]float32, length)
	for k := range n {
		seg := segment(n, k, length)
		for e := seg.Off; e < seg.End(); e++ {
			v := xs[k][e]
			for i := 1; i < n; i++ {
				if !exactWire {
					v = round(v)
				}
				v = xs[(k+i)%n][e] + v
			}
			want[e] = round(v)
		}
	}
	return want
}

// awkward puts values that rounding and addition treat specially at fixed
// places: infinities, a NaN, sums that overflow, subnormals, signed zeros,
// ties.
func awkward(buf []float32, rank int) {
	vals := []float32{
		float32(math.Inf(1)), float32(math.NaN()), 3e38, -3e38,
		1e-40, float32(math.Copysign(0, -1)), 1 + 1.0/256, 65504, 1e-7,
	}
	for i, v := range vals {
		if p := 5 + 97*i; p < len(buf) && (i%2 == 0 || rank == 1) {
			buf[p] = v
		}
	}
}

// TestFusedRingMatchesReference checks the ring with lossy fixed-width
// codecs, where receivers write the next payload themselves, bit for bit
// against the element-wise reference, on the in-memory twin and on gRPC
// (whose frames arrive in pieces that split elements), and on shared-memory
// links, which carry exact partial sums; there the owner rounds its segment
// as it sums it.
func TestFusedRingMatchesReference(t *testing.T) {
	transports := map[string]func(t *testing.T, n int) []Transport{
		"mem":  memTransports,
		"grpc": grpcTransports(true),
		"shm":  grpcTransports(false),
	}
	fused, rounded := 0, 0
	for _, tname := range []string{"mem", "grpc", "shm"} {
		for _, codecName := range []string{"bf16", "fp16"} {
			for _, tc := range []struct{ n, length, chunk int }{
				{2, 1001, 64}, {3, 4099, 100}, {4, 20000, 5000}, {5, 777, 7},
			} {
				name := fmt.Sprintf("%s/%s/n%d_len%d_chunk%d", tname, codecName, tc.n, tc.length, tc.chunk)
				t.Run(name, func(t *testing.T) {
					codec, err := NewCodec(codecName, 0)
					if err != nil {
						t.Fatal(err)
					}
					xs := make([][]float32, tc.n)
					for r := range xs {
						xs[r] = make([]float32, tc.length)
						fillRank(xs[r], r, 11)
						awkward(xs[r], r)
					}
					want := ringReference(xs, codec, tname == "shm")
					bufs := make([][]float32, tc.n)
					counts := make([]int, tc.n)
					errs := runRing(t, transports[tname](t, tc.n), fixedCfg(Config{Job: 7, Generation: 3, Chunk: tc.chunk, Codec: codec}),
						func(ctx context.Context, c *Comm) error {
							// Two operations: the second reuses the
							// buffers the first filled.
							for range 2 {
								bufs[c.Rank()] = append([]float32(nil), xs[c.Rank()]...)
								if err := c.AllReduce(ctx, bufs[c.Rank()]); err != nil {
									return err
								}
							}
							counts[c.Rank()] = c.fusedSends
							if tname == "shm" {
								counts[c.Rank()] = c.roundedRecvs
							}
							return nil
						})
					for r, err := range errs {
						if err != nil {
							t.Fatalf("rank %d: %v", r, err)
						}
					}
					for r := range bufs {
						for e := range want {
							if math.Float32bits(bufs[r][e]) != math.Float32bits(want[e]) {
								t.Fatalf("rank %d element %d = %v (%#x), want %v (%#x)", r, e,
									bufs[r][e], math.Float32bits(bufs[r][e]), want[e], math.Float32bits(want[e]))
							}
						}
					}
					for _, k := range counts {
						if tname == "shm" {
							rounded += k
						} else {
							fused += k
						}
					}
				})
			}
		}
	}
	// Fusion depends on the sender arming a buffer before its receiver
	// gets the frame, which is how the ring normally runs; over this many
	// frames it must have happened.
	if fused == 0 {
		t.Error("no send carried a payload written by its receiver")
	}
	// On shared memory the owned segment is rounded as it is summed,
	// whenever the segment's last add feeds the send that publishes it,
	// which is every time in the ring.
	if rounded == 0 {
		t.Error("no receiver on shared memory rounded its owned segment")
	}
	t.Logf("%d sends fused, %d receives rounded", fused, rounded)
}

// TestReceiveFusedFragments feeds the fused receive payloads split at any
// byte boundary, for an add, an add whose send rounds, and a copy, and
// checks both the buffer and the payload it leaves for the sender against
// the unfused steps, and that the payload's buffer returns to the pool only
// once its frame is acknowledged. Without a free buffer the receive is left
// to the unfused path.
func TestReceiveFusedFragments(t *testing.T) {
	const n = 9000 // over fuseBlock, not a multiple of it
	for _, name := range []string{"bf16", "fp16"} {
		codec, _ := NewCodec(name, 0)
		in := make([]float32, n)
		fillRank(in, 2, 8)
		wire := codec.AppendEncode(nil, in)
		base := make([]float32, n)
		fillRank(base, 3, 8)
		for _, tc := range []struct {
			mode  RecvMode
			round bool
		}{{RecvAdd, false}, {RecvAdd, true}, {RecvCopy, false}} {
			// What the unfused receiver and sender would produce.
			want := append([]float32(nil), base...)
			var err error
			if tc.mode == RecvAdd {
				err = codec.DecodeAdd(want, wire)
			} else {
				err = codec.Decode(want, wire)
			}
			if err != nil {
				t.Fatal(err)
			}
			wantPayload := codec.AppendEncode(nil, want)
			if tc.round {
				codec.Decode(want, wantPayload)
			}
			r := newTestRand(uint64(tc.mode))
			for trial := range 20 {
				c := &Comm{fwdReady: make([][]byte, 2), fwdFree: make(chan []byte, 1)}
				c.cur = recvState{codec: codec, fuse: true, op: RecvOp{Mode: tc.mode}, sends: []SendOp{{Quantize: tc.round}}, feeds: []int{-1, 0}}
				var frags [][]byte
				for rest := wire; len(rest) > 0; {
					k := 1 + r.IntN(min(len(rest), 5000))
					frags = append(frags, rest[:k])
					rest = rest[k:]
				}
				dst := append([]float32(nil), base...)
				if done, err := c.receiveFused(0, dst, frags); done || err != nil {
					t.Fatalf("receive that feeds no send: done %v, err %v", done, err)
				}
				if done, _ := c.receiveFused(1, dst, frags); done {
					t.Fatal("fused without a free buffer")
				}
				c.fwdFree <- nil
				if done, err := c.receiveFused(1, dst, frags); !done || err != nil {
					t.Fatalf("%s mode %d trial %d: done %v, err %v", name, tc.mode, trial, done, err)
				}
				payload, ok := c.fusedPayload(0, 41, SendOp{After: 1})
				if !ok {
					t.Fatal("payload not handed to the send")
				}
				if len(c.fwdFree) != 0 || len(c.fwdPending) != 1 {
					t.Fatalf("buffer not held until acknowledged: %d free, %d pending", len(c.fwdFree), len(c.fwdPending))
				}
				for i := range want {
					if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s mode %d round %v: element %d = %v, want %v", name, tc.mode, tc.round, i, dst[i], want[i])
					}
				}
				if string(payload) != string(wantPayload) {
					t.Fatalf("%s mode %d round %v: payload differs from the sender's encoding", name, tc.mode, tc.round)
				}
				c.releaseFused(40)
				if len(c.fwdFree) != 0 {
					t.Fatal("buffer released before its frame was acknowledged")
				}
				c.releaseFused(41)
				if len(c.fwdFree) != 1 || len(c.fwdPending) != 0 {
					t.Fatal("buffer not released once its frame was acknowledged")
				}
				if _, err := c.receiveFused(1, dst[:n-1], frags); err == nil {
					t.Fatalf("%s: payload of the wrong size accepted", name)
				}
				if len(c.fwdFree) != 1 {
					t.Fatal("a failed receive kept its buffer")
				}
			}
		}
	}
}

// TestAllReduceExactIgnoresCodec: sums that must not be rounded (counts,
// statistics) go through fp32 even on a Comm whose codec is bf16, while
// plain all-reduces on the same Comm are rounded.
func TestAllReduceExactIgnoresCodec(t *testing.T) {
	const n = 3
	got := make([][2][]float32, n)
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 4, Codec: BF16{}}), 0, func(ctx context.Context, c *Comm) error {
		exact := []float32{float32(1001 + c.Rank()), 7, 9837, 1}
		rounded := append([]float32(nil), exact...)
		if err := c.AllReduceExact(ctx, exact); err != nil {
			return err
		}
		if err := c.AllReduce(ctx, rounded); err != nil {
			return err
		}
		got[c.Rank()] = [2][]float32{exact, rounded}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	want := []float32{3006, 21, 3 * 9837, 3}
	for r := range got {
		if !slices.Equal(got[r][0], want) {
			t.Errorf("rank %d: exact sums %v, want %v", r, got[r][0], want)
		}
		if got[r][1][0] != 3008 || got[r][1][2] == want[2] {
			t.Errorf("rank %d: bf16 sums %v, want them rounded (3006 → 3008)", r, got[r][1])
		}
	}
}

// FuzzFusedReceive feeds the fused receive payloads of any size, split at
// any points: it must reject what does not fit, never panic, and leave
// exactly what the unfused receiver and sender would.
func FuzzFusedReceive(f *testing.F) {
	src := []float32{1, -2, 3.5, 0, 1e-9, 65504, float32(math.Inf(1)), 7}
	for _, name := range []string{"bf16", "fp16"} {
		c, _ := NewCodec(name, 0)
		f.Add(name, uint8(0), uint16(len(src)), uint16(3), c.AppendEncode(nil, src))
		f.Add(name, uint8(1), uint16(len(src)), uint16(5), c.AppendEncode(nil, src))
		f.Add(name, uint8(2), uint16(len(src)-1), uint16(0), c.AppendEncode(nil, src))
	}
	f.Fuzz(func(t *testing.T, name string, mode uint8, n, cut uint16, payload []byte) {
		codec, err := NewCodec(name, 0)
		if err != nil {
			return
		}
		if _, ok := codec.(fixedWidth); !ok || codec.Lossless() {
			return
		}
		recvMode, round := RecvAdd, mode%3 == 1
		if mode%3 == 2 {
			recvMode = RecvCopy
		}
		// Pieces of cut+1 bytes (the last one shorter).
		var frags [][]byte
		for rest, k := payload, int(cut)+1; len(rest) > 0; rest = rest[min(k, len(rest)):] {
			frags = append(frags, rest[:min(k, len(rest))])
		}
		base := make([]float32, n)
		for i := range base {
			base[i] = float32(i%7) - 3
		}
		c := &Comm{fwdReady: make([][]byte, 1), fwdFree: make(chan []byte, 1)}
		c.fwdFree <- nil
		c.cur = recvState{codec: codec, fuse: true, op: RecvOp{Mode: recvMode}, sends: []SendOp{{Quantize: round}}, feeds: []int{0}}
		dst := append([]float32(nil), base...)
		done, err := c.receiveFused(0, dst, frags)
		if !done {
			t.Fatal("an armed receive was not handled")
		}
		want := append([]float32(nil), base...)
		var refErr error
		if recvMode == RecvAdd {
			refErr = codec.DecodeAdd(want, payload)
		} else {
			refErr = codec.Decode(want, payload)
		}
		if (err == nil) != (refErr == nil) {
			t.Fatalf("fused receive error %v, the codec's %v", err, refErr)
		}
		if err != nil {
			if len(c.fwdFree) != 1 {
				t.Fatal("a rejected payload kept its buffer")
			}
			return
		}
		wantPayload := payload
		if recvMode == RecvAdd {
			wantPayload = codec.AppendEncode(nil, want)
			if round {
				codec.Decode(want, wantPayload)
			}
		}
		for i := range want {
			if math.Float32bits(dst[i]) != math.Float32bits(want[i]) && !(math.IsNaN(float64(dst[i])) && math.IsNaN(float64(want[i]))) {
				t.Fatalf("element %d = %v, want %v", i, dst[i], want[i])
			}
		}
		if got := c.fwdReady[0]; !bytes.Equal(got, wantPayload) && !hasNaN(want) {
			t.Fatalf("payload %x, want %x", got, wantPayload)
		}
	})
}

func hasNaN(xs []float32) bool {
	return slices.ContainsFunc(xs, func(v float32) bool { return v != v })
}
