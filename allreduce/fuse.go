package allreduce

import (
	"fmt"
	"slices"
)

// Fused receive-and-forward for fixed-width lossy codecs (bf16, fp16).
//
// In the ring, every send after the first step carries exactly the span
// that the receive before it produced: in reduce-scatter the partial sum
// just added, in all-gather the segment just copied. Encoding that span
// afterwards, on the sending side, reads it again and repeats work: the
// receiver has the values in cache, and in all-gather it even holds their
// encoding, the received bytes. So, when a payload buffer is free, the
// receiver writes the next payload itself, block by block while each block
// is in L1:
//
//   - after an add, the encoding of the new partial sum (and, for the send
//     that publishes the rank's owned segment, the rounded values written
//     back into the buffer, which is what Quantize would do);
//   - after a copy, the received bytes themselves. They are the encoding
//     of the decoded values: the codecs' encoders are idempotent on their
//     own output.
//
// The hand-over never blocks the receiver. Payload buffers circulate
// through a small pool: the receiver takes one if the pool has one (else
// it leaves the encoding to the sender, as before), fills it, and leaves
// it for the send it feeds before it publishes the receive as done; the
// sender sends it and returns it to the pool once the right neighbour has
// acknowledged the frame, so the transport is done reading it. Either way
// the bytes sent are the same.

// fwdSlots is the number of payload buffers: enough for the receiver to
// run a segment's chunks ahead of the sender, which it does in the ring
// (send i waits for receive i-m, m chunks per segment).
const fwdSlots = 16

// fuseBlock is how many elements a fused pass handles at a time, so that
// the sums are still in L1 when they are encoded.
const fuseBlock = 4096

// ackReporter is implemented by transports that can tell, without
// waiting, how many frames the right neighbour has consumed.
type ackReporter interface {
	Acked() uint64
}

// fusedCodec is implemented by codecs with single-pass kernels for the
// fused receive; they return false to fall back to the general steps.
type fusedCodec interface {
	decodeAddEncode(dst []float32, src, out []byte, round bool) bool
	decodeCopy(dst []float32, src, out []byte) bool
}

type pendingPayload struct {
	seq uint64
	buf []byte
}

// feeds maps each receive of a schedule to the send that forwards the span
// it produced (the send's index), or -1: in the ring, every send after the
// first step. A copied span is forwarded as received, which is already its
// rounded value, so a send that rounds is never fed by a copy.
func feeds(sc Schedule) []int {
	f := make([]int, len(sc.Recvs))
	for i := range f {
		f[i] = -1
	}
	for j, s := range sc.Sends {
		if s.After < 0 || s.After >= len(sc.Recvs) {
			continue
		}
		r := sc.Recvs[s.After]
		if r.Span == s.Span && !(r.Mode == RecvCopy && s.Quantize) {
			f[s.After] = j
		}
	}
	return f
}

// planFusion decides what the receivers of one operation do for the sends
// they feed (see feeds):
//
//   - fuse: write the send's payload. Only where both of this rank's links
//     use the operation's codec, that codec is lossy and fixed-width, and
//     the transport reports acknowledgements.
//   - roundEarly: where the right link carries fp32 (shared memory) but
//     the operation's codec is lossy, round the owned segment through the
//     codec block by block as it is summed, rather than in a pass of the
//     sender over the whole chunk before it can leave.
func (c *Comm) planFusion(sc plan, codec, sendCodec Codec, sameCodecs bool) {
	_, fixed := codec.(fixedWidth)
	_, acks := c.t.(ackReporter)
	c.cur.fuse = acks && sameCodecs && fixed && !codec.Lossless()
	c.cur.roundEarly = !codec.Lossless() && sendCodec.Lossless()
	c.cur.feeds = sc.feeds
	if c.cur.fuse {
		if c.fwdFree == nil {
			c.fwdFree = make(chan []byte, fwdSlots)
			for range fwdSlots {
				c.fwdFree <- nil
			}
		}
		// A failed operation may have left payloads behind.
		c.fwdReady = slices.Grow(c.fwdReady[:0], len(sc.Recvs))[:len(sc.Recvs)]
		clear(c.fwdReady)
	}
	if c.cur.roundEarly {
		c.rounded = slices.Grow(c.rounded[:0], len(sc.Recvs))[:len(sc.Recvs)]
		clear(c.rounded)
	}
}

// roundedEarly reports whether the receiver already rounded send s's span.
func (c *Comm) roundedEarly(s SendOp) bool {
	return c.cur.roundEarly && s.After >= 0 && c.rounded[s.After]
}

// receiveRounded applies receive i's frame, an add, and rounds the sums
// through the operation's codec while each block is in L1, where the send
// it feeds publishes the segment over a lossless link. It reports whether
// it handled the frame.
func (c *Comm) receiveRounded(i int, dst []float32, frags [][]byte) (bool, error) {
	if !c.cur.roundEarly || c.cur.op.Mode != RecvAdd || c.cur.feeds[i] < 0 || !c.cur.sends[c.cur.feeds[i]].Quantize {
		return false, nil
	}
	codec := c.cur.codec
	fw, ok := codec.(fixedWidth)
	if !ok {
		return false, nil
	}
	if err := c.walkFrags(frags, fw.elemBytes(), len(dst), func(lo, hi int, b []byte) error {
		if err := codec.DecodeAdd(dst[lo:hi], b); err != nil {
			return err
		}
		c.cur.opCodec.Quantize(dst[lo:hi])
		return nil
	}); err != nil {
		return true, fmt.Errorf("%s %w", codec.Name(), err)
	}
	c.rounded[i] = true
	return true, nil
}

