package models

import (
	"math"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/job"
)

func TestCheckOptimizer(t *testing.T) {
	for _, name := range []string{"", "sgd", "SGD", "adam", "Adam", "adamw", "ADAMW", "rmsprop", "RMSProp"} {
		if err := CheckOptimizer(name); err != nil {
			t.Errorf("CheckOptimizer(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"adagrad", "Adagrad", "sdg", " sgd", "adam-w", "lamb"} {
		err := CheckOptimizer(name)
		want := `unknown optimizer "` + name + `" (known: adam, adamw, rmsprop, sgd)`
		if err == nil || err.Error() != want {
			t.Errorf("CheckOptimizer(%q) = %v, want %q", name, err, want)
		}
	}
}

// TestNewOptimizer: each name builds its optimizer over the arena with the
// job's hyper-parameters, and the defaults where the job sets none.
func TestNewOptimizer(t *testing.T) {
	for _, tc := range []struct {
		o    job.Optimizer
		want any // *SGD, *Adam or *RMSProp carrying the wanted config
	}{
		{job.Optimizer{}, &SGD{cfg: SGDConfig{}}},
		{job.Optimizer{Name: "sgd", LR: 0.1}, &SGD{cfg: SGDConfig{}}},
		{job.Optimizer{Name: "SGD", Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4},
			&SGD{cfg: SGDConfig{Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4}}},
		{job.Optimizer{Name: "sgd", Momentum: 0.5, Beta1: 0.1, Eps: 1},
			&SGD{cfg: SGDConfig{Momentum: 0.5}}},
		{job.Optimizer{Name: "adam"},
			&Adam{cfg: AdamConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}}},
		{job.Optimizer{Name: "adam", Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.1, Momentum: 0.9},
			&Adam{cfg: AdamConfig{Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.1}}},
		{job.Optimizer{Name: "adamw"},
			&Adam{cfg: AdamConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Decoupled: true}}},
		{job.Optimizer{Name: "AdamW", Beta2: 0.95, WeightDecay: 0.05},
			&Adam{cfg: AdamConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.05, Decoupled: true}}},
		{job.Optimizer{Name: "rmsprop"},
			&RMSProp{cfg: RMSPropConfig{Alpha: 0.99, Eps: 1e-8}}},
		{job.Optimizer{Name: "RMSprop", Momentum: 0.5, WeightDecay: 1e-4, Eps: 1e-5, Beta1: 0.3},
			&RMSProp{cfg: RMSPropConfig{Alpha: 0.99, Eps: 1e-5, WeightDecay: 1e-4, Momentum: 0.5}}},
	} {
		a := &Arena{Data: make([]float32, 3), Grad: make([]float32, 3)}
		opt, err := NewOptimizer(tc.o, a)
		if err != nil {
			t.Errorf("%+v: %v", tc.o, err)
			continue
		}
		var params, grads []float32
		switch got := opt.(type) {
		case *SGD:
			w, ok := tc.want.(*SGD)
			if !ok || got.cfg != w.cfg {
				t.Errorf("%+v: built %T %+v, want %T %+v", tc.o, got, got.cfg, tc.want, tc.want)
			}
			if (got.buf != nil) != (w != nil && w.cfg.Momentum != 0) {
				t.Errorf("%+v: momentum buffer %v", tc.o, got.buf)
			}
			params, grads = got.params, got.grads
		case *Adam:
			w, ok := tc.want.(*Adam)
			if !ok || got.cfg != w.cfg {
				t.Errorf("%+v: built %T %+v, want %T %+v", tc.o, got, got.cfg, tc.want, tc.want)
			}
			params, grads = got.params, got.grads
		case *RMSProp:
			w, ok := tc.want.(*RMSProp)
			if !ok || got.cfg != w.cfg {
				t.Errorf("%+v: built %T %+v, want %T %+v", tc.o, got, got.cfg, tc.want, tc.want)
			}
			params, grads = got.params, got.grads
		default:
			t.Fatalf("%+v: built %T", tc.o, opt)
		}
		if len(params) != 3 || &params[0] != &a.Data[0] || len(grads) != 3 || &grads[0] != &a.Grad[0] {
			t.Errorf("%+v: optimizer does not update the arena's Data from its Grad", tc.o)
		}
	}

	a := &Arena{Data: make([]float32, 3), Grad: make([]float32, 3)}
	for _, tc := range []struct {
		o    job.Optimizer
		want string
	}{
		{job.Optimizer{Name: "adagrad"}, `models: unknown optimizer "adagrad" (known: adam, adamw, rmsprop, sgd)`},
		{job.Optimizer{Name: "sgd", Nesterov: true}, "Nesterov needs momentum"},
		{job.Optimizer{Name: "adam", Beta1: 1}, "models: adam: bad config"},
	} {
		if opt, err := NewOptimizer(tc.o, a); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %T, %v; want an error containing %q", tc.o, opt, err, tc.want)
		}
	}
	for _, name := range optimizers {
		if _, err := NewOptimizer(job.Optimizer{Name: name}, a); err != nil {
			t.Errorf("CheckOptimizer knows %q but NewOptimizer does not build it: %v", name, err)
		}
	}
}

