// Package freeport picks loopback ports for processes that will listen on
// them later (a local cluster's workers, a test's etcd).
//
// A port the kernel hands out for ":0" is from the ephemeral range, the
// range it also takes the local ports of outgoing connections from: between
// the pick and the listen, any process's new connection may take it, and
// the listener then fails with "address already in use" (a campaign of
// local clusters, with hundreds of connections a second, saw it). Ports are
// therefore picked below the ephemeral range, and free for both TCP and UDP
// (memberlist listens on both) at the time of the pick.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// given holds the ports Loopback has returned in this process: none is
// returned twice (until nearly all are), since a port picked for a
// process that has not started yet is still free when picked again.
var given struct {
	sync.Mutex
	ports map[int]bool
}

// Loopback returns a port that nothing listens on at 127.0.0.1, for TCP
// or UDP, outside the ephemeral range, and that it has not returned before
// in this process. Where none is found it falls back to one the kernel
// picks.
func Loopback() (int, error) {
	lo, hi := below(ephemeralRange())
	given.Lock()
	defer given.Unlock()
	if given.ports == nil || len(given.ports) > (hi-lo)/2 {
		given.ports = map[int]bool{}
	}
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if !given.ports[p] && free(p) {
			given.ports[p] = true
			return p, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// below is the range ports are picked from: the 12,000 ports under the
// ephemeral range (at least from 1024), or, where that range starts too
// low, the ports above it.
func below(elo, ehi int) (lo, hi int) {
	if elo-1024 >= 4096 {
		return max(1024, elo-12000), elo
	}
	return ehi + 1, 65536
}

// ephemeralRange is the kernel's range of local ports for outgoing
// connections (Linux's ip_local_port_range; elsewhere IANA's 49152–65535).
func ephemeralRange() (lo, hi int) {
	lo, hi = 49152, 65535
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
		return lo, hi
	}
	return l, h
}

// free reports whether port can be bound at 127.0.0.1 for TCP and UDP.
func free(port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}
