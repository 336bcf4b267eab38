package models

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// wantParams is the number of trainable scalars of each zoo model.
var wantParams = map[string]int{
	"mlp":         784*300 + 300 + 300*100 + 100 + 100*10 + 10, // 266,610
	"mlp800":      784*800 + 800 + 800*10 + 10,                 // 636,010
	"lenet1":      (4*25 + 4) + (12*4*25 + 12) + (192*10 + 10), // 3,246
	"lenet5":      61706,
	"lenet5-1998": 61706,
	"convnet1990": (4*25 + 4) + (12*4*25 + 12) + (10*12*16 + 10), // 3,246
	// The 1989 paper's 9,760 free parameters: per-unit biases in H1, H2.
	"convnet1989": (12*25 + 12*8*8) + (12*8*25 + 12*4*4) + (192*30 + 30) + (30*10 + 10),
	// The 1998 paper's counts (C1 156, S2 12, C3 1,516, S4 32, C5 48,120,
	// F6 10,164) and a linear output for the RBF layer: 60,850.
	"lenet5-paper": 156 + 12 + 1516 + 32 + 48120 + 10164 + 850,
	"vgg":          9*(32+32*32+32*64+64*64) + 2*(32+32+64+64) + (3136*128 + 128) + (128*10 + 10),
	"resnet8": 16*9 + 32 + // stem
		2*(16*16*9+32) + // layer1
		(16*32*9 + 64 + 32*32*9 + 64 + 16*32 + 64) + // layer2
		(32*64*9 + 128 + 64*64*9 + 128 + 32*64 + 128) + // layer3
		64*10 + 10,
	"convnet64":    9*(3*16+16*32+32*64+64*64) + 2*(16+32+64+64) + 64*10 + 10,     // 61,338
	"convnet64-1k": 9*(3*16+16*32+32*64+64*64) + 2*(16+32+64+64) + 64*1000 + 1000, // 125,688
	// The ImageNet nets at their defaults: torchvision's counts.
	"resnet18": 11689512,
	"resnet34": 21797672,
	"resnet50": 25557032,
	"vgg11_bn": 132868840,
	"vgg16_bn": 138365992,
	"alexnet":  61100840,
	// The CIFAR nets with projection shortcuts (He et al.'s option B).
	"resnet20": cifarParams(3),
	"resnet56": cifarParams(9),
}

// cifarParams counts the parameters of the CIFAR ResNet with n blocks per
// stage at 3×32×32 and 10 classes.
func cifarParams(n int) int {
	p := 16*3*9 + 2*16 // stem
	in := 16
	for stage := range 3 {
		w := 16 << stage
		for i := range n {
			p += in*w*9 + 2*w + w*w*9 + 2*w
			if in != w {
				p += in*w + 2*w
			}
			in = w
			_ = i
		}
	}
	return p + 64*10 + 10
}

// smallConfig is what TestZooModels builds a sized model for: 10 classes
// and the smallest colour input the model takes without strain, so that
// the 224-pixel nets train a few steps in a test.
func smallConfig(name string) Config {
	switch name {
	case "resnet20", "resnet56", "vgg11_bn", "vgg16_bn":
		return Config{Classes: 10, Input: []int{3, 32, 32}}
	}
	return Config{Classes: 10, Input: []int{3, 64, 64}}
}

func TestZooNames(t *testing.T) {
	names := Names()
	if len(names) != len(wantParams) {
		t.Errorf("Names() = %v", names)
	}
	for _, n := range names {
		if _, ok := wantParams[n]; !ok {
			t.Errorf("model %q has no expected parameter count", n)
		}
		if About(n) == "" {
			t.Errorf("model %q has no description", n)
		}
	}
	_, err := Build("lenet7", 1)
	if err == nil || !strings.Contains(err.Error(), "lenet5-1998") || !strings.HasPrefix(err.Error(), "models: unknown model") {
		t.Errorf("Build(lenet7) error = %v", err)
	}
}

func randomBatch(m *Model, n int, seed uint64) (*tensorcore.Tensor, []int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := tensorcore.New(append([]int{n}, m.InputShape...)...)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = rng.IntN(m.NumClasses)
	}
	return x, labels
}

