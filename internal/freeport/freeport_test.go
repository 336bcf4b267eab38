package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestLoopbackIsFreeAndOutsideTheEphemeralRange(t *testing.T) {
	elo, ehi := ephemeralRange()
	seen := map[int]bool{}
	for range 50 {
		p, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if p >= elo && p <= ehi {
			t.Errorf("port %d is in the ephemeral range %d–%d", p, elo, ehi)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d (UDP): %v", p, err)
		}
		pc.Close()
		ln.Close()
	}
	if len(seen) != 50 {
		t.Errorf("50 picks gave %d distinct ports: a port picked for a process that has not started yet was given again", len(seen))
	}
}

func TestLoopbackSkipsTakenPorts(t *testing.T) {
	// The range below the ephemeral one, or above it where that starts
	// too low; a port with a listener of either kind is not free.
	if lo, hi := below(32768, 60999); lo != 20768 || hi != 32768 {
		t.Errorf("below(32768, 60999) = %d, %d", lo, hi)
	}
	if lo, hi := below(1500, 30000); lo != 30001 || hi != 65536 {
		t.Errorf("below(1500, 30000) = %d, %d", lo, hi)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if free(ln.Addr().(*net.TCPAddr).Port) {
		t.Error("a port with a TCP listener counted as free")
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if free(pc.LocalAddr().(*net.UDPAddr).Port) {
		t.Error("a port with a UDP listener counted as free")
	}
}
