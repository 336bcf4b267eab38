package allreduce

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"strings"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Codec converts spans of float32 to wire bytes and back. The ring never
// looks inside the bytes.
//
// Encoding is element-wise for FP32, BF16 and FP16, so a span's encoding
// does not depend on how the buffer is chunked. Decoding takes the expected
// element count from len(dst) and returns an error, never panics, if src
// does not encode exactly that many elements.
//
// A Codec value belongs to one Comm: AppendEncode may run concurrently
// with Decode/DecodeAdd (the sender and the receiver of a rank), but neither
// concurrently with itself.
type Codec interface {
	// Name identifies the codec in flags and reports ("fp32", "bf16+zstd").
	Name() string
	// Lossless reports whether Decode(Encode(x)) == x bit for bit.
	Lossless() bool
	// MaxEncodedLen bounds the encoding of n elements in bytes.
	MaxEncodedLen(n int) int
	// AppendEncode appends the encoding of src to dst.
	AppendEncode(dst []byte, src []float32) []byte
	// Decode sets dst to the decoding of src.
	Decode(dst []float32, src []byte) error
	// DecodeAdd adds the decoding of src to dst element by element.
	DecodeAdd(dst []float32, src []byte) error
	// Quantize replaces x by Decode(Encode(x)) in place (a no-op for
	// lossless codecs). It may run concurrently with Decode/DecodeAdd.
	Quantize(x []float32)
}

// viewEncoder is implemented by codecs whose encoding is the memory of src
// itself, so that a send needs no copy at all.
type viewEncoder interface {
	EncodeView(src []float32) []byte
}

// fixedWidth is implemented by codecs that encode every element in the
// same number of bytes, independently of its neighbours.
type fixedWidth interface {
	elemBytes() int
}

func (FP32) elemBytes() int { return 4 }
func (BF16) elemBytes() int { return 2 }
func (FP16) elemBytes() int { return 2 }

// unalignedOK reports whether the CPU loads unaligned float32s.
const unalignedOK = runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" || runtime.GOARCH == "386"

// littleEndian reports whether float32 memory is already in wire order.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// NewCodec returns the codec with the given name: "fp32", "bf16" or
// "fp16", optionally followed by "+zstd" or "+s2" for lossless compression
// of the encoded bytes. maxFrameBytes bounds what a compressed frame may
// decompress to (0: 64 MiB).
func NewCodec(name string, maxFrameBytes int) (Codec, error) {
	base, comp, err := parseCodecName(name)
	if err != nil {
		return nil, err
	}
	var c Codec
	switch base {
	case "fp32":
		c = FP32{}
	case "bf16":
		c = BF16{}
	case "fp16":
		c = NewFP16()
	}
	if comp == "" {
		return c, nil
	}
	return NewCompressed(c, comp, maxFrameBytes)
}

// CheckCodec reports whether NewCodec accepts name, without building the
// codec.
func CheckCodec(name string) error {
	_, _, err := parseCodecName(name)
	return err
}

// parseCodecName splits a codec name into its element format and its
// optional compression, checking both.
func parseCodecName(name string) (base, comp string, err error) {
	base, comp, _ = strings.Cut(name, "+")
	switch base {
	case "fp32", "bf16", "fp16":
	default:
		return "", "", fmt.Errorf("allreduce: unknown codec %q (want fp32, bf16 or fp16, optionally +zstd or +s2)", name)
	}
	switch comp {
	case "", "zstd", "s2":
	default:
		return "", "", fmt.Errorf("allreduce: unknown compression %q in codec %q (want zstd or s2)", comp, name)
	}
	return base, comp, nil
}

func floatBytes(src []float32) []byte {
	if len(src) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src))
}

// bytesFloats views b as float32s when b is aligned and the machine is
// little-endian; ok is false otherwise.
func bytesFloats(b []byte) (f []float32, ok bool) {
	if len(b) == 0 {
		return nil, true
	}
	if !littleEndian || (!unalignedOK && uintptr(unsafe.Pointer(&b[0]))%4 != 0) {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4), true
}

// bytesU16 views b as little-endian uint16s when the machine allows it.
func bytesU16(b []byte) (u []uint16, ok bool) {
	if len(b) == 0 {
		return nil, true
	}
	if !littleEndian || (!unalignedOK && uintptr(unsafe.Pointer(&b[0]))%2 != 0) {
		return nil, false
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2), true
}

func sizeError(codec string, got, want int) error {
	return fmt.Errorf("allreduce: %s payload of %d bytes, want %d", codec, got, want)
}

// FP32 sends float32 values as they are (little-endian IEEE 754).
type FP32 struct{}

