package tensorcore

import (
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestPoolForCoversRangeOnce(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 8} {
		p := NewPool(workers)
		for _, tc := range []struct{ n, grain int }{{0, 1}, {1, 1}, {7, 1}, {7, 3}, {100, 1}, {100, 60}, {5, 0}} {
			hits := make([]int32, tc.n)
			var calls atomic.Int32
			p.For(tc.n, tc.grain, func(lo, hi int) {
				calls.Add(1)
				if lo >= hi {
					t.Errorf("workers %d n %d: empty range [%d, %d)", workers, tc.n, lo, hi)
				}
				for i := lo; i < hi; i++ {
					atomic.AddInt32(&hits[i], 1)
				}
			})
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("workers %d n %d grain %d: item %d run %d times", workers, tc.n, tc.grain, i, h)
				}
			}
			if int(calls.Load()) > workers {
				t.Fatalf("workers %d: %d calls", workers, calls.Load())
			}
		}
		p.Close()
	}
}

func TestNilPoolRunsInline(t *testing.T) {
	var p *Pool
	if p.Workers() != 1 {
		t.Fatalf("nil pool has %d workers", p.Workers())
	}
	calls := 0
	p.For(10, 1, func(lo, hi int) {
		calls++
		if lo != 0 || hi != 10 {
			t.Fatalf("nil pool range [%d, %d)", lo, hi)
		}
	})
	if calls != 1 {
		t.Fatalf("%d calls", calls)
	}
	p.Close()
}

func TestPoolCloseEndsGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	p := NewPool(4)
	a := make([]float32, 300*300)
	c := make([]float32, 300*300)
	Sgemm(p, false, false, 300, 300, 300, 1, a, 300, a, 300, 0, c, 300)
	p.Close()
}

func TestPoolForAllocatesNothing(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	sum := make([]int, 2)
	fn := func(lo, hi int) { sum[lo*2/100] += hi - lo }
	if a := testing.AllocsPerRun(20, func() { p.For(100, 1, fn) }); a != 0 {
		t.Fatalf("%v allocs per For", a)
	}
}
