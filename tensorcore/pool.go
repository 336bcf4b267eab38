package tensorcore

import (
	"runtime"
	"sync"
	"time"
)

// Pool is a fixed set of worker goroutines that run the parallel parts of
// kernels. It is sized once (usually to GOMAXPROCS) and owned by whoever
// created it: Close stops its goroutines. No kernel spawns goroutines of its
// own; work too small to be worth splitting runs on the calling goroutine.
//
// A Pool also owns one scratch area per worker (packed GEMM panels,
// convolution buffers), grown on first use and reused afterwards, so kernels
// run without allocating in steady state.
//
// A nil *Pool is valid and runs everything on the calling goroutine; its
// scratch comes from a process-wide free list.
//
// For, and every kernel given a Pool (Sgemm, the convolutions), may be
// called from one goroutine at a time per Pool; kernels called from inside
// a For body must be given a nil Pool. Kernels given a nil Pool may run
// concurrently.
type Pool struct {
	workers int
	jobs    chan poolJob
	wg      sync.WaitGroup
	done    chan struct{} // one token per finished job
	scratch []*scratch

	// gemm and dotw are the job descriptors of the product in flight;
	// kept here so that handing them to the workers does not allocate.
	gemm gemmJob
	dotw dotWJob[float32]

	bf16 bf16State // products in BF16 when bf16.ks is set (SetPrecision)
}

// poolTask is one parallel job: run is called once per part with the part
// index (which is also the index of the worker scratch it may use) and the
// part's range.
type poolTask interface {
	run(part, lo, hi int)
}

// funcTask adapts a plain range function to poolTask.
type funcTask func(lo, hi int)

func (f funcTask) run(_, lo, hi int) { f(lo, hi) }

type poolJob struct {
	t            poolTask
	part, lo, hi int
}

// NewPool starts a pool of the given number of workers (the caller counts as
// one, so workers-1 goroutines are started). workers <= 0 means GOMAXPROCS.
func NewPool(workers int) *Pool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// jobs is buffered so that handing out parts never blocks the caller:
	// a caller parked on an unbuffered send is readied onto the worker's
	// processor and waits (~90 µs measured) for the other one to steal it.
	p := &Pool{workers: workers, jobs: make(chan poolJob, workers), done: make(chan struct{}, workers), scratch: make([]*scratch, workers)}
	for i := range p.scratch {
		p.scratch[i] = new(scratch)
	}
	for i := 1; i < workers; i++ {
		p.wg.Add(1)
		go p.worker()
	}
	return p
}

// poolSpin is how long a worker polls for its next job, and the caller for
// its workers' completions, before blocking. Kernels come in quick
// succession (the GEMMs of one training step), and a blocked thread that
// is woken must wait for a core again (~100 µs on a VM); polling a little
// longer than that keeps back-to-back hand-offs cheap. With 256 polls
// (about 25 µs) the two parts of an n = 512 SGEMM started ~100 µs apart;
// with 300 µs they start together and the product is ~5% faster.
const poolSpin = 300 * time.Microsecond

// spinning polls try every round and reports whether it succeeded before
// poolSpin passed, yielding the processor between rounds.
func spinning(try func() bool) bool {
	deadline := time.Now().Add(poolSpin)
	for i := 0; ; i++ {
		if try() {
			return true
		}
		runtime.Gosched()
		if i%16 == 15 && time.Now().After(deadline) {
			return false
		}
	}
}

func (p *Pool) worker() {
	defer p.wg.Done()
	for {
		var (
			j  poolJob
			ok bool
		)
		got := spinning(func() bool {
			select {
			case j, ok = <-p.jobs:
				return true
			default:
				return false
			}
		})
		if !got {
			j, ok = <-p.jobs
		}
		if !ok {
			return
		}
		j.t.run(j.part, j.lo, j.hi)
		p.done <- struct{}{}
	}
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
	p.forTask(n, grain, funcTask(fn))
}

// forTask is For for a poolTask; part i of the split gets [i*n/parts,
// (i+1)*n/parts) and may use p.scratchFor(i). It allocates nothing when t
// is a pointer.
func (p *Pool) forTask(n, grain int, t poolTask) {
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
		t.run(0, 0, n)
		return
	}
	for i := 1; i < parts; i++ {
		p.jobs <- poolJob{t: t, part: i, lo: i * n / parts, hi: (i + 1) * n / parts}
	}
	t.run(0, 0, n/parts)
	for left := parts - 1; left > 0; left-- {
		got := spinning(func() bool {
			select {
			case <-p.done:
				return true
			default:
				return false
			}
		})
		if !got {
			<-p.done
		}
	}
}

// scratch is one worker's reusable memory. Buffers only grow.
type scratch struct {
	packA, packB []float32
	tile         [gemmMaxMR * gemmMaxNR]float32
	conv         []float32 // convolution-level buffers (transformed weights, columns)
	convX, convY []float32 // padded input and grid output of a stride-1 convolution
	convK        []int     // offsets of the im2col rows in a padded input
	cols         []int     // per-column offsets for im2col packing
	bf16         bf16Scratch
}

// nilPoolScratch is the free list of scratch areas used by a nil Pool. It
// is a stack, so kernels that nest (a convolution and the products inside
// it) get back the areas they had last time, with buffers already grown
// to their sizes; and the garbage collector never empties it (a sync.Pool
// is emptied by every other collection, and hands areas back in no fixed
// order), so warm steps allocate nothing.
var nilPoolScratch struct {
	sync.Mutex
	free []*scratch
}

// scratchFor returns the scratch area of part i (i < Workers()) and a
// function-free way to give it back: callers pair it with releaseScratch.
func (p *Pool) scratchFor(i int) *scratch {
	if p == nil {
		f := &nilPoolScratch
		f.Lock()
		defer f.Unlock()
		if n := len(f.free); n > 0 {
			s := f.free[n-1]
			f.free = f.free[:n-1]
			return s
		}
		return new(scratch)
	}
	return p.scratch[i]
}

func (p *Pool) releaseScratch(s *scratch) {
	if p == nil {
		f := &nilPoolScratch
		f.Lock()
		f.free = append(f.free, s)
		f.Unlock()
	}
}

// grow returns buf resized to n elements, reallocating only when its
// capacity is short. The contents are unspecified.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n, n+n/8)
	}
	return buf[:n]
}

func growInts(buf []int, n int) []int {
	if cap(buf) < n {
		return make([]int, n, n+n/8)
	}
	return buf[:n]
}
