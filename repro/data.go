package repro

import (
	"context"
	"fmt"

	"github.com/ringtrain/ringtrain/dataset"
)

// mnistSplits opens the real MNIST's training and test splits from
// env.DataDir (fetched and verified there, or in the cache, if missing).
func mnistSplits(ctx context.Context, env *Env) (train, test dataset.Set, err error) {
	if train, err = dataset.Open(ctx, "mnist", env.DataDir, "train", env.Logf); err != nil {
		return nil, nil, err
	}
	if test, err = dataset.Open(ctx, "mnist", env.DataDir, "test", env.Logf); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// mnistImages is mnistSplits for experiments that read the digits' pixels
// directly (*dataset.MNIST).
func mnistImages(ctx context.Context, env *Env) (train, test *dataset.MNIST, err error) {
	trainSet, testSet, err := mnistSplits(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	train, ok1 := trainSet.(*dataset.MNIST)
	test, ok2 := testSet.(*dataset.MNIST)
	if !ok1 || !ok2 {
		return nil, nil, fmt.Errorf("mnist: unexpected set types %T, %T", trainSet, testSet)
	}
	return train, test, nil
}
