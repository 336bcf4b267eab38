package worker

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/dataset"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// TestSplitBatchGradientEqualsWholeBatch checks that replicas on slices of
// a batch produce the gradient and loss of one tape on the whole batch.
func TestSplitBatchGradientEqualsWholeBatch(t *testing.T) {
	train, err := dataset.LoadMNIST(realMNIST(t), "test")
	if err != nil {
		t.Fatal(err)
	}
	const batch = 50 // uneven slices across 3 replicas
	idx := make([]int, batch)
	for i := range idx {
		idx[i] = 7 * i
	}
	for _, name := range []string{"lenet5", "mlp"} {
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
			c, err := newCompute(m, pool, threads, batch, w.accum, 5, 0, in)
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
				c, err := newCompute(m, pool, threads, batch, w.accum, 5, 0, in)
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
