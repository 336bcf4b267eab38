//go:build unix

package imageset

import (
	"context"
	"image"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's CPU time (user and system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report adds images per second of wall time and of CPU time: on a busy
// machine the second is the one that says what one core does (run with
// GOMAXPROCS=1 so that the garbage collector's work is counted in it).
func report(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(float64(b.N)/(cpuTime(b)-cpu0).Seconds(), "images/cpu-s")
}

// benchJPEGs returns n synthetic 500×375 JPEGs at quality 90, ImageNet's
// typical size and a common quality.
func benchJPEGs(b *testing.B, n int) [][]byte {
	b.Helper()
	out := make([][]byte, n)
	for i := range out {
		out[i] = encodeJPEG(b, SynthImage(500, 375, i%36, 1, 0, uint64(i)), 90)
	}
	return out
}

// BenchmarkDecodeTrainTransform is the input pipeline of one sample on
// one core: decode a 500×375 q90 JPEG, random resized crop to 224×224,
// flip, normalize into float32 CHW. Compare with torchvision+Pillow on
// the same core (images/s per core).
func BenchmarkDecodeTrainTransform(b *testing.B) {
	imgs := benchJPEGs(b, 16)
	dst := make([]float32, 3*224*224)
	var sc scratch
	p := Params{H: 224, W: 224, Train: true, Seed: 1}
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := 0; b.Loop(); i++ {
		img, err := Decode(imgs[i%len(imgs)], MaxPixels)
		if err != nil {
			b.Fatal(err)
		}
		if err := transform(dst, img, p, i, &sc); err != nil {
			b.Fatal(err)
		}
	}
	report(b, cpu0)
}

// BenchmarkDecode decodes 500×375 q90 JPEGs (image/jpeg).
func BenchmarkDecode(b *testing.B) {
	imgs := benchJPEGs(b, 16)
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := 0; b.Loop(); i++ {
		if _, err := Decode(imgs[i%len(imgs)], MaxPixels); err != nil {
			b.Fatal(err)
		}
	}
	report(b, cpu0)
}

// BenchmarkTrainTransform is the training transform alone, of decoded
// 500×375 images to 224×224.
func BenchmarkTrainTransform(b *testing.B) {
	raw := benchJPEGs(b, 4)
	dst := make([]float32, 3*224*224)
	var sc scratch
	p := Params{H: 224, W: 224, Train: true, Seed: 1}
	decoded := make([]image.Image, len(raw))
	for i, r := range raw {
		img, err := Decode(r, MaxPixels)
		if err != nil {
			b.Fatal(err)
		}
		decoded[i] = img
	}
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := 0; b.Loop(); i++ {
		if err := transform(dst, decoded[i%len(decoded)], p, i, &sc); err != nil {
			b.Fatal(err)
		}
	}
	report(b, cpu0)
}

// BenchmarkFillFolder is Set.Fill on an image folder of 500×375 q90
// JPEGs, 32 samples a call, files read from disk (the page cache): the
// whole per-sample cost on one core.
func BenchmarkFillFolder(b *testing.B) {
	dir := b.TempDir()
	o := SynthOptions{Classes: 4, PerClass: 8, ValPerClass: 1, Seed: 1}
	if err := Synth(context.Background(), dir, o, nil); err != nil {
		b.Fatal(err)
	}
	s, err := OpenFolder(dir, "train")
	if err != nil {
		b.Fatal(err)
	}
	idx := make([]int, s.Len())
	for i := range idx {
		idx[i] = i
	}
	p := Params{H: 224, W: 224, Train: true, Seed: 1}
	x, y := make([]float32, len(idx)*3*224*224), make([]int, len(idx))
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := 0; b.Loop(); i++ {
		p.Epoch = i
		if err := s.Fill(x, y, idx, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(idx))/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(float64(b.N*len(idx))/(cpuTime(b)-cpu0).Seconds(), "images/cpu-s")
}

// BenchmarkResampleRGB is the resampling of the training transform alone,
// a 316×316 crop (the mean area of RandomResizedCrop on 500×375) to
// 224×224, through the loops and through the reference.
func BenchmarkResampleRGB(b *testing.B) {
	const sw, sh = 500, 375
	src := make([]uint8, 3*sw*sh)
	r := rng{s: 1}
	for i := range src {
		src[i] = uint8(r.next())
	}
	xs, ys := resampleAxis(90, 316, 224, 0, 224), resampleAxis(30, 316, 224, 0, 224)
	x0, x1 := xs.span()
	y0, y1 := ys.span()
	region := make([]uint8, 0, 3*(x1-x0)*(y1-y0))
	for y := y0; y < y1; y++ {
		region = append(region, src[3*(y*sw+x0):3*(y*sw+x1)]...)
	}
	dst := make([]uint8, 3*224*224)
	for _, c := range []struct {
		name string
		f    func([]uint8, axis, axis, []uint8, int, int, int, *resampleBuf)
	}{{"loops", resampleRGB}, {"reference", resampleRGBRef}} {
		b.Run(c.name, func(b *testing.B) {
			var buf resampleBuf
			cpu0 := cpuTime(b)
			for b.Loop() {
				c.f(dst, xs, ys, region, x1-x0, x0, y0, &buf)
			}
			report(b, cpu0)
		})
	}
}
