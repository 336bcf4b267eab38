package allreduce

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// reduceAndCheck all-reduces over ts with the named codec, checks that
// every rank holds the same bits and that they are within the codec's
// tolerance of the sequential reference, and returns rank 0's sums.
func reduceAndCheck(t *testing.T, ts []Transport, length int, codecName string) []float32 {
	t.Helper()
	n := len(ts)
	want := sequentialSum(n, length, 5)
	bufs := make([][]float32, n)
	errs := runRing(t, ts, func(int) Config {
		codec, err := NewCodec(codecName, 0)
		if err != nil {
			t.Fatal(err)
		}
		return Config{Job: 7, Generation: 3, Chunk: 1000, Codec: codec}
	}, func(ctx context.Context, c *Comm) error {
		buf := make([]float32, length)
		fillRank(buf, c.Rank(), 5)
		bufs[c.Rank()] = buf
		return c.AllReduce(ctx, buf)
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for r := 1; r < n; r++ {
		for i := range bufs[r] {
			if bufs[r][i] != bufs[0][i] {
				t.Fatalf("rank %d differs from rank 0 at %d", r, i)
			}
		}
	}
	tol := 1e-4
	if codecName == "bf16" {
		tol = 0.02 * float64(n)
	}
	for i, v := range bufs[0] {
		if d := math.Abs(float64(v - want[i])); d > tol*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("sum[%d] = %v, want %v (%s)", i, v, want[i], codecName)
		}
	}
	return bufs[0]
}

func asTransports(gs []*GRPCTransport) []Transport {
	ts := make([]Transport, len(gs))
	for i, g := range gs {
		ts[i] = g
	}
	return ts
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestShmLinks checks that ranks on one host take shared-memory rings,
// that no ring file outlives the set-up, and that sums come out right
// with frames wrapping around the rings.
func TestShmLinks(t *testing.T) {
	if !shmSupported {
		t.Skip("no shared-memory links on " + runtime.GOOS)
	}
	dir := t.TempDir()
	gs := grpcRing(t, 3, func(c *GRPCConfig) { c.ShmDir = dir; c.MaxFrame = 40000 })
	for i, g := range gs {
		if g.outShm == nil || g.inShm == nil {
			t.Fatalf("rank %d: links not on shared memory", i)
		}
	}
	if left := dirEntries(t, dir); len(left) != 0 {
		t.Fatalf("ring files left after set-up: %v", left)
	}
	// 1 MiB rings, 4000-byte frames: frames wrap around many times.
	reduceAndCheck(t, asTransports(gs), 300_001, "fp32")
}

// TestShmLinksCarryFP32 checks that a lossy codec is not applied on
// shared-memory links, where it would only cost time: with two ranks the
// segments' owners then add exact values and round only the sum.
func TestShmLinksCarryFP32(t *testing.T) {
	if !shmSupported {
		t.Skip("no shared-memory links on " + runtime.GOOS)
	}
	const length = 50_000
	x0, x1 := make([]float32, length), make([]float32, length)
	fillRank(x0, 0, 5)
	fillRank(x1, 1, 5)
	for _, mode := range linkModes {
		got := reduceAndCheck(t, asTransports(grpcRing(t, 2, withMode(mode.noShm, nil))), length, "bf16")
		exact := 0
		for i := range got {
			if got[i] == BF16ToF32(F32ToBF16(x0[i]+x1[i])) {
				exact++
			}
		}
		if all := exact == length; all == mode.noShm {
			t.Errorf("%s: %d of %d sums are the rounded exact sum", mode.name, exact, length)
		}
	}
}

// TestShmRemovesOrphans checks that ring files left by a process that died
// during a link's set-up are removed once they are stale, and that fresh
// ones (another link's set-up in progress) are left alone.
func TestShmRemovesOrphans(t *testing.T) {
	if !shmSupported {
		t.Skip("no shared-memory links on " + runtime.GOOS)
	}
	dir := t.TempDir()
	orphan := filepath.Join(dir, shmPrefix+"orphan")
	fresh := filepath.Join(dir, shmPrefix+"fresh")
	other := filepath.Join(dir, "not-a-ring")
	for _, p := range []string{orphan, fresh, other} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{orphan, other} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	gs := grpcRing(t, 2, func(c *GRPCConfig) { c.ShmDir = dir; c.MaxFrame = 1 << 16 })
	var wg sync.WaitGroup
	for _, g := range gs {
		wg.Go(func() { g.Close() })
	}
	wg.Wait()
	got := dirEntries(t, dir)
	want := []string{"not-a-ring", shmPrefix + "fresh"}
	if !slices.Equal(got, want) {
		t.Fatalf("left in the directory: %v, want %v", got, want)
	}
}

// TestShmFallsBack checks that a link whose receiver cannot take the
// ring (shared memory turned off, or the ring file not where it looks:
// another host or container) runs on gRPC, in the same ring as
// shared-memory links.
func TestShmFallsBack(t *testing.T) {
	if !shmSupported {
		t.Skip("no shared-memory links on " + runtime.GOOS)
	}
	shared := t.TempDir()
	for _, codec := range []string{"fp32", "bf16"} {
		gs := grpcRing(t, 4, func(c *GRPCConfig) {
			c.ShmDir = shared
			c.NoSharedMemory = c.Rank == 1 // declines rank 0's offer, offers nothing
		})
		want := []bool{false, false, true, true} // rank i's link to its right
		for i, g := range gs {
			if got := g.outShm != nil; got != want[i] {
				t.Errorf("rank %d: link to the right on shared memory: %v, want %v", i, got, want[i])
			}
		}
		// Lossy codecs too end bit-identical when some links carry fp32.
		reduceAndCheck(t, asTransports(gs), 10_007, codec)
	}

	apart := []string{t.TempDir(), t.TempDir()}
	gs := grpcRing(t, 2, func(c *GRPCConfig) { c.ShmDir = apart[c.Rank] })
	for i, g := range gs {
		if g.outShm != nil || g.inShm != nil {
			t.Errorf("rank %d took a ring from another directory", i)
		}
	}
	reduceAndCheck(t, asTransports(gs), 10_007, "fp32")
	for _, d := range append(apart, shared) {
		if left := dirEntries(t, d); len(left) != 0 {
			t.Fatalf("ring files left in %s: %v", d, left)
		}
	}
}

// TestShmCorruptFrame writes hostile frames straight into a ring: the
// receiver must fail with a PeerError naming the sender, never panic.
func TestShmCorruptFrame(t *testing.T) {
	if !shmSupported {
		t.Skip("no shared-memory links on " + runtime.GOOS)
	}
	good := make([]byte, HeaderLen)
	PutHeader(good, Header{Kind: KindData, Job: 7, Generation: 3, Seq: 1, Len: 8})
	long := make([]byte, HeaderLen)
	PutHeader(long, Header{Kind: KindData, Job: 7, Generation: 3, Seq: 1, Len: 1 << 30})
	ack := make([]byte, HeaderLen)
	PutHeader(ack, Header{Kind: KindAck, Job: 7, Generation: 3, Seq: 1})
	cases := map[string][]byte{
		"short":         good[:HeaderLen-3],
		"bad magic":     append([]byte{0}, good[1:]...),
		"truncated":     good, // 8 payload bytes announced, none published
		"over maxFrame": long,
		"not data":      ack,
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			// The timeout ends the wait for the truncated frame's payload;
			// it also bounds the link's set-up (half of it for the
			// handshake), so it is long enough for a loaded machine.
			gs := grpcRing(t, 2, func(c *GRPCConfig) { c.Timeout = 2 * time.Second })
			defer gs[0].Close()
			defer gs[1].Close()
			r := gs[0].outShm
			r.put(0, frame)
			r.ctl.head.Store(uint64(len(frame)))
			notify(&r.ctl.dataEv, &r.ctl.dataWait)
			err := gs[1].Recv(context.Background(), func(Header, [][]byte) error {
				t.Fatal("a hostile frame reached the decoder")
				return nil
			})
			var pe *PeerError
			if !errors.As(err, &pe) || pe.Peer != 0 || !errors.Is(err, ErrBadFrame) {
				t.Fatalf("err = %v, want a PeerError naming rank 0 wrapping ErrBadFrame", err)
			}
		})
	}
}

