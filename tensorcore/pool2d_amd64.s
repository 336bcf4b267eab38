//go:build amd64 && !noasm

#include "textflag.h"

// rampS2 holds the int32 offsets 0, 2, ..., 14: the first window column of
// eight consecutive stride-2 outputs.
DATA rampS2<>+0(SB)/4, $0
DATA rampS2<>+4(SB)/4, $2
DATA rampS2<>+8(SB)/4, $4
DATA rampS2<>+12(SB)/4, $6
DATA rampS2<>+16(SB)/4, $8
DATA rampS2<>+20(SB)/4, $10
DATA rampS2<>+24(SB)/4, $12
DATA rampS2<>+28(SB)/4, $14
GLOBL rampS2<>(SB), RODATA|NOPTR, $32

// func maxPoolS2AVX2(y *float32, arg *int32, x *float32, off, ldx, nr, kw, n int) (nan int32)
//
// For t < n (a positive multiple of 8), the maximum over the window of nr
// rows (starting at element off of x, ldx apart) × columns 2t .. 2t+kw-1,
// scanned row by row, the first strictly greater element winning: y[t] and
// its offset into x, arg[t]. Eight outputs at a time: window column dc of
// the eight is the even half of the 16 floats from row+2t+dc. nan is
// non-zero when some window element was NaN (y and arg are then
// meaningless).
TEXT ·maxPoolS2AVX2(SB), NOSPLIT, $0-68
	MOVQ y+0(FP), DI
	MOVQ arg+8(FP), R8
	MOVQ x+16(FP), SI
	MOVQ off+24(FP), R9
	MOVQ ldx+32(FP), R10
	MOVQ kw+48(FP), R11
	MOVQ n+56(FP), CX
	SHRQ $3, CX
	VMOVDQU rampS2<>(SB), Y15 // first-column offsets of this block, 2t
	MOVL $16, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14 // 16: the next block
	MOVL $1, AX
	VMOVD AX, X11
	VPBROADCASTD X11, Y11 // 1: the next column
	MOVL $0xff800000, AX
	VMOVD AX, X13
	VBROADCASTSS X13, Y13 // -Inf
	VXORPS Y12, Y12, Y12  // NaN seen
	XORQ DX, DX           // 2t of this block
block:
	VMOVAPS Y13, Y4 // running maximum
	VMOVD R9, X7
	VPBROADCASTD X7, Y7
	VPADDD Y15, Y7, Y5 // its offset: the window's first element
	MOVQ R9, AX        // offset of this row's first window column
	XORQ BX, BX
row:
	VMOVD AX, X7
	VPBROADCASTD X7, Y7
	VPADDD Y15, Y7, Y6 // offsets of column 0 of this row
	LEAQ (AX)(DX*1), R12
	LEAQ (SI)(R12*4), R12
	MOVQ R11, R13
col:
	VMOVUPS (R12), Y0
	VMOVUPS 32(R12), Y1
	VSHUFPS $0x88, Y1, Y0, Y2
	VPERMPD $0xD8, Y2, Y2 // the eight windows' elements in this column
	VCMPPS $3, Y2, Y2, Y3
	VORPS Y3, Y12, Y12
	VCMPPS $0x1E, Y4, Y2, Y3 // greater than the maximum so far
	VBLENDVPS Y3, Y2, Y4, Y4
	VBLENDVPS Y3, Y6, Y5, Y5
	VPADDD Y11, Y6, Y6
	ADDQ $4, R12
	DECQ R13
	JNZ  col
	ADDQ R10, AX
	INCQ BX
	CMPQ BX, nr+40(FP)
	JLT  row
	VMOVUPS Y4, (DI)
	VMOVDQU Y5, (R8)
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $16, DX
	VPADDD Y14, Y15, Y15
	DECQ CX
	JNZ  block
	VMOVMSKPS Y12, AX
	MOVL AX, nan+64(FP)
	VZEROUPPER
	RET

// func maxPool2x2GradAVX2(dst, gy *float32, arg *int32, base, n int)
//
// For t < n (a positive multiple of 8): dst[2t+e] = gy[t] where arg[t] ==
// base+2t+e, else 0 (e = 0, 1): one input row's gradient under
// non-overlapping 2×2 windows, each element written once. The caller runs
// it once per row: two dense store streams one after the other fetch the
// rows from memory much faster than one loop storing to both.
TEXT ·maxPool2x2GradAVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ gy+8(FP), SI
	MOVQ arg+16(FP), R8
	MOVQ n+32(FP), CX
	SHRQ $3, CX
	VMOVDQU rampS2<>(SB), Y15
	VPBROADCASTD base+24(FP), Y10
	VPADDD Y15, Y10, Y10 // even offsets
	MOVL $16, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	MOVL $1, AX
	VMOVD AX, X11
	VPBROADCASTD X11, Y11
gradBlock:
	VMOVDQU (R8), Y0
	VMOVUPS (SI), Y1
	VPCMPEQD Y10, Y0, Y2
	VANDPS Y1, Y2, Y4 // even columns
	VPADDD Y11, Y10, Y3
	VPCMPEQD Y3, Y0, Y3
	VANDPS Y1, Y3, Y5 // odd columns
	VUNPCKLPS Y5, Y4, Y6
	VUNPCKHPS Y5, Y4, Y7
	VPERM2F128 $0x20, Y7, Y6, Y2
	VPERM2F128 $0x31, Y7, Y6, Y3
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ $32, R8
	ADDQ $32, SI
	ADDQ $64, DI
	VPADDD Y14, Y10, Y10
	DECQ CX
	JNZ  gradBlock
	VZEROUPPER
	RET
