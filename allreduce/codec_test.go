package allreduce

import (
	"math"
	"sort"
	"testing"
)

// halfValue is the value of a non-negative finite binary16 or bfloat16 bit
// pattern, treating the first infinite pattern as the next power of two
// (the rounding boundary for overflow).
func refRound(f float32, maxFinite uint16, widen func(uint16) float32, infBits uint16, top float64) uint16 {
	sign := uint16(0)
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	a := math.Abs(float64(f))
	// values[i] is the value of pattern i for i in [0, maxFinite], then top.
	val := func(i int) float64 {
		if i > int(maxFinite) {
			return top
		}
		return float64(widen(uint16(i)))
	}
	// Largest pattern whose value is <= a.
	lo := sort.Search(int(maxFinite)+2, func(i int) bool { return val(i) > a }) - 1
	hi := lo + 1
	dlo, dhi := a-val(lo), val(hi)-a
	pick := lo
	if dhi < dlo || (dhi == dlo && hi%2 == 0) {
		pick = hi
	}
	if pick > int(maxFinite) {
		return sign | infBits
	}
	return sign | uint16(pick)
}

func refF16(f float32) uint16 {
	return refRound(f, 0x7bff, F16ToF32, 0x7c00, 65536)
}

func refBF16(f float32) uint16 {
	return refRound(f, 0x7f7f, BF16ToF32, 0x7f80, math.Ldexp(1, 128))
}

func interestingFloats() []float32 {
	fs := []float32{0, 1, -1, 0.5, 1.5, 2.5, 65504, 65519.99, 65520, 65536, 1e-8, 5.960464477539063e-08,
		2.9802322387695312e-08, 2.98023259e-08, 6.097555e-05, 6.1035156e-05, -6.1035156e-05,
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-45, 3.3895314e38, 3.3961776e38, 3.40e38}
	// Exact ties for binary16 and bfloat16 around a few magnitudes.
	for _, e := range []int{-24, -20, -14, -1, 0, 5, 15} {
		for m := 0; m < 8; m++ {
			base := math.Ldexp(1+float64(m)/1024, e)
			fs = append(fs, float32(base+math.Ldexp(1, e-11)), float32(base-math.Ldexp(1, e-11)))
		}
	}
	for _, e := range []int{-133, -126, -100, 0, 100, 127} {
		for m := 0; m < 8; m++ {
			base := math.Ldexp(1+float64(m)/128, e)
			fs = append(fs, float32(base+math.Ldexp(1, e-8)))
		}
	}
	return fs
}

