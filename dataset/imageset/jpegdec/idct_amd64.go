//go:build amd64 && !noasm

package jpegdec

import "golang.org/x/sys/cpu"

// idctAVX2 is idctGo on AVX2 (idct_amd64.s, written by gen_idct_amd64.py):
// each pass transforms the eight columns (then rows) at once in 32-bit
// lanes, with the same constants, the same wrapping int32 arithmetic, the
// same DC-only-column shortcut and the same rounding, so that its output
// equals idctGo's for every input. dst must address 7·stride+8 bytes.
//
//go:noescape
func idctAVX2(dst *uint8, stride int, blk *[64]int32)

func idctAsm(dst []uint8, stride int, blk *[64]int32) {
	_ = dst[7*stride+7]
	idctAVX2(&dst[0], stride, blk)
}

// bestIDCT is the assembly IDCT where the CPU has AVX2, else idctGo.
var bestIDCT = func() func([]uint8, int, *[64]int32) {
	if cpu.X86.HasAVX2 {
		return idctAsm
	}
	return idctGo
}()

// idctImpls lists the IDCTs this build can run on this CPU, for the tests.
var idctImpls = func() map[string]func([]uint8, int, *[64]int32) {
	m := map[string]func([]uint8, int, *[64]int32){"go": idctGo}
	if cpu.X86.HasAVX2 {
		m["avx2"] = idctAsm
	}
	return m
}()
