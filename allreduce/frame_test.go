package allreduce

import (
	"bytes"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	h := Header{Kind: KindData, Job: 1, Generation: 2, Seq: 3, From: 4}
	b := AppendFrame(nil, h, []byte{1, 2, 3})
	got, p, err := DecodeFrame(b, 16)
	if err != nil {
		t.Fatal(err)
	}
	h.Len = 3
	if got != h || !bytes.Equal(p, []byte{1, 2, 3}) {
		t.Fatalf("got %+v %v", got, p)
	}
	bad := map[string][]byte{
		"short":     b[:HeaderLen-1],
		"truncated": b[:len(b)-1],
		"long":      append(append([]byte(nil), b...), 0),
		"magic":     append([]byte{0}, b[1:]...),
	}
	kind := append([]byte(nil), b...)
	kind[4] = 9
	bad["kind"] = kind
	res := append([]byte(nil), b...)
	res[6] = 1
	bad["reserved"] = res
	bad["over limit"] = AppendFrame(nil, h, make([]byte, 17))
	bad["ack with payload"] = AppendFrame(nil, Header{Kind: KindAck}, []byte{1})
	for name, f := range bad {
		if _, _, err := DecodeFrame(f, 16); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: err = %v, want ErrBadFrame", name, err)
		}
	}
}

// FuzzDecodeFrame feeds hostile bytes to the frame decoder: it must never
// panic, and whatever it accepts must re-encode to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(AppendFrame(nil, Header{Kind: KindData, Job: 7, Generation: 3, Seq: 1, From: 2}, []byte{1, 2, 3, 4}))
	f.Add(AppendFrame(nil, Header{Kind: KindHello, Job: 7}, nil))
	f.Add(AppendFrame(nil, Header{Kind: KindAck, Seq: 99}, nil))
	f.Add([]byte("RTFR"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := DecodeFrame(b, 1<<10)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if int(h.Len) != len(p) || len(p) > 1<<10 {
			t.Fatalf("accepted header %+v with %d payload bytes", h, len(p))
		}
		if again := AppendFrame(nil, h, p); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, input %x", again, b)
		}
	})
}

// FuzzCodecDecode feeds hostile payloads to every codec's decoder: errors
// are fine, panics and oversized output are not.
func FuzzCodecDecode(f *testing.F) {
	src := []float32{1, -2, 3.5, 0, 1e-9, 65504}
	for _, name := range []string{"fp32", "bf16", "fp16", "fp32+s2", "bf16+zstd"} {
		c, _ := NewCodec(name, 0)
		f.Add(name, uint16(len(src)), c.AppendEncode(nil, src))
		if cl, ok := c.(*Compressed); ok {
			cl.Close()
		}
	}
	f.Add("fp32+zstd", uint16(3), []byte{0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, name string, n uint16, payload []byte) {
		c, err := NewCodec(name, 1<<16)
		if err != nil {
			return
		}
		if cl, ok := c.(*Compressed); ok {
			defer cl.Close()
		}
		dst := make([]float32, n)
		if err := c.Decode(dst, payload); err == nil && c.Lossless() {
			// A lossless codec's accepted payload re-encodes to the
			// same values.
			back := make([]float32, n)
			if err := c.Decode(back, c.AppendEncode(nil, dst)); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.DecodeAdd(dst, payload)
	})
}
