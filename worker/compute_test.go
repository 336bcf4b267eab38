package worker

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// TestReplicasWhereTheyPay: ConvNets run per-core replicas, the MLP (whose
// every weight serves one multiply-add per image) one tape with split
// kernels, and slices under minReplicaBatch one tape too.
func TestReplicasWhereTheyPay(t *testing.T) {
	for _, c := range []struct {
		model          string
		threads, batch int
		replicas       bool
	}{
		{"lenet5", 2, 64, true},
		{"lenet1", 2, 64, true},
		{"resnet8", 2, 32, true},
		{"mlp", 2, 64, false},
		{"mlp800", 2, 128, false},
		{"lenet5", 2, 8, false},
		{"lenet5", 1, 64, false},
	} {
		m, err := models.Build(c.model, 5)
		if err != nil {
			t.Fatal(err)
		}
		in := dataset.Shape{C: m.InputShape[0], H: m.InputShape[1], W: m.InputShape[2]}
		pool := tensorcore.NewPool(c.threads)
		comp, err := newCompute(m, pool, c.threads, c.batch, 1, 5, nil, in)
		if err != nil {
			t.Fatal(err)
		}
		if got := comp.replicas != nil; got != c.replicas {
			t.Errorf("%s, %d threads, batch %d: replicas %v, want %v (%.0f FLOP per image, %d parameters)",
				c.model, c.threads, c.batch, got, c.replicas, trainFLOP(m, in), len(m.Arena.Data))
		}
		comp.Close()
		pool.Close()
	}
}

