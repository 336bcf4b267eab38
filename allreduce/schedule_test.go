package allreduce

import (
	"fmt"
	"testing"
)

// simulate executes the schedules of all n ranks without a network: it
// repeatedly runs any send whose dependency is met, delivering frames to
// per-link FIFO queues, and any receive whose frame has arrived. It fails
// on deadlock, on mismatched spans between a sender and its receiver, and
// on frames longer than chunk.
func simulate(t *testing.T, scheds []Schedule, bufs [][]float32, chunk int) {
	t.Helper()
	n := len(scheds)
	type frame struct {
		span Span
		data []float32
	}
	queues := make([][]frame, n) // queues[r]: frames from r-1 to r
	nextSend := make([]int, n)
	nextRecv := make([]int, n)
	for progress := true; progress; {
		progress = false
		for r := 0; r < n; r++ {
			sc := scheds[r]
			for nextSend[r] < len(sc.Sends) {
				s := sc.Sends[nextSend[r]]
				if s.After >= nextRecv[r] {
					break
				}
				if s.Span.Len > chunk && chunk > 0 {
					t.Fatalf("rank %d send %d: %d elements, chunk %d", r, nextSend[r], s.Span.Len, chunk)
				}
				data := append([]float32(nil), bufs[r][s.Span.Off:s.Span.End()]...)
				right := (r + 1) % n
				queues[right] = append(queues[right], frame{s.Span, data})
				nextSend[r]++
				progress = true
			}
			for nextRecv[r] < len(sc.Recvs) && len(queues[r]) > 0 {
				rv := sc.Recvs[nextRecv[r]]
				f := queues[r][0]
				queues[r] = queues[r][1:]
				if f.span != rv.Span {
					t.Fatalf("rank %d recv %d: span %+v, the left neighbour sent %+v", r, nextRecv[r], rv.Span, f.span)
				}
				dst := bufs[r][rv.Span.Off:rv.Span.End()]
				for i := range dst {
					if rv.Mode == RecvAdd {
						dst[i] += f.data[i]
					} else {
						dst[i] = f.data[i]
					}
				}
				nextRecv[r]++
				progress = true
			}
		}
	}
	for r := 0; r < n; r++ {
		if nextSend[r] != len(scheds[r].Sends) || nextRecv[r] != len(scheds[r].Recvs) || len(queues[r]) != 0 {
			t.Fatalf("deadlock or leftover: rank %d sent %d/%d, received %d/%d, %d frames queued",
				r, nextSend[r], len(scheds[r].Sends), nextRecv[r], len(scheds[r].Recvs), len(queues[r]))
		}
	}
}

func checkSchedules(t *testing.T, name string, mk func(n, rank, length, chunk int) (Schedule, error), exactOrder bool) {
	for _, n := range []int{1, 2, 3, 4, 5, 8, 16} {
		for _, length := range []int{0, 1, 2, 7, 15, 16, 17, 100, 1000} {
			for _, chunk := range []int{1, 3, 16, 1 << 20} {
				t.Run(fmt.Sprintf("%s/n%d_len%d_chunk%d", name, n, length, chunk), func(t *testing.T) {
					scheds := make([]Schedule, n)
					bufs := make([][]float32, n)
					for r := range scheds {
						var err error
						if scheds[r], err = mk(n, r, length, chunk); err != nil {
							t.Fatal(err)
						}
						bufs[r] = make([]float32, length)
						fillRank(bufs[r], r, uint64(length))
					}
					want := sequentialSum(n, length, uint64(length))
					simulate(t, scheds, bufs, chunk)
					for r := range bufs {
						for i := range want {
							if bufs[r][i] != bufs[0][i] {
								t.Fatalf("rank %d element %d = %v, rank 0 has %v", r, i, bufs[r][i], bufs[0][i])
							}
							d := float64(bufs[r][i] - want[i])
							if exactOrder && d != 0 || d > 1e-5 || d < -1e-5 {
								t.Fatalf("rank %d element %d = %v, want %v", r, i, bufs[r][i], want[i])
							}
						}
					}
				})
			}
		}
	}
}

