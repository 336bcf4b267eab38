// Package imageset reads image classification data sets of JPEG and PNG
// files and turns their samples into a model's float32 input.
//
// Two layouts are read. An image folder is ImageNet's own:
// DIR/train/<class>/<file> and DIR/val, either in class folders or flat
// with a label file (see OpenFolder). Shards are WebDataset-compatible
// POSIX tar files DIR/train-000000.tar, … whose members <key>.jpg (or
// .png), <key>.cls and an optional <key>.json form one sample, each with a
// sidecar index (see Index) so that a shard's length is known without a
// scan and any sample is one ranged read (see OpenShards). Pack writes
// shards from an image folder, with a manifest of every shard's SHA-256
// (Verify checks it), and Synth writes a learnable image folder of real
// JPEGs for tests.
//
// A Set's Fill decodes samples with the standard library's image/jpeg and
// image/png (the format is sniffed from the bytes, so a PNG named .JPEG
// is read; CMYK JPEGs and grey images become RGB; 4:2:0 and 4:2:2 chroma
// is upsampled as libjpeg and so Pillow do, within 3 levels of djpeg's
// output), refusing any image whose
// header claims more than MaxPixels before decoding it, and writes them
// through one of two transforms straight into a float32 NCHW batch,
// normalized with ImageNet's per-channel mean and standard deviation:
//
//   - training: torchvision's RandomResizedCrop (scale 0.08–1, aspect
//     3/4–4/3 log-uniform, ten tries then a centre crop) to the output
//     size and a horizontal flip with probability 1/2, drawn from a
//     generator that is a pure function of (seed, epoch, sample index);
//   - evaluation: torchvision's Resize then CenterCrop, the short side
//     resized to 256/224 of the output's (256 for 224) and the centre
//     cropped.
//
// Resampling is Pillow's antialiased bilinear filter (a triangle whose
// support grows with the downscale factor), in Pillow's 8-bit fixed-point
// arithmetic, horizontal pass first: the evaluation transform agrees with
// torchvision on Pillow to the last bit of every 8-bit pixel (see
// testdata/README.md).
//
// The package knows nothing of the training engine: package dataset wraps
// a Set as its dataset.Set under the names imagefolder:DIR and shards:DIR.
package imageset
