// Package safetensors reads and writes the safetensors tensor file format.
//
// A file is an 8-byte little-endian unsigned header length N, then N bytes of
// a JSON object, then a byte buffer. The JSON object maps each tensor name to
// {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}, where the
// offsets are relative to the start of the byte buffer, and may hold one
// "__metadata__" entry mapping strings to strings. Tensor data is
// little-endian and C-contiguous (row-major).
//
// The reader validates hostile input strictly: every malformed header,
// unknown dtype, inconsistent size or out-of-place offset is an error naming
// what is wrong, never a panic, and no allocation is sized by a field that has
// not first been checked against the bytes actually present.
//
// The writer is deterministic: the same tensors and metadata always give the
// same bytes.
package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header the reader accepts (100 MiB).
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header key holding the string→string metadata.
const metadataKey = "__metadata__"

// dtypeSizes maps each supported dtype name to its element size in bytes.
// Sub-byte formats are not supported.
var dtypeSizes = map[string]int{
	"BOOL":    1,
	"U8":      1,
	"I8":      1,
	"F8_E5M2": 1,
	"F8_E4M3": 1,
	"I16":     2,
	"U16":     2,
	"F16":     2,
	"BF16":    2,
	"I32":     4,
	"U32":     4,
	"F32":     4,
	"I64":     8,
	"U64":     8,
	"F64":     8,
}

// DTypeSize returns the element size in bytes of dtype and whether dtype is
// one this package knows.
func DTypeSize(dtype string) (int, bool) {
	n, ok := dtypeSizes[dtype]
	return n, ok
}

// Tensor is one named array of a file: its dtype name (e.g. "F32"), its shape
// (row-major; an empty shape is a scalar of one element) and its raw
// little-endian bytes. A Tensor read from a File shares its Data with the
// File's buffer; callers must not modify it unless they own the File.
type Tensor struct {
	DType string
	Shape []int
	Data  []byte
}

// NumElements returns the product of the tensor's shape, or an error if a
// dimension is negative or the product overflows.
func (t Tensor) NumElements() (int, error) {
	return numElements(t.Shape)
}

func numElements(shape []int) (int, error) {
	n := 1
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d at axis %d of shape %v", d, i, shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, fmt.Errorf("shape %v: element count overflows", shape)
		}
		n *= d
	}
	return n, nil
}

// check verifies that the tensor's dtype is known and its Data length equals
// prod(Shape) × element size. It returns the element count.
func (t Tensor) check() (int, error) {
	size, ok := dtypeSizes[t.DType]
	if !ok {
		return 0, fmt.Errorf("unknown dtype %q", t.DType)
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt/size {
		return 0, fmt.Errorf("shape %v of %s: byte size overflows", t.Shape, t.DType)
	}
	if len(t.Data) != n*size {
		return 0, fmt.Errorf("%s tensor of shape %v needs %d bytes, has %d", t.DType, t.Shape, n*size, len(t.Data))
	}
	return n, nil
}

// Float32s decodes the tensor as float32 values. F32 data is decoded as is;
// F64 data is converted (rounded to nearest). Other dtypes are an error, as is
// a Data length that does not match the shape.
func (t Tensor) Float32s() ([]float32, error) {
	n, err := t.check()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	out := make([]float32, n)
	switch t.DType {
	case "F32":
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case "F64":
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	default:
		return nil, fmt.Errorf("safetensors: cannot read %s tensor as float32", t.DType)
	}
	return out, nil
}

// Float64s decodes the tensor as float64 values. F64 data is decoded as is;
// F32 data is widened exactly. Other dtypes are an error, as is a Data length
// that does not match the shape.
func (t Tensor) Float64s() ([]float64, error) {
	n, err := t.check()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	out := make([]float64, n)
	switch t.DType {
	case "F64":
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
	case "F32":
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
	default:
		return nil, fmt.Errorf("safetensors: cannot read %s tensor as float64", t.DType)
	}
	return out, nil
}

// F32 builds an F32 tensor of the given shape from data (copied, encoded
// little-endian). It panics if len(data) is not the product of shape, which
// is a programmer error.
func F32(shape []int, data []float32) Tensor {
	n, err := numElements(shape)
	if err != nil || n != len(data) {
		panic(fmt.Sprintf("safetensors: F32: shape %v does not hold %d values", shape, len(data)))
	}
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return Tensor{DType: "F32", Shape: append([]int(nil), shape...), Data: b}
}

// F64 builds an F64 tensor of the given shape from data (copied, encoded
// little-endian). It panics if len(data) is not the product of shape, which
// is a programmer error.
func F64(shape []int, data []float64) Tensor {
	n, err := numElements(shape)
	if err != nil || n != len(data) {
		panic(fmt.Sprintf("safetensors: F64: shape %v does not hold %d values", shape, len(data)))
	}
	b := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return Tensor{DType: "F64", Shape: append([]int(nil), shape...), Data: b}
}

// File is a parsed safetensors file. Its tensors share one byte buffer.
// A File is immutable after reading and safe for concurrent readers.
type File struct {
	// Metadata is the header's "__metadata__" object (nil if absent).
	Metadata map[string]string

	tensors map[string]Tensor
	names   []string // sorted
}

// Names returns the tensor names in sorted order. The slice is a copy.
func (f *File) Names() []string {
	return append([]string(nil), f.names...)
}

// Tensor returns the named tensor and whether it exists. The returned
// Tensor's Data aliases the file's buffer; its Shape is a copy.
func (f *File) Tensor(name string) (Tensor, bool) {
	t, ok := f.tensors[name]
	if !ok {
		return Tensor{}, false
	}
	t.Shape = append([]int(nil), t.Shape...)
	return t, true
}

// Len returns the number of tensors in the file.
func (f *File) Len() int { return len(f.names) }

// sortedNames returns the keys of m in sorted order.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// validName reports why a tensor name cannot be written, or nil.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty tensor name")
	case name == metadataKey:
		return fmt.Errorf("tensor name %q is reserved", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("tensor name %q is not valid UTF-8", name)
	}
	return nil
}