func TestParseShmOffer(t *testing.T) {
	dir := filepath.Join(os.TempDir(), "shm")
	size := shmRingSize(1 << 20)
	ok := shmOffer(42, size, filepath.Join(dir, shmPrefix+"123"))
	nonce, sz, path, err := parseShmOffer(ok, dir, 1<<20)
	if err != nil || nonce != 42 || sz != size || path != filepath.Join(dir, shmPrefix+"123") {
		t.Fatalf("got %d %d %q %v", nonce, sz, path, err)
	}
	bad := map[string][]byte{
		"short":        ok[:15],
		"outside":      shmOffer(42, size, "/etc/"+shmPrefix+"1"),
		"climbs out":   shmOffer(42, size, filepath.Join(dir, "..", shmPrefix+"1")),
		"other name":   shmOffer(42, size, filepath.Join(dir, "passwd")),
		"wrong size":   shmOffer(42, size*2, filepath.Join(dir, shmPrefix+"1")),
		"too long":     shmOffer(42, size, filepath.Join(dir, shmPrefix+string(make([]byte, maxShmOffer)))),
		"in subfolder": shmOffer(42, size, filepath.Join(dir, "x", shmPrefix+"1")),
	}
	for name, b := range bad {
		if _, _, _, err := parseShmOffer(b, dir, 1<<20); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: err = %v, want ErrBadFrame", name, err)
		}
	}
}

