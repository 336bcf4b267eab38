package allreduce

import "fmt"

// Span is a half-open range [Off, Off+Len) of float32 elements of the buffer
// being reduced.
type Span struct {
	Off, Len int
}

// End returns Off+Len.
func (s Span) End() int { return s.Off + s.Len }

// RecvMode says what a receive does with the decoded elements.
type RecvMode uint8

const (
	// RecvAdd adds the received elements into the span (reduce).
	RecvAdd RecvMode = iota + 1
	// RecvCopy overwrites the span with the received elements.
	RecvCopy
)

// SendOp is one frame sent to the right neighbour.
type SendOp struct {
	Span Span
	// After is the index of the receive that must have completed before
	// this send reads Span, or -1 if the send only reads local data.
	After int
	// Quantize marks the first send of a span whose final value this rank
	// owns: with a lossy codec the rank replaces its own copy by the decoded
	// wire value, so every rank ends with the same bits.
	Quantize bool
}

// RecvOp is one frame received from the left neighbour.
type RecvOp struct {
	Span Span
	Mode RecvMode
}

// Schedule is the complete list of frames one rank sends and receives for
// one collective operation, in order. Sends and receives run concurrently;
// send i waits for receive Sends[i].After.
type Schedule struct {
	Sends []SendOp
	Recvs []RecvOp
}

// segment returns segment k of n balanced segments of length elements:
// lengths differ by at most one and cover [0, length) in order.
func segment(n, k, length int) Span {
	lo := k * length / n
	hi := (k + 1) * length / n
	return Span{Off: lo, Len: hi - lo}
}

// chunksPer returns how many chunks each of n segments of length elements
// is split into so that no chunk is longer than chunk elements (at least 1).
func chunksPer(n, length, chunk int) int {
	maxSeg := (length + n - 1) / n
	m := (maxSeg + chunk - 1) / chunk
	if m < 1 {
		m = 1
	}
	return m
}

// subChunk returns chunk j of m balanced chunks of span s.
func subChunk(s Span, m, j int) Span {
	lo := j * s.Len / m
	hi := (j + 1) * s.Len / m
	return Span{Off: s.Off + lo, Len: hi - lo}
}

func mod(a, n int) int { return ((a % n) + n) % n }

func checkScheduleArgs(n, rank, length, chunk int) error {
	if n < 1 || rank < 0 || rank >= n || length < 0 || chunk < 1 {
		return fmt.Errorf("allreduce: bad schedule arguments: ranks=%d rank=%d length=%d chunk=%d", n, rank, length, chunk)
	}
	return nil
}

// RingSchedule returns the ring all-reduce schedule of rank in a ring of n
// ranks for a buffer of length elements, with frames of at most chunk
// elements.
//
// The buffer is cut into n segments, each into m = ChunksPerSegment chunks.
// Reduce-scatter, step s = 0..n-2: the rank sends segment (rank-s) mod n and
// adds segment (rank-s-1) mod n received from the left. Afterwards the rank
// owns the complete sum of segment (rank+1) mod n, which was summed in the
// fixed order owner+1, owner+2, ..., owner (mod n). All-gather, step
// s = 0..n-2: it sends segment (rank+1-s) mod n and copies segment
// (rank-s) mod n. Step t chunk j is send/receive index t*m+j, and send i
// (i >= m) waits for receive i-m, which produced the data it forwards: chunk
// j of step t+1 can leave as soon as chunk j of step t has arrived, so the
// steps overlap (pipelining).
func RingSchedule(n, rank, length, chunk int) (Schedule, error) {
	if err := checkScheduleArgs(n, rank, length, chunk); err != nil {
		return Schedule{}, err
	}
	if n == 1 {
		return Schedule{}, nil
	}
	m := chunksPer(n, length, chunk)
	steps := 2 * (n - 1)
	sc := Schedule{
		Sends: make([]SendOp, 0, steps*m),
		Recvs: make([]RecvOp, 0, steps*m),
	}
	for t := 0; t < steps; t++ {
		var sendSeg, recvSeg int
		mode := RecvAdd
		if t < n-1 {
			sendSeg = mod(rank-t, n)
			recvSeg = mod(rank-t-1, n)
		} else {
			s := t - (n - 1)
			sendSeg = mod(rank+1-s, n)
			recvSeg = mod(rank-s, n)
			mode = RecvCopy
		}
		ss := segment(n, sendSeg, length)
		rs := segment(n, recvSeg, length)
		for j := 0; j < m; j++ {
			i := t*m + j
			after := -1
			if t > 0 {
				after = i - m
			}
			sc.Sends = append(sc.Sends, SendOp{Span: subChunk(ss, m, j), After: after, Quantize: t == n-1})
			sc.Recvs = append(sc.Recvs, RecvOp{Span: subChunk(rs, m, j), Mode: mode})
		}
	}
	return sc, nil
}

