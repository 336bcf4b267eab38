package allreduce

import (
	"context"
	"fmt"
	"math"
	"testing"
)

// TestPowerSGDLowRank checks that a sum of rank-1 gradients sharing one
// direction is reconstructed (almost) exactly, bit-identically everywhere.
func TestPowerSGDLowRank(t *testing.T) {
	const n, rows, cols, r = 3, 12, 9, 2
	u := make([]float32, rows)
	v := make([]float32, cols)
	fillRank(u, 100, 1)
	fillRank(v, 101, 1)
	want := make([]float64, rows*cols)
	for k := 0; k < n; k++ {
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				want[i*cols+j] += float64(k+1) * float64(u[i]*v[j])
			}
		}
	}
	bufs := make([][]float32, n)
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 5}), 0, func(ctx context.Context, c *Comm) error {
		s, err := NewPowerSGD(rows, cols, r, 42)
		if err != nil {
			return err
		}
		g := make([]float32, rows*cols)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				g[i*cols+j] = float32(c.Rank()+1) * u[i] * v[j]
			}
		}
		bufs[c.Rank()] = g
		return s.AllReduce(ctx, c, g)
	})
	for k, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", k, err)
		}
	}
	for k := 1; k < n; k++ {
		for i := range bufs[0] {
			if math.Float32bits(bufs[k][i]) != math.Float32bits(bufs[0][i]) {
				t.Fatalf("rank %d differs from rank 0 at %d", k, i)
			}
		}
	}
	for i, w := range want {
		if math.Abs(float64(bufs[0][i])-w) > 1e-4*(1+math.Abs(w)) {
			t.Fatalf("element %d = %v, want %v", i, bufs[0][i], w)
		}
	}
}

// TestPowerSGDErrorFeedback checks the invariant of error feedback: over
// any number of steps, what was delivered plus what is still held back
// equals the sum of all gradients.
func TestPowerSGDErrorFeedback(t *testing.T) {
	const n, rows, cols, r, steps = 4, 16, 10, 1, 5
	delivered := make([]float64, rows*cols)
	total := make([]float64, rows*cols)
	held := make([][]float32, n)
	errs := runMemRing(t, n, fixedCfg(Config{Chunk: 7}), 0, func(ctx context.Context, c *Comm) error {
		s, err := NewPowerSGD(rows, cols, r, 7)
		if err != nil {
			return err
		}
		g := make([]float32, rows*cols)
		for step := 0; step < steps; step++ {
			fillRank(g, c.Rank(), uint64(step))
			if err := s.AllReduce(ctx, c, g); err != nil {
				return err
			}
			if c.Rank() == 0 {
				for i, v := range g {
					delivered[i] += float64(v)
				}
			}
		}
		held[c.Rank()] = s.e
		return nil
	})
	for k, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", k, err)
		}
	}
	g := make([]float32, rows*cols)
	for step := 0; step < steps; step++ {
		for k := 0; k < n; k++ {
			fillRank(g, k, uint64(step))
			for i, v := range g {
				total[i] += float64(v)
			}
		}
	}
	for i := range total {
		got := delivered[i]
		for k := 0; k < n; k++ {
			got += float64(held[k][i])
		}
		if math.Abs(got-total[i]) > 1e-3*(1+math.Abs(total[i])) {
			t.Fatalf("element %d: delivered+held = %v, sum of gradients = %v", i, got, total[i])
		}
	}
}

func TestPowerSGDArgs(t *testing.T) {
	for _, a := range [][3]int{{0, 3, 1}, {3, 3, 0}, {3, 3, 4}} {
		if _, err := NewPowerSGD(a[0], a[1], a[2], 1); err == nil {
			t.Errorf("NewPowerSGD%v accepted", a)
		}
	}
	s, _ := NewPowerSGD(100, 50, 2, 1)
	if got, want := s.CompressionRatio(), 5000.0/300; math.Abs(got-want) > 1e-12 {
		t.Fatalf("ratio %v, want %v", got, want)
	}
	errs := runMemRing(t, 1, fixedCfg(Config{}), 0, func(ctx context.Context, c *Comm) error {
		if err := s.AllReduce(ctx, c, make([]float32, 3)); err == nil {
			return fmt.Errorf("wrong-sized buffer accepted")
		}
		return nil
	})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
}
