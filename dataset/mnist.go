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

// Fashion-MNIST's normalization: x' = (x/255 − FashionMNISTMean) /
// FashionMNISTStd, the mean and standard deviation of its training pixels.
const (
	FashionMNISTMean = 0.2860
	FashionMNISTStd  = 0.3530
)

// MNIST is one split of a digit-style image set held in memory: MNIST,
// Fashion-MNIST (LoadFashionMNIST) or the synthetic set (NewSynthetic), all
// 1-channel Rows×Cols byte images with labels 0..9. It implements Set. A
// value built by hand (no loader) is MNIST: its name is "mnist" and its
// pixels are normalized with MNISTMean and MNISTStd. It is read-only once
// built, so any number of goroutines may read from it at once.
type MNIST struct {
	N, Rows, Cols int
	Pixels        []uint8 // (N, Rows, Cols), row-major, 0 = background
	Labels        []uint8 // (N), each 0..9

	name string        // "" means "mnist"
	norm *[256]float32 // nil means mnistNorm
}

// normTable returns a pixel-to-float32 table: x' = float32((x/255 − mean) /
// std), computed in float64 and rounded once.
func normTable(mean, std float64) *[256]float32 {
	var t [256]float32
	for i := range t {
		t[i] = float32((float64(i)/255 - mean) / std)
	}
	return &t
}

// mnistNorm and fashionNorm map a pixel byte to its normalized value.
// Read-only after package initialization.
var (
	mnistNorm   = normTable(MNISTMean, MNISTStd)
	fashionNorm = normTable(FashionMNISTMean, FashionMNISTStd)
)

// NormalizePixel returns the normalized value of one MNIST pixel byte,
// float32((p/255 − 0.1307)/0.3081).
func NormalizePixel(p uint8) float32 { return mnistNorm[p] }

// normalization returns m's pixel table.
func (m *MNIST) normalization() *[256]float32 {
	if m.norm == nil {
		return mnistNorm
	}
	return m.norm
}

// Name returns "mnist", "fashion-mnist" or "synthetic".
func (m *MNIST) Name() string {
	if m.name == "" {
		return "mnist"
	}
	return m.name
}

// Len returns N.
func (m *MNIST) Len() int { return m.N }

// Classes returns 10.
func (m *MNIST) Classes() int { return 10 }

// Shape returns 1×Rows×Cols.
func (m *MNIST) Shape() Shape { return Shape{C: 1, H: m.Rows, W: m.Cols} }

// Fill implements Set. Images of the stored size are the normalized pixels,
// exactly what Batch writes; smaller ones are area-resampled from them.
// With tf.Train and a non-zero tf.Distort, each image is first distorted
// (drawn from tf.Seed, tf.Epoch and the sample's index; the background
// fills what moves in); otherwise tf.Train, Seed and Epoch change nothing. Only
// x[:len(idx)·tf.Out.Size()] and y[:len(idx)] are written, and nothing is
// written when an argument is bad. It allocates nothing for images of up
// to 1,024 pixels.
func (m *MNIST) Fill(x []float32, y []int, idx []int, tf Transform) error {
	if err := checkFill(m, x, y, idx, tf); err != nil {
		return err
	}
	norm := m.normalization()
	img, out := m.Rows*m.Cols, tf.Out.Size()
	same := tf.Out.H == m.Rows && tf.Out.W == m.Cols
	distort := tf.Train && tf.Distort != (Distortion{})
	// A resampled or distorted image is normalized whole first, into a
	// buffer on the stack when it fits (a digit set's 784 pixels do).
	var stack, stack2 [1024]float32
	var full, warped []float32
	if !same || distort {
		if img <= len(stack) {
			full, warped = stack[:img], stack2[:img]
		} else {
			full, warped = make([]float32, img), make([]float32, img)
		}
	}
	for b, i := range idx {
		src := m.Pixels[i*img : (i+1)*img]
		dst := x[b*out : (b+1)*out]
		if same && !distort {
			for j, p := range src {
				dst[j] = norm[p]
			}
		} else {
			for j, p := range src {
				full[j] = norm[p]
			}
			if distort {
				tf.Distort.draw(tf.Seed, tf.Epoch, i).warp(warped, full, m.Rows, m.Cols, norm[0])
				full, warped = warped, full
			}
			if same {
				copy(dst, full)
			} else {
				resampleArea(dst, tf.Out.H, tf.Out.W, full, m.Rows, m.Cols)
			}
		}
		y[b] = int(m.Labels[i])
	}
	return nil
}