// FuzzShmOffer feeds hostile hello payloads to the offer parser: whatever
// it accepts names a ring file directly inside the directory.
func FuzzShmOffer(f *testing.F) {
	dir := "/dev/shm"
	f.Add(shmOffer(1, shmRingSize(1<<20), "/dev/shm/"+shmPrefix+"9"))
	f.Add(shmOffer(1, shmRingSize(1<<20), "/dev/shm/../etc/passwd"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, size, path, err := parseShmOffer(b, dir, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if filepath.Dir(path) != dir || size != shmRingSize(1<<20) {
			t.Fatalf("accepted %q of %d bytes", path, size)
		}
	})
}

// FuzzShmFrame gives a receiver's shared ring arbitrary contents and
// counters, as a broken or hostile neighbour process could leave them: the
// frame check never panics, refuses what it refuses with ErrBadFrame, and
// a frame it accepts is a data frame whose payload (at most maxFrame bytes)
// lies within the ring, so nothing is read outside the mapping and no
// allocation depends on the contents.
func FuzzShmFrame(f *testing.F) {
	frame := func(seq uint64, n int) []byte {
		b := binary.LittleEndian.AppendUint32(nil, frameMagic)
		b = append(b, KindData, 0, 0, 0)
		b = binary.LittleEndian.AppendUint64(b, 1)
		b = binary.LittleEndian.AppendUint64(b, 2)
		b = binary.LittleEndian.AppendUint64(b, seq)
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		b = binary.LittleEndian.AppendUint32(b, 0)
		return append(b, make([]byte, n)...)
	}
	f.Add(uint8(0), uint64(HeaderLen+8), uint64(0), uint64(0), frame(1, 8))
	f.Add(uint8(1), uint64(HeaderLen+100), uint64(0), uint64(6), frame(7, 100))
	f.Add(uint8(0), uint64(250+HeaderLen+16), uint64(250), uint64(0), frame(1, 16)) // wraps around
	f.Add(uint8(2), uint64(5), uint64(10), uint64(0), frame(1, 0))                  // head behind tail
	f.Add(uint8(3), ^uint64(0), uint64(0), uint64(0), frame(1, 1<<20))
	f.Fuzz(func(t *testing.T, sizeSel uint8, head, tail, lastRecv uint64, contents []byte) {
		size := 256 << (sizeSel % 4)
		maxFrame := size/2 - HeaderLen
		words := make([]uint64, (shmCtlSize+size)/8) // 8-byte aligned, as a mapping is
		mapping := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
		r := newShmRing(mapping)
		// The contents as written at stream position tail.
		for i, b := range contents[:min(len(contents), size)] {
			r.data[(tail+uint64(i))&r.mask] = b
		}
		r.ctl.head.Store(head)
		h, err := r.frame(tail, lastRecv, maxFrame)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if h.Kind != KindData || int(h.Len) > maxFrame || (lastRecv != 0 && h.Seq != lastRecv+1) || head-tail < uint64(HeaderLen)+uint64(h.Len) {
			t.Fatalf("accepted %+v (head %d, tail %d, last %d, max %d)", h, head, tail, lastRecv, maxFrame)
		}
		n := 0
		for _, p := range r.pieces(nil, tail+HeaderLen, int(h.Len)) {
			n += len(p)
		}
		if n != int(h.Len) {
			t.Fatalf("payload of %d bytes in pieces of %d", h.Len, n)
		}
	})
}
