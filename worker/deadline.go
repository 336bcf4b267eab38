package worker

import (
	"errors"
	"fmt"
	"time"
)

// ErrFileTimeout is wrapped by the error of a file operation abandoned at
// its deadline (withDeadline).
var ErrFileTimeout = errors.New("file operation timed out")

// withDeadline runs fn, a blocking file operation on the training path
// (writing this rank's shards of a checkpoint, loading a checkpoint to
// restore; see ClusterOptions.FileTimeout), for at most d (d ≤ 0: no bound). A hung file system (an NFS server that
// stopped answering) blocks a read, write or fsync in the kernel, and Go
// cannot cancel a blocked system call: fn runs in a goroutine of its own,
// and when d passes first withDeadline returns an error wrapping
// ErrFileTimeout and abandons it. The goroutine ends when the call returns,
// if ever; its result is dropped. fn must therefore use nothing the caller
// changes afterwards (checkpoint.State.Parts copies the tensors it is
// given), and a file it still writes is one nobody reports: the sealer
// verifies every shard against the size and SHA-256 reported for it.
func withDeadline[T any](d time.Duration, what string, fn func() (T, error)) (T, error) {
	if d <= 0 {
		return fn()
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1) // buffered: an abandoned fn does not block
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.v, r.err
	case <-timer.C:
		var zero T
		return zero, fmt.Errorf("worker: %s: %w after %v (the file system does not answer; the operation is abandoned)", what, ErrFileTimeout, d)
	}
}