func TestRingSchedule(t *testing.T) {
	checkSchedules(t, "ring", RingSchedule, false)
}

func TestNaiveSchedule(t *testing.T) {
	checkSchedules(t, "naive", NaiveSchedule, true)
}

// TestRingScheduleShape checks the properties the ring relies on: each
// rank sends and receives 2(n-1)/n of the buffer, every element is reduced
// exactly n-1 times across the ring, each send forwards data its
// dependency produced, and only the first all-gather step quantizes.
func TestRingScheduleShape(t *testing.T) {
	for _, tc := range []struct{ n, length, chunk int }{{2, 10, 3}, {4, 1000, 64}, {5, 12345, 100}, {16, 5000, 37}} {
		reduced := make([]int, tc.length)
		for r := 0; r < tc.n; r++ {
			sc, err := RingSchedule(tc.n, r, tc.length, tc.chunk)
			if err != nil {
				t.Fatal(err)
			}
			m := chunksPer(tc.n, tc.length, tc.chunk)
			if len(sc.Sends) != 2*(tc.n-1)*m || len(sc.Recvs) != len(sc.Sends) {
				t.Fatalf("%+v rank %d: %d sends, %d receives, want %d", tc, r, len(sc.Sends), len(sc.Recvs), 2*(tc.n-1)*m)
			}
			sent := 0
			for i, s := range sc.Sends {
				sent += s.Span.Len
				if s.After >= 0 && sc.Recvs[s.After].Span != s.Span {
					t.Fatalf("%+v rank %d send %d forwards %+v, but its dependency received %+v", tc, r, i, s.Span, sc.Recvs[s.After].Span)
				}
				if s.Quantize != (i/m == tc.n-1) {
					t.Fatalf("%+v rank %d send %d: Quantize=%v", tc, r, i, s.Quantize)
				}
			}
			lo, hi := 2*(tc.n-1)*(tc.length/tc.n), 2*(tc.n-1)*((tc.length+tc.n-1)/tc.n)
			if sent < lo || sent > hi {
				t.Fatalf("%+v rank %d sends %d elements, want within [%d, %d]", tc, r, sent, lo, hi)
			}
			for _, rv := range sc.Recvs {
				if rv.Mode == RecvAdd {
					for i := rv.Span.Off; i < rv.Span.End(); i++ {
						reduced[i]++
					}
				}
			}
		}
		for i, k := range reduced {
			if k != tc.n-1 {
				t.Fatalf("%+v: element %d reduced %d times, want %d", tc, i, k, tc.n-1)
			}
		}
	}
}

func TestBroadcastSchedule(t *testing.T) {
	for _, n := range []int{1, 2, 3, 6} {
		for root := 0; root < n; root++ {
			scheds := make([]Schedule, n)
			bufs := make([][]float32, n)
			for r := range scheds {
				var err error
				if scheds[r], err = BroadcastSchedule(n, r, root, 50, 7); err != nil {
					t.Fatal(err)
				}
				bufs[r] = make([]float32, 50)
				fillRank(bufs[r], r, 1)
			}
			simulate(t, scheds, bufs, 7)
			for r := range bufs {
				for i := range bufs[r] {
					if bufs[r][i] != bufs[root][i] {
						t.Fatalf("n=%d root=%d: rank %d element %d differs", n, root, r, i)
					}
				}
			}
		}
	}
	if _, err := BroadcastSchedule(3, 0, 3, 10, 1); err == nil {
		t.Fatal("root out of range accepted")
	}
}

func TestScheduleArgs(t *testing.T) {
	for _, a := range [][4]int{{0, 0, 1, 1}, {2, 2, 1, 1}, {2, -1, 1, 1}, {2, 0, -1, 1}, {2, 0, 1, 0}} {
		if _, err := RingSchedule(a[0], a[1], a[2], a[3]); err == nil {
			t.Errorf("RingSchedule%v accepted", a)
		}
		if _, err := NaiveSchedule(a[0], a[1], a[2], a[3]); err == nil {
			t.Errorf("NaiveSchedule%v accepted", a)
		}
	}
}
