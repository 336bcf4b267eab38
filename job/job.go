// Package job defines the job file: the one description of a training run
// (model, data set, optimizer, schedule, batch size, epochs, seed, cluster
// size) that `ringtrain train` runs on a laptop and the coordinator runs on
// a cluster, unchanged. It parses YAML strictly, applies defaults, validates,
// and hashes the fields that make two runs the same job.
package job

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// Spec is a job file. Field names are the YAML keys.
type Spec struct {
	// Name labels the run in logs and metrics.
	Name string `json:"name,omitempty"`
	// Model is a model zoo name (see `ringtrain models`).
	Model string `json:"model"`
	// Dataset is a data set name; "mnist" is the real MNIST.
	Dataset string `json:"dataset"`
	// DataDir is where the data set's files are (or are fetched to).
	DataDir string `json:"data_dir,omitempty"`

	// ImageSize is the side of the square images a sized model (the
	// ImageNet and CIFAR nets: see `ringtrain models`) is built for and
	// the data set is resampled to (0: the model's default, 224 for the
	// ImageNet nets; digit sets keep their 28×28 unless it is smaller).
	ImageSize int `json:"image_size,omitempty"`
	// ZeroInitResidual starts the last BatchNorm gamma of each residual
	// block at 0 (residual models; the large-batch recipe of Goyal et al.
	// 2017).
	ZeroInitResidual bool `json:"zero_init_residual,omitempty"`
	// Shortcut is a residual model's shortcut: projection (the default) or
	// none (a plain net of the same depth).
	Shortcut string `json:"shortcut,omitempty"`
	// InitFrom is a safetensors file of weights to start from instead of
	// the seed's initialization (a PyTorch state_dict, a checkpoint's or an
	// export's model file): fine-tuning. A head trained for another number
	// of classes is started afresh. On a cluster every worker reads it.
	InitFrom string `json:"init_from,omitempty"`
	// Precision is what the products of convolutions and matrix
	// multiplications are computed in: fp32 (the default), or bf16 (their
	// inputs rounded to bfloat16, sums and everything else in fp32, master
	// weights untouched) where the CPU has AVX512_BF16; elsewhere the run
	// says so and computes in fp32.
	Precision string `json:"precision,omitempty"`
	// LabelSmoothing mixes this share of a uniform distribution into the
	// training targets of the cross-entropy (PyTorch's label_smoothing;
	// 0.1 is ImageNet's usual). Evaluation loss is plain cross-entropy.
	LabelSmoothing float64 `json:"label_smoothing,omitempty"`
	// Loss is the training and evaluation loss: cross_entropy (the
	// default: softmax cross-entropy of the model's outputs) or mse (the
	// mean squared error of the outputs against +1 at the label and −1
	// elsewhere, for nets with squashed outputs such as convnet1989).
	Loss string `json:"loss,omitempty"`
	// Distort distorts the training digits at random, anew each epoch,
	// with small planar affine maps (translation, scaling, squeezing,
	// shearing: LeCun et al. 1998's distortions; the digit sets only).
	Distort bool `json:"distort,omitempty"`

	Epochs    int    `json:"epochs"`
	BatchSize int    `json:"batch_size"`
	Seed      uint64 `json:"seed"`

	Optimizer Optimizer `json:"optimizer"`
	Schedule  Schedule  `json:"schedule"`

	// Threads is the number of compute threads (0: all cores).
	Threads int `json:"threads,omitempty"`
	// CheckpointEvery is the number of steps between checkpoints (0: at
	// the end of every epoch only).
	CheckpointEvery int `json:"checkpoint_every,omitempty"`
	// KeepCheckpoints is how many committed checkpoints are kept.
	KeepCheckpoints int `json:"keep_checkpoints,omitempty"`

	// Codec is how gradients travel between workers: fp32 (the default,
	// exact), bf16 or fp16 (half the bytes, rounded to nearest even; every
	// worker still ends each step with bit-identical parameters), each
	// optionally followed by +zstd or +s2 (lossless compression of the
	// frames). Links between workers on one host carry fp32 partial sums
	// whatever the codec; only each segment's final sum is rounded.
	Codec string `json:"codec,omitempty"`
	// Buckets tunes how gradients are all-reduced while backward runs.
	Buckets Buckets `json:"buckets,omitempty"`

	// Accumulate splits each worker's share of a step into this many
	// micro-batches computed one after another, their gradients summed
	// before the all-reduce (0 or 1: none): a small cluster trains at a
	// global batch_size its memory could not hold at once. Like threads,
	// it decides how a step is computed, not what it computes (except
	// that BatchNorm normalizes each micro-batch by its own statistics,
	// as it does each core's slice), so it is not part of the job's hash.
	Accumulate int `json:"accumulate,omitempty"`

	// DataThreads is the number of goroutines that prepare batches ahead
	// of the step (0: one, which keeps the compute threads their cores on
	// the digit sets). Prefetch never changes which samples a step sees.
	DataThreads int `json:"data_threads,omitempty"`

	// Workers is the number of data-parallel workers (1: single process).
	Workers    int `json:"workers,omitempty"`
	MinWorkers int `json:"min_workers,omitempty"`
	MaxWorkers int `json:"max_workers,omitempty"`

	// Validation, when positive, holds out the last that many samples of
	// the training split: the job trains on the rest and evaluates on
	// them in place of the test split, which it never reads (choosing a
	// recipe without looking at the test set).
	Validation int `json:"validation,omitempty"`

	// TrainLimit and TestLimit, when positive, use only the first that
	// many samples of the training set (after any validation hold-out)
	// and of the evaluated set (quick trials).
	TrainLimit int `json:"train_limit,omitempty"`
	TestLimit  int `json:"test_limit,omitempty"`
}

