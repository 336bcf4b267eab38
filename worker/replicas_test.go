package worker

import (
	"math"
	"testing"

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
		grads := map[int][]float32{}
		losses := map[int]float64{}
		for _, threads := range []int{1, 3} {
			m, err := models.Build(name, 5)
			if err != nil {
				t.Fatal(err)
			}
			in, err := newInput(m.InputShape, train)
			if err != nil {
				t.Fatal(err)
			}
			pool := tensorcore.NewPool(threads)
			c, err := newCompute(m, pool, threads, batch, 5, in)
			if err != nil {
				t.Fatal(err)
			}
			if (threads > 1) != (c.replicas != nil) {
				t.Fatalf("threads %d: replicas %d", threads, len(c.replicas))
			}
			x, y := make([]float32, batch*in.size()), make([]int, batch)
			in.batch(train, idx, x, y)
			loss, _ := c.step(0, x, y)
			grads[threads] = append([]float32(nil), m.Arena.Grad...)
			losses[threads] = loss
			c.Close()
			pool.Close()
		}
		if d := math.Abs(losses[1] - losses[3]); d > 1e-5*math.Abs(losses[1]) {
			t.Errorf("%s: loss %v whole, %v split", name, losses[1], losses[3])
		}
		var num, den float64
		for i := range grads[1] {
			d := float64(grads[1][i] - grads[3][i])
			num += d * d
			den += float64(grads[1][i]) * float64(grads[1][i])
		}
		if rel := math.Sqrt(num / den); rel > 1e-5 || den == 0 {
			t.Errorf("%s: split-batch gradient differs by %.2g (relative norm)", name, rel)
		}
	}
}
