// Package membership tells ringtrain's processes who is alive, with
// hashicorp/memberlist's SWIM gossip, tuned to notice a dead worker within a
// second on a LAN.
//
// Every coordinator and worker runs one Member. The coordinator turns the
// events (a member joined, left on purpose, or was declared dead) into
// generations of the ring; workers only take part, so that every process
// probes and is probed by its peers and a silent death is noticed even if
// the coordinator itself is busy.
//
// # Timing
//
// With the default Probe of 200 ms: every member probes one other per
// 200 ms (ProbeInterval), waits 100 ms for the direct ack (ProbeTimeout),
// then asks 3 others to probe it (IndirectChecks, memberlist's default)
// until the end of the interval; a member that none of them reached is
// suspected, and declared dead unless it refutes the suspicion within
// SuspicionMult·max(1, log10 N)·ProbeInterval = 400 ms (SuspicionMult 2,
// which asks for no independent confirmations; SuspicionMaxTimeoutMult 3
// bounds the timeout in larger clusters). Lifeguard's awareness
// (AwarenessMaxMultiplier 8, memberlist's default) stretches the probe
// timeout of a member that itself misses acks, so a starved prober blames
// itself first. A SIGKILLed worker is thus declared gone about 0.7 s after
// its death.
//
// That is fast on purpose, and it is not enough on its own: a live process
// that the scheduler holds back for a few hundred milliseconds (all cores
// busy, a stop-the-world pause, SIGSTOP) misses a probe and may not refute
// in 400 ms. On a 2-core machine with both cores saturated, 1 start of 50
// of `ringtrain train --workers 3` lost a live worker that way, and a worker
// stopped 150 ms of every 300 ms was declared dead two to four times a
// minute. Making memberlist slower would delay every real death by as
// much. So a Gone event is a suspicion that the coordinator acts on only
// once the ring confirms it (coordinator.Server's watchGossip): a worker of
// the running ring is removed when a ring member reported the ring broken
// in the last 3 s (a killed process closes its connections, and its ring
// neighbours report the break within a heartbeat). A suspect that comes
// back in memberlist, or heartbeats, is no longer suspected; one outside a
// running ring waits for the heartbeat deadline. Heartbeat silence is no
// confirmation: on saturated cores a starting worker was seen silent for
// 4 s. A real death keeps its fast path (about 1 s from SIGKILL to a ring
// of the survivors), and a live worker, whose chunks and heartbeats still
// arrive, is not removed. The coordinator's heartbeat deadline (3 s)
// remains the backstop. docs/BENCHMARKS.md has the measurements.
package membership

