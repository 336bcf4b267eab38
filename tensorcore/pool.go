package tensorcore

import (
	"runtime"
	"sync"
)

// Pool is a fixed set of worker goroutines that run the parallel parts of
// kernels. It is sized once (usually to GOMAXPROCS) and owned by whoever
// created it: Close stops its goroutines. No kernel spawns goroutines of its
// own; work too small to be worth splitting runs on the calling goroutine.
//
// A nil *Pool is valid and runs everything on the calling goroutine.
//
// For may be called from one goroutine at a time per Pool; kernels called
// from inside a For body must be given a nil Pool.
type Pool struct {
	workers int
	jobs    chan poolJob
	wg      sync.WaitGroup
}

type poolJob struct {
	fn     func(lo, hi int)
	lo, hi int
	done   *sync.WaitGroup
}

// NewPool starts a pool of the given number of workers (the caller counts as
// one, so workers-1 goroutines are started). workers <= 0 means GOMAXPROCS.
func NewPool(workers int) *Pool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	p := &Pool{workers: workers, jobs: make(chan poolJob)}
	for i := 1; i < workers; i++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := range p.jobs {
				j.fn(j.lo, j.hi)
				j.done.Done()
			}
		}()
	}
	return p
}

// Workers reports how many goroutines (the caller included) For may use.
func (p *Pool) Workers() int {
	if p == nil {
		return 1
	}
	return p.workers
}

// Close stops the pool's goroutines and waits for them to end. The pool must
// not be used afterwards.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	close(p.jobs)
	p.wg.Wait()
}

// For splits [0, n) into at most Workers() contiguous ranges of at least
// grain items each and calls fn once per range, in parallel; it returns when
// every call has returned. Range boundaries depend only on n, grain and
// Workers(), so a kernel whose ranges write disjoint outputs is
// deterministic.
func (p *Pool) For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := p.Workers()
	if maxParts := n / grain; maxParts < parts {
		parts = maxParts
	}
	if parts <= 1 {
		fn(0, n)
		return
	}
	var done sync.WaitGroup
	done.Add(parts - 1)
	for i := 1; i < parts; i++ {
		p.jobs <- poolJob{fn: fn, lo: i * n / parts, hi: (i + 1) * n / parts, done: &done}
	}
	fn(0, n/parts)
	done.Wait()
}
