package models

import (
	"math"
	"testing"
)

func TestSchedules(t *testing.T) {
	cases := []struct {
		name string
		s    Schedule
		step int
		want float64
	}{
		{"constant", ConstantLR{Base: 0.05}, 0, 0.05},
		{"constant late", ConstantLR{Base: 0.05}, 1 << 40, 0.05},
		{"step 0", StepDecay{Base: 1, Every: 10, Gamma: 0.1}, 0, 1},
		{"step 9", StepDecay{Base: 1, Every: 10, Gamma: 0.1}, 9, 1},
		{"step 10", StepDecay{Base: 1, Every: 10, Gamma: 0.1}, 10, 0.1},
		{"step 25", StepDecay{Base: 1, Every: 10, Gamma: 0.1}, 25, 0.01},
		{"step every 0", StepDecay{Base: 1, Every: 0, Gamma: 0.1}, 25, 1},
		{"cosine 0", Cosine{Base: 1, Min: 0.1, Steps: 100}, 0, 1},
		{"cosine half", Cosine{Base: 1, Min: 0.1, Steps: 100}, 50, 0.55},
		{"cosine quarter", Cosine{Base: 1, Min: 0, Steps: 100}, 25, (1 + math.Sqrt2/2) / 2},
		{"cosine end", Cosine{Base: 1, Min: 0.1, Steps: 100}, 100, 0.1},
		{"cosine after", Cosine{Base: 1, Min: 0.1, Steps: 100}, 1000, 0.1},
		{"cosine no steps", Cosine{Base: 1, Min: 0.1}, 10, 1},
		{"warmup 0", Warmup{Steps: 10, Start: 0.1, Then: ConstantLR{Base: 2}}, 0, 0.2},
		{"warmup 5", Warmup{Steps: 10, Start: 0.1, Then: ConstantLR{Base: 2}}, 5, 1.1},
		{"warmup 9", Warmup{Steps: 10, Start: 0, Then: ConstantLR{Base: 2}}, 9, 1.8},
		{"warmup done", Warmup{Steps: 10, Start: 0, Then: ConstantLR{Base: 2}}, 10, 2},
		{"warmup then step", Warmup{Steps: 10, Then: StepDecay{Base: 1, Every: 5, Gamma: 0.5}}, 14, 1},
		{"warmup then step 15", Warmup{Steps: 10, Then: StepDecay{Base: 1, Every: 5, Gamma: 0.5}}, 15, 0.5},
		{"warmup then cosine", Warmup{Steps: 10, Then: Cosine{Base: 1, Min: 0, Steps: 100}}, 60, 0.5},
		{"warmup then cosine end", Warmup{Steps: 10, Then: Cosine{Base: 1, Min: 0, Steps: 100}}, 110, 0},
		{"no warmup", Warmup{Steps: 0, Then: ConstantLR{Base: 3}}, 0, 3},
	}
	for _, c := range cases {
		got := c.s.LR(c.step)
		if math.Abs(float64(got)-c.want) > 1e-6*math.Max(1, c.want) {
			t.Errorf("%s: LR(%d) = %v, want %v", c.name, c.step, got, c.want)
		}
	}
}

// Cosine decreases monotonically from Base to Min.
func TestCosineMonotone(t *testing.T) {
	s := Cosine{Base: 0.1, Min: 0.001, Steps: 1000}
	prev := s.LR(0)
	for i := 1; i <= 1000; i++ {
		lr := s.LR(i)
		if lr > prev {
			t.Fatalf("LR(%d) = %v > LR(%d) = %v", i, lr, i-1, prev)
		}
		prev = lr
	}
}
