//go:build amd64 && !noasm

package tensorcore

import "golang.org/x/sys/cpu"

// bf16 micro-kernel and packer (gemm_bf16_amd64.s).

//go:noescape
func bf16Kernel12x32AVX512(kp int, a, b *uint32, c *float32, ldc, rows int, alpha, beta float32)

//go:noescape
func bf16PackPairsAVX512(dst *uint32, src *float32, pairs, w, full int, tail uint16)

//go:noescape
func dotTile4x4BF16AVX512(n int, a *uint16, lda int, b *uint16, boffs *int, out *float32, ldo int)

//go:noescape
func bf16RoundAVX512(dst *uint16, src *float32, n int)

//go:noescape
func bf16PackGridPairsAVX512(dst *uint32, src *uint16, offs *int, pairs int)

// avx512BF16Kernels need AVX512_BF16 (VDPBF16PS, VCVTNE2PS2BF16) and
// AVX512BW (VPERMW, word masks): a 12×32 micro-kernel with the register
// layout of the float32 one.
var avx512BF16Kernels = &bf16KernelSet{
	name:      "avx512bf16",
	gemm:      bf16Kernel12x32AVX512,
	mr:        12,
	nr:        32,
	packPairs: bf16PackPairsAVX512Go,
	dotTile:   dotTile4x4BF16AVX512,
	dtR:       4,
	dtC:       4,
	round:     bf16RoundAVX512Go,

	packGridPairs: bf16PackGridPairsAVX512Go,
}

func hasAVX512BF16() bool {
	return hasAVX512() && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512BF16
}

// bestBF16Kernels returns the bf16 kernels this CPU can run fast, or nil.
func bestBF16Kernels() *bf16KernelSet {
	if hasAVX512BF16() {
		return avx512BF16Kernels
	}
	return nil
}

// bf16PackPairsAVX512Go is packPairs (see bf16KernelSet) on the
// assembly: whole pairs of groups there, an odd last group here.
func bf16PackPairsAVX512Go(dst []uint32, src []float32, kc, w int) {
	pairs := kc / 2
	if pairs > 0 {
		_ = dst[pairs*w-1]
		_ = src[2*pairs*w-1] // bounds: the assembly does not check
		bf16PackPairsAVX512(&dst[0], &src[0], pairs, w, w/16, uint16(1)<<(w%16)-1)
	}
	if kc%2 == 1 {
		lo := src[(kc-1)*w:][:w]
		d := dst[pairs*w:][:w]
		for r, v := range lo {
			d[r] = uint32(bf16Round(v))
		}
	}
}

// bf16RoundAVX512Go is round (see bf16KernelSet) on the assembly: blocks
// of 32 there, the tail here.
func bf16RoundAVX512Go(dst []uint16, src []float32) {
	n := len(src)
	dst = dst[:n]
	n32 := n &^ 31
	if n32 > 0 {
		bf16RoundAVX512(&dst[0], &src[0], n32)
	}
	for i := n32; i < n; i++ {
		dst[i] = bf16Round(src[i])
	}
}

// bf16PackGridPairsAVX512Go is packGridPairs (see bf16KernelSet) on the
// assembly for nr 32: whole pairs of rows there, an odd last row here.
func bf16PackGridPairsAVX512Go(dst []uint32, src []uint16, offs []int, nr int) {
	kc := len(offs)
	if nr != 32 {
		bf16PackGridPairsRef(dst, src, offs, nr)
		return
	}
	pairs := kc / 2
	if pairs > 0 {
		_ = dst[pairs*nr-1]
		for _, o := range offs {
			_ = src[o : o+nr] // bounds: the assembly does not check
		}
		bf16PackGridPairsAVX512(&dst[0], &src[0], &offs[0], pairs)
	}
	if kc%2 == 1 {
		d := dst[pairs*nr:][:nr]
		for c, v := range src[offs[kc-1]:][:nr] {
			d[c] = uint32(v)
		}
	}
}
