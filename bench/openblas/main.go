// Command openblas times ringtrain's tensorcore SGEMM and convolutions
// against OpenBLAS (cblas_sgemm, and im2col + cblas_sgemm convolution) in
// one process, alternating the two and printing medians and ratios.
//
//	cd bench/openblas && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE go run . -reps 7
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/tensorcore"
)

func main() {
	reps := flag.Int("reps", 7, "alternating repetitions per measurement")
	sizes := flag.String("sizes", "256,512,1024,2048", "square SGEMM sizes")
	threads := flag.String("threads", "1,2", "thread counts")
	minFlop := flag.Float64("minflop", 2e9, "floating-point operations per timed sample (calls are repeated to reach it)")
	doGemm := flag.Bool("gemm", true, "run the SGEMM comparison")
	doConv := flag.Bool("conv", true, "run the convolution comparison")
	flag.DurationVar(&settle, "settle", 150*time.Millisecond, "pause after every sample, so that neither side's idle threads (OpenBLAS's spin for ~2^28 cycles after a call) still hold a core when the other side runs")
	flag.Parse()

	fmt.Printf("OpenBLAS core: %s\nOpenBLAS config: %s\n", coreName(), config())
	fmt.Printf("OPENBLAS_CORETYPE=%q OPENBLAS_L2_SIZE=%q\n", os.Getenv("OPENBLAS_CORETYPE"), os.Getenv("OPENBLAS_L2_SIZE"))
	ths, err := ints(*threads)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openblas:", err)
		os.Exit(2)
	}
	if *doGemm {
		ns, err := ints(*sizes)
		if err != nil {
			fmt.Fprintln(os.Stderr, "openblas:", err)
			os.Exit(2)
		}
		benchGemm(ns, ths, *reps, *minFlop)
	}
	if *doConv {
		benchConv(ths, *reps, *minFlop)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad list %q", s)
		}
		out = append(out, v)
	}
	return out, nil
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// processCPU is the CPU time (user + system) of the whole process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// settle is the pause after each sample (see the -settle flag).
var settle time.Duration

// sample times calls of fn, then pauses for settle.
func sample(calls int, fn func()) timing {
	start, c0 := time.Now(), processCPU()
	for range calls {
		fn()
	}
	t := timing{time.Since(start).Seconds() / float64(calls), (processCPU() - c0).Seconds() / float64(calls)}
	time.Sleep(settle)
	return t
}

// timing is seconds per call by wall clock and by process CPU time.
type timing struct{ wall, cpu float64 }

// measured holds per-sample GFLOP/s by wall clock and per CPU-second.
type measured struct{ wall, cpu []float64 }

func (m *measured) add(flop float64, s timing) {
	m.wall = append(m.wall, flop/s.wall/1e9)
	m.cpu = append(m.cpu, flop/s.cpu/1e9)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// compare alternates ringtrain and OpenBLAS samples reps times (after one
// warm-up call each) and returns the per-sample GFLOP/s of each.
func compare(reps int, flop, minFlop float64, ours, theirs func()) (o, t measured) {
	calls := max(1, int(minFlop/flop))
	ours()
	theirs()
	for r := 0; r < reps; r++ {
		// Alternate which goes first so drift hits both alike.
		if r%2 == 0 {
			o.add(flop, sample(calls, ours))
			t.add(flop, sample(calls, theirs))
		} else {
			t.add(flop, sample(calls, theirs))
			o.add(flop, sample(calls, ours))
		}
	}
	return o, t
}

func report(what string, o, t measured) {
	ratios := make([]float64, len(o.wall))
	for i := range o.wall {
		ratios[i] = o.wall[i] / t.wall[i]
	}
	fmt.Printf("%-38s ringtrain %6.1f GFLOP/s [%5.1f..%5.1f]  OpenBLAS %6.1f [%5.1f..%5.1f]  ratio %.2f (pairs %.2f)  per CPU-second: %6.1f vs %6.1f, ratio %.2f\n",
		what, median(o.wall), slices.Min(o.wall), slices.Max(o.wall), median(t.wall), slices.Min(t.wall), slices.Max(t.wall),
		median(o.wall)/median(t.wall), median(ratios), median(o.cpu), median(t.cpu), median(o.cpu)/median(t.cpu))
}

func benchGemm(ns, ths []int, reps int, minFlop float64) {
	fmt.Println("\n## SGEMM C = A·B (row-major, square, alpha 1, beta 0)")
	for _, n := range ns {
		rng := rand.New(rand.NewPCG(1, uint64(n)))
		a, b, c := randSlice(rng, n*n), randSlice(rng, n*n), make([]float32, n*n)
		flop := 2 * float64(n) * float64(n) * float64(n)
		for _, th := range ths {
			p := tensorcore.NewPool(th)
			setThreads(th)
			o, t := compare(reps, flop, minFlop,
				func() { tensorcore.Sgemm(p, false, false, n, n, n, 1, a, n, b, n, 0, c, n) },
				func() { sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n) })
			report(fmt.Sprintf("sgemm n=%d threads=%d", n, th), o, t)
			p.Close()
		}
	}
}