// NaiveSchedule returns the reference all-reduce: the buffer is summed along
// a chain rank 0 → 1 → … → n-1 (so the sum is taken in rank order, exactly
// like a sequential loop over ranks), and rank n-1 then sends the result
// around the ring to ranks 0 … n-2. It moves n times more data per link
// than the ring and exists to check the ring against.
func NaiveSchedule(n, rank, length, chunk int) (Schedule, error) {
	if err := checkScheduleArgs(n, rank, length, chunk); err != nil {
		return Schedule{}, err
	}
	if n == 1 {
		return Schedule{}, nil
	}
	c := (length + chunk - 1) / chunk
	if c < 1 {
		c = 1
	}
	whole := Span{Off: 0, Len: length}
	var sc Schedule
	// Reduce phase along the chain.
	for j := 0; j < c; j++ {
		sp := subChunk(whole, c, j)
		switch {
		case rank == 0:
			sc.Sends = append(sc.Sends, SendOp{Span: sp, After: -1})
		case rank == n-1:
			sc.Recvs = append(sc.Recvs, RecvOp{Span: sp, Mode: RecvAdd})
			sc.Sends = append(sc.Sends, SendOp{Span: sp, After: len(sc.Recvs) - 1, Quantize: true})
		default:
			sc.Recvs = append(sc.Recvs, RecvOp{Span: sp, Mode: RecvAdd})
			sc.Sends = append(sc.Sends, SendOp{Span: sp, After: len(sc.Recvs) - 1})
		}
	}
	// Broadcast phase from rank n-1: 0, 1, …, n-2 receive; all but n-2 forward.
	if rank != n-1 {
		for j := 0; j < c; j++ {
			sp := subChunk(whole, c, j)
			sc.Recvs = append(sc.Recvs, RecvOp{Span: sp, Mode: RecvCopy})
			if rank != n-2 {
				sc.Sends = append(sc.Sends, SendOp{Span: sp, After: len(sc.Recvs) - 1})
			}
		}
	}
	return sc, nil
}

// BroadcastSchedule returns the schedule that copies root's buffer to every
// rank along the ring, in chunks, pipelined.
func BroadcastSchedule(n, rank, root, length, chunk int) (Schedule, error) {
	if err := checkScheduleArgs(n, rank, length, chunk); err != nil {
		return Schedule{}, err
	}
	if root < 0 || root >= n {
		return Schedule{}, fmt.Errorf("allreduce: broadcast root %d out of range [0,%d)", root, n)
	}
	if n == 1 {
		return Schedule{}, nil
	}
	c := (length + chunk - 1) / chunk
	if c < 1 {
		c = 1
	}
	whole := Span{Off: 0, Len: length}
	last := mod(root-1, n) // receives but does not forward
	var sc Schedule
	for j := 0; j < c; j++ {
		sp := subChunk(whole, c, j)
		switch rank {
		case root:
			sc.Sends = append(sc.Sends, SendOp{Span: sp, After: -1})
		default:
			sc.Recvs = append(sc.Recvs, RecvOp{Span: sp, Mode: RecvCopy})
			if rank != last {
				sc.Sends = append(sc.Sends, SendOp{Span: sp, After: len(sc.Recvs) - 1})
			}
		}
	}
	return sc, nil
}