func (FP32) Name() string            { return "fp32" }
func (FP32) Lossless() bool          { return true }
func (FP32) MaxEncodedLen(n int) int { return 4 * n }

// EncodeView returns the memory of src; the caller must not modify src
// while the bytes are in flight.
func (FP32) EncodeView(src []float32) []byte {
	if littleEndian {
		return floatBytes(src)
	}
	return FP32{}.AppendEncode(nil, src)
}

func (FP32) Quantize([]float32) {}

func (FP32) AppendEncode(dst []byte, src []float32) []byte {
	for _, v := range src {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}

func (FP32) Decode(dst []float32, src []byte) error {
	if len(src) != 4*len(dst) {
		return sizeError("fp32", len(src), 4*len(dst))
	}
	if f, ok := bytesFloats(src); ok {
		copy(dst, f)
		return nil
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
	return nil
}

func (FP32) DecodeAdd(dst []float32, src []byte) error {
	if len(src) != 4*len(dst) {
		return sizeError("fp32", len(src), 4*len(dst))
	}
	if f, ok := bytesFloats(src); ok {
		addTo(dst, f)
		return nil
	}
	for i := range dst {
		dst[i] += math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
	return nil
}

// addToGo sets dst[i] += src[i] (reference for the SIMD version).
func addToGo(dst, src []float32) {
	src = src[:len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d := dst[i : i+4 : i+4]
		s := src[i : i+4 : i+4]
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
	}
	for ; i < len(dst); i++ {
		dst[i] += src[i]
	}
}

// BF16 sends the upper 16 bits of each float32 (bfloat16), rounded to
// nearest, ties to even. NaN stays NaN (quiet, sign kept); values that
// round past the largest bfloat16 become ±Inf; subnormals round like any
// other value since bfloat16 shares float32's exponent range.
type BF16 struct{}

func (BF16) Name() string            { return "bf16" }
func (BF16) Lossless() bool          { return false }
func (BF16) MaxEncodedLen(n int) int { return 2 * n }

// F32ToBF16 rounds f to the nearest bfloat16, ties to even.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToF32 widens a bfloat16 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func (BF16) Quantize(x []float32) { quantizeBF16(x) }

// quantizeBF16Go is the reference for quantizeBF16.
func quantizeBF16Go(x []float32) {
	for i, v := range x {
		x[i] = BF16ToF32(F32ToBF16(v))
	}
}

func (BF16) AppendEncode(dst []byte, src []float32) []byte {
	n := len(dst)
	dst = grow(dst, 2*len(src))
	out := dst[n : n+2*len(src)]
	if u, ok := bytesU16(out); ok {
		encodeBF16(u, src)
		return dst
	}
	for i, v := range src {
		binary.LittleEndian.PutUint16(out[2*i:], F32ToBF16(v))
	}
	return dst
}

// encodeBF16Go sets dst[i] = F32ToBF16(src[i]); it is the reference for
// the SIMD version.
func encodeBF16Go(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		b := math.Float32bits(v)
		if b&0x7f800000 == 0x7f800000 {
			dst[i] = F32ToBF16(v) // Inf or NaN
			continue
		}
		dst[i] = uint16((b + 0x7fff + (b>>16)&1) >> 16)
	}
}

func (BF16) Decode(dst []float32, src []byte) error {
	if len(src) != 2*len(dst) {
		return sizeError("bf16", len(src), 2*len(dst))
	}
	if u, ok := bytesU16(src); ok {
		decodeBF16(dst, u)
		return nil
	}
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
	return nil
}

func (BF16) DecodeAdd(dst []float32, src []byte) error {
	if len(src) != 2*len(dst) {
		return sizeError("bf16", len(src), 2*len(dst))
	}
	if u, ok := bytesU16(src); ok {
		decodeAddBF16(dst, u)
		return nil
	}
	for i := range dst {
		dst[i] += math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
	return nil
}

// decodeAddBF16Go sets dst[i] += BF16ToF32(src[i]) (reference).
func decodeAddBF16Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] += math.Float32frombits(uint32(h) << 16)
	}
}

// decodeAddEncodeBF16Go is the reference for the fused receive of an add:
// s = dst[i] + BF16ToF32(src[i]); out[i] = F32ToBF16(s); dst[i] = s, or
// BF16ToF32(out[i]) if round.
func decodeAddEncodeBF16Go(dst []float32, src, out []uint16, round bool) {
	src, out = src[:len(dst)], out[:len(dst)]
	for i, h := range src {
		s := dst[i] + BF16ToF32(h)
		out[i] = F32ToBF16(s)
		if round {
			s = BF16ToF32(out[i])
		}
		dst[i] = s
	}
}

