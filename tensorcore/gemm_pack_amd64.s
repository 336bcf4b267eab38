//go:build amd64 && !noasm

#include "textflag.h"

// STORE4COLS stores four packed columns at DI, DI+R11, DI+2·R11 and
// DI+R12: rows 0-3 from X0..X3, rows 4-5 from the halves of X10, X11.
#define STORE4COLS \
	VMOVUPS X0, (DI); \
	VMOVLPS X10, 16(DI); \
	VMOVUPS X1, (DI)(R11*1); \
	VMOVHPS X10, 16(DI)(R11*1); \
	VMOVUPS X2, (DI)(R11*2); \
	VMOVLPS X11, 16(DI)(R11*2); \
	VMOVUPS X3, (DI)(R12*1); \
	VMOVHPS X11, 16(DI)(R12*1)

// func packA6AVX2(dst, src *float32, ld, kc, mr int)
//
// Packs six rows of a row-major matrix (row r at src + r*ld floats), kc
// columns each (kc a positive multiple of 8), into six consecutive lanes
// of an mr-row A micro-panel: dst[p*mr+r] = src[r*ld+p] for r < 6. mr 12
// takes two calls, the second at dst+6 for rows 6..11. Eight columns at a
// time are transposed in registers: unpack pairs of rows, then split the
// 128-bit halves.
TEXT ·packA6AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $2, R8
	MOVQ kc+24(FP), CX
	SHRQ $3, CX
	MOVQ mr+32(FP), R11
	SHLQ $2, R11          // bytes between packed columns
	LEAQ (R11)(R11*2), R12 // three columns
	LEAQ (SI)(R8*2), R9  // row 2
	LEAQ (R9)(R8*2), R10 // row 4

pa6loop:
	VMOVUPS (SI), Y0      // row 0
	VMOVUPS (SI)(R8*1), Y1 // row 1
	VMOVUPS (R9), Y2
	VMOVUPS (R9)(R8*1), Y3
	VMOVUPS (R10), Y4
	VMOVUPS (R10)(R8*1), Y5

	VUNPCKLPS Y1, Y0, Y6 // r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5]
	VUNPCKHPS Y1, Y0, Y7 // columns 2,3 | 6,7 of rows 0,1
	VUNPCKLPS Y3, Y2, Y8
	VUNPCKHPS Y3, Y2, Y9
	VUNPCKLPS Y5, Y4, Y10 // rows 4,5: columns 0,1 | 4,5 (64 bits each)
	VUNPCKHPS Y5, Y4, Y11 // rows 4,5: columns 2,3 | 6,7

	VSHUFPS $0x44, Y8, Y6, Y0 // rows 0-3 of column 0 | column 4
	VSHUFPS $0xEE, Y8, Y6, Y1 // column 1 | 5
	VSHUFPS $0x44, Y9, Y7, Y2 // column 2 | 6
	VSHUFPS $0xEE, Y9, Y7, Y3 // column 3 | 7

	STORE4COLS

	VEXTRACTF128 $1, Y0, X0
	VEXTRACTF128 $1, Y1, X1
	VEXTRACTF128 $1, Y2, X2
	VEXTRACTF128 $1, Y3, X3
	VEXTRACTF128 $1, Y10, X10
	VEXTRACTF128 $1, Y11, X11

	LEAQ (DI)(R11*4), DI // column 4
	STORE4COLS

	ADDQ $32, SI
	ADDQ $32, R9
	ADDQ $32, R10
	LEAQ (DI)(R11*4), DI // column 8
	DECQ CX
	JNZ  pa6loop
	VZEROUPPER
	RET

// func packBAVX2(dst, src *float32, ld, kc, panels, nr int)
//
// Packs kc rows of panels×nr columns (nr 16 or 32) of a row-major matrix
// (row p at src + p*ld floats) into nr-column B micro-panels of kc rows
// each: panel q, row p is dst[(q*kc+p)*nr : +nr] = src[p*ld+q*nr : +nr].
// Rows are read in order, so the source streams.
TEXT ·packBAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), R8
	SHLQ $2, R8
	MOVQ kc+24(FP), CX
	MOVQ panels+32(FP), R9
	MOVQ nr+40(FP), R11
	SHLQ $2, R11 // bytes in a panel row
	MOVQ CX, R10
	IMULQ R11, R10 // bytes between panels

pbrow:
	MOVQ SI, AX
	MOVQ DI, BX
	MOVQ R9, DX
	CMPQ R11, $128
	JEQ  pbcol32
pbcol16:
	VMOVUPS (AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVUPS Y0, (BX)
	VMOVUPS Y1, 32(BX)
	ADDQ $64, AX
	ADDQ R10, BX
	DECQ DX
	JNZ  pbcol16
	JMP  pbnext
pbcol32:
	VMOVUPS (AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVUPS 64(AX), Y2
	VMOVUPS 96(AX), Y3
	VMOVUPS Y0, (BX)
	VMOVUPS Y1, 32(BX)
	VMOVUPS Y2, 64(BX)
	VMOVUPS Y3, 96(BX)
	ADDQ $128, AX
	ADDQ R10, BX
	DECQ DX
	JNZ  pbcol32
pbnext:
	ADDQ R8, SI
	ADDQ R11, DI
	DECQ CX
	JNZ  pbrow
	VZEROUPPER
	RET
