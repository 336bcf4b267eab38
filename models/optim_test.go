package models

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/job"
	"github.com/ringtrain/ringtrain/tensorcore"
)

// runOpt applies one step per gradient in gs to a single parameter that
// starts at p0 and returns the parameter after each step.
func runOpt(t *testing.T, mk func(p, g []float32) (Optimizer, error), p0 float32, lr float32, gs []float32) []float32 {
	t.Helper()
	p, g := []float32{p0}, []float32{0}
	o, err := mk(p, g)
	if err != nil {
		t.Fatal(err)
	}
	var out []float32
	for _, gi := range gs {
		g[0] = gi
		o.Step(lr)
		out = append(out, p[0])
	}
	if o.Steps() != int64(len(gs)) {
		t.Errorf("Steps() = %d, want %d", o.Steps(), len(gs))
	}
	return out
}

func sgdOpt(cfg SGDConfig) func(p, g []float32) (Optimizer, error) {
	return func(p, g []float32) (Optimizer, error) { return NewSGD(p, g, cfg) }
}

func adamOpt(cfg AdamConfig) func(p, g []float32) (Optimizer, error) {
	return func(p, g []float32) (Optimizer, error) { return NewAdam(p, g, cfg) }
}

func rmsOpt(cfg RMSPropConfig) func(p, g []float32) (Optimizer, error) {
	return func(p, g []float32) (Optimizer, error) { return NewRMSProp(p, g, cfg) }
}

// The gradients of the three steps in every case below.
var testGrads = []float32{0.5, -0.25, 1.0}

func TestOptimizersHandComputed(t *testing.T) {
	adamWD := DefaultAdam()
	adamWD.WeightDecay = 0.1
	adamW := DefaultAdamW()
	adamW.WeightDecay = 0.1
	rmsMom := DefaultRMSProp()
	rmsMom.Momentum = 0.9
	rmsCen := DefaultRMSProp()
	rmsCen.Centered, rmsCen.WeightDecay = true, 0.1
	cases := []struct {
		name string
		mk   func(p, g []float32) (Optimizer, error)
		p0   float32
		lr   float32
		want []float32
	}{
		// p = 1 - 0.1·0.5 = 0.95; 0.95 + 0.025 = 0.975; 0.975 - 0.1 = 0.875
		{"sgd", sgdOpt(SGDConfig{}), 1, 0.1, []float32{0.95, 0.975, 0.875}},
		// buf 0.5 → p 0.95; buf 0.45-0.25 = 0.2 → p 0.93; buf 0.18+1 = 1.18 → p 0.812
		{"sgd momentum", sgdOpt(SGDConfig{Momentum: 0.9}), 1, 0.1, []float32{0.95, 0.93, 0.812}},
		// buf 0.5, d 0.5+0.45 = 0.95 → 0.905; buf 0.2, d -0.25+0.18 = -0.07 → 0.912;
		// buf 1.18, d 1+1.062 = 2.062 → 0.7058
		{"sgd nesterov", sgdOpt(SGDConfig{Momentum: 0.9, Nesterov: true}), 1, 0.1, []float32{0.905, 0.912, 0.7058}},
		// d 0.5+0.1 = 0.6 → 0.94; d -0.25+0.094 = -0.156 → 0.9556; d 1+0.09556 → 0.846044
		{"sgd weight decay", sgdOpt(SGDConfig{WeightDecay: 0.1}), 1, 0.1, []float32{0.94, 0.9556, 0.846044}},
		// buf 0.5 (no dampening on the first step) → 0.95; buf 0.45-0.125 = 0.325 → 0.9175;
		// buf 0.2925+0.5 = 0.7925 → 0.83825
		{"sgd dampening", sgdOpt(SGDConfig{Momentum: 0.9, Dampening: 0.5}), 1, 0.1, []float32{0.95, 0.9175, 0.83825}},
		{"sgd nesterov wd", sgdOpt(SGDConfig{Momentum: 0.9, WeightDecay: 0.01, Nesterov: true}), -2, 0.1,
			[]float32{-2.0912, -2.07860672, -2.2777054952}},
		// Step 1 of Adam moves by lr·g/(|g|+eps·…) = 0.1: m̂ = 0.5, √v̂ = 0.5.
		{"adam", adamOpt(DefaultAdam()), 1, 0.1, []float32{0.900000002, 0.8733662987, 0.8075551397}},
		{"adam l2", adamOpt(adamWD), 1, 0.1, []float32{0.9000000017, 0.8544413675, 0.7815043999}},
		// AdamW step 1: p·(1-0.01) = 0.99, then -0.1.
		{"adamw", adamOpt(adamW), 1, 0.1, []float32{0.890000002, 0.8544662987, 0.7801104767}},
		// RMSProp step 1: s = 0.01·0.25 = 0.0025, √s = 0.05, p = 1 - 0.01·0.5/0.05 = 0.9.
		{"rmsprop", rmsOpt(DefaultRMSProp()), 1, 0.01, []float32{0.90000002, 0.9449013374, 0.8574273784}},
		{"rmsprop momentum", rmsOpt(rmsMom), 1, 0.01, []float32{0.90000002, 0.8549013554, 0.7268385983}},
		{"rmsprop centered wd", rmsOpt(rmsCen), 1, 0.01, []float32{0.8994962353, 0.9254552882, 0.8376625959}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := runOpt(t, c.mk, c.p0, c.lr, testGrads)
			for i := range got {
				if d := math.Abs(float64(got[i] - c.want[i])); d > 2e-6*math.Max(1, math.Abs(float64(c.want[i]))) {
					t.Errorf("step %d: p = %.9g, want %.9g", i+1, got[i], c.want[i])
				}
			}
		})
	}
}

