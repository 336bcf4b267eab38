package allreduce

import "testing"

func benchCodec(b *testing.B, name string, add bool) {
	c, err := NewCodec(name, 0)
	if err != nil {
		b.Fatal(err)
	}
	src := make([]float32, 1<<18)
	fillRank(src, 0, 1)
	enc := c.AppendEncode(nil, src)
	dst := make([]float32, len(src))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		enc = c.AppendEncode(enc[:0], src)
		if add {
			c.DecodeAdd(dst, enc)
		} else {
			c.Decode(dst, enc)
		}
	}
}

// BenchmarkCodec measures encode + decode-add per fp32 byte.
func BenchmarkCodec(b *testing.B) {
	for _, name := range []string{"fp32", "bf16", "fp16", "bf16+s2", "fp32+zstd"} {
		b.Run(name, func(b *testing.B) { benchCodec(b, name, true) })
	}
}

// BenchmarkFusedReceive measures a reduce-scatter receive whose send
// publishes the segment (add, encode, round) and an all-gather receive that
// is forwarded (decode, keep the bytes), over a 64 MiB buffer in 4096-element
// blocks as a receiver sees it: steps one after another, or the fused
// kernel.
func BenchmarkFusedReceive(b *testing.B) {
	const n = 16 << 20
	const block = 4096
	dst := make([]float32, n)
	src := make([]float32, n)
	fillRank(src, 0, 1)
	codec := BF16{}
	wire := codec.AppendEncode(nil, src)
	out := make([]byte, 2*block)
	run := func(name string, f func(d []float32, w []byte)) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				for lo := 0; lo < n; lo += block {
					f(dst[lo:lo+block], wire[2*lo:2*(lo+block)])
				}
			}
		})
	}
	run("add/steps", func(d []float32, w []byte) {
		codec.DecodeAdd(d, w)
		codec.Decode(d, codec.AppendEncode(out[:0], d))
	})
	run("add/fused", func(d []float32, w []byte) { codec.decodeAddEncode(d, w, out, true) })
	run("copy/steps", func(d []float32, w []byte) {
		copy(out, w)
		codec.Decode(d, w)
	})
	run("copy/fused", func(d []float32, w []byte) { codec.decodeCopy(d, w, out) })
}

// BenchmarkQuantize measures the owner's in-place rounding of a 32 MiB
// segment (what a rank does before the all-gather when its right link
// carries fp32).
func BenchmarkQuantize(b *testing.B) {
	x := make([]float32, 8<<20)
	fillRank(x, 0, 1)
	for _, name := range []string{"bf16", "fp16"} {
		c, _ := NewCodec(name, 0)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				c.Quantize(x)
			}
		})
	}
}
