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