// Describe counts what Build builds, at every model's default size (the
// ImageNet nets are built at theirs by TestTorchvisionStateDicts).
func TestZooParamCounts(t *testing.T) {
	for _, name := range Names() {
		n, in, err := Describe(name, Config{})
		if err != nil || n != wantParams[name] {
			t.Errorf("Describe(%s) = %d, %v, %v; want %d parameters", name, n, in, err, wantParams[name])
		}
		if in[1] >= 224 {
			continue
		}
		m, err := Build(name, 42)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Arena.NumParams(); got != n || !slices.Equal(in, m.InputShape) {
			t.Errorf("%s: built with %d parameters for %v; Describe says %d for %v", name, got, m.InputShape, n, in)
		}
	}
}

func TestZooModels(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			var cfg Config
			if Sized(name) {
				cfg = smallConfig(name)
			}
			m, err := BuildFor(name, 42, cfg)
			if err != nil {
				t.Fatal(err)
			}
			classes := 10
			if strings.HasSuffix(name, "-1k") {
				classes = 1000
			}
			if m.Name != name || m.NumClasses != classes || len(m.InputShape) != 3 {
				t.Errorf("model header %q %d %v", m.Name, m.NumClasses, m.InputShape)
			}
			off := 0
			for _, p := range m.Arena.Params {
				if p.Offset != off {
					t.Errorf("%s at offset %d, want %d", p.Name, p.Offset, off)
				}
				off += p.Len()
			}

			// Same seed, same parameters; another seed, others.
			m2, _ := BuildFor(name, 42, cfg)
			m3, _ := BuildFor(name, 43, cfg)
			same, differ := true, false
			for i := range m.Arena.Data {
				same = same && m.Arena.Data[i] == m2.Arena.Data[i]
				differ = differ || m.Arena.Data[i] != m3.Arena.Data[i]
			}
			if !same || !differ {
				t.Errorf("seeding: same seed identical %v, other seed differs %v", same, differ)
			}

			// Forward shapes, in evaluation and training.
			x, labels := randomBatch(m, 6, 7)
			tp := tensorcore.NewTape(nil)
			for _, training := range []bool{false, true} {
				tp.Reset()
				out := m.Forward(tp, tp.Const(x), training)
				if !slices.Equal(out.Value.Shape, []int{6, classes}) {
					t.Fatalf("training=%v: logits shape %v, want [6 %d]", training, out.Value.Shape, classes)
				}
				if tensorcore.HasNaNOrInf(out.Value.Data) {
					t.Fatalf("training=%v: logits not finite", training)
				}
			}

			// A few SGD steps on one fixed batch lower its loss (with the
			// same dropout mask each step, so the objective stays fixed).
			opt, _ := NewSGD(m.Arena.Data, m.Arena.Grad, SGDConfig{Momentum: 0.9})
			lr := float32(0.05)
			if Sized(name) && name != "alexnet" {
				lr = 0.002 // deep nets with BatchNorm on a batch of 6 (0.01 sends ResNet-50 up and down chaotically)
			}
			var first, last float32
			for step := 0; step < 8; step++ {
				m.RNG = rand.New(rand.NewPCG(1, 2))
				tp.Reset()
				m.Arena.ZeroGrad()
				loss := CrossEntropy(tp, m.Forward(tp, tp.Const(x), true), labels)
				tp.Backward(loss)
				opt.Step(lr)
				if step == 0 {
					first = loss.Value.Data[0]
				}
				last = loss.Value.Data[0]
			}
			if !(last < 0.9*first) {
				t.Errorf("loss %v → %v after 8 steps, want a drop of 10%%", first, last)
			}
		})
	}
}

// Training from the same seed on the same batches is bit-identical.
func TestZooTrainingDeterministic(t *testing.T) {
	run := func() []float32 {
		m, err := Build("vgg", 5)
		if err != nil {
			t.Fatal(err)
		}
		x, labels := randomBatch(m, 4, 9)
		opt, _ := NewAdam(m.Arena.Data, m.Arena.Grad, DefaultAdam())
		tp := tensorcore.NewTape(nil)
		for step := 0; step < 3; step++ {
			tp.Reset()
			m.Arena.ZeroGrad()
			tp.Backward(CrossEntropy(tp, m.Forward(tp, tp.Const(x), true), labels))
			opt.Step(1e-3)
		}
		return append(append([]float32(nil), m.Arena.Data...), m.Arena.Buffers...)
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("runs differ at %d: %v vs %v", i, a[i], b[i])
		}
	}
}