// TestNewSchedule checks built schedules against rates worked out by hand
// from the definitions of StepDecay, Cosine and Warmup (a warm-up starts at
// lr/3).
func TestNewSchedule(t *testing.T) {
	type at struct {
		step int
		lr   float64
	}
	for _, tc := range []struct {
		name                  string
		s                     job.Schedule
		lr                    float64
		epochs, stepsPerEpoch int
		want                  Schedule
		at                    []at
	}{
		{"empty is constant", job.Schedule{}, 0.1, 3, 10, ConstantLR{Base: 0.1},
			[]at{{0, 0.1}, {29, 0.1}, {1000, 0.1}}},
		{"constant", job.Schedule{Name: "constant", Gamma: 0.5, StepEpochs: 1, MinLR: 0.01}, 0.02, 3, 10, ConstantLR{Base: 0.02},
			[]at{{0, 0.02}, {15, 0.02}}},
		// Every = 2 epochs · 10 steps = 20 steps.
		{"step", job.Schedule{Name: "step", StepEpochs: 2, Gamma: 0.5}, 0.1, 6, 10,
			StepDecay{Base: 0.1, Every: 20, Gamma: 0.5},
			[]at{{0, 0.1}, {19, 0.1}, {20, 0.05}, {39, 0.05}, {40, 0.025}, {59, 0.025}}},
		// 4·25 = 100 steps: 0.001 + 0.099·(1+cos(π·step/100))/2.
		{"cosine", job.Schedule{Name: "cosine", MinLR: 0.001}, 0.1, 4, 25,
			Cosine{Base: 0.1, Min: 0.001, Steps: 100},
			[]at{{0, 0.1}, {25, 0.0855017857}, {50, 0.0505}, {75, 0.0154982143}, {100, 0.001}, {150, 0.001}}},
		// 20 warm-up steps from 0.1/3, then a cosine over the other 80.
		{"cosine after warm-up", job.Schedule{Name: "cosine", MinLR: 0.001, WarmupSteps: 20}, 0.1, 4, 25,
			Warmup{Steps: 20, Start: 1.0 / 3, Then: Cosine{Base: 0.1, Min: 0.001, Steps: 80}},
			[]at{{0, 0.1 / 3}, {10, 0.2 / 3}, {19, 0.1 * (1.0/3 + 2.0/3*19/20)}, {20, 0.1}, {60, 0.0505}, {100, 0.001}}},
		// Every = 10 steps, counted from the end of the 5 warm-up steps.
		{"step after warm-up", job.Schedule{Name: "step", StepEpochs: 1, Gamma: 0.1, WarmupSteps: 5}, 1, 3, 10,
			Warmup{Steps: 5, Start: 1.0 / 3, Then: StepDecay{Base: 1, Every: 10, Gamma: 0.1}},
			[]at{{0, 1.0 / 3}, {5, 1}, {14, 1}, {15, 0.1}, {25, 0.01}}},
		{"constant after warm-up", job.Schedule{WarmupSteps: 4}, 0.3, 1, 10,
			Warmup{Steps: 4, Start: 1.0 / 3, Then: ConstantLR{Base: 0.3}},
			[]at{{0, 0.1}, {2, 0.2}, {3, 0.25}, {4, 0.3}, {9, 0.3}}},
	} {
		s := NewSchedule(tc.s, tc.lr, tc.epochs, tc.stepsPerEpoch)
		if s != tc.want {
			t.Errorf("%s: built %#v, want %#v", tc.name, s, tc.want)
		}
		for _, a := range tc.at {
			if got := s.LR(a.step); math.Abs(float64(got)-a.lr) > 1e-6*a.lr {
				t.Errorf("%s: LR(%d) = %.9g, want %.9g", tc.name, a.step, got, a.lr)
			}
		}
	}
}

// With no_decay_norm_bias, weights (parameters of two or more dimensions)
// step exactly as under the optimizer with decay, and BatchNorm's gamma,
// beta and biases exactly as under the optimizer without it.
func TestNoDecayNormBias(t *testing.T) {
	for _, name := range []string{"sgd", "adam", "adamw", "rmsprop"} {
		build := func(o job.Optimizer) *Model {
			m, err := Build("resnet8", 3)
			if err != nil {
				t.Fatal(err)
			}
			opt, err := NewOptimizer(o, m.Arena)
			if err != nil {
				t.Fatal(err)
			}
			for step := range 3 { // each step's gradient is fresh, as backward leaves it
				for i := range m.Arena.Grad {
					m.Arena.Grad[i] = float32(math.Sin(float64(i + step)))
				}
				opt.Step(0.1)
			}
			return m
		}
		base := job.Optimizer{Name: name, Momentum: 0.9, WeightDecay: 0.05}
		selective := base
		selective.NoDecayNormBias = true
		none := base
		none.WeightDecay = 0
		if name == "adamw" {
			none.Name = "adam" // AdamW without decay
		}
		got, with, without := build(selective), build(base), build(none)
		checked := [2]int{}
		for _, p := range got.Arena.Params {
			want := with
			if len(p.Shape) == 1 {
				want = without
			}
			for i := p.Offset; i < p.Offset+p.Len(); i++ {
				if got.Arena.Data[i] != want.Arena.Data[i] {
					t.Fatalf("%s: %s[%d] = %v, want %v", name, p.Name, i-p.Offset, got.Arena.Data[i], want.Arena.Data[i])
				}
			}
			checked[min(len(p.Shape)-1, 1)]++
		}
		if checked[0] == 0 || checked[1] == 0 {
			t.Fatalf("%s: checked %d one-dimensional and %d other parameters", name, checked[0], checked[1])
		}
		if with.Arena.Data[0] == without.Arena.Data[0] {
			t.Fatalf("%s: weight decay changed nothing", name)
		}
	}
}
