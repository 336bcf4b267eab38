//go:build !linux

package allreduce

import (
	"errors"
	"sync/atomic"
	"time"
)

const shmSupported = false

var errNoShm = errors.New("shared-memory links need Linux")

func createShmRing(dir string, size int) (*shmRing, string, uint64, error) {
	return nil, "", 0, errNoShm
}

func openShmRing(path string, nonce uint64, size int) (*shmRing, error) { return nil, errNoShm }

func unmapShm(m []byte) {}

func futexWait(addr *atomic.Uint32, val uint32, d time.Duration) { time.Sleep(d) }

func futexWake(addr *atomic.Uint32) {}
