package dataset

import (
	"bytes"
	"fmt"
	"testing"
)

func syntheticMNIST(n int) *MNIST {
	m := &MNIST{N: n, Rows: 28, Cols: 28, Pixels: make([]uint8, n*784), Labels: make([]uint8, n)}
	for i := range m.Pixels {
		m.Pixels[i] = uint8(i * 7)
	}
	return m
}

// BenchmarkMNISTBatch decodes shuffled batches of 64 images (bytes per op =
// the float32 output).
func BenchmarkMNISTBatch(b *testing.B) {
	m := syntheticMNIST(10000)
	s := NewSampler(m.N, 1, true)
	idx := make([]int, 64)
	x := make([]float32, 64*784)
	y := make([]int, 64)
	b.SetBytes(int64(len(x) * 4))
	b.ReportAllocs()
	for b.Loop() {
		if s.Next(idx) < len(idx) {
			s.NextEpoch()
			s.Next(idx)
		}
		m.Batch(idx, x, y)
	}
}

// BenchmarkReadIDX parses a gzipped 10,000-image IDX file.
func BenchmarkReadIDX(b *testing.B) {
	m := syntheticMNIST(10000)
	data := gz(b, idxBytes(MagicImages, []uint32{10000, 28, 28}, m.Pixels))
	b.SetBytes(int64(len(m.Pixels)))
	for b.Loop() {
		if _, err := ReadMNISTImages(bytes.NewReader(data), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFill fills batches of 64 through the Set seam at the stored size
// and resampled to the 1990 ConvNet's 16×16 (bytes per op = the float32
// output).
func BenchmarkFill(b *testing.B) {
	m := syntheticMNIST(10000)
	for _, out := range []Shape{{1, 28, 28}, {1, 16, 16}} {
		b.Run(fmt.Sprintf("%dx%d", out.H, out.W), func(b *testing.B) {
			s := NewSampler(m.N, 1, true)
			idx := make([]int, 64)
			x := make([]float32, 64*out.Size())
			y := make([]int, 64)
			tf := Transform{Out: out}
			b.SetBytes(int64(len(x) * 4))
			b.ReportAllocs()
			for b.Loop() {
				if s.Next(idx) < len(idx) {
					s.NextEpoch()
					s.Next(idx)
				}
				if err := m.Fill(x, y, idx, tf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