func TestF16Rounding(t *testing.T) {
	check := func(f float32) {
		if got, want := F32ToF16(f), refF16(f); got != want {
			t.Fatalf("F32ToF16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	for _, f := range interestingFloats() {
		check(f)
		check(-f)
	}
	r := newTestRand(1)
	for i := 0; i < 200000; i++ {
		// Random bit patterns in and around binary16's range.
		b := uint32(r.Uint64())
		exp := uint32(127-30+r.IntN(50)) << 23
		f := math.Float32frombits(b&0x807fffff | exp)
		check(f)
	}
	// Every binary16 widens exactly and narrows back to itself.
	for h := 0; h < 1<<16; h++ {
		f := F16ToF32(uint16(h))
		back := F32ToF16(f)
		if math.IsNaN(float64(f)) {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x200 == 0 {
				t.Fatalf("NaN %#04x narrowed to %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("binary16 %#04x → %g → %#04x", h, f, back)
		}
	}
	for _, f := range []float32{float32(math.Inf(1)), float32(math.Inf(-1))} {
		if got := F16ToF32(F32ToF16(f)); got != f {
			t.Fatalf("Inf → %v", got)
		}
	}
	nan := float32(math.NaN())
	if !math.IsNaN(float64(F16ToF32(F32ToF16(nan)))) {
		t.Fatal("NaN did not survive binary16")
	}
}

func TestBF16Rounding(t *testing.T) {
	check := func(f float32) {
		if got, want := F32ToBF16(f), refBF16(f); got != want {
			t.Fatalf("F32ToBF16(%g = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	for _, f := range interestingFloats() {
		check(f)
		check(-f)
	}
	r := newTestRand(2)
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(uint32(r.Uint64()))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		check(f)
	}
	for h := 0; h < 1<<16; h++ {
		f := BF16ToF32(uint16(h))
		back := F32ToBF16(f)
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(float64(BF16ToF32(back))) || back&0x8000 != uint16(h)&0x8000 {
				t.Fatalf("NaN %#04x narrowed to %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("bfloat16 %#04x → %g → %#04x", h, f, back)
		}
	}
	// A NaN whose payload sits only in the low bits stays NaN.
	if !math.IsNaN(float64(BF16ToF32(F32ToBF16(math.Float32frombits(0x7f800001))))) {
		t.Fatal("low-payload NaN became Inf")
	}
}

// TestCodecRoundTrip checks every codec's encode/decode/decode-add and
// its refusal of wrongly sized or corrupt payloads.
func TestCodecRoundTrip(t *testing.T) {
	src := make([]float32, 2053) // an odd length: the vector kernels leave a tail
	fillRank(src, 0, 9)
	for _, name := range []string{"fp32", "bf16", "fp16", "fp32+zstd", "bf16+s2", "fp16+zstd", "fp32+s2"} {
		c, err := NewCodec(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		enc := c.AppendEncode(nil, src)
		dst := make([]float32, len(src))
		if err := c.Decode(dst, enc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		q := append([]float32(nil), src...)
		c.Quantize(q)
		for i := range dst {
			if dst[i] != q[i] {
				t.Fatalf("%s: element %d decodes to %v, Quantize gives %v", name, i, dst[i], q[i])
			}
			if c.Lossless() && dst[i] != src[i] {
				t.Fatalf("%s: lossless codec changed element %d", name, i)
			}
			if d := math.Abs(float64(dst[i] - src[i])); d > 1e-3*math.Max(1, math.Abs(float64(src[i]))) && !c.Lossless() && name[:4] == "fp16" {
				t.Fatalf("%s: element %d error %g", name, i, d)
			}
		}
		if err := c.DecodeAdd(dst, enc); err != nil {
			t.Fatal(err)
		}
		for i := range dst {
			if dst[i] != q[i]+q[i] {
				t.Fatalf("%s: DecodeAdd element %d = %v, want %v", name, i, dst[i], q[i]+q[i])
			}
		}
		if err := c.Decode(dst[:len(dst)-1], enc); err == nil {
			t.Fatalf("%s: accepted a payload for the wrong element count", name)
		}
		if len(enc) > 1 {
			if err := c.Decode(dst, enc[:len(enc)/2]); err == nil {
				t.Fatalf("%s: accepted a truncated payload", name)
			}
		}
		if cl, ok := c.(*Compressed); ok {
			cl.Close()
		}
	}
	if _, err := NewCodec("int8", 0); err == nil {
		t.Fatal("unknown codec accepted")
	}
	if _, err := NewCodec("fp32+lz4", 0); err == nil {
		t.Fatal("unknown compression accepted")
	}
}

// TestDecodeFragments checks that payloads split at any byte boundary
// decode like contiguous ones.
func TestDecodeFragments(t *testing.T) {
	src := make([]float32, 37)
	fillRank(src, 1, 3)
	for _, name := range []string{"fp32", "bf16", "fp16", "bf16+s2"} {
		codec, _ := NewCodec(name, 0)
		enc := codec.AppendEncode(nil, src)
		want := make([]float32, len(src))
		codec.Decode(want, enc)
		c := &Comm{}
		c.cur.codec = codec
		r := newTestRand(5)
		for trial := 0; trial < 200; trial++ {
			var frags [][]byte
			rest := enc
			for len(rest) > 0 {
				k := 1 + r.IntN(min(len(rest), 9))
				frags = append(frags, rest[:k])
				rest = rest[k:]
			}
			got := make([]float32, len(src))
			if err := c.decodeFrags(got, frags, true); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s trial %d: element %d = %v, want %v", name, trial, i, got[i], want[i])
				}
			}
			if err := c.decodeFrags(got[:len(got)-1], frags, false); err == nil {
				t.Fatalf("%s: fragments of the wrong size accepted", name)
			}
		}
	}
}
