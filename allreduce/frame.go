package allreduce

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame kinds.
const (
	// KindData carries an encoded span of a collective operation.
	KindData uint8 = 1
	// KindHello opens a link: the sender's rank, job and generation.
	KindHello uint8 = 2
	// KindAck acknowledges every frame up to and including Seq.
	KindAck uint8 = 3
	// KindAbort tells a neighbour that the sender gave up because rank
	// Seq-1 failed (sent both ways, so the cause travels around the ring).
	KindAbort uint8 = 4
)

// HeaderLen is the size of an encoded frame header in bytes.
const HeaderLen = 40

const frameMagic uint32 = 0x52544652 // "RTFR"

// Header travels in front of every frame's payload.
//
// Wire layout (little-endian): magic u32, kind u8, 3 zero bytes, job u64,
// generation u64, seq u64, payload length u32, sender rank u32.
type Header struct {
	Kind       uint8
	Job        uint64
	Generation uint64
	// Seq numbers the data frames of one link from 1 upwards, across
	// operations; for an ack it is the last acknowledged data frame.
	Seq  uint64
	Len  uint32 // payload bytes that follow the header
	From uint32 // sender's rank
}

// ErrBadFrame is wrapped by every frame decoding error.
var ErrBadFrame = errors.New("allreduce: bad frame")

// PutHeader writes h into b[:HeaderLen].
func PutHeader(b []byte, h Header) {
	_ = b[HeaderLen-1]
	binary.LittleEndian.PutUint32(b[0:], frameMagic)
	b[4] = h.Kind
	b[5], b[6], b[7] = 0, 0, 0
	binary.LittleEndian.PutUint64(b[8:], h.Job)
	binary.LittleEndian.PutUint64(b[16:], h.Generation)
	binary.LittleEndian.PutUint64(b[24:], h.Seq)
	binary.LittleEndian.PutUint32(b[32:], h.Len)
	binary.LittleEndian.PutUint32(b[36:], h.From)
}

// AppendFrame appends the header (with Len set to len(payload)) and payload.
func AppendFrame(dst []byte, h Header, payload []byte) []byte {
	h.Len = uint32(len(payload))
	var hb [HeaderLen]byte
	PutHeader(hb[:], h)
	dst = append(dst, hb[:]...)
	return append(dst, payload...)
}

// DecodeFrame splits b into its header and payload, which aliases b. It
// rejects a bad magic or kind, non-zero reserved bytes, a payload larger
// than maxPayload, and a length field that disagrees with len(b).
func DecodeFrame(b []byte, maxPayload int) (Header, []byte, error) {
	if len(b) < HeaderLen {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrBadFrame, len(b), HeaderLen)
	}
	h, err := parseHeader(b[:HeaderLen], len(b)-HeaderLen, maxPayload)
	if err != nil {
		return Header{}, nil, err
	}
	return h, b[HeaderLen:], nil
}

// parseHeader decodes and checks a header whose payload of payloadLen bytes
// is stored elsewhere (len(hb) >= HeaderLen).
func parseHeader(hb []byte, payloadLen, maxPayload int) (Header, error) {
	if m := binary.LittleEndian.Uint32(hb); m != frameMagic {
		return Header{}, fmt.Errorf("%w: magic 0x%08x", ErrBadFrame, m)
	}
	h := Header{
		Kind:       hb[4],
		Job:        binary.LittleEndian.Uint64(hb[8:]),
		Generation: binary.LittleEndian.Uint64(hb[16:]),
		Seq:        binary.LittleEndian.Uint64(hb[24:]),
		Len:        binary.LittleEndian.Uint32(hb[32:]),
		From:       binary.LittleEndian.Uint32(hb[36:]),
	}
	if h.Kind < KindData || h.Kind > KindAbort {
		return Header{}, fmt.Errorf("%w: kind %d", ErrBadFrame, h.Kind)
	}
	if hb[5]|hb[6]|hb[7] != 0 {
		return Header{}, fmt.Errorf("%w: reserved bytes % x", ErrBadFrame, hb[5:8])
	}
	if int64(h.Len) > int64(maxPayload) {
		return Header{}, fmt.Errorf("%w: payload length %d over limit %d", ErrBadFrame, h.Len, maxPayload)
	}
	if int64(h.Len) != int64(payloadLen) {
		return Header{}, fmt.Errorf("%w: length field %d, %d payload bytes present", ErrBadFrame, h.Len, payloadLen)
	}
	if h.Kind != KindData && h.Len != 0 && (h.Kind != KindHello || h.Len > maxHelloPayload) {
		return Header{}, fmt.Errorf("%w: kind %d with %d payload bytes", ErrBadFrame, h.Kind, h.Len)
	}
	return h, nil
}
