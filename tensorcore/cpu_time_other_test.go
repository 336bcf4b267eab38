//go:build !linux

package tensorcore

import "time"

// threadCPUTime is not available here; benchmarks then skip the CPU-time
// metric.
func threadCPUTime() time.Duration { return 0 }
