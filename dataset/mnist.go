package dataset

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MNIST image geometry and the normalization used by the reference
// training recipes: x' = (x/255 − MNISTMean) / MNISTStd.
const (
	MNISTRows = 28
	MNISTCols = 28
	MNISTMean = 0.1307
	MNISTStd  = 0.3081
)

// MNIST is one split of the MNIST digits held in memory.
type MNIST struct {
	N, Rows, Cols int
	Pixels        []uint8 // (N, Rows, Cols), row-major, 0 = background
	Labels        []uint8 // (N), each 0..9
}

// mnistNorm maps a pixel byte to its normalized float32 value, computed in
// float64 and rounded once. Read-only after package initialization.
var mnistNorm = func() (t [256]float32) {
	for i := range t {
		t[i] = float32((float64(i)/255 - MNISTMean) / MNISTStd)
	}
	return t
}()

// NormalizePixel returns the normalized value of one MNIST pixel byte,
// float32((p/255 − 0.1307)/0.3081).
func NormalizePixel(p uint8) float32 { return mnistNorm[p] }

// mnistFileNames returns the image and label file names of a split.
func mnistFileNames(split string) (images, labels string, err error) {
	switch split {
	case "train":
		return "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", nil
	case "test":
		return "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", nil
	}
	return "", "", fmt.Errorf("dataset: unknown MNIST split %q (want \"train\" or \"test\")", split)
}

// LoadMNIST reads one split ("train" or "test") of MNIST from dir, which
// holds the standard file names (train-images-idx3-ubyte.gz, …); a file
// without the .gz suffix is used when the gzipped one is absent. It does not
// verify checksums (see VerifyMNIST), but parses strictly: wrong magic,
// wrong image size, labels outside 0..9, a label/image count mismatch,
// truncation and trailing data are errors naming the file.
func LoadMNIST(dir, split string) (*MNIST, error) {
	imgName, lblName, err := mnistFileNames(split)
	if err != nil {
		return nil, err
	}
	imgPath, err := findMaybeGz(dir, imgName)
	if err != nil {
		return nil, err
	}
	lblPath, err := findMaybeGz(dir, lblName)
	if err != nil {
		return nil, err
	}
	img, err := readFileWith(imgPath, ReadMNISTImages)
	if err != nil {
		return nil, err
	}
	lbl, err := readFileWith(lblPath, ReadMNISTLabels)
	if err != nil {
		return nil, err
	}
	if img.Dims[0] != lbl.Dims[0] {
		return nil, fmt.Errorf("dataset: %s holds %d images but %s holds %d labels",
			filepath.Base(imgPath), img.Dims[0], filepath.Base(lblPath), lbl.Dims[0])
	}
	return &MNIST{N: img.Dims[0], Rows: img.Dims[1], Cols: img.Dims[2], Pixels: img.Data, Labels: lbl.Data}, nil
}

// findMaybeGz returns dir/name if it exists, else dir/name without ".gz".
func findMaybeGz(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("dataset: %w", err)
	}
	raw := p[:len(p)-len(".gz")]
	if _, err := os.Stat(raw); err == nil {
		return raw, nil
	}
	return "", fmt.Errorf("dataset: %s: no such file (nor %s); run `ringtrain data get mnist`", p, filepath.Base(raw))
}

// readFileWith opens path and parses it with read, which names the file.
func readFileWith(path string, read func(io.Reader, string) (*IDX, error)) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	defer f.Close()
	return read(f, path)
}

// Batch writes the samples idx into x as normalized float32 images in NCHW
// layout (len(idx), 1, Rows, Cols) and their labels into y. It allocates
// nothing. x must have len(idx)*Rows*Cols elements and y len(idx); a length
// mismatch or an index outside [0, N) is a programmer error and panics.
func (m *MNIST) Batch(idx []int, x []float32, y []int) {
	img := m.Rows * m.Cols
	if len(x) != len(idx)*img || len(y) != len(idx) {
		panic(fmt.Sprintf("dataset: MNIST.Batch: %d indices need x of %d and y of %d, got %d and %d",
			len(idx), len(idx)*img, len(idx), len(x), len(y)))
	}
	for b, i := range idx {
		if i < 0 || i >= m.N {
			panic(fmt.Sprintf("dataset: MNIST.Batch: index %d out of range [0, %d)", i, m.N))
		}
		src := m.Pixels[i*img : (i+1)*img]
		dst := x[b*img : (b+1)*img]
		for j, p := range src {
			dst[j] = mnistNorm[p]
		}
		y[b] = int(m.Labels[i])
	}
}

// MNISTTrainSize is the number of images in MNIST's training split (the
// files are pinned by checksum, so it never varies).
const MNISTTrainSize = 60000

// TrainSamples returns the number of training samples of the named data
// set, limited to limit when limit is positive: what a coordinator shards
// without loading the data.
func TrainSamples(name string, limit int) (int, error) {
	var n int
	switch name {
	case "mnist":
		n = MNISTTrainSize
	default:
		return 0, fmt.Errorf("dataset: unknown dataset %q (known: mnist)", name)
	}
	if limit > 0 {
		n = min(n, limit)
	}
	return n, nil
}
