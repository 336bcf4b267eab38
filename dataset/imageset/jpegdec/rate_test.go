//go:build unix

package jpegdec

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func cpuNow(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestDecodeRate measures decoding to planes, in images per CPU-second,
// of the JPEGs under $JPEGDEC_RATE_DIR (read into memory first) by
// image/jpeg and by this package, in $JPEGDEC_RATE_ROUNDS (default 7)
// alternating rounds, and logs each round and the medians. Run it on one
// core: GOMAXPROCS=1 taskset -c 0 go test -run DecodeRate -v.
func TestDecodeRate(t *testing.T) {
	dir := os.Getenv("JPEGDEC_RATE_DIR")
	if dir == "" {
		t.Skip("JPEGDEC_RATE_DIR not set")
	}
	var files [][]byte
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, err := os.ReadFile(p); err == nil && len(b) > 2 && b[0] == 0xff && b[1] == 0xd8 {
				files = append(files, b)
			}
		}
		return nil
	})
	rounds, _ := strconv.Atoi(os.Getenv("JPEGDEC_RATE_ROUNDS"))
	rounds = max(rounds, 1)
	if os.Getenv("JPEGDEC_RATE_ROUNDS") == "" {
		rounds = 7
	}
	passes := max(1, 200/max(len(files), 1))
	decoders := []struct {
		name string
		dec  func([]byte) error
	}{
		{"image/jpeg", func(b []byte) error { _, err := jpeg.Decode(bytes.NewReader(b)); return err }},
		{"jpegdec", func(b []byte) error { _, err := Decode(b, 1<<30); return err }},
	}
	rates := make([][]float64, len(decoders))
	for r := range rounds {
		for i, d := range decoders {
			c0 := cpuNow(t)
			for range passes {
				for _, f := range files {
					if err := d.dec(f); err != nil {
						t.Fatalf("%s: %v", d.name, err)
					}
				}
			}
			rate := float64(passes*len(files)) / (cpuNow(t) - c0).Seconds()
			rates[i] = append(rates[i], rate)
			t.Logf("round %d %s: %.1f images/CPU-s", r+1, d.name, rate)
		}
	}
	for i, d := range decoders {
		slices.Sort(rates[i])
		t.Logf("median %s: %.1f images/CPU-s (%d files × %d passes)", d.name, rates[i][rounds/2], len(files), passes)
	}
	t.Logf("ratio jpegdec/image/jpeg: %.2f", rates[1][rounds/2]/rates[0][rounds/2])
}

// BenchmarkDecodeDir decodes the JPEGs under $JPEGDEC_RATE_DIR in turn
// (skipped without it), at full size and DCT-scaled.
func BenchmarkDecodeDir(b *testing.B) {
	dir := os.Getenv("JPEGDEC_RATE_DIR")
	if dir == "" {
		b.Skip("JPEGDEC_RATE_DIR not set")
	}
	var files [][]byte
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if d, err := os.ReadFile(p); err == nil && len(d) > 2 && d[0] == 0xff && d[1] == 0xd8 {
				files = append(files, d)
			}
		}
		return nil
	})
	var ru syscall.Rusage
	cpu := func() time.Duration {
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, denom := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("scale=1/%d", denom), func(b *testing.B) {
			c0 := cpu()
			for i := 0; b.Loop(); i++ {
				if _, err := DecodeScaled(files[i%len(files)], 1<<30, denom); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/(cpu()-c0).Seconds(), "images/cpu-s")
		})
	}
}
