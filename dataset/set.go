package dataset

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Shape is the shape of one sample: channels, height, width. A Set of
// images of varying sizes (the image sets) has H = W = 0: its transform
// makes inputs of any size.
type Shape struct{ C, H, W int }

// Size returns C·H·W, the number of floats of one sample.
func (s Shape) Size() int { return s.C * s.H * s.W }

// String returns "C×H×W".
func (s Shape) String() string { return fmt.Sprintf("%d×%d×%d", s.C, s.H, s.W) }

// Transform is how stored samples become a model's input.
type Transform struct {
	Out   Shape // the model's input shape
	Train bool  // training-time augmentation (none for the digit sets)
	// With Train, augmentation randomness is a pure function of (Seed,
	// Epoch, sample index), so a resumed or re-sharded run sees the same
	// inputs.
	Seed  uint64
	Epoch int
	// Distort, with Train, distorts each digit at random (the digit sets
	// only; other sets ignore it). Its zero value distorts nothing.
	Distort Distortion
}

// Set is one split of a labelled data set, the seam the training engine
// reads samples through.
//
// Fill may be called concurrently from several goroutines with distinct
// destinations (input pipelines prefetch on their own goroutines); the
// other methods return constants.
type Set interface {
	Name() string // "mnist", "fashion-mnist", "synthetic"
	Len() int
	Classes() int
	Shape() Shape // as stored
	// Fill writes samples idx, transformed by tf, into x (len(idx)·
	// tf.Out.Size() floats, NCHW, normalized) and their labels into y
	// (len(idx)). It fails (never panics) on an index out of range or
	// buffers too short; CheckTransform's conditions are checked too.
	Fill(x []float32, y []int, idx []int, tf Transform) error
}

// CheckTransform reports whether s can produce inputs of shape out: the
// same channel count and out no larger than stored (a smaller out is
// area-resampled, as the 1990 ConvNet's 16×16 digits are made from MNIST's
// 28×28); a set of varying sizes (stored H = W = 0) makes any size. Errors
// say what the model wants and what the set gives.
func CheckTransform(s Set, out Shape) error {
	in := s.Shape()
	switch {
	case out.C < 1 || out.H < 1 || out.W < 1:
		return fmt.Errorf("dataset: the model wants %v input, which is empty; %s gives %v images", out, s.Name(), in)
	case out.C != in.C:
		return fmt.Errorf("dataset: the model wants %v input (%d channels); %s gives %v images (%d channels)",
			out, out.C, s.Name(), in, in.C)
	case in.H == 0 && in.W == 0:
	case out.H > in.H || out.W > in.W:
		return fmt.Errorf("dataset: the model wants %v input; %s gives %v images, which are resampled down, never up",
			out, s.Name(), in)
	}
	return nil
}

// checkFill checks Fill's arguments for s: the transform, the buffers'
// lengths and every index, before anything is written.
func checkFill(s Set, x []float32, y []int, idx []int, tf Transform) error {
	if err := CheckTransform(s, tf.Out); err != nil {
		return err
	}
	if need := len(idx) * tf.Out.Size(); len(x) < need {
		return fmt.Errorf("dataset: %s: Fill of %d samples of %v needs x of %d floats, got %d", s.Name(), len(idx), tf.Out, need, len(x))
	}
	if len(y) < len(idx) {
		return fmt.Errorf("dataset: %s: Fill of %d samples needs y of %d labels, got %d", s.Name(), len(idx), len(idx), len(y))
	}
	return checkIndices(s.Name(), idx, s.Len())
}

// checkIndices checks that every index is in [0, n).
func checkIndices(name string, idx []int, n int) error {
	for k, i := range idx {
		if i < 0 || i >= n {
			return fmt.Errorf("dataset: %s: index %d (position %d of %d) outside [0, %d)", name, i, k, len(idx), n)
		}
	}
	return nil
}

// Head returns s limited to its first n samples (s itself when n <= 0 or
// n >= s.Len()).
func Head(s Set, n int) Set {
	if n <= 0 || n >= s.Len() {
		return s
	}
	return Span(s, 0, n)
}

// Holdout splits off the last n samples of s: rest is the first
// s.Len() − n, held the last n, each numbered from 0. It is how a job holds
// out a validation set from its training split. n must be in [1, s.Len()).
func Holdout(s Set, n int) (rest, held Set, err error) {
	if n < 1 || n >= s.Len() {
		return nil, nil, fmt.Errorf("dataset: %s: cannot hold out %d of %d samples (want 1 to %d)", s.Name(), n, s.Len(), s.Len()-1)
	}
	return Span(s, 0, s.Len()-n), Span(s, s.Len()-n, s.Len()), nil
}

