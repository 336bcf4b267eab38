//go:build amd64 && !purego

package allreduce

import "golang.org/x/sys/cpu"

// haveAVX2 selects the AVX2 kernels; it is fixed at start-up.
var haveAVX2 = cpu.X86.HasAVX2

// The assembly kernels process len(src) rounded down to a multiple of 16
// elements; the Go references finish the tail.

//go:noescape
func encodeBF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func decodeBF16AVX2(dst *float32, src *uint16, n int, add bool)

//go:noescape
func addToAVX2(dst, src *float32, n int)

//go:noescape
func decodeAddEncodeBF16AVX2(dst *float32, src, out *uint16, n int, round bool)

//go:noescape
func decodeCopyBF16AVX2(dst *float32, src, out *uint16, n int)

//go:noescape
func quantizeBF16AVX2(x *float32, n int)

//go:noescape
func quantizeF16F16C(x *float32, n int)

// quantizeBF16 sets x[i] = BF16ToF32(F32ToBF16(x[i])).
func quantizeBF16(x []float32) {
	k := 0
	if haveAVX2 && len(x) >= 16 {
		k = len(x) &^ 15
		quantizeBF16AVX2(&x[0], k)
	}
	quantizeBF16Go(x[k:])
}

// quantizeF16 sets x[i] to the float16 value nearest x[i], widened.
func quantizeF16(x []float32, table *[1 << 16]float32) {
	k := 0
	if haveF16C && len(x) >= 16 {
		k = len(x) &^ 15
		quantizeF16F16C(&x[0], k)
	}
	quantizeF16Go(x[k:], table)
}

// encodeBF16 sets dst[i] = F32ToBF16(src[i]) for i < len(src).
func encodeBF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	k := 0
	if haveAVX2 && len(src) >= 16 {
		k = len(src) &^ 15
		encodeBF16AVX2(&dst[0], &src[0], k)
	}
	encodeBF16Go(dst[k:], src[k:])
}

// decodeBF16 sets dst[i] = BF16ToF32(src[i]) for i < len(dst).
func decodeBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	k := 0
	if haveAVX2 && len(dst) >= 16 {
		k = len(dst) &^ 15
		decodeBF16AVX2(&dst[0], &src[0], k, false)
	}
	decodeBF16Go(dst[k:], src[k:])
}

// decodeAddBF16 sets dst[i] += BF16ToF32(src[i]) for i < len(dst).
func decodeAddBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	k := 0
	if haveAVX2 && len(dst) >= 16 {
		k = len(dst) &^ 15
		decodeBF16AVX2(&dst[0], &src[0], k, true)
	}
	decodeAddBF16Go(dst[k:], src[k:])
}

// decodeAddEncodeBF16 is the fused receive of an add (see
// decodeAddEncodeBF16Go).
func decodeAddEncodeBF16(dst []float32, src, out []uint16, round bool) {
	src, out = src[:len(dst)], out[:len(dst)]
	k := 0
	if haveAVX2 && len(dst) >= 16 {
		k = len(dst) &^ 15
		decodeAddEncodeBF16AVX2(&dst[0], &src[0], &out[0], k, round)
	}
	decodeAddEncodeBF16Go(dst[k:], src[k:], out[k:], round)
}

// decodeCopyBF16 is the fused receive of a copy (see decodeCopyBF16Go).
func decodeCopyBF16(dst []float32, src, out []uint16) {
	src, out = src[:len(dst)], out[:len(dst)]
	k := 0
	if haveAVX2 && len(dst) >= 16 {
		k = len(dst) &^ 15
		decodeCopyBF16AVX2(&dst[0], &src[0], &out[0], k)
	}
	decodeCopyBF16Go(dst[k:], src[k:], out[k:])
}

// addTo sets dst[i] += src[i] for i < len(dst).
func addTo(dst, src []float32) {
	src = src[:len(dst)]
	k := 0
	if haveAVX2 && len(dst) >= 16 {
		k = len(dst) &^ 15
		addToAVX2(&dst[0], &src[0], k)
	}
	addToGo(dst[k:], src[k:])
}

// haveF16C selects the F16C conversions (with AVX for the 256-bit forms).
var haveF16C = cpu.X86.HasF16C && cpu.X86.HasAVX

//go:noescape
func encodeF16F16C(dst *uint16, src *float32, n int)

//go:noescape
func decodeF16F16C(dst *float32, src *uint16, n int, add bool)

// encodeF16 sets dst[i] = F32ToF16(src[i]) for i < len(src).
func encodeF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	k := 0
	if haveF16C && len(src) >= 16 {
		k = len(src) &^ 15
		encodeF16F16C(&dst[0], &src[0], k)
	}
	encodeF16Go(dst[k:], src[k:])
}

// decodeF16 sets (add: adds to) dst[i] the value of src[i], i < len(dst).
func decodeF16(dst []float32, src []uint16, table *[1 << 16]float32, add bool) {
	src = src[:len(dst)]
	k := 0
	if haveF16C && len(dst) >= 16 {
		k = len(dst) &^ 15
		decodeF16F16C(&dst[0], &src[0], k, add)
	}
	decodeF16Go(dst[k:], src[k:], table, add)
}