// Evaluated names the split a job evaluates on: "validation" when it holds
// one out of the training split, else "test".
func (s Spec) Evaluated() string {
	if s.Validation > 0 {
		return "validation"
	}
	return "test"
}

// Optimizer names the optimizer and its hyper-parameters.
type Optimizer struct {
	Name        string  `json:"name"`
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum,omitempty"`
	Nesterov    bool    `json:"nesterov,omitempty"`
	WeightDecay float64 `json:"weight_decay,omitempty"`
	// ScaleLR is "" (lr is the rate) or "linear": lr is the rate for a
	// global batch of 256, and the run uses lr × batch_size / 256 (the
	// linear scaling rule of Goyal et al. 2017; ImageNet's ResNet recipe
	// is lr: 0.1 with momentum 0.9, a warm-up of about 5 epochs at large
	// batches, and cosine or step decay).
	ScaleLR string `json:"scale_lr,omitempty"`
	// NoDecayNormBias exempts BatchNorm parameters and biases from weight
	// decay (the usual large-batch recipe).
	NoDecayNormBias bool    `json:"no_decay_norm_bias,omitempty"`
	Beta1           float64 `json:"beta1,omitempty"`
	Beta2           float64 `json:"beta2,omitempty"`
	Eps             float64 `json:"eps,omitempty"`
}

// Schedule is the learning-rate schedule.
type Schedule struct {
	// Name is constant, step or cosine.
	Name string `json:"name"`
	// WarmupSteps ramps the rate linearly from a third of its value up to
	// it over this many steps, then the schedule starts.
	WarmupSteps int `json:"warmup_steps,omitempty"`
	// StepEpochs and Gamma: multiply by Gamma every StepEpochs epochs.
	StepEpochs int     `json:"step_epochs,omitempty"`
	Gamma      float64 `json:"gamma,omitempty"`
	// MinLR is the floor of the cosine schedule.
	MinLR float64 `json:"min_lr,omitempty"`
}

// Buckets groups a model's gradients for the all-reduce: each bucket
// starts its all-reduce as soon as backward has finished every gradient in
// it, so communication overlaps the rest of backward. Sizes are in KiB of
// fp32 gradients.
type Buckets struct {
	// FirstKiB caps the first bucket (the last layers, ready first; 0:
	// 1024); CapKiB every later one (0: 25600).
	FirstKiB int `json:"first_kib,omitempty"`
	CapKiB   int `json:"cap_kib,omitempty"`
	// AfterBackward all-reduces the whole gradient after backward instead
	// (no overlap), for comparison.
	AfterBackward bool `json:"after_backward,omitempty"`
}