// Span returns samples [lo, hi) of s, numbered from 0; the range is
// clipped to s. A span of a span is one span of the underlying set, so
// sample identity (which seeds augmentation) is that of the stored set.
func Span(s Set, lo, hi int) Set {
	lo, hi = max(lo, 0), min(hi, s.Len())
	hi = max(hi, lo)
	if lo == 0 && hi == s.Len() {
		return s
	}
	if sp, ok := s.(subset); ok {
		s, lo, hi = sp.Set, sp.lo+lo, sp.lo+hi
	}
	return subset{Set: s, lo: lo, n: hi - lo}
}

// subset is samples [lo, lo+n) of a Set.
type subset struct {
	Set
	lo, n int
}

func (h subset) Len() int { return h.n }

func (h subset) Fill(x []float32, y []int, idx []int, tf Transform) error {
	if err := checkIndices(h.Name(), idx, h.n); err != nil {
		return err
	}
	if h.lo != 0 {
		shifted := make([]int, len(idx))
		for k, i := range idx {
			shifted[k] = h.lo + i
		}
		idx = shifted
	}
	return h.Set.Fill(x, y, idx, tf)
}

// The data sets Open knows, sorted.
var names = []string{"fashion-mnist", "mnist", "synthetic"}

// Names lists the data sets Open knows, sorted.
func Names() []string { return slices.Clone(names) }

// CheckName returns nil if Open knows name, else an error naming it and the
// valid choices. Besides Names, Open knows imagefolder:DIR and shards:DIR
// for any non-empty DIR (whose files it reads only when opened).
func CheckName(name string) error {
	if slices.Contains(names, name) {
		return nil
	}
	if prefix, dir, ok := imageSetDir(name); ok {
		if dir == "" {
			return fmt.Errorf("dataset: data set %q names no directory (want %sDIR)", name, prefix)
		}
		return nil
	}
	return fmt.Errorf("dataset: unknown data set %q (known: %s, %sDIR, %sDIR)", name, strings.Join(names, ", "), ImageFolderPrefix, ShardsPrefix)
}

// Sizes of the training splits (the files are pinned by checksum, so they
// never vary).
const (
	MNISTTrainSize        = 60000
	FashionMNISTTrainSize = 60000
)

// TrainSamples returns the number of training samples of the named data
// set that a job trains on: the training split less its last holdout
// samples (held out for validation), then limited to limit when limit is
// positive. It is what a coordinator shards without loading the data. An
// image set's samples are counted from its folders or its shards' indexes
// (indexing any shard that has none).
func TrainSamples(name string, holdout, limit int) (int, error) {
	var n int
	if prefix, dir, ok := imageSetDir(name); ok && dir != "" {
		s, err := openImages(context.Background(), name, prefix, dir, "train", nil)
		if err != nil {
			return 0, err
		}
		n = s.Len()
	} else {
		switch name {
		case "mnist":
			n = MNISTTrainSize
		case "fashion-mnist":
			n = FashionMNISTTrainSize
		case "synthetic":
			n = SyntheticTrainSize
		default:
			return 0, CheckName(name)
		}
	}
	if holdout < 0 || (holdout > 0 && holdout >= n) {
		return 0, fmt.Errorf("dataset: %s: cannot hold out %d of %d training samples (want 1 to %d)", name, holdout, n, n-1)
	}
	n -= holdout
	if limit > 0 {
		n = min(n, limit)
	}
	return n, nil
}

// Open returns split ("train" or "test") of the named data set. dir is
// where its files are ("" = DefaultDataDir()/<name>); an image set's name
// holds its directory (imagefolder:DIR, shards:DIR), and dir is unused. For mnist and
// fashion-mnist, missing files are first put in place (EnsureMNIST,
// EnsureFashionMNIST), then every file is verified against its pinned
// SHA-256, then the split is parsed strictly. The synthetic set has no
// files: it is generated (see NewSynthetic). logf, if not nil, receives
// one-line notices.
func Open(ctx context.Context, name, dir, split string, logf func(string, ...any)) (Set, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if split != "train" && split != "test" {
		return nil, fmt.Errorf("dataset: %s: unknown split %q (want \"train\" or \"test\")", name, split)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if prefix, imageDir, ok := imageSetDir(name); ok {
		return openImages(ctx, name, prefix, imageDir, split, logf)
	}
	if name == "synthetic" {
		if split == "train" {
			return NewSynthetic(SyntheticTrainSeed, SyntheticTrainSize), nil
		}
		return NewSynthetic(SyntheticTestSeed, SyntheticTestSize), nil
	}
	if dir == "" {
		dir = filepath.Join(DefaultDataDir(), name)
	}
	if err := Ensure(ctx, name, dir, logf); err != nil {
		return nil, err
	}
	if name == "mnist" {
		return LoadMNIST(dir, split)
	}
	return LoadFashionMNIST(dir, split)
}