func TestOptimizerConfigErrors(t *testing.T) {
	p, g := make([]float32, 3), make([]float32, 3)
	if _, err := NewSGD(p, g[:2], SGDConfig{}); err == nil || !strings.HasPrefix(err.Error(), "models: sgd:") {
		t.Errorf("length mismatch: err = %v", err)
	}
	if _, err := NewSGD(p, g, SGDConfig{Nesterov: true}); err == nil {
		t.Error("Nesterov without momentum accepted")
	}
	if _, err := NewSGD(p, g, SGDConfig{Momentum: float32(math.NaN())}); err == nil {
		t.Error("NaN momentum accepted")
	}
	if _, err := NewAdam(p, g, AdamConfig{Beta1: 1, Beta2: 0.9}); err == nil {
		t.Error("beta1 = 1 accepted")
	}
	if _, err := NewRMSProp(p, g, RMSPropConfig{Alpha: 1.5}); err == nil {
		t.Error("alpha 1.5 accepted")
	}
}

// A run of 5 steps must equal 2 steps, a save/restore of the state into a
// fresh optimizer, and 3 more steps, bit for bit.
func TestOptimizerStateRoundTrip(t *testing.T) {
	rmsAll := DefaultRMSProp()
	rmsAll.Momentum, rmsAll.Centered = 0.5, true
	mks := map[string]func(p, g []float32) (Optimizer, error){
		"sgd":     sgdOpt(SGDConfig{Momentum: 0.9, Dampening: 0.1, WeightDecay: 1e-3}),
		"adamw":   adamOpt(DefaultAdamW()),
		"rmsprop": rmsOpt(rmsAll),
	}
	grads := [][]float32{{0.5, -1, 2}, {0.1, 0.2, -0.3}, {1, 1, 1}, {-2, 0.5, 0}, {0.3, -0.7, 0.9}}
	for name, mk := range mks {
		t.Run(name, func(t *testing.T) {
			p1, g1 := []float32{1, 2, 3}, make([]float32, 3)
			o1, _ := mk(p1, g1)
			for _, g := range grads {
				copy(g1, g)
				o1.Step(0.01)
			}

			p2, g2 := []float32{1, 2, 3}, make([]float32, 3)
			o2, _ := mk(p2, g2)
			for _, g := range grads[:2] {
				copy(g2, g)
				o2.Step(0.01)
			}
			var saved []NamedSlice
			for _, s := range o2.State() {
				saved = append(saved, NamedSlice{s.Name, append([]float32(nil), s.Data...)})
			}
			p3 := append([]float32(nil), p2...)
			g3 := make([]float32, 3)
			o3, _ := mk(p3, g3)
			if err := o3.LoadState(o2.Steps(), saved); err != nil {
				t.Fatal(err)
			}
			for _, g := range grads[2:] {
				copy(g3, g)
				o3.Step(0.01)
			}
			for i := range p1 {
				if p1[i] != p3[i] {
					t.Fatalf("resumed run differs: %v vs %v", p3, p1)
				}
			}

			if err := o3.LoadState(2, saved[:len(saved)-1]); err == nil {
				t.Error("LoadState accepted a missing buffer")
			}
			bad := append([]NamedSlice(nil), saved...)
			bad[0].Data = bad[0].Data[:2]
			if err := o3.LoadState(2, bad); err == nil {
				t.Error("LoadState accepted a short buffer")
			}
			if err := o3.LoadState(2, append(saved, NamedSlice{"extra", make([]float32, 3)})); err == nil {
				t.Error("LoadState accepted an unknown buffer")
			}
			if err := o3.LoadState(2, append(saved, saved[0])); err == nil {
				t.Error("LoadState accepted a buffer given twice")
			}
		})
	}
}

