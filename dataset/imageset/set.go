package imageset

import (
	"fmt"
	"slices"
	"sync"
)

// source is random access to the encoded samples of one split.
type source interface {
	len() int
	// read returns sample i's encoded image, in buf when it fits, and its
	// label; errors name the file (and the member) it was read from.
	read(i int, buf []byte) (data []byte, label int, err error)
	// where names sample i in errors: its file, or its shard and member.
	where(i int) string
}

// Set is one split of an image data set: encoded images, each labelled
// with one of its classes, that Fill decodes and transforms. Its methods
// may be called from any number of goroutines at once.
type Set struct {
	src       source
	classes   []string
	maxPixels int
	scratch   sync.Pool // of *scratch
}

func newSet(src source, classes []string) *Set {
	return &Set{src: src, classes: classes, maxPixels: MaxPixels}
}

// Len returns the number of samples.
func (s *Set) Len() int { return s.src.len() }

// Classes returns the class names, in label order (label k is the k-th).
func (s *Set) Classes() []string { return slices.Clone(s.classes) }

// Fill writes samples idx, decoded and transformed by p, into x
// (len(idx)·3·p.H·p.W floats, NCHW, normalized with ImageNet's mean and
// standard deviation) and their labels into y. Arguments are checked
// before anything is read; a sample that cannot be read or decoded fails
// the call with an error naming its file (and member), after the samples
// before it are written. Working memory is reused across calls.
func (s *Set) Fill(x []float32, y []int, idx []int, p Params) error {
	if p.H < 1 || p.W < 1 {
		return fmt.Errorf("imageset: output size %d×%d is empty", p.W, p.H)
	}
	out := 3 * p.H * p.W
	if len(x) < len(idx)*out || len(y) < len(idx) {
		return fmt.Errorf("imageset: Fill of %d samples of 3×%d×%d needs %d floats and %d labels, got %d and %d",
			len(idx), p.H, p.W, len(idx)*out, len(idx), len(x), len(y))
	}
	n := s.src.len()
	for k, i := range idx {
		if i < 0 || i >= n {
			return fmt.Errorf("imageset: index %d (position %d of %d) outside [0, %d)", i, k, len(idx), n)
		}
	}
	sc, _ := s.scratch.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	defer s.scratch.Put(sc)
	for k, i := range idx {
		label, err := s.sample(x[k*out:(k+1)*out], i, p, sc)
		if err != nil {
			return err
		}
		y[k] = label
	}
	return nil
}

// sample writes sample i, transformed by p, into dst and returns its label.
func (s *Set) sample(dst []float32, i int, p Params, sc *scratch) (int, error) {
	data, label, err := s.src.read(i, sc.data[:0])
	if err != nil {
		return 0, err
	}
	if cap(data) > cap(sc.data) {
		sc.data = data[:0]
	}
	if label < 0 || label >= len(s.classes) {
		return 0, fmt.Errorf("imageset: %s: label %d outside the %d classes", s.src.where(i), label, len(s.classes))
	}
	img, err := Decode(data, s.maxPixels)
	if err != nil {
		return 0, fmt.Errorf("imageset: %s: %w", s.src.where(i), err)
	}
	if err := transform(dst, img, p, i, sc); err != nil {
		return 0, fmt.Errorf("imageset: %s: %w", s.src.where(i), err)
	}
	return label, nil
}
