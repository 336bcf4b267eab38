package allreduce

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// The data path of a GRPCTransport whose links run over shared-memory
// rings (see shm.go): the gRPC stream beside each ring reports the
// neighbour's pings, abort notice or end, and every wait also watches
// the transport's state and the stall timeout.

// progress tracks a wait's stall timeout: it restarts whenever the
// watched counter moves.
type progress struct {
	last  uint64
	since time.Time
}

func (p *progress) stalled(now time.Time, v uint64, d time.Duration) bool {
	if v != p.last {
		p.last, p.since = v, now
		return false
	}
	return now.Sub(p.since) > d
}

// rightCheck is the state check of a sender waiting on its ring.
func (t *GRPCTransport) rightCheck(ctx context.Context, r *shmRing, pr *progress) func() error {
	return func() error {
		select {
		case <-t.closed:
			return ErrClosed
		case <-t.ackDone:
			return t.ackErr
		case <-ctx.Done():
			return fmt.Errorf("allreduce: rank %d: %w", t.rank, ctx.Err())
		default:
		}
		if pr.stalled(time.Now(), r.ctl.tail.Load(), t.timeout) {
			return t.peerErr(t.rightRank(), "ack", timeoutErr(t.timeout))
		}
		return nil
	}
}

// sendShm copies one frame into the right link's ring once there is room.
func (t *GRPCTransport) sendShm(ctx context.Context, h Header, payload []byte) error {
	r := t.outShm
	if !r.acquire() {
		return ErrClosed
	}
	defer r.release()
	need := uint64(HeaderLen + len(payload))
	size := uint64(len(r.data))
	if need > size {
		return fmt.Errorf("allreduce: rank %d: frame of %d bytes over the shared ring's %d", t.rank, need, size)
	}
	pr := progress{last: r.ctl.tail.Load(), since: time.Now()}
	err := shmWait(&r.ctl.ackEv, &r.ctl.ackWait,
		func() bool { return size-(t.shmHead-r.ctl.tail.Load()) >= need },
		t.rightCheck(ctx, r, &pr))
	if err != nil {
		return err
	}
	h.Len = uint32(len(payload))
	var hb [HeaderLen]byte
	PutHeader(hb[:], h)
	r.put(t.shmHead, hb[:])
	r.put(t.shmHead+HeaderLen, payload)
	t.shmHead += need
	t.sentSeq.Store(h.Seq)
	shmRelease()
	r.ctl.head.Store(t.shmHead)
	notify(&r.ctl.dataEv, &r.ctl.dataWait)
	return nil
}

// waitAckedShm waits until the right neighbour has consumed frame seq.
func (t *GRPCTransport) waitAckedShm(ctx context.Context, seq uint64) error {
	r := t.outShm
	if !r.acquire() {
		return ErrClosed
	}
	defer r.release()
	pr := progress{last: r.ctl.tail.Load(), since: time.Now()}
	return shmWait(&r.ctl.ackEv, &r.ctl.ackWait,
		func() bool { return r.ctl.acked.Load() >= seq },
		t.rightCheck(ctx, r, &pr))
}

// recvShm waits for the next frame in the left link's ring and hands it
// to fn in place (one piece, or two where it wraps around the ring).
// Like a gRPC Recv it gives up after the timeout, or twice the timeout if
// the left neighbour pinged meanwhile (it is alive and itself waiting).
func (t *GRPCTransport) recvShm(fn func(Header, [][]byte) error) error {
	r := t.inShm
	if !r.acquire() {
		return ErrClosed
	}
	defer r.release()
	start := time.Now()
	t.recvPending.Store(true)
	err := shmWait(&r.ctl.dataEv, &r.ctl.dataWait,
		func() bool { return r.ctl.head.Load() != t.inTail },
		func() error {
			select {
			case <-t.closed:
				return ErrClosed
			case <-t.leftGone:
				return t.leftEnd
			default:
			}
			limit := t.timeout
			if t.lastPing.Load() > start.UnixNano() {
				limit = 2 * t.timeout
			}
			if time.Since(start) > limit {
				return t.peerErr(t.leftRank(), "recv", timeoutErr(t.timeout))
			}
			return nil
		})
	t.recvPending.Store(false)
	if err != nil {
		if err != ErrClosed {
			t.leftErr = err
		}
		return err
	}
	h, err := r.frame(t.inTail, t.lastRecv, t.maxFrame)
	if err != nil {
		t.leftErr = t.peerErr(t.leftRank(), "recv", err)
		return t.leftErr
	}
	t.lastRecv = h.Seq
	t.shmPieces = r.pieces(t.shmPieces[:0], t.inTail+HeaderLen, int(h.Len))
	fnErr := fn(h, t.shmPieces)
	t.shmPieces = t.shmPieces[:0]
	t.inTail += HeaderLen + uint64(h.Len)
	shmRelease()
	r.ctl.tail.Store(t.inTail)
	if fnErr == nil {
		r.ctl.acked.Store(h.Seq)
	}
	notify(&r.ctl.ackEv, &r.ctl.ackWait)
	return fnErr
}

// frame reads and checks the header of the frame at stream position tail,
// which the sender published (head is past tail): the neighbour's frame is
// checked like one from the network, its header and length must fit what
// it published and maxFrame, it must be a data frame, and its sequence
// number must follow lastRecv (0: none yet). Its payload is then the
// h.Len bytes after the header (pieces).
func (r *shmRing) frame(tail, lastRecv uint64, maxFrame int) (Header, error) {
	avail := r.ctl.head.Load() - tail
	var hb [HeaderLen]byte
	h, err := Header{}, fmt.Errorf("%w: %d bytes published, shorter than a header", ErrBadFrame, avail)
	if avail >= HeaderLen {
		r.get(hb[:], tail)
		plen := binary.LittleEndian.Uint32(hb[32:])
		h, err = parseHeader(hb[:], int(plen), maxFrame)
		if err == nil && uint64(HeaderLen)+uint64(plen) > avail {
			err = fmt.Errorf("%w: %d payload bytes, %d published", ErrBadFrame, plen, avail-HeaderLen)
		}
	}
	switch {
	case err != nil:
	case h.Kind != KindData:
		err = fmt.Errorf("%w: kind %d on a data link", ErrBadFrame, h.Kind)
	case lastRecv != 0 && h.Seq != lastRecv+1:
		err = fmt.Errorf("%w: sequence %d after %d", ErrBadFrame, h.Seq, lastRecv)
	}
	return h, err
}
