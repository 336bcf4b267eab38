//go:build linux

package tensorcore

import (
	"syscall"
	"time"
)

// threadCPUTime is the CPU time the calling OS thread has used; with the
// goroutine locked to its thread, it times a kernel without the time the
// thread spent descheduled on a busy machine.
func threadCPUTime() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
