package repro

import (
	"context"
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/dataset"
)

// handDigits is a hand-built MNIST of n 28×28 images: image i has pixel
// value (i·37 + r·3 + c) mod 256 at row r, column c, and label i mod 10.
func handDigits(n int) *dataset.MNIST {
	m := &dataset.MNIST{N: n, Rows: 28, Cols: 28, Pixels: make([]uint8, n*28*28), Labels: make([]uint8, n)}
	for i := range n {
		for r := range 28 {
			for c := range 28 {
				m.Pixels[(i*28+r)*28+c] = uint8((i*37 + r*3 + c) % 256)
			}
		}
		m.Labels[i] = uint8(i % 10)
	}
	return m
}

func TestResampleDigits(t *testing.T) {
	m := handDigits(5)
	d, err := resampleDigits(m, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 3 || d.Dim != 100 || len(d.X) != 300 || len(d.Y) != 3 {
		t.Fatalf("shape: N %d, Dim %d, %d floats, %d labels", d.N, d.Dim, len(d.X), len(d.Y))
	}
	for i := range d.N {
		// Area resampling keeps each image's mean: 28 input pixels map
		// onto 10 outputs of 2.8 each, every input pixel counted once.
		var in, out float64
		for _, p := range m.Pixels[i*784 : (i+1)*784] {
			in += float64(dataset.NormalizePixel(p))
		}
		for _, v := range d.X[i*100 : (i+1)*100] {
			out += float64(v)
		}
		if math.Abs(in/784-out/100) > 1e-4 {
			t.Errorf("image %d: mean %v resampled to %v", i, in/784, out/100)
		}
		if d.Y[i] != i%10 {
			t.Errorf("image %d: label %d", i, d.Y[i])
		}
	}
	// A constant image stays constant.
	flat := &dataset.MNIST{N: 1, Rows: 28, Cols: 28, Pixels: make([]uint8, 784), Labels: []uint8{7}}
	for i := range flat.Pixels {
		flat.Pixels[i] = 200
	}
	f, err := resampleDigits(flat, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	for j, v := range f.X {
		if math.Abs(float64(v-dataset.NormalizePixel(200))) > 1e-5 {
			t.Fatalf("constant image: pixel %d is %v", j, v)
		}
	}
	// The same call gives the same bits.
	again, _ := resampleDigits(m, 10, 3)
	for j := range d.X {
		if d.X[j] != again.X[j] {
			t.Fatalf("pixel %d differs between calls", j)
		}
	}
	for _, side := range []int{0, 29} {
		if _, err := resampleDigits(m, side, 0); err == nil {
			t.Errorf("side %d: no error", side)
		}
	}
}

// TestTrainAllDeterministic holds that the runs do not depend on how many
// goroutines train them, and that training lowers the loss.
func TestTrainAllDeterministic(t *testing.T) {
	d, err := resampleDigits(dataset.NewSynthetic(1, 400), 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	tasks := []surfaceTask{{10, 1}, {20, 2}, {10, 3}}
	cfg := surfaceConfig{Epochs: 10, Batch: 50, LR: 0.05, Momentum: 0.9}
	ctx := context.Background()
	one, err := trainAll(ctx, d, d, tasks, 7, cfg, 1, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	three, err := trainAll(ctx, d, d, tasks, 7, cfg, 3, func(k int) { n = k })
	if err != nil {
		t.Fatal(err)
	}
	if n != len(tasks) {
		t.Errorf("done reported %d of %d", n, len(tasks))
	}
	for i := range tasks {
		if one[i] != three[i] {
			t.Errorf("task %d: 1 worker %+v, 3 workers %+v", i, one[i], three[i])
		}
		if one[i].Width != tasks[i].width || !(one[i].TrainNLL < 0.5*math.Log(10)) {
			t.Errorf("task %d: %+v did not learn", i, one[i])
		}
	}
	if one[0] == one[2] {
		t.Error("two seeds of one width gave the same run")
	}
	// A cancelled context stops the runs with its error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := trainAll(cctx, d, d, tasks, 7, cfg, 2, func(int) {}); err == nil {
		t.Error("cancelled: no error")
	}
	// A batch larger than the set is an error, not a panic.
	if _, err := trainAll(ctx, d, d, tasks, 7, surfaceConfig{Epochs: 1, Batch: 1000, LR: 0.1}, 1, func(int) {}); err == nil {
		t.Error("batch > set: no error")
	}
}

func TestSummarize(t *testing.T) {
	runs := []surfaceRun{
		{Width: 10, TrainNLL: 1, TestNLL: 2}, {Width: 10, TrainNLL: 2, TestNLL: 4}, {Width: 10, TrainNLL: 3, TestNLL: 6},
		{Width: 20, TrainNLL: 1, TestNLL: 3}, {Width: 20, TrainNLL: 2, TestNLL: 2}, {Width: 20, TrainNLL: 3, TestNLL: 1},
	}
	st := summarize(runs, []int{10, 20})
	if len(st) != 2 || st[0].Width != 10 || st[1].Width != 20 {
		t.Fatalf("%+v", st)
	}
	if st[0].MeanTest != 4 || math.Abs(st[0].StdTest-2) > 1e-12 || math.Abs(st[0].Pearson-1) > 1e-12 {
		t.Errorf("width 10: %+v", st[0])
	}
	if st[1].MeanTest != 2 || math.Abs(st[1].StdTest-1) > 1e-12 || math.Abs(st[1].Pearson+1) > 1e-12 {
		t.Errorf("width 20: %+v", st[1])
	}
}