// fusedPayload returns the payload that receive s.After wrote for send j,
// if it did, and takes charge of the buffer until seq is acknowledged.
func (c *Comm) fusedPayload(j int, seq uint64, s SendOp) ([]byte, bool) {
	if !c.cur.fuse || s.After < 0 || c.cur.feeds[s.After] != j {
		return nil, false
	}
	buf := c.fwdReady[s.After]
	if buf == nil {
		return nil, false
	}
	c.fwdReady[s.After] = nil
	c.fwdPending = append(c.fwdPending, pendingPayload{seq: seq, buf: buf})
	c.fusedSends++
	return buf, true
}

// releaseFused returns to the pool the payload buffers of frames up to
// acked, which the transport no longer reads.
func (c *Comm) releaseFused(acked uint64) {
	k := 0
	for k < len(c.fwdPending) && c.fwdPending[k].seq <= acked {
		c.fwdFree <- c.fwdPending[k].buf
		c.fwdPending[k] = pendingPayload{}
		k++
	}
	if k > 0 {
		c.fwdPending = append(c.fwdPending[:0], c.fwdPending[k:]...)
	}
}

// pollFused releases what the transport reports acknowledged.
func (c *Comm) pollFused() {
	if len(c.fwdPending) > 0 {
		c.releaseFused(c.t.(ackReporter).Acked())
	}
}

// receiveFused applies receive i's frame and, if a payload buffer is free,
// writes the payload of the send it feeds. It reports whether it handled
// the frame.
func (c *Comm) receiveFused(i int, dst []float32, frags [][]byte) (bool, error) {
	if !c.cur.fuse || c.cur.feeds[i] < 0 {
		return false, nil
	}
	var buf []byte
	select {
	case buf = <-c.fwdFree:
	default:
		return false, nil
	}
	codec := c.cur.codec
	w := codec.(fixedWidth).elemBytes()
	if cap(buf) < w*len(dst) {
		buf = make([]byte, w*len(dst))
	}
	out := buf[:w*len(dst)]
	fc, _ := codec.(fusedCodec)
	var err error
	if c.cur.op.Mode == RecvCopy {
		err = c.walkFrags(frags, w, len(dst), func(lo, hi int, b []byte) error {
			if fc != nil && fc.decodeCopy(dst[lo:hi], b, out[lo*w:hi*w]) {
				return nil
			}
			copy(out[lo*w:], b)
			return codec.Decode(dst[lo:hi], b)
		})
	} else {
		round := c.cur.sends[c.cur.feeds[i]].Quantize
		err = c.walkFrags(frags, w, len(dst), func(lo, hi int, b []byte) error {
			if fc != nil && fc.decodeAddEncode(dst[lo:hi], b, out[lo*w:hi*w], round) {
				return nil
			}
			if err := codec.DecodeAdd(dst[lo:hi], b); err != nil {
				return err
			}
			enc := codec.AppendEncode(out[lo*w:lo*w], dst[lo:hi])
			if len(enc) != w*(hi-lo) || &enc[0] != &out[lo*w] {
				return fmt.Errorf("%s encoder did not write in place", codec.Name())
			}
			if round {
				return codec.Decode(dst[lo:hi], enc)
			}
			return nil
		})
	}
	if err != nil {
		c.fwdFree <- buf
		return true, err
	}
	c.fwdReady[i] = out
	return true, nil
}

// walkFrags cuts a fixed-width payload that arrived in pieces into runs of
// whole elements, at most fuseBlock long, and calls fn for each with the
// run's element range [lo, hi) and its bytes. An element split across two
// pieces is reassembled in the receiver's carry buffer.
func (c *Comm) walkFrags(frags [][]byte, w, n int, fn func(lo, hi int, b []byte) error) error {
	total := 0
	for _, f := range frags {
		total += len(f)
	}
	if total != w*n {
		return fmt.Errorf("payload of %d bytes, want %d", total, w*n)
	}
	carry := &c.carry // not on the stack: fn may keep what it is given
	nc := 0           // bytes in carry
	k := 0            // next element
	for _, f := range frags {
		if nc > 0 {
			m := copy(carry[nc:w], f)
			nc += m
			f = f[m:]
			if nc < w {
				continue
			}
			if err := fn(k, k+1, carry[:w]); err != nil {
				return err
			}
			k++
			nc = 0
		}
		whole := len(f) / w
		for whole > 0 {
			m := min(whole, fuseBlock)
			if err := fn(k, k+m, f[:m*w]); err != nil {
				return err
			}
			k += m
			f = f[m*w:]
			whole -= m
		}
		nc = copy(carry[:], f)
	}
	return nil
}
