// Package faults is ringtrain's randomized fault campaign: a pure schedule
// generator (seed → timed fault events), a pure checker of the invariants a
// run must keep whatever the faults (it reads recorded observations), and a
// harness that runs a local cluster of real processes (a 3-member etcd
// cluster, coordinators and workers of the ringtrain binary), injects a
// schedule's faults and records what the checker reads.
package faults

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is one kind of fault.
type Kind string

// The fault kinds a schedule draws from.
const (
	// KillWorker SIGKILLs a worker; it is restarted after Event.For.
	KillWorker Kind = "kill-worker"
	// KillLeader and KillStandby SIGKILL the coordinator leading (or the
	// one standing by) when the event fires; restarted after Event.For.
	KillLeader  Kind = "kill-leader"
	KillStandby Kind = "kill-standby"
	// KillEtcd SIGKILLs one etcd member; restarted after Event.For.
	KillEtcd Kind = "kill-etcd"
	// Pause SIGSTOPs any one process (a worker, a coordinator by role, an
	// etcd member) and SIGCONTs it after Event.For (1–6 s).
	Pause Kind = "pause"
	// QuorumLoss SIGSTOPs two of the three etcd members for Event.For.
	QuorumLoss Kind = "quorum-loss"
	// CutCoordinator cuts one coordinator (by role) off etcd alone, at
	// the TCP proxies between it and every member, for Event.For.
	CutCoordinator Kind = "cut-coordinator"
	// SlowLinks delays every write between workers by Event.Delay, at
	// TCP proxies in front of every worker's data listener, for
	// Event.For.
	SlowLinks Kind = "slow-links"
	// FlakyLink resets every connection to one worker's data listener,
	// at its proxy, twice a second for Event.For.
	FlakyLink Kind = "flaky-link"
	// DiskFull fills the checkpoint store's file system (a tmpfs the
	// harness mounts, so it needs root) for Event.For.
	DiskFull Kind = "disk-full"
	// KillAll SIGKILLs every process (etcd included) at once and restarts
	// them all after Event.For. It is drawn alone, as a schedule of its
	// own: the run must then end bit-identical to an uninterrupted one.
	KillAll Kind = "kill-all"
)

// Kinds lists every fault kind, in the order transcripts and flags use.
var Kinds = []Kind{KillWorker, KillLeader, KillStandby, KillEtcd, Pause, QuorumLoss, CutCoordinator, SlowLinks, FlakyLink, DiskFull, KillAll}

// ParseKinds parses a comma-separated list of kinds; an unknown one is an
// error naming the known ones.
func ParseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(Kinds, Kind(p)) {
			names := make([]string, len(Kinds))
			for i, k := range Kinds {
				names[i] = string(k)
			}
			return nil, fmt.Errorf("faults: unknown fault kind %q (known: %s)", p, strings.Join(names, ", "))
		}
		if !slices.Contains(out, Kind(p)) {
			out = append(out, Kind(p))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("faults: no fault kind given")
	}
	return out, nil
}

// Event is one timed fault of a schedule.
type Event struct {
	// At is when the fault fires, after training has started.
	At   time.Duration
	Kind Kind
	// Targets name the processes hit: "worker-2", "etcd-0", or a
	// coordinator's role, "leader" or "standby", resolved when the event
	// fires. KillAll, DiskFull: none.
	Targets []string
	// For is how long the fault lasts: the restart delay of a kill, the
	// length of a pause, an outage, a cut, slow or flaky links or a full
	// disk.
	For time.Duration
	// Delay is what SlowLinks adds to every write.
	Delay time.Duration
}

func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.2fs %s", e.At.Seconds(), e.Kind)
	if len(e.Targets) > 0 {
		fmt.Fprintf(&b, " %s", strings.Join(e.Targets, "+"))
	}
	what := "for"
	switch e.Kind {
	case KillWorker, KillLeader, KillStandby, KillEtcd, KillAll:
		what = "restart after"
	}
	fmt.Fprintf(&b, " (%s %.2fs", what, e.For.Seconds())
	if e.Delay > 0 {
		fmt.Fprintf(&b, ", +%v a write", e.Delay)
	}
	b.WriteString(")")
	return b.String()
}

// Shape is what a schedule is drawn over: the cluster's size and the
// window in which faults fire.
type Shape struct {
	Workers, Coordinators, EtcdMembers int
	// Window is the span after training starts in which events fire.
	Window time.Duration
	// MaxEvents bounds the events of one schedule (at least 1).
	MaxEvents int
}

