package job

import (
	"strings"
	"testing"
)

func TestParseOverridesDefaults(t *testing.T) {
	s, err := Parse([]byte("model: mlp\nepochs: 7\noptimizer:\n  name: adam\n  lr: 0.001\n"), "job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Model != "mlp" || s.Epochs != 7 || s.Optimizer.Name != "adam" || s.Optimizer.LR != 0.001 {
		t.Fatalf("parsed %+v", s)
	}
	if s.Dataset != "mnist" || s.BatchSize != 64 {
		t.Fatalf("defaults lost: %+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"modle: lenet5\n", "modle"},
		{"epochs: three\n", "epochs"},
		{"", "empty"},
		{"model: [\n", "job.yaml"},
	} {
		_, err := Parse([]byte(tc.in), "job.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %q", tc.in, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Spec)
		want string
	}{
		{func(s *Spec) { s.Epochs = 0 }, "epochs"},
		{func(s *Spec) { s.BatchSize = -1 }, "batch_size"},
		{func(s *Spec) { s.ImageSize = -1 }, "image_size"},
		{func(s *Spec) { s.LabelSmoothing = 1 }, "label_smoothing"},
		{func(s *Spec) { s.Loss = "hinge" }, "loss"},
		{func(s *Spec) { s.Loss, s.LabelSmoothing = "mse", 0.1 }, "label_smoothing"},
		{func(s *Spec) { s.Accumulate = -2 }, "accumulate"},
		{func(s *Spec) { s.Precision = "fp16" }, "precision"},
		{func(s *Spec) { s.Optimizer.LR = 0 }, "optimizer.lr"},
		{func(s *Spec) { s.Optimizer.Momentum = 1 }, "momentum"},
		{func(s *Spec) { s.Schedule.Name = "zigzag" }, "zigzag"},
		{func(s *Spec) { s.Schedule = Schedule{Name: "step"} }, "step_epochs"},
		{func(s *Spec) { s.MinWorkers, s.MaxWorkers = 4, 2 }, "min_workers"},
		{func(s *Spec) { s.Validation = -1 }, "validation"},
	} {
		s := Default()
		tc.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want an error mentioning %q", err, tc.want)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Fatalf("default spec invalid: %v", err)
	}
}

func TestHash(t *testing.T) {
	a, b := Default(), Default()
	b.Name, b.Threads, b.Workers, b.DataDir = "other", 2, 4, "/data"
	if a.Hash() != b.Hash() {
		t.Fatal("fields that do not change the mathematics changed the hash")
	}
	b.Optimizer.LR = 0.1
	if a.Hash() == b.Hash() {
		t.Fatal("a different learning rate kept the hash")
	}
	c := Default()
	c.TrainLimit = 1000
	if a.Hash() == c.Hash() {
		t.Fatal("a training-set limit kept the hash")
	}
	c = Default()
	c.Validation = 5000
	if a.Hash() == c.Hash() || c.Evaluated() != "validation" || a.Evaluated() != "test" {
		t.Fatal("holding out validation digits kept the hash, or the evaluated split's name")
	}
	// A run may resume under another gradient codec.
	d := Default()
	d.Codec = "bf16"
	if a.Hash() != d.Hash() {
		t.Fatal("the gradient codec changed the hash")
	}
	// The loss changes the mathematics; naming the default does not.
	e := Default()
	e.Loss = "mse"
	if a.Hash() == e.Hash() {
		t.Fatal("loss mse kept the hash")
	}
	e.Loss = "cross_entropy"
	if a.Hash() != e.Hash() {
		t.Fatal("naming the default loss changed the hash")
	}
	e.Distort = true
	if a.Hash() == e.Hash() {
		t.Fatal("distorting the training digits kept the hash")
	}
	// Checkpoints record the hash: it must not change under existing jobs.
	if got := Default().Hash(); got != "9e8bec48e6b39813" {
		t.Fatalf("the default job's hash changed to %s: checkpoints of earlier runs would no longer resume", got)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	s := Default()
	s.Model, s.Schedule.WarmupSteps = "vgg", 100
	out, err := s.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, "rendered")
	if err != nil {
		t.Fatal(err)
	}
	if back.Hash() != s.Hash() || back.Model != "vgg" {
		t.Fatalf("round trip changed the spec:\n%s", out)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("model: lenet5\nepochs: 3\n"))
	f.Add([]byte("optimizer: {name: sgd, lr: 0.1}\n"))
	f.Add([]byte("{\"model\": \"mlp\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		_ = s.Validate()
		_ = s.Hash()
	})
}

func TestClusterSizes(t *testing.T) {
	for _, tc := range []struct {
		batch, workers, min, max int
		per, lo, hi              int
	}{
		{64, 1, 0, 0, 64, 1, 1},
		{64, 4, 0, 0, 16, 4, 4},
		{64, 3, 0, 0, 22, 3, 3},
		{64, 4, 2, 6, 16, 2, 6},
		{64, 4, 5, 0, 16, 5, 5},
		{10, 16, 0, 0, 1, 16, 16},
	} {
		s := Default()
		s.BatchSize, s.Workers, s.MinWorkers, s.MaxWorkers = tc.batch, tc.workers, tc.min, tc.max
		if got := s.BatchPerWorker(); got != tc.per {
			t.Errorf("%+v: BatchPerWorker = %d, want %d", tc, got, tc.per)
		}
		if lo, hi := s.WorkerRange(); lo != tc.lo || hi != tc.hi {
			t.Errorf("%+v: WorkerRange = %d, %d, want %d, %d", tc, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestLinearLRScaling(t *testing.T) {
	s := Default()
	s.Optimizer.LR, s.BatchSize = 0.1, 1024
	if got := s.LR(); got != 0.1 {
		t.Errorf("without scale_lr: LR() = %v, want 0.1", got)
	}
	s.Optimizer.ScaleLR = "linear"
	if got := s.LR(); got != 0.4 {
		t.Errorf("scale_lr linear at batch 1024: LR() = %v, want 0.4", got)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	s.Optimizer.ScaleLR = "sqrt"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), `scale_lr "sqrt" is unknown`) {
		t.Errorf("scale_lr sqrt: %v", err)
	}
}
