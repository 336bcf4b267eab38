package dataset

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// IDX magic numbers of the MNIST files: two zero bytes, the element type
// (0x08, unsigned byte) and the number of dimensions.
const (
	MagicImages = 0x00000803 // unsigned bytes, 3 dimensions (N, rows, cols)
	MagicLabels = 0x00000801 // unsigned bytes, 1 dimension (N)
)

// idxTypeUbyte is the only IDX element type this package reads.
const idxTypeUbyte = 0x08

// MaxIDXBytes bounds the payload of one IDX file (1 GiB); larger declared
// sizes are rejected before any data is read.
const MaxIDXBytes = 1 << 30

// IDX is a decoded IDX array of unsigned bytes: its dimensions (outermost
// first) and its row-major data, len(Data) == prod(Dims).
type IDX struct {
	Dims []int
	Data []uint8
}

// ReadIDX decodes one IDX file of unsigned bytes from r, which may be raw or
// gzip-compressed (detected by the gzip magic 1f 8b). It reads r to its end:
// truncated data, data after the declared payload, a corrupt gzip stream or a
// header that is not an unsigned-byte IDX header are errors. name identifies
// the input in errors (e.g. the file name). Memory grows only with the bytes
// actually read, whatever the header declares.
func ReadIDX(r io.Reader, name string) (*IDX, error) {
	x, err := readIDX(r, 0)
	if err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	return x, nil
}

// readIDX decodes an unsigned-byte IDX file. If want is not 0, the magic
// must equal it; it is checked before anything else in the file is used.
func readIDX(r io.Reader, want uint32) (*IDX, error) {
	br := bufio.NewReader(r)
	src := io.Reader(br)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		src = zr
	} else if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}

	var head [4]byte
	if err := readFull(src, head[:], "IDX magic"); err != nil {
		return nil, err
	}
	magic := binary.BigEndian.Uint32(head[:])
	if want != 0 && magic != want {
		return nil, fmt.Errorf("bad magic 0x%08x, want 0x%08x (%s)", magic, want, magicName(want))
	}
	if head[0] != 0 || head[1] != 0 {
		return nil, fmt.Errorf("bad magic 0x%08x: not an IDX file", magic)
	}
	if head[2] != idxTypeUbyte {
		return nil, fmt.Errorf("bad magic 0x%08x: element type 0x%02x, want 0x08 (unsigned byte)", magic, head[2])
	}
	nd := int(head[3])
	if nd == 0 {
		return nil, fmt.Errorf("bad magic 0x%08x: zero dimensions", magic)
	}
	dimBuf := make([]byte, 4*nd) // nd <= 255
	if err := readFull(src, dimBuf, fmt.Sprintf("%d dimension sizes", nd)); err != nil {
		return nil, err
	}
	dims := make([]int, nd)
	size := int64(1)
	for i := range dims {
		d := int64(binary.BigEndian.Uint32(dimBuf[4*i:]))
		dims[i] = int(d)
		if d != 0 && size > MaxIDXBytes/d {
			return nil, fmt.Errorf("dimensions %v declare more than %d bytes", dims[:i+1], MaxIDXBytes)
		}
		size *= d
	}
	data, err := readBounded(src, size)
	if errors.Is(err, gzip.ErrHeader) {
		// gzip reports data after its last member as a bad next header.
		return nil, fmt.Errorf("trailing data after the gzip stream: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("dimensions %v: %w", dims, err)
	}
	var one [1]byte
	switch k, err := io.ReadFull(src, one[:]); {
	case k > 0:
		return nil, fmt.Errorf("trailing data after the %d-byte payload of dimensions %v", size, dims)
	case errors.Is(err, io.EOF):
	case errors.Is(err, gzip.ErrHeader):
		return nil, fmt.Errorf("trailing data after the gzip stream: %w", err)
	default:
		return nil, fmt.Errorf("after the payload: %w", err)
	}
	return &IDX{Dims: dims, Data: data}, nil
}

// readFull reads len(b) bytes, reporting truncation with what was expected.
func readFull(r io.Reader, b []byte, what string) error {
	k, err := io.ReadFull(r, b)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("truncated %s: got %d of %d bytes", what, k, len(b))
	default:
		return fmt.Errorf("reading %s: %w", what, err)
	}
}

// readBounded reads exactly n bytes, growing its buffer only as data arrives
// (at most doubling), so a false size in a header costs no more memory than
// the bytes that are really there.
func readBounded(r io.Reader, n int64) ([]byte, error) {
	const chunk = 64 << 10
	buf := make([]byte, 0, min(n, chunk))
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			next := min(int64(2*cap(buf)), n)
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil {
			if errors.Is(err, io.EOF) {
				if int64(len(buf)) < n {
					return nil, fmt.Errorf("truncated payload: got %d of %d bytes", len(buf), n)
				}
				break
			}
			return nil, fmt.Errorf("reading payload: %w", err)
		}
	}
	return buf, nil
}

// WriteIDX writes an unsigned-byte IDX file (uncompressed) with the given
// dimensions and data. It returns an error if len(data) != prod(dims), if
// there are no or more than 255 dimensions, or if a dimension does not fit
// in 32 bits.
func WriteIDX(w io.Writer, dims []int, data []uint8) error {
	if len(dims) == 0 || len(dims) > 255 {
		return fmt.Errorf("dataset: IDX needs 1 to 255 dimensions, got %d", len(dims))
	}
	head := make([]byte, 4+4*len(dims))
	head[2] = idxTypeUbyte
	head[3] = byte(len(dims))
	size := 1
	for i, d := range dims {
		if d < 0 || d > math.MaxUint32 {
			return fmt.Errorf("dataset: IDX dimension %d out of range: %v", i, dims)
		}
		if d != 0 && size > math.MaxInt/d {
			return fmt.Errorf("dataset: IDX dimensions %v overflow", dims)
		}
		size *= d
		binary.BigEndian.PutUint32(head[4+4*i:], uint32(d))
	}
	if size != len(data) {
		return fmt.Errorf("dataset: IDX dimensions %v need %d bytes, have %d", dims, size, len(data))
	}
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("dataset: writing IDX header: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("dataset: writing IDX data: %w", err)
	}
	return nil
}

// ReadMNISTImages reads an MNIST image file (raw or gzip): magic 0x00000803
// and dimensions N×28×28. name identifies the input in errors.
func ReadMNISTImages(r io.Reader, name string) (*IDX, error) {
	x, err := readIDX(r, MagicImages)
	if err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	if x.Dims[1] != MNISTRows || x.Dims[2] != MNISTCols {
		return nil, fmt.Errorf("dataset: %s: images are %d×%d, want %d×%d", name, x.Dims[1], x.Dims[2], MNISTRows, MNISTCols)
	}
	return x, nil
}

// ReadMNISTLabels reads an MNIST label file (raw or gzip): magic 0x00000801,
// one dimension, every label in 0..9. name identifies the input in errors.
// Fashion-MNIST's label files have the same form.
func ReadMNISTLabels(r io.Reader, name string) (*IDX, error) {
	x, err := readIDX(r, MagicLabels)
	if err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	for i, l := range x.Data {
		if l > 9 {
			return nil, fmt.Errorf("dataset: %s: label %d at index %d is outside 0..9", name, l, i)
		}
	}
	return x, nil
}

func magicName(m uint32) string {
	switch m {
	case MagicImages:
		return "MNIST images"
	case MagicLabels:
		return "MNIST labels"
	}
	return "IDX"
}