// DefaultShape is the campaign's cluster: 4 workers, 2 coordinators, 3
// etcd members, up to 3 faults in the first 6 s of training.
var DefaultShape = Shape{Workers: 4, Coordinators: 2, EtcdMembers: 3, Window: 6 * time.Second, MaxEvents: 3}

// Schedule is the list of events of one seed, in firing order.
type Schedule struct {
	Seed   int64
	Events []Event
}

// Transcript is the schedule as text, one event a line, for logs and
// golden files: rerunning the seed draws the same lines.
func (s Schedule) Transcript() string {
	var b strings.Builder
	noun := "events"
	if len(s.Events) == 1 {
		noun = "event"
	}
	fmt.Fprintf(&b, "seed %d: %d %s\n", s.Seed, len(s.Events), noun)
	for _, e := range s.Events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// Generate draws the schedule of seed over shape from kinds. It is a pure
// function: the same arguments give the same schedule. When KillAll is
// among the kinds, one schedule in four is a kill-all alone; the others
// draw 1 to MaxEvents events of the other kinds, which may overlap.
func Generate(seed int64, shape Shape, kinds []Kind) Schedule {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x72696e67)) // "ring"
	s := Schedule{Seed: seed}
	window := max(shape.Window, time.Second)
	at := func() time.Duration {
		return time.Duration(rng.Int64N(int64(window)/int64(10*time.Millisecond))) * 10 * time.Millisecond
	}
	between := func(lo, hi time.Duration) time.Duration {
		steps := int64(hi-lo) / int64(10*time.Millisecond)
		return lo + time.Duration(rng.Int64N(steps+1))*10*time.Millisecond
	}
	var others []Kind
	for _, k := range kinds {
		if k != KillAll {
			others = append(others, k)
		}
	}
	if slices.Contains(kinds, KillAll) && (len(others) == 0 || rng.IntN(4) == 0) {
		s.Events = []Event{{At: at(), Kind: KillAll, For: between(time.Second, 3*time.Second)}}
		return s
	}
	if len(others) == 0 {
		return s
	}
	worker := func() string { return fmt.Sprintf("worker-%d", rng.IntN(shape.Workers)) }
	member := func() string { return fmt.Sprintf("etcd-%d", rng.IntN(shape.EtcdMembers)) }
	role := func() string {
		if shape.Coordinators > 1 && rng.IntN(2) == 1 {
			return "standby"
		}
		return "leader"
	}
	n := 1 + rng.IntN(max(shape.MaxEvents, 1))
	for range n {
		e := Event{At: at(), Kind: others[rng.IntN(len(others))]}
		switch e.Kind {
		case KillWorker:
			e.Targets, e.For = []string{worker()}, between(500*time.Millisecond, 3*time.Second)
		case KillLeader, KillStandby:
			e.For = between(500*time.Millisecond, 3*time.Second)
		case KillEtcd:
			e.Targets, e.For = []string{member()}, between(500*time.Millisecond, 3*time.Second)
		case Pause:
			switch rng.IntN(3) {
			case 0:
				e.Targets = []string{worker()}
			case 1:
				e.Targets = []string{role()}
			default:
				e.Targets = []string{member()}
			}
			e.For = between(time.Second, 6*time.Second)
		case QuorumLoss:
			skip := rng.IntN(shape.EtcdMembers)
			for i := range shape.EtcdMembers {
				if i != skip && len(e.Targets) < 2 {
					e.Targets = append(e.Targets, fmt.Sprintf("etcd-%d", i))
				}
			}
			e.For = between(time.Second, 5*time.Second)
		case CutCoordinator:
			e.Targets, e.For = []string{role()}, between(time.Second, 6*time.Second)
		case SlowLinks:
			e.For, e.Delay = between(time.Second, 5*time.Second), time.Duration(5+rng.IntN(46))*time.Millisecond
		case FlakyLink:
			e.Targets, e.For = []string{worker()}, between(time.Second, 5*time.Second)
		case DiskFull:
			e.For = between(time.Second, 5*time.Second)
		}
		if e.Kind == KillStandby && shape.Coordinators < 2 {
			e.Kind = KillLeader
		}
		s.Events = append(s.Events, e)
	}
	slices.SortStableFunc(s.Events, func(a, b Event) int { return cmp.Compare(a.At, b.At) })
	return s
}