func TestOptimizerStepAllocatesNothing(t *testing.T) {
	p, g := make([]float32, 1000), make([]float32, 1000)
	for i := range g {
		g[i] = float32(i%7) - 3
	}
	sgd, _ := NewSGD(p, g, SGDConfig{Momentum: 0.9, Nesterov: true})
	adam, _ := NewAdam(p, g, DefaultAdamW())
	rms, _ := NewRMSProp(p, g, DefaultRMSProp())
	for _, o := range []Optimizer{sgd, adam, rms} {
		if n := testing.AllocsPerRun(10, func() { o.Step(1e-3) }); n != 0 {
			t.Errorf("%T.Step allocates %v times", o, n)
		}
	}
}

func BenchmarkSGDStep(b *testing.B) {
	p, g := make([]float32, 1<<20), make([]float32, 1<<20)
	o, _ := NewSGD(p, g, SGDConfig{Momentum: 0.9, WeightDecay: 1e-4})
	b.SetBytes(int64(len(p)) * 4 * 3)
	for b.Loop() {
		o.Step(1e-3)
	}
}

func BenchmarkAdamStep(b *testing.B) {
	p, g := make([]float32, 1<<20), make([]float32, 1<<20)
	o, _ := NewAdam(p, g, DefaultAdamW())
	b.SetBytes(int64(len(p)) * 4 * 4)
	for b.Loop() {
		o.Step(1e-3)
	}
}

// LoadState takes state read from a checkpoint: whatever names and lengths
// it is given, it returns an error or loads, and never panics; on success
// the state round-trips.
func FuzzLoadState(f *testing.F) {
	f.Add(int64(3), "exp_avg", 4, "exp_avg_sq", 4)
	f.Add(int64(-1), "exp_avg", 4, "exp_avg_sq", 4)
	f.Add(int64(0), "exp_avg", 3, "exp_avg_sq", 4)
	f.Add(int64(1), "exp_avg", 4, "exp_avg", 4)
	f.Add(int64(1), "", 0, "momentum_buffer", 4)
	f.Fuzz(func(t *testing.T, steps int64, n1 string, l1 int, n2 string, l2 int) {
		if l1 < 0 || l1 > 64 || l2 < 0 || l2 > 64 {
			return
		}
		p, g := make([]float32, 4), make([]float32, 4)
		adam, _ := NewAdam(p, g, DefaultAdam())
		sgd, _ := NewSGD(p, g, SGDConfig{Momentum: 0.9})
		state := []NamedSlice{{n1, make([]float32, l1)}, {n2, make([]float32, l2)}}
		for i := range state[0].Data {
			state[0].Data[i] = float32(i)
		}
		for _, o := range []Optimizer{adam, sgd} {
			if err := o.LoadState(steps, state); err == nil {
				if o.Steps() != steps {
					t.Fatalf("%T: loaded steps %d, want %d", o, o.Steps(), steps)
				}
				for _, s := range o.State() {
					if len(s.Data) != 4 {
						t.Fatalf("%T: state %s resized to %d", o, s.Name, len(s.Data))
					}
				}
			}
		}
	})
}

// An optimizer stepping on a pool's cores updates the same bits as one
// stepping on the caller's goroutine, and a warm step allocates nothing.
func TestOptimizersOnAPool(t *testing.T) {
	pool := tensorcore.NewPool(3)
	defer pool.Close()
	const n = 5*parallelGrain + 123
	for _, o := range []job.Optimizer{
		{Name: "sgd"}, {Name: "sgd", Momentum: 0.9, Nesterov: true, WeightDecay: 1e-4},
		{Name: "adam", WeightDecay: 1e-3}, {Name: "adamw"},
		{Name: "rmsprop", Momentum: 0.5, WeightDecay: 1e-4}, {Name: "sgd", Momentum: 0.9, WeightDecay: 1e-3, NoDecayNormBias: true},
	} {
		run := func(p *tensorcore.Pool) ([]float32, float64) {
			b := NewBuilder(rand.New(rand.NewPCG(1, 2)))
			b.Param("w", []int{n / 3, 3}, Normal(0, 1))
			b.Param("bias", []int{n % 3}, Normal(0, 1))
			a, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			opt, err := NewOptimizer(o, a)
			if err != nil {
				t.Fatal(err)
			}
			UsePool(opt, p)
			step := func() {
				for i := range a.Grad {
					a.Grad[i] = float32(math.Cos(float64(i)))
				}
				opt.Step(0.01)
			}
			for range 3 {
				step()
			}
			return a.Data, testing.AllocsPerRun(2, step)
		}
		want, _ := run(nil)
		got, allocs := run(pool)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: steps on a pool differ from steps on one goroutine", o)
		}
		if allocs != 0 {
			t.Errorf("%+v: a step on a pool allocates %v times", o, allocs)
		}
	}
}