// TestSplitBatchGradientEqualsWholeBatch checks that replicas on slices of
// a batch produce the gradient and loss of one tape on the whole batch.
func TestSplitBatchGradientEqualsWholeBatch(t *testing.T) {
	train, err := dataset.LoadMNIST(realMNIST(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	const batch = 112 // uneven slices across 3 replicas (37, 37, 38; 18, 19, 19 under accumulation)
	idx := make([]int, batch)
	for i := range idx {
		idx[i] = 7 * i
	}
	for _, name := range []string{"lenet5", "lenet1"} {
		// Whole, split across cores, accumulated over micro-batches, and
		// both: the same batch-mean gradient (these nets have no
		// BatchNorm, whose statistics would differ per slice).
		type way struct{ threads, accum int }
		ways := []way{{1, 1}, {3, 1}, {1, 4}, {3, 2}}
		grads := map[way][]float32{}
		losses := map[way]float64{}
		for _, w := range ways {
			threads := w.threads
			m, err := models.Build(name, 5)
			if err != nil {
				t.Fatal(err)
			}
			in := dataset.Shape{C: m.InputShape[0], H: m.InputShape[1], W: m.InputShape[2]}
			pool := tensorcore.NewPool(threads)
			c, err := newCompute(m, pool, threads, batch, w.accum, 5, nil, in)
			if err != nil {
				t.Fatal(err)
			}
			if (threads > 1) != (c.replicas != nil) {
				t.Fatalf("threads %d: replicas %d", threads, len(c.replicas))
			}
			x, y := make([]float32, batch*in.Size()), make([]int, batch)
			if err := train.Fill(x, y, idx, dataset.Transform{Out: in}); err != nil {
				t.Fatal(err)
			}
			loss, _, _ := c.step(0, x, y, nil)
			grads[w] = append([]float32(nil), m.Arena.Grad...)
			losses[w] = loss
			c.Close()
			pool.Close()
		}
		whole := ways[0]
		for _, w := range ways[1:] {
			if d := math.Abs(losses[whole] - losses[w]); d > 1e-5*math.Abs(losses[whole]) {
				t.Errorf("%s: loss %v whole, %v with %+v", name, losses[whole], losses[w], w)
			}
			var num, den float64
			for i := range grads[whole] {
				d := float64(grads[whole][i] - grads[w][i])
				num += d * d
				den += float64(grads[whole][i]) * float64(grads[whole][i])
			}
			if rel := math.Sqrt(num / den); rel > 1e-5 || den == 0 {
				t.Errorf("%s: the gradient with %+v differs by %.2g (relative norm)", name, w, rel)
			}
		}
	}
}

// TestStepReportsEachGradientOnceFinal runs steps with a final function on
// one tape and on per-core replicas, and checks that every parameter is
// reported once, that its gradient is already what the step ends with when
// reported, and that the gradients equal a step without reports bit for bit.
func TestStepReportsEachGradientOnceFinal(t *testing.T) {
	train, err := dataset.LoadMNIST(realMNIST(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	const batch = 48
	idx := make([]int, batch)
	for i := range idx {
		idx[i] = 11 * i
	}
	for _, name := range []string{"lenet5", "resnet8"} {
		for _, w := range []struct{ threads, accum int }{{1, 1}, {3, 1}, {1, 3}, {3, 2}} {
			threads := w.threads
			run := func(report bool) (grad []float32, snaps map[int][]float32, counts []int) {
				m, err := models.Build(name, 5)
				if err != nil {
					t.Fatal(err)
				}
				in := dataset.Shape{C: m.InputShape[0], H: m.InputShape[1], W: m.InputShape[2]}
				pool := tensorcore.NewPool(threads)
				defer pool.Close()
				c, err := newCompute(m, pool, threads, batch, w.accum, 5, nil, in)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				x, y := make([]float32, batch*in.Size()), make([]int, batch)
				if err := train.Fill(x, y, idx, dataset.Transform{Out: in}); err != nil {
					t.Fatal(err)
				}
				var mu sync.Mutex
				snaps, counts = map[int][]float32{}, make([]int, len(m.Arena.Params))
				var final func(int)
				if report {
					final = func(p int) {
						info := m.Arena.Params[p]
						mu.Lock()
						counts[p]++
						snaps[p] = slices.Clone(m.Arena.Grad[info.Offset : info.Offset+info.Len()])
						mu.Unlock()
					}
				}
				for step := range 2 {
					clear(counts)
					c.step(step, x, y, final)
				}
				return slices.Clone(m.Arena.Grad), snaps, counts
			}
			want, _, _ := run(false)
			got, snaps, counts := run(true)
			if !slices.Equal(got, want) {
				t.Errorf("%s, %+v: gradients with reports differ from those without", name, w)
			}
			m, _ := models.Build(name, 5)
			for p, k := range counts {
				info := m.Arena.Params[p]
				if k != 1 {
					t.Errorf("%s, %+v: %s reported %d times", name, w, info.Name, k)
					continue
				}
				if !slices.Equal(snaps[p], want[info.Offset:info.Offset+info.Len()]) {
					t.Errorf("%s, %+v: %s reported before its gradient was complete", name, w, info.Name)
				}
			}
		}
	}
}

// TestStepReportsItsPhases checks that a step's report splits its time
// into data wait, compute, reduction and optimizer, which add up to the
// step: on a clock that advances 1 ms at every reading, each phase is one
// reading apart.
func TestStepReportsItsPhases(t *testing.T) {
	spec := smallSpec(t, "mlp")
	e, err := newEngine(context.Background(), spec, spec.BatchSize, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var clock time.Time
	e.now = func() time.Time { clock = clock.Add(time.Millisecond); return clock }
	if err := e.ensureOrder(); err != nil {
		t.Fatal(err)
	}
	pipe := startPipeline(e.train, e.order, 0, spec.BatchSize, 0, 1, e.trainTransform(0), 1)
	defer pipe.stop()
	rep, err := e.trainStep(context.Background(), ring{rank: 0, world: 1}, pipe, hooks{})
	if err != nil {
		t.Fatal(err)
	}
	phases := []float64{rep.DataWait, rep.Compute, rep.Reduce, rep.Optimizer}
	for i, p := range phases {
		if p != 0.001 {
			t.Errorf("phase %d took %v s, want 0.001 (one clock reading)", i, p)
		}
	}
	if rep.Seconds != 0.004 {
		t.Errorf("step took %v s, want the phases' sum 0.004", rep.Seconds)
	}
}

// An evaluation forward takes at most twice the samples a training tape
// holds at once, and never more than 250.
func TestEvalBatch(t *testing.T) {
	for _, tc := range []struct{ perRank, accum, want int }{
		{64, 1, 128}, {500, 1, 250}, {32, 4, 16}, {1, 1, 2}, {33, 2, 34}, {0, 1, 1},
	} {
		if got := evalBatch(tc.perRank, tc.accum); got != tc.want {
			t.Errorf("evalBatch(%d, %d) = %d, want %d", tc.perRank, tc.accum, got, tc.want)
		}
	}
}

// A job in bf16 computes its products in bf16 on the engine's pool and on
// every replica's, where the CPU can (else it says so and stays in fp32):
// the gradient is that of fp32 to bf16's precision, not the same bits.
func TestComputeInBF16(t *testing.T) {
	train, err := dataset.LoadMNIST(realMNIST(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	const batch = 32
	idx := make([]int, batch)
	for i := range idx {
		idx[i] = 3 * i
	}
	grads := map[string][]float32{}
	for _, precision := range []string{"fp32", "bf16"} {
		m, err := models.Build("lenet5", 5)
		if err != nil {
			t.Fatal(err)
		}
		in := dataset.Shape{C: 1, H: 28, W: 28}
		pool := tensorcore.NewPool(2)
		var notes []string
		usePrecision(pool, precision, func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) })
		if want := precision == "bf16" && tensorcore.HasBF16(); (pool.Precision() == tensorcore.BF16) != want {
			t.Fatalf("%s: pool in %v", precision, pool.Precision())
		}
		if precision == "bf16" && !tensorcore.HasBF16() && (len(notes) != 1 || !strings.Contains(notes[0], "training in fp32")) {
			t.Fatalf("bf16 without the instructions: notes %q", notes)
		}
		c, err := newCompute(m, pool, 2, batch, 1, 5, nil, in)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range c.replicas {
			if r.pool.Precision() != pool.Precision() {
				t.Fatalf("%s: a replica's pool in %v, the engine's in %v", precision, r.pool.Precision(), pool.Precision())
			}
		}
		x, y := make([]float32, batch*in.Size()), make([]int, batch)
		if err := train.Fill(x, y, idx, dataset.Transform{Out: in}); err != nil {
			t.Fatal(err)
		}
		c.step(0, x, y, nil)
		grads[precision] = slices.Clone(m.Arena.Grad)
		c.Close()
		pool.Close()
	}
	var num, den float64
	for i, g := range grads["fp32"] {
		d := float64(g - grads["bf16"][i])
		num += d * d
		den += float64(g) * float64(g)
	}
	rel := math.Sqrt(num / den)
	if rel > 0.05 || (tensorcore.HasBF16() && rel == 0) {
		t.Fatalf("bf16 gradient differs from fp32's by %.3g (relative norm); want a difference under 0.05 (bf16 keeps 8 bits; LeNet-5 rounds at 5 layers), and none only without bf16", rel)
	}
	t.Logf("bf16 gradient vs fp32: %.3g relative", rel)
}