// mnistFileNames returns the image and label file names of a split, the
// same for MNIST and Fashion-MNIST.
func mnistFileNames(split string) (images, labels string, err error) {
	return splitFileNames("MNIST", split)
}

func splitFileNames(set, split string) (images, labels string, err error) {
	switch split {
	case "train":
		return "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", nil
	case "test":
		return "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", nil
	}
	return "", "", fmt.Errorf("dataset: unknown %s split %q (want \"train\" or \"test\")", set, split)
}

// LoadMNIST reads one split ("train" or "test") of MNIST from dir, which
// holds the standard file names (train-images-idx3-ubyte.gz, …); a file
// without the .gz suffix is used when the gzipped one is absent. It does not
// verify checksums (see VerifyMNIST), but parses strictly: wrong magic,
// wrong image size, labels outside 0..9, a label/image count mismatch,
// truncation and trailing data are errors naming the file.
func LoadMNIST(dir, split string) (*MNIST, error) {
	return loadIDXSplit(dir, split, "MNIST", "mnist", nil)
}

// LoadFashionMNIST reads one split ("train" or "test") of Fashion-MNIST
// from dir, as LoadMNIST does MNIST (the same file names and format). It
// does not verify checksums (see VerifyFashionMNIST). The result is named
// "fashion-mnist" and normalized with FashionMNISTMean and FashionMNISTStd.
func LoadFashionMNIST(dir, split string) (*MNIST, error) {
	return loadIDXSplit(dir, split, "Fashion-MNIST", "fashion-mnist", fashionNorm)
}

// loadIDXSplit reads a split in MNIST's four-file layout; label names the
// set in errors, name is the set's Name and norm its pixel table.
func loadIDXSplit(dir, split, label, name string, norm *[256]float32) (*MNIST, error) {
	imgName, lblName, err := splitFileNames(label, split)
	if err != nil {
		return nil, err
	}
	imgPath, err := findMaybeGz(dir, imgName, name)
	if err != nil {
		return nil, err
	}
	lblPath, err := findMaybeGz(dir, lblName, name)
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
	m := &MNIST{N: img.Dims[0], Rows: img.Dims[1], Cols: img.Dims[2], Pixels: img.Data, Labels: lbl.Data, norm: norm}
	if name != "mnist" {
		m.name = name
	}
	return m, nil
}

// findMaybeGz returns dir/name if it exists, else dir/name without ".gz".
// set names the data set in the error's advice.
func findMaybeGz(dir, name, set string) (string, error) {
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
	return "", fmt.Errorf("dataset: %s: no such file (nor %s); run `ringtrain data get %s`", p, filepath.Base(raw), set)
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
// Fill writes the same values and reports bad arguments as errors.
func (m *MNIST) Batch(idx []int, x []float32, y []int) {
	img := m.Rows * m.Cols
	if len(x) != len(idx)*img || len(y) != len(idx) {
		panic(fmt.Sprintf("dataset: MNIST.Batch: %d indices need x of %d and y of %d, got %d and %d",
			len(idx), len(idx)*img, len(idx), len(x), len(y)))
	}
	norm := m.normalization()
	for b, i := range idx {
		if i < 0 || i >= m.N {
			panic(fmt.Sprintf("dataset: MNIST.Batch: index %d out of range [0, %d)", i, m.N))
		}
		src := m.Pixels[i*img : (i+1)*img]
		dst := x[b*img : (b+1)*img]
		for j, p := range src {
			dst[j] = norm[p]
		}
		y[b] = int(m.Labels[i])
	}
}