// Once warm, a whole training step (forward, loss, backward, optimizer)
// allocates nothing.
func TestTrainingStepAllocatesNothing(t *testing.T) {
	for _, name := range []string{"lenet5", "vgg", "lenet5-paper", "convnet1989"} {
		m, err := Build(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		x, labels := randomBatch(m, 2, 3)
		opt, _ := NewSGD(m.Arena.Data, m.Arena.Grad, SGDConfig{Momentum: 0.9})
		tp := tensorcore.NewTape(nil)
		step := func() {
			tp.Reset()
			m.Arena.ZeroGrad()
			tp.Backward(CrossEntropy(tp, m.Forward(tp, tp.Const(x), true), labels))
			opt.Step(0.01)
		}
		step()
		if n := testing.AllocsPerRun(3, step); n != 0 {
			t.Errorf("%s: a training step allocates %v times", name, n)
		}
	}
}

// BenchmarkTrainStep times one training step (forward, cross-entropy,
// backward, SGD with momentum) at batch 64 on a GOMAXPROCS pool.
func BenchmarkTrainStep(b *testing.B) {
	for _, name := range []string{"lenet5", "mlp", "lenet5-1998", "lenet1", "convnet1990"} {
		b.Run(name, func(b *testing.B) {
			m, err := Build(name, 1)
			if err != nil {
				b.Fatal(err)
			}
			x, labels := randomBatch(m, 64, 3)
			opt, _ := NewSGD(m.Arena.Data, m.Arena.Grad, SGDConfig{Momentum: 0.9})
			pool := tensorcore.NewPool(0)
			defer pool.Close()
			tp := tensorcore.NewTape(pool)
			step := func() {
				tp.Reset()
				m.Arena.ZeroGrad()
				tp.Backward(CrossEntropy(tp, m.Forward(tp, tp.Const(x), true), labels))
				opt.Step(0.01)
			}
			step() // the tape allocates its buffers on the first step
			b.ReportAllocs()
			for b.Loop() {
				step()
			}
			b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "img/s")
		})
	}
}

func TestReplicaSharesValuesNotGradients(t *testing.T) {
	for _, name := range []string{"lenet5", "vgg"} {
		m, err := Build(name, 3)
		if err != nil {
			t.Fatal(err)
		}
		r, err := m.Replica(3, 1)
		if err != nil {
			t.Fatal(err)
		}
		if &r.Arena.Data[0] != &m.Arena.Data[0] || &r.Arena.Grad[0] == &m.Arena.Grad[0] {
			t.Fatalf("%s: replica must share Data and own Grad", name)
		}
		if len(m.Arena.Buffers) > 0 && &r.Arena.Buffers[0] == &m.Arena.Buffers[0] {
			t.Fatalf("%s: replica shares buffers", name)
		}
		x := tensorcore.New(2, 1, 28, 28)
		for i := range x.Data {
			x.Data[i] = float32(i%13) / 13
		}
		logits := func(mm *Model) []float32 {
			tp := tensorcore.NewTape(nil)
			out := mm.Forward(tp, tp.Const(x), false)
			loss := tp.CrossEntropy(out, []int{1, 2})
			mm.Arena.ZeroGrad()
			tp.Backward(loss)
			return append([]float32(nil), out.Value.Data...)
		}
		want, got := logits(m), logits(r)
		for i := range want {
			if want[i] != got[i] {
				t.Fatalf("%s: replica logit %d = %v, model %v", name, i, got[i], want[i])
			}
		}
		for i := range m.Arena.Grad {
			if m.Arena.Grad[i] != r.Arena.Grad[i] {
				t.Fatalf("%s: gradient %d differs between model and replica", name, i)
			}
		}
		m.Arena.Data[0] += 1 // an update of the model is seen by the replica
		if r.Arena.Value(m.Arena.Params[0].Name).Data[0] != m.Arena.Data[0] {
			t.Fatalf("%s: replica does not see the model's update", name)
		}
	}
}