// Default returns the spec that `ringtrain train` starts from: LeNet-5 on
// MNIST, 3 epochs of SGD with momentum at batch 64.
func Default() Spec {
	return Spec{
		Model:           "lenet5",
		Dataset:         "mnist",
		Epochs:          3,
		BatchSize:       64,
		Seed:            1,
		Optimizer:       Optimizer{Name: "sgd", LR: 0.02, Momentum: 0.9},
		Schedule:        Schedule{Name: "cosine"},
		KeepCheckpoints: 3,
		Workers:         1,
	}
}

// Parse reads a YAML (or JSON) job file over the defaults. Unknown keys are
// errors, so a typo never silently falls back to a default.
func Parse(data []byte, name string) (Spec, error) {
	s := Default()
	if len(bytes.TrimSpace(data)) == 0 {
		return s, fmt.Errorf("job: %s: empty job file", name)
	}
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return s, fmt.Errorf("job: %s: %v", name, cleanYAMLError(err))
	}
	return s, nil
}

// Load reads and parses a job file.
func Load(path string) (Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, fmt.Errorf("job: %w", err)
	}
	return Parse(data, path)
}

func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
	msg = strings.TrimPrefix(msg, "json: ")
	return msg
}

// Validate checks the spec for values no run can use. Names (model, data
// set, optimizer, codec) are checked by the packages that own them.
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Model == "" {
		bad("model is empty")
	}
	if s.Dataset == "" {
		bad("dataset is empty")
	}
	if s.Epochs < 1 {
		bad("epochs must be at least 1, got %d", s.Epochs)
	}
	if s.BatchSize < 1 {
		bad("batch_size must be at least 1, got %d", s.BatchSize)
	}
	if !(s.Optimizer.LR > 0) {
		bad("optimizer.lr must be positive, got %g", s.Optimizer.LR)
	}
	if s.Optimizer.ScaleLR != "" && s.Optimizer.ScaleLR != "linear" {
		bad("optimizer.scale_lr %q is unknown (linear, or leave it out)", s.Optimizer.ScaleLR)
	}
	if s.Optimizer.Momentum < 0 || s.Optimizer.Momentum >= 1 {
		bad("optimizer.momentum must be in [0, 1), got %g", s.Optimizer.Momentum)
	}
	if s.Optimizer.WeightDecay < 0 {
		bad("optimizer.weight_decay must not be negative, got %g", s.Optimizer.WeightDecay)
	}
	switch s.Schedule.Name {
	case "", "constant", "cosine":
	case "step":
		if s.Schedule.StepEpochs < 1 {
			bad("schedule.step_epochs must be at least 1 for the step schedule")
		}
	default:
		bad("schedule.name %q is unknown (constant, step, cosine)", s.Schedule.Name)
	}
	if s.Schedule.WarmupSteps < 0 {
		bad("schedule.warmup_steps must not be negative")
	}
	if s.ImageSize < 0 {
		bad("image_size must not be negative, got %d", s.ImageSize)
	}
	if s.Precision != "" && s.Precision != "fp32" && s.Precision != "bf16" {
		bad("precision %q is unknown (fp32, bf16)", s.Precision)
	}
	if !(s.LabelSmoothing >= 0 && s.LabelSmoothing < 1) {
		bad("label_smoothing must be in [0, 1), got %g", s.LabelSmoothing)
	}
	if s.Loss != "" && s.Loss != "cross_entropy" && s.Loss != "mse" {
		bad("loss %q is unknown (cross_entropy, mse)", s.Loss)
	} else if s.Loss == "mse" && s.LabelSmoothing != 0 {
		bad("label_smoothing applies to cross_entropy, not loss mse")
	}
	if s.Threads < 0 {
		bad("threads must not be negative, got %d", s.Threads)
	}
	if s.Accumulate < 0 {
		bad("accumulate must not be negative, got %d", s.Accumulate)
	}
	if s.DataThreads < 0 {
		bad("data_threads must not be negative, got %d", s.DataThreads)
	}
	if s.Buckets.FirstKiB < 0 || s.Buckets.CapKiB < 0 {
		bad("buckets.first_kib and buckets.cap_kib must not be negative")
	}
	if s.CheckpointEvery < 0 {
		bad("checkpoint_every must not be negative")
	}
	if s.KeepCheckpoints < 1 {
		bad("keep_checkpoints must be at least 1, got %d", s.KeepCheckpoints)
	}
	if s.TrainLimit < 0 || s.TestLimit < 0 {
		bad("train_limit and test_limit must not be negative")
	}
	if s.Validation < 0 {
		bad("validation must not be negative, got %d", s.Validation)
	}
	if s.Workers < 1 {
		bad("workers must be at least 1, got %d", s.Workers)
	}
	if s.MinWorkers < 0 || s.MaxWorkers < 0 || (s.MaxWorkers > 0 && s.MinWorkers > s.MaxWorkers) {
		bad("min_workers %d and max_workers %d do not make a range", s.MinWorkers, s.MaxWorkers)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("job: %w", err)
	}
	return nil
}

