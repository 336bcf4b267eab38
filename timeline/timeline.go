// Package timeline records what a ringtrain worker does in each training
// step — waiting for data, forward, backward, each gradient bucket's
// all-reduce, waiting for the reduction, the optimizer — and what it does
// between steps (evaluation, checkpoints, checksums, state syncs), and
// writes it in the Chrome trace event format that Perfetto and
// chrome://tracing open (`ringtrain trace`).
//
// # The file
//
// A worker writes its timeline to DIR/NAME.jsonl (DIR is RUN/timeline for
// `ringtrain train`, with or without --workers; `ringtrain worker
// --timeline DIR` for a real cluster), one JSON object per line. A segment
// starts with a header line, written each time a process opens the file:
//
//	{"timeline":1,"worker":"worker-0","pid":4242,"wall_ns":1796200000123456789}
//
// timeline is the format's version; wall_ns is the wall clock (Unix
// nanoseconds) read when the process opened the file, its anchor. The
// events that follow are
//
//	{"ev":"forward","step":12,"t":81234567,"d":1523000}
//	{"ev":"allreduce","step":12,"t":82501000,"d":310000,"bucket":0,"bytes":246824}
//
// where t is the event's start in nanoseconds after the anchor, measured
// on the monotonic clock, and d its duration in nanoseconds. step is the
// number of steps taken when the event ended (a step's own events carry its
// number, counted from 1). ev is one of the Kind names: step, data,
// forward, backward, reduce and optimizer for the phases of a step (step
// spans the others, which follow one another without gaps), allreduce for
// one bucket of gradients summed over the ring (on the reducer's goroutine,
// while backward runs; bucket is its index in plan order, bytes its fp32
// gradient bytes), and eval, checkpoint, checksum and sync between steps.
// Readers ignore fields they do not know.
//
// # Bounds
//
// A recorder keeps at most two files per worker: when the current file
// passes Options.MaxBytes (8 MiB by default) at the end of a step, it
// becomes NAME.jsonl.1 (replacing the one before) and a new NAME.jsonl
// starts with a new header. So a worker's timeline holds the last steps
// of its run, at most 2 × MaxBytes plus one step's lines. LeNet-5 writes
// about 280 bytes a step on one process and 420 per worker of a cluster
// (one bucket), so a file holds about 30,000 or 20,000 steps, and a worker
// keeps at least the last of those.
//
// Events are buffered and written in whole lines, at least once a second
// while steps run, after every event between steps, and when the recorder
// closes; a process killed outright loses at most the last second. A
// process that opens a file whose last line was cut off (a kill during a
// write) drops that line first.
package timeline

import "fmt"

// Version is the version of the file format this package writes and reads.
const Version = 1

// Kind is what an event records.
type Kind uint8

// The kinds of events. A step's phases follow one another without gaps:
// Data, Forward, Backward, Reduce (absent on a process training alone),
// Optimizer; Step spans them.
const (
	// Step is a whole training step.
	Step Kind = iota + 1
	// Data is the wait for the step's batch from the input pipeline.
	Data
	// Forward is the forward pass and the loss.
	Forward
	// Backward is the backward pass; buckets of gradients are reduced
	// while it runs.
	Backward
	// Reduce is the wait, after backward, for the rest of the gradients'
	// all-reduce (and the BatchNorm statistics').
	Reduce
	// Optimizer is the optimizer step.
	Optimizer
	// AllReduce is one bucket of gradients summed over the ring, on the
	// reducer's own goroutine (the "comm" track of a trace).
	AllReduce
	// Eval is an evaluation on the test set, between epochs.
	Eval
	// Checkpoint is the writing (and committing or reporting) of a
	// checkpoint.
	Checkpoint
	// Checksum is the ring's comparison of its replicas' parameters.
	Checksum
	// Sync is a new ring's state sync (a cluster's generation starting).
	Sync
	numKinds
)

var kindNames = [numKinds]string{
	Step: "step", Data: "data", Forward: "forward", Backward: "backward", Reduce: "reduce",
	Optimizer: "optimizer", AllReduce: "allreduce", Eval: "eval", Checkpoint: "checkpoint",
	Checksum: "checksum", Sync: "sync",
}

func (k Kind) String() string {
	if k > 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// kindOf is the Kind named s.
func kindOf(s string) (Kind, bool) {
	for k := Step; k < numKinds; k++ {
		if kindNames[k] == s {
			return k, true
		}
	}
	return 0, false
}

// Phase reports whether k is a phase of a step (not Step itself).
func (k Kind) Phase() bool { return k >= Data && k <= Optimizer }

// Event is one recorded interval. Its size is fixed: recording allocates
// nothing once a recorder's buffers have grown to a step's events.
type Event struct {
	Kind Kind
	// Bucket is an AllReduce event's bucket index, in plan order.
	Bucket int32
	// Step is the number of steps taken when the event ended; a step's own
	// events carry its number, from 1.
	Step int64
	// Start and End are nanoseconds after the anchor of the segment, on
	// the monotonic clock.
	Start, End int64
	// Bytes is an AllReduce event's fp32 gradient bytes.
	Bytes int64
}

// Header is the first line of a segment: who wrote the events after it, and
// when, by the wall clock, their times begin.
type Header struct {
	Version int
	Worker  string
	PID     int
	// WallNS is the wall clock (Unix nanoseconds) at the segment's anchor.
	WallNS int64
}
