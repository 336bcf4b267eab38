package allreduce

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// Shared-memory links.
//
// When both ends of a ring link run on the same host, frames need not
// cross gRPC and the loopback TCP stack, which copy every byte four times
// (into gRPC's write buffer, into the kernel, out of it, into gRPC's read
// buffer). Instead the sender offers, in its hello, a ring buffer in a
// file under GRPCConfig.ShmDir; the receiver maps the file, checks the
// nonce the sender wrote into it (a file of that name on another host, or
// in another container, does not carry it) and accepts. Data frames then
// go through the ring: the sender copies each frame in once and the
// receiver decodes it in place. The file is unlinked as soon as both ends
// have it mapped, so nothing is left behind when a process dies.
//
// The gRPC stream stays open beside the ring: it carries the hello, the
// pings, abort notices and the end of the link, so a dead or stalled
// neighbour is detected and named exactly as on a gRPC link. Waiting
// sides sleep on a futex in the shared page and look at the link's state
// at least every shmPoll.

const (
	shmMagic        uint64 = 0x314d48534e545200 // "\x00RTNSHM1"
	shmCtlSize             = 4096               // the control page in front of the ring
	shmPrefix              = "ringtrain-ring-"
	shmMinRing             = 1 << 20
	shmMaxRing             = 256 << 20
	maxShmOffer            = 512
	maxHelloPayload        = linkMACLen + maxShmOffer // the largest hello: a MAC and an offer
	shmPoll                = 10 * time.Millisecond
	shmSpin                = 32 // polls (yielding the processor) before a futex sleep
)

// shmCtl is the control page of a ring, shared by both processes. Each
// side's counters sit on their own cache line.
type shmCtl struct {
	magic, nonce, size uint64
	_                  [5]uint64
	head               atomic.Uint64 // bytes published by the sender
	_                  [7]uint64
	tail               atomic.Uint64 // bytes consumed by the receiver
	acked              atomic.Uint64 // sequence number of the last consumed frame
	_                  [6]uint64
	dataEv, dataWait   atomic.Uint32 // bumped after head moves; receivers asleep on it
	_                  [14]uint32
	ackEv, ackWait     atomic.Uint32 // bumped after tail moves; senders asleep on it
}

// shmRing is one link's ring as mapped by one process. refs counts the
// owner (the transport, until it closes) and every call using the
// mapping; the last one out unmaps it.
type shmRing struct {
	mapping []byte
	ctl     *shmCtl
	data    []byte
	mask    uint64
	refs    atomic.Int64
}

func newShmRing(mapping []byte) *shmRing {
	r := &shmRing{mapping: mapping, ctl: (*shmCtl)(unsafe.Pointer(&mapping[0])), data: mapping[shmCtlSize:]}
	r.mask = uint64(len(r.data) - 1)
	r.refs.Store(1)
	return r
}

// acquire takes a reference for one use of the mapping; false if the ring
// is already unmapped.
func (r *shmRing) acquire() bool {
	for {
		n := r.refs.Load()
		if n <= 0 {
			return false
		}
		if r.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (r *shmRing) release() {
	if r.refs.Add(-1) == 0 {
		unmapShm(r.mapping)
	}
}

// shmRingSize is the ring size for frames of up to maxFrame payload bytes
// (two frames fit, so the sender can fill one while the receiver reads
// the other), or 0 if that is too large for shared memory.
func shmRingSize(maxFrame int) int {
	size := shmMinRing
	for size < 2*(maxFrame+HeaderLen) {
		size *= 2
	}
	if size > shmMaxRing {
		return 0
	}
	return size
}

// put copies b into the ring at stream position pos.
func (r *shmRing) put(pos uint64, b []byte) {
	off := int(pos & r.mask)
	n := copy(r.data[off:], b)
	copy(r.data, b[n:])
}

// get copies len(b) bytes from stream position pos into b.
func (r *shmRing) get(b []byte, pos uint64) {
	off := int(pos & r.mask)
	n := copy(b, r.data[off:])
	copy(b[n:], r.data)
}

// pieces returns the n bytes at stream position pos as one or two slices
// of the ring, appended to buf.
func (r *shmRing) pieces(buf [][]byte, pos uint64, n int) [][]byte {
	if n == 0 {
		return buf
	}
	off := int(pos & r.mask)
	if off+n <= len(r.data) {
		return append(buf, r.data[off:off+n])
	}
	return append(buf, r.data[off:], r.data[:n-(len(r.data)-off)])
}

// notify bumps an event word and wakes its sleepers, if any.
func notify(ev, waiters *atomic.Uint32) {
	ev.Add(1)
	if waiters.Load() != 0 {
		futexWake(ev)
	}
}

// shmWait returns once ready reports true, or with the first error of
// check, which is called at least every shmPoll while waiting. Sleepers
// cannot miss a wake-up: ready is re-checked after registering on the
// event word, and the futex only sleeps while the word is unchanged.
func shmWait(ev, waiters *atomic.Uint32, ready func() bool, check func() error) error {
	defer shmAcquire()
	for i := 0; ; i++ {
		if ready() {
			return nil
		}
		if i < shmSpin {
			runtime.Gosched()
			continue
		}
		v := ev.Load()
		waiters.Add(1)
		if !ready() {
			futexWait(ev, v, shmPoll)
		}
		waiters.Add(^uint32(0))
		if ready() {
			return nil
		}
		if err := check(); err != nil {
			return err
		}
	}
}

// shmOffer is the payload of a hello that offers a ring: nonce, ring size
// and the file's path.
func shmOffer(nonce uint64, size int, path string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, nonce)
	b = binary.LittleEndian.AppendUint64(b, uint64(size))
	return append(b, path...)
}

// parseShmOffer checks an offer against this rank's shared-memory
// directory: the path must name a ring file directly inside it.
func parseShmOffer(b []byte, dir string, maxFrame int) (nonce uint64, size int, path string, err error) {
	if len(b) < 16 || len(b) > maxShmOffer {
		return 0, 0, "", fmt.Errorf("%w: shared-memory offer of %d bytes", ErrBadFrame, len(b))
	}
	nonce = binary.LittleEndian.Uint64(b)
	sz := binary.LittleEndian.Uint64(b[8:])
	path = string(b[16:])
	if sz != uint64(shmRingSize(maxFrame)) || sz == 0 {
		return 0, 0, "", fmt.Errorf("%w: shared-memory ring of %d bytes, want %d", ErrBadFrame, sz, shmRingSize(maxFrame))
	}
	if filepath.Dir(path) != filepath.Clean(dir) || !strings.HasPrefix(filepath.Base(path), shmPrefix) {
		return 0, 0, "", fmt.Errorf("%w: shared-memory ring %q outside %s", ErrBadFrame, path, dir)
	}
	return nonce, int(sz), path, nil
}