import (
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// EventKind says what happened to a member.
type EventKind int

const (
	Joined EventKind = iota + 1 // a member appeared (or came back)
	// Gone: it left or stopped answering probes. memberlist reports both
	// through one callback without telling them apart reliably (the node
	// state it passes is not updated), so a voluntary departure is also
	// announced on the control plane (api Leave) where it matters.
	Gone
)

func (k EventKind) String() string {
	switch k {
	case Joined:
		return "joined"
	case Gone:
		return "gone"
	}
	return "unknown"
}

// Event is one change of membership.
type Event struct {
	Name string
	Addr string // host:port of its gossip listener
	Kind EventKind
	Meta []byte
}

// Config configures a Member.
type Config struct {
	Name string // unique in the cluster
	// Bind is the host:port to listen on (TCP and UDP); port 0 picks one.
	Bind string
	// Advertise is the host others reach this member at; empty uses the
	// bound address.
	Advertise string
	// Meta is small data every member sees (e.g. the process's role).
	Meta []byte
	// Secret, when set, encrypts and authenticates all gossip with a key
	// derived from it (the job's join token), so processes of other jobs
	// cannot join or be joined.
	Secret string
	// Probe is the failure-detection period (0: 200 ms): the probe
	// interval; the probe timeout and the gossip interval are half of it.
	// A member that misses a probe is declared dead after about 2 more
	// periods of suspicion it did not refute (see the package comment).
	Probe time.Duration
	// LogOutput receives memberlist's log (nil: discarded).
	LogOutput io.Writer
}

// Member is this process's membership in the cluster.
type Member struct {
	ml     *memberlist.Memberlist
	events chan Event

	mu     sync.Mutex
	closed bool
}

// eventBuffer is how many events wait for a slow reader before the oldest
// delivery blocks memberlist; membership changes are rare.
const eventBuffer = 256

// Start creates the member and starts listening. It joins nobody: call Join.
func Start(cfg Config) (*Member, error) {
	host, portStr, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("membership: bind address %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("membership: bind address %q: bad port", cfg.Bind)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if cfg.Name == "" {
		return nil, fmt.Errorf("membership: empty member name")
	}
	probe := cfg.Probe
	if probe <= 0 {
		probe = 200 * time.Millisecond
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port
	if cfg.Advertise != "" {
		mc.AdvertiseAddr = cfg.Advertise
	}
	mc.ProbeInterval = probe
	mc.ProbeTimeout = probe / 2
	mc.GossipInterval = probe / 2
	mc.SuspicionMult = 2
	mc.SuspicionMaxTimeoutMult = 3
	mc.PushPullInterval = 10 * time.Second
	mc.TCPTimeout = 2 * time.Second
	// A restarted process (a replacement pod) may come back under the same
	// name at another address.
	mc.DeadNodeReclaimTime = time.Second
	if cfg.Secret != "" {
		k := sha256.Sum256([]byte("ringtrain gossip\x00" + cfg.Secret))
		mc.SecretKey = k[:]
	}
	out := cfg.LogOutput
	if out == nil {
		out = io.Discard
	}
	mc.LogOutput = nil
	mc.Logger = log.New(out, "memberlist: ", log.LstdFlags)
	m := &Member{events: make(chan Event, eventBuffer)}
	mc.Events = &delegate{m: m}
	mc.Delegate = &metaDelegate{meta: cfg.Meta}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: %s: %w", cfg.Bind, err)
	}
	m.ml = ml
	return m, nil
}

// Join contacts the given members (host:port) and joins their cluster. It
// succeeds if at least one answered.
func (m *Member) Join(seeds []string) error {
	if len(seeds) == 0 {
		return nil
	}
	if _, err := m.ml.Join(seeds); err != nil {
		return fmt.Errorf("membership: join %v: %w", seeds, err)
	}
	return nil
}

// Events delivers membership changes, including this member's own join.
func (m *Member) Events() <-chan Event { return m.events }

// Addr is the host:port others reach this member at.
func (m *Member) Addr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Alive returns the names of the members currently believed alive.
func (m *Member) Alive() []string {
	var names []string
	for _, n := range m.ml.Members() {
		names = append(names, n.Name)
	}
	return names
}

// Leave announces a voluntary departure (waiting at most timeout for it to
// spread) and shuts the member down.
func (m *Member) Leave(timeout time.Duration) error {
	if !m.markClosed() {
		return nil
	}
	err := m.ml.Leave(timeout)
	if serr := m.ml.Shutdown(); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// Shutdown stops the member without announcing anything: to the others it
// looks dead.
func (m *Member) Shutdown() error {
	if !m.markClosed() {
		return nil
	}
	if err := m.ml.Shutdown(); err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

func (m *Member) markClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.closed = true
	return true
}

type delegate struct{ m *Member }

func (d *delegate) send(n *memberlist.Node, k EventKind) {
	ev := Event{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), Kind: k, Meta: append([]byte(nil), n.Meta...)}
	select {
	case d.m.events <- ev:
	default:
		// A reader that stopped reading must not stall gossip; the oldest
		// events are the least useful.
		select {
		case <-d.m.events:
		default:
		}
		select {
		case d.m.events <- ev:
		default:
		}
	}
}

func (d *delegate) NotifyJoin(n *memberlist.Node) { d.send(n, Joined) }

func (d *delegate) NotifyLeave(n *memberlist.Node) { d.send(n, Gone) }

func (d *delegate) NotifyUpdate(*memberlist.Node) {}

// metaDelegate hands memberlist the member's metadata; it carries no user
// messages.
type metaDelegate struct{ meta []byte }

func (d *metaDelegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return d.meta[:limit]
	}
	return d.meta
}
func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}