// decodeCopyBF16Go is the reference for the fused receive of a copy:
// out[i] = src[i]; dst[i] = BF16ToF32(src[i]).
func decodeCopyBF16Go(dst []float32, src, out []uint16) {
	src, out = src[:len(dst)], out[:len(dst)]
	copy(out, src)
	for i, h := range src {
		dst[i] = BF16ToF32(h)
	}
}

// decodeAddEncode and decodeCopy are BF16's single-pass kernels for the
// fused receive (fuse.go). They report false where the bytes cannot be
// viewed as uint16s; the caller then takes the general path.
func (BF16) decodeAddEncode(dst []float32, src, out []byte, round bool) bool {
	s, o, ok := u16Pair(src, out, len(dst))
	if ok {
		decodeAddEncodeBF16(dst, s, o, round)
	}
	return ok
}

func (BF16) decodeCopy(dst []float32, src, out []byte) bool {
	s, o, ok := u16Pair(src, out, len(dst))
	if ok {
		decodeCopyBF16(dst, s, o)
	}
	return ok
}

// u16Pair views a received payload and an outgoing one as n uint16s each,
// where the machine allows it.
func u16Pair(src, out []byte, n int) (s, o []uint16, ok bool) {
	s, ok1 := bytesU16(src)
	o, ok2 := bytesU16(out)
	return s, o, ok1 && ok2 && len(s) == n && len(o) == n
}

// decodeBF16Go sets dst[i] = BF16ToF32(src[i]) (reference).
func decodeBF16Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// grow extends dst by n bytes, reallocating only when capacity is short.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst[:len(dst)+n]
	}
	out := make([]byte, len(dst)+n, 2*len(dst)+n)
	copy(out, dst)
	return out
}

// FP16 sends IEEE 754 binary16 values, rounded to nearest, ties to even,
// with gradual underflow (subnormals), overflow to ±Inf and NaN kept as a
// quiet NaN. Construct it with NewFP16, which builds its decode table.
type FP16 struct {
	table *[1 << 16]float32
}

// NewFP16 returns an FP16 codec with its 256 KiB decode table.
func NewFP16() FP16 {
	t := new([1 << 16]float32)
	for i := range t {
		t[i] = F16ToF32(uint16(i))
	}
	return FP16{table: t}
}

func (FP16) Name() string            { return "fp16" }
func (FP16) Lossless() bool          { return false }
func (FP16) MaxEncodedLen(n int) int { return 2 * n }

// F32ToF16 rounds f to the nearest binary16, ties to even.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 31 {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint(14 - e)
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++
	}
	return sign | uint16(h)
}

// F16ToF32 widens a binary16 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		v := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(v) | sign)
	case 31:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	}
}

func (c FP16) Quantize(x []float32) { quantizeF16(x, c.table) }

// quantizeF16Go is the reference for quantizeF16.
func quantizeF16Go(x []float32, table *[1 << 16]float32) {
	for i, v := range x {
		x[i] = table[F32ToF16(v)]
	}
}

// encodeF16Go sets dst[i] = F32ToF16(src[i]) (reference).
func encodeF16Go(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = F32ToF16(v)
	}
}

// decodeF16Go sets (add: adds to) dst[i] the value of src[i] (reference).
func decodeF16Go(dst []float32, src []uint16, t *[1 << 16]float32, add bool) {
	src = src[:len(dst)]
	if add {
		for i, h := range src {
			dst[i] += t[h]
		}
		return
	}
	for i, h := range src {
		dst[i] = t[h]
	}
}

func (FP16) AppendEncode(dst []byte, src []float32) []byte {
	n := len(dst)
	dst = grow(dst, 2*len(src))
	out := dst[n : n+2*len(src)]
	if u, ok := bytesU16(out); ok {
		encodeF16(u, src)
		return dst
	}
	for i, v := range src {
		binary.LittleEndian.PutUint16(out[2*i:], F32ToF16(v))
	}
	return dst
}

func (c FP16) Decode(dst []float32, src []byte) error {
	if len(src) != 2*len(dst) {
		return sizeError("fp16", len(src), 2*len(dst))
	}
	t := c.table
	if u, ok := bytesU16(src); ok {
		decodeF16(dst, u, t, false)
		return nil
	}
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = t[binary.LittleEndian.Uint16(src[2*i:])]
	}
	return nil
}

func (c FP16) DecodeAdd(dst []float32, src []byte) error {
	if len(src) != 2*len(dst) {
		return sizeError("fp16", len(src), 2*len(dst))
	}
	t := c.table
	if u, ok := bytesU16(src); ok {
		decodeF16(dst, u, t, true)
		return nil
	}
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] += t[binary.LittleEndian.Uint16(src[2*i:])]
	}
	return nil
}

