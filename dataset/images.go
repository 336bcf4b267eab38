package dataset

import (
	"context"
	"fmt"
	"strings"

	"github.com/ringtrain/ringtrain/dataset/imageset"
)

// The prefixes of the image data sets' names: imagefolder:DIR is an image
// folder in ImageNet's layout (imageset.OpenFolder), shards:DIR a set of
// tar shards with indexes (imageset.OpenShards). Their train split is
// train/ (train-*.tar), their test split val/ (val-*.tar).
const (
	ImageFolderPrefix = "imagefolder:"
	ShardsPrefix      = "shards:"
)

// imageSetDir returns the directory of an image data set's name, and
// whether the name is one.
func imageSetDir(name string) (prefix, dir string, ok bool) {
	for _, p := range []string{ImageFolderPrefix, ShardsPrefix} {
		if d, found := strings.CutPrefix(name, p); found {
			return p, d, true
		}
	}
	return "", "", false
}

// openImages opens split of the image data set name (prefix and dir).
func openImages(ctx context.Context, name, prefix, dir, split string, logf func(string, ...any)) (Set, error) {
	var s *imageset.Set
	var err error
	if prefix == ImageFolderPrefix {
		s, err = imageset.OpenFolder(dir, split)
	} else {
		s, err = imageset.OpenShards(ctx, dir, split, logf)
	}
	if err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	return &images{set: s, name: name, classes: len(s.Classes())}, nil
}

// images is an image data set behind the Set seam. Its images have
// varying sizes, so its Shape is 3×0×0: any output size is made by the
// transform. Training inputs are torchvision's RandomResizedCrop and a
// flip, evaluation inputs its Resize and CenterCrop (see imageset), both
// normalized with ImageNet's mean and standard deviation.
type images struct {
	set     *imageset.Set
	name    string
	classes int
}

func (s *images) Name() string { return s.name }
func (s *images) Len() int     { return s.set.Len() }
func (s *images) Classes() int { return s.classes }
func (s *images) Shape() Shape { return Shape{C: 3} }

func (s *images) Fill(x []float32, y []int, idx []int, tf Transform) error {
	if err := checkFill(s, x, y, idx, tf); err != nil {
		return err
	}
	err := s.set.Fill(x, y, idx, imageset.Params{H: tf.Out.H, W: tf.Out.W, Train: tf.Train, Seed: tf.Seed, Epoch: tf.Epoch})
	if err != nil {
		return fmt.Errorf("dataset: %s: %w", s.name, err)
	}
	return nil
}