// Hash identifies the job: two processes with the same hash train the same
// model on the same data with the same hyper-parameters, so a worker may
// join the other's cluster and a checkpoint of one may resume the other.
// Fields that do not change the mathematics (name, data directory, threads,
// data threads, checkpoint cadence, cluster size) are left out, and so are
// the gradient buckets (they decide how the sum is split on the wire), and so is the gradient
// codec: it only rounds the sums, a run may resume under another one, and
// the workers of a ring all take the coordinator's.
func (s Spec) Hash() string {
	key := struct {
		Model, Dataset string
		Epochs         int
		BatchSize      int
		Seed           uint64
		Optimizer      Optimizer
		Schedule       Schedule
		// Limits change which data is seen; omitted when unset, so the
		// hashes of jobs without them stay what they were.
		TrainLimit int `json:",omitempty"`
		TestLimit  int `json:",omitempty"`
		Validation int `json:",omitempty"`
		// The model's shape and the loss, omitted when unset likewise.
		ImageSize        int     `json:",omitempty"`
		ZeroInitResidual bool    `json:",omitempty"`
		Shortcut         string  `json:",omitempty"`
		LabelSmoothing   float64 `json:",omitempty"`
		InitFrom         string  `json:",omitempty"`
		Precision        string  `json:",omitempty"`
		Loss             string  `json:",omitempty"`
		Distort          bool    `json:",omitempty"`
	}{s.Model, s.Dataset, s.Epochs, s.BatchSize, s.Seed, s.Optimizer, s.Schedule, s.TrainLimit, s.TestLimit, s.Validation,
		s.ImageSize, s.ZeroInitResidual, s.Shortcut, s.LabelSmoothing, s.InitFrom, s.Precision, lossKey(s.Loss), s.Distort}
	b, _ := json.Marshal(key) // a struct of plain values always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// lossKey is the loss as the hash sees it: cross_entropy is the default,
// so naming it keeps the hash of the jobs that do not.
func lossKey(loss string) string {
	if loss == "cross_entropy" {
		return ""
	}
	return loss
}

// LR is the learning rate the run starts its schedule from: optimizer.lr,
// scaled by batch_size/256 under scale_lr: linear.
func (s Spec) LR() float64 {
	if s.Optimizer.ScaleLR == "linear" {
		return s.Optimizer.LR * float64(s.BatchSize) / 256
	}
	return s.Optimizer.LR
}

// DefaultName is the name of a job whose file gives none.
const DefaultName = "ringtrain"

// JobName is the job's name where it names things: its etcd keys
// (/ringtrain/<name>/…) and its checkpoint store (<store>/<name>/). It is
// Name, or DefaultName when the job has none.
func (s Spec) JobName() string {
	if s.Name == "" {
		return DefaultName
	}
	return s.Name
}

// YAML renders the spec as a job file.
func (s Spec) YAML() ([]byte, error) {
	return yaml.Marshal(s)
}

// BatchPerWorker is the most samples a worker of a full ring computes per
// step: the global batch_size dealt over the job's workers, rounded up.
// Every step takes batch_size samples whatever the ring's size; a smaller
// ring deals each worker more.
func (s Spec) BatchPerWorker() int {
	w := max(s.Workers, 1)
	return (s.BatchSize + w - 1) / w
}

// WorkerRange returns how many workers the ring needs to run (min_workers,
// default workers) and admits at most (max_workers, default workers, never
// below the minimum).
func (s Spec) WorkerRange() (lo, hi int) {
	lo, hi = s.MinWorkers, s.MaxWorkers
	if lo == 0 {
		lo = max(s.Workers, 1)
	}
	if hi == 0 {
		hi = max(s.Workers, 1)
	}
	return lo, max(hi, lo)
}
