//go:build linux

package allreduce

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const shmSupported = true

// createShmRing creates and maps a ring file of the given size in dir.
// The caller removes the file once the other end has mapped it (or has
// declined it).
func createShmRing(dir string, size int) (r *shmRing, path string, nonce uint64, err error) {
	removeStaleRings(dir, time.Now().Add(-shmStale))
	f, err := os.CreateTemp(dir, shmPrefix+"*")
	if err != nil {
		return nil, "", 0, err
	}
	defer f.Close()
	path = f.Name()
	fail := func(err error) (*shmRing, string, uint64, error) {
		os.Remove(path)
		return nil, "", 0, err
	}
	// Reserve the pages now: a full /dev/shm must refuse the ring here,
	// not kill the process with SIGBUS when the ring first wraps.
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(shmCtlSize+size)); err != nil {
		if !errors.Is(err, syscall.EOPNOTSUPP) {
			return fail(fmt.Errorf("reserving %d bytes in %s: %w", shmCtlSize+size, dir, err))
		}
		if err := f.Truncate(int64(shmCtlSize + size)); err != nil {
			return fail(err)
		}
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, shmCtlSize+size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("mmap %s: %w", path, err))
	}
	var nb [8]byte
	if _, err := rand.Read(nb[:]); err != nil {
		syscall.Munmap(m)
		return fail(err)
	}
	r = newShmRing(m)
	nonce = binary.LittleEndian.Uint64(nb[:])
	r.ctl.nonce, r.ctl.size = nonce, uint64(size)
	atomic.StoreUint64(&r.ctl.magic, shmMagic) // published last
	return r, path, nonce, nil
}

// openShmRing maps the ring file a neighbour offered and checks that it
// is the one the neighbour created (same nonce and size).
func openShmRing(path string, nonce uint64, size int) (*shmRing, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() != int64(shmCtlSize+size) {
		return nil, fmt.Errorf("%s: not a ring file of %d bytes", path, shmCtlSize+size)
	}
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, shmCtlSize+size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	r := newShmRing(m)
	if atomic.LoadUint64(&r.ctl.magic) != shmMagic || r.ctl.nonce != nonce || r.ctl.size != uint64(size) {
		syscall.Munmap(m)
		return nil, fmt.Errorf("%s: not the offered ring", path)
	}
	return r, nil
}

func unmapShm(m []byte) { syscall.Munmap(m) }

// shmStale is the age past which a ring file is an orphan: a file lives
// only for one hello round trip (bounded by the link's set-up timeout)
// unless its creator died in between.
const shmStale = 10 * time.Minute

// removeStaleRings deletes ring files in dir last modified before cutoff.
func removeStaleRings(dir string, cutoff time.Time) {
	names, _ := filepath.Glob(filepath.Join(dir, shmPrefix+"*"))
	for _, name := range names {
		if fi, err := os.Lstat(name); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
			os.Remove(name)
		}
	}
}

const (
	futexWaitOp = 0 // FUTEX_WAIT, shared between processes (not private)
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *addr == val, for at most d.
func futexWait(addr *atomic.Uint32, val uint32, d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWake wakes every sleeper on addr.
func futexWake(addr *atomic.Uint32) {
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, uintptr(1<<31-1), 0, 0, 0)
}
