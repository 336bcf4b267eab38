//go:build race

package allreduce

import "sync/atomic"

// The race detector does not see atomics on memory outside the Go heap,
// such as a shared-memory ring's control page, so it cannot see that a
// frame's bytes are handed over through them. In race builds every
// publication also releases, and every observation acquires, this word
// in the Go heap.
var shmRaceSync atomic.Uint64

func shmRelease() { shmRaceSync.Add(1) }
func shmAcquire() { shmRaceSync.Load() }
