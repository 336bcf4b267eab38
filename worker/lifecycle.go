package worker

import (
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/api"
)

// lifecycle is a cluster worker's life as a synchronous state machine, in
// the manner of the coordinator's (coordinator/state.go): it opens no
// socket, reads no clock and starts no goroutine. The driver
// (ClusterWorker.Run) feeds it what happened (Joined, Reply, Ended,
// Stopped), does what Ready says (join, run a generation, report, leave)
// and calls Advance.
//
//	joining ──Joined──▶ waiting ──Reply: a newer generation naming it──▶ training
//	                      ▲  │                                              │
//	                      │  └──Reply: stop──▶ leaving ──Advance──▶ done     │
//	                      └──────Ended: ring error, or job done (waits)──────┘
//	any ──Stopped──▶ leaving;   Ended: fatal ──▶ failed
//
// (Re-joining a coordinator that forgot this worker is the heartbeat
// driver's: it keeps the phase.)
//
// A generation is trained at most once: only a newer one than the last
// trained starts training. A reply that pauses the job, or names a ring
// without this worker, is waited through. A reply that fails
// checkHeartbeatReply ends the worker: a coordinator that sends one is
// broken or not the job's.
type lifecycle struct {
	name      string
	phase     phase
	last      uint64 // the newest generation this worker trained in
	announced string // the coordinator status last logged
	out       ready
}

// phase is where a worker's life stands.
type phase uint8

const (
	phaseJoining phase = iota
	phaseWaiting
	phaseTraining
	phaseLeaving
	phaseDone
	phaseFailed
)

func (p phase) String() string {
	return [...]string{"joining", "waiting", "training", "leaving", "done", "failed"}[p]
}

// ready is what the driver must do after the inputs fed since the last
// Advance, in this order: log, update the reported progress, beat, then
// the one action (train, leave or exit).
type ready struct {
	Logs []string
	// Progress, when set, are the flags the next heartbeat reports.
	Progress *progressFlags
	// Beat asks for a heartbeat at once.
	Beat bool
	// Train is the generation to run now.
	Train *api.Generation
	// Leave asks to tell the coordinator this worker leaves.
	Leave bool
	// Exit ends the worker with Err (nil: the job is complete or the
	// worker was stopped).
	Exit bool
	Err  error
}

// progressFlags are the lifecycle's part of what a heartbeat reports.
type progressFlags struct {
	Done, Broken, InRing bool
}

// newLifecycle starts the life of the worker called name, joining: the
// driver registers with the coordinator and reports Joined.
func newLifecycle(name string) *lifecycle { return &lifecycle{name: name} }

// Ready returns what to do; it is the same until Advance.
func (l *lifecycle) Ready() ready { return l.out }

// Advance acknowledges that Ready's actions were done.
func (l *lifecycle) Advance() {
	l.out = ready{}
	if l.phase == phaseLeaving {
		l.phase = phaseDone
		l.out.Exit = true
	}
}

// Joined reports that the coordinator accepted this worker.
func (l *lifecycle) Joined() {
	if l.phase == phaseJoining {
		l.phase = phaseWaiting
	}
}

// Reply feeds the newest heartbeat reply.
func (l *lifecycle) Reply(rep *api.HeartbeatReply) {
	if l.phase != phaseWaiting {
		return // training ends by Ended; leaving and done ignore replies
	}
	if err := checkHeartbeatReply(rep); err != nil {
		l.fail(fatal(fmt.Errorf("worker: the coordinator's heartbeat reply: %w", err)))
		return
	}
	if rep.Status != l.announced {
		l.announced = rep.Status
		l.out.Logs = append(l.out.Logs, "coordinator: "+rep.Status)
	}
	if rep.Stop {
		l.phase = phaseLeaving
		l.out.Logs = append(l.out.Logs, "the job is complete")
		l.out.Leave = true
		return
	}
	g := rep.Generation
	if rep.Paused || g == nil || g.Number <= l.last || g.Rank(l.name) < 0 {
		return
	}
	l.last = g.Number
	l.phase = phaseTraining
	l.out.Train = g
}

// Ended reports how the generation being trained ended: nil when the job's
// last epoch is done (the worker waits for the coordinator to stop the
// job), a ring error (it waits for the next generation) or a fatal error.
func (l *lifecycle) Ended(err error) {
	if l.phase != phaseTraining {
		return
	}
	switch {
	case err == nil:
		l.phase = phaseWaiting
		l.out.Progress = &progressFlags{Done: true}
		l.out.Beat = true
	case errors.As(err, new(*fatalError)):
		l.fail(err)
	default:
		l.phase = phaseWaiting
		l.out.Logs = append(l.out.Logs, fmt.Sprintf("generation %d ended: %v; waiting for the next", l.last, err))
		l.out.Progress = &progressFlags{Broken: true}
		l.out.Beat = true
	}
}

// Stopped reports that the worker is told to stop (Ctrl-C, SIGTERM): it
// leaves the job so the coordinator re-forms the ring at once.
func (l *lifecycle) Stopped(cause error) {
	switch l.phase {
	case phaseDone, phaseFailed, phaseLeaving:
		return
	}
	l.phase = phaseLeaving
	l.out.Logs = append(l.out.Logs, fmt.Sprintf("stopping: %v; leaving the job", cause))
	l.out.Leave = true
}

func (l *lifecycle) fail(err error) {
	l.phase = phaseFailed
	l.out.Exit = true
	l.out.Err = err
}
