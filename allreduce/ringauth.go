package allreduce

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Authenticated links.
//
// A ring link is set up by four hello frames on its gRPC stream, whether
// or not TLS protects the connection:
//
//	dialler → listener  hello: job, generation, rank c; nonce Nc
//	listener → dialler  hello: job, generation, rank s; nonce Ns, MAC(server)
//	dialler → listener  hello: MAC(client), then a shared-memory offer (optional)
//	listener → dialler  hello: accepted (Seq 1: and the shared-memory ring)
//
// MAC(role) is HMAC-SHA256 under the ring key of the role, the job, the
// generation, both ranks, both nonces and, for the client, its offer. The
// ring key is derived from the job's join token, job and generation
// (RingKey), so only a process that holds the token can produce either
// MAC; each side's MAC covers the nonce the other side has just drawn, so
// a recorded hello proves nothing on another link. The listener takes no
// link, and maps no shared-memory ring, before the dialler's MAC checks
// out; a dialler that fails is logged and its connection closed at once.
// The dialler sends nothing but its nonce before the listener's MAC checks
// out.
//
// This authenticates the peers of a link when it is set up. Without TLS
// the frames that follow are neither encrypted nor protected against
// someone who can rewrite the traffic between the hosts; TLS (GRPCConfig's
// ServerTLS and ClientTLS) is what protects them.

const (
	linkNonceLen = 32
	linkMACLen   = sha256.Size
	// minRingKey is the shortest ring key DialRing accepts.
	minRingKey = 16
	// linkLogEvery is the least time between two log lines about refused
	// links or connections of one transport.
	linkLogEvery = time.Second
)

// ringKeyLabel starts the HKDF info of a ring key.
const ringKeyLabel = "ringtrain ring"

// ErrLinkAuth is wrapped by the errors of a link whose peer failed to
// prove it holds the ring key.
var ErrLinkAuth = errors.New("allreduce: link authentication failed")

// RingKey derives the key that authenticates the links of one ring
// (GRPCConfig.RingKey): HKDF-SHA256 of the job's join token, with the info
// "ringtrain ring" followed by job and generation (8 bytes each,
// big-endian). Every rank of a ring derives the same key; a ring of
// another job or generation has another.
func RingKey(token string, job, generation uint64) []byte {
	info := make([]byte, 0, len(ringKeyLabel)+16)
	info = append(info, ringKeyLabel...)
	info = binary.BigEndian.AppendUint64(info, job)
	info = binary.BigEndian.AppendUint64(info, generation)
	key, err := hkdf.Key(sha256.New, []byte(token), nil, string(info), 32)
	if err != nil {
		panic(err) // only for keys longer than 255 hashes
	}
	return key
}

// linkMAC is the MAC one side of a link shows: role is "server" (the
// listener) or "client" (the dialler); offer is the client's
// shared-memory offer (nil for the server).
func linkMAC(key []byte, role string, job, gen uint64, client, server int, nonceC, nonceS, offer []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("ringtrain ring link v1\x00"))
	m.Write([]byte(role))
	var b [28]byte
	binary.BigEndian.PutUint64(b[0:], job)
	binary.BigEndian.PutUint64(b[8:], gen)
	binary.BigEndian.PutUint32(b[16:], uint32(client))
	binary.BigEndian.PutUint32(b[20:], uint32(server))
	binary.BigEndian.PutUint32(b[24:], uint32(len(offer)))
	m.Write(b[:])
	m.Write(nonceC)
	m.Write(nonceS)
	m.Write(offer)
	return m.Sum(nil)
}

func newNonce() []byte {
	b := make([]byte, linkNonceLen)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return b
}

// rateLog writes log lines at most once per linkLogEvery, and says how
// many it left out in the next one.
type rateLog struct {
	logf    func(format string, args ...any)
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (r *rateLog) printf(format string, args ...any) {
	if r.logf == nil {
		return
	}
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < linkLogEvery {
		r.skipped++
		r.mu.Unlock()
		return
	}
	skipped := r.skipped
	r.last, r.skipped = now, 0
	r.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if skipped > 0 {
		msg += fmt.Sprintf(" (and %d more like it since the last notice)", skipped)
	}
	r.logf("%s", msg)
}