// Compressed wraps a codec with lossless compression (zstd or s2) of its
// encoded bytes. Decompression never produces more than the inner codec's
// MaxEncodedLen for the expected element count.
type Compressed struct {
	inner  Codec
	algo   string
	enc    *zstd.Encoder
	dec    *zstd.Decoder
	encBuf []byte // inner encoding, sender side
	cmpBuf []byte // compressed bytes, sender side
	decBuf []byte // decompressed bytes, receiver side
}

// NewCompressed returns inner followed by algo ("zstd" or "s2"). Call
// Close when done with it.
func NewCompressed(inner Codec, algo string, maxFrameBytes int) (*Compressed, error) {
	if maxFrameBytes <= 0 {
		maxFrameBytes = 64 << 20
	}
	c := &Compressed{inner: inner, algo: algo}
	switch algo {
	case "s2":
	case "zstd":
		var err error
		c.enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("allreduce: zstd encoder: %w", err)
		}
		c.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(maxFrameBytes)))
		if err != nil {
			c.enc.Close()
			return nil, fmt.Errorf("allreduce: zstd decoder: %w", err)
		}
	default:
		return nil, fmt.Errorf("allreduce: unknown compression %q (want zstd or s2)", algo)
	}
	return c, nil
}

// Close releases the compressor's resources.
func (c *Compressed) Close() error {
	if c.enc != nil {
		c.enc.Close()
	}
	if c.dec != nil {
		c.dec.Close()
	}
	return nil
}

func (c *Compressed) Name() string   { return c.inner.Name() + "+" + c.algo }
func (c *Compressed) Lossless() bool { return c.inner.Lossless() }
func (c *Compressed) MaxEncodedLen(n int) int {
	m := c.inner.MaxEncodedLen(n)
	if c.algo == "s2" {
		return s2.MaxEncodedLen(m)
	}
	return m + m/255 + 64 + 16<<10/255 + 1024
}

func (c *Compressed) Quantize(x []float32) { c.inner.Quantize(x) }

func (c *Compressed) AppendEncode(dst []byte, src []float32) []byte {
	c.encBuf = c.inner.AppendEncode(c.encBuf[:0], src)
	if c.algo == "s2" {
		need := s2.MaxEncodedLen(len(c.encBuf))
		if cap(c.cmpBuf) < need {
			c.cmpBuf = make([]byte, need)
		}
		c.cmpBuf = s2.Encode(c.cmpBuf[:cap(c.cmpBuf)], c.encBuf)
	} else {
		c.cmpBuf = c.enc.EncodeAll(c.encBuf, c.cmpBuf[:0])
	}
	return append(dst, c.cmpBuf...)
}

func (c *Compressed) decompress(n int, src []byte) ([]byte, error) {
	limit := c.inner.MaxEncodedLen(n)
	if c.algo == "s2" {
		dl, err := s2.DecodedLen(src)
		if err != nil {
			return nil, fmt.Errorf("allreduce: s2 frame: %w", err)
		}
		if dl > limit {
			return nil, fmt.Errorf("allreduce: s2 frame decodes to %d bytes, limit %d", dl, limit)
		}
		if cap(c.decBuf) < dl {
			c.decBuf = make([]byte, dl)
		}
		out, err := s2.Decode(c.decBuf[:cap(c.decBuf)], src)
		if err != nil {
			return nil, fmt.Errorf("allreduce: s2 frame: %w", err)
		}
		return out, nil
	}
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, fmt.Errorf("allreduce: zstd frame: %w", err)
	}
	if h.HasFCS && h.FrameContentSize > uint64(limit) {
		return nil, fmt.Errorf("allreduce: zstd frame content size %d, limit %d", h.FrameContentSize, limit)
	}
	if cap(c.decBuf) < limit {
		c.decBuf = make([]byte, 0, limit)
	}
	out, err := c.dec.DecodeAll(src, c.decBuf[:0])
	if err != nil {
		return nil, fmt.Errorf("allreduce: zstd frame: %w", err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("allreduce: zstd frame decodes to %d bytes, limit %d", len(out), limit)
	}
	c.decBuf = out[:0]
	return out, nil
}

func (c *Compressed) Decode(dst []float32, src []byte) error {
	raw, err := c.decompress(len(dst), src)
	if err != nil {
		return err
	}
	return c.inner.Decode(dst, raw)
}

func (c *Compressed) DecodeAdd(dst []float32, src []byte) error {
	raw, err := c.decompress(len(dst), src)
	if err != nil {
		return err
	}
	return c.inner.DecodeAdd(dst, raw)
}
