//go:build amd64 && !purego

#include "textflag.h"

// func encodeBF16AVX2(dst *uint16, src *float32, n int)
// n is a positive multiple of 16. Per element (see F32ToBF16):
//   NaN:   (b | 0x00400000) >> 16
//   else:  (b + 0x7fff + ((b >> 16) & 1)) >> 16
TEXT ·encodeBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   encdone
	MOVL $0x7fff, AX
	MOVL AX, X10
	VPBROADCASTD X10, Y10
	MOVL $1, AX
	MOVL AX, X11
	VPBROADCASTD X11, Y11
	MOVL $0x7fffffff, AX
	MOVL AX, X12
	VPBROADCASTD X12, Y12
	MOVL $0x7f800000, AX
	MOVL AX, X13
	VPBROADCASTD X13, Y13
	MOVL $0x00400000, AX
	MOVL AX, X14
	VPBROADCASTD X14, Y14

encloop:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1

	VPSRLD    $16, Y0, Y2
	VPAND     Y11, Y2, Y2
	VPADDD    Y10, Y2, Y2
	VPADDD    Y0, Y2, Y2
	VPAND     Y12, Y0, Y3
	VPCMPGTD  Y13, Y3, Y3
	VPOR      Y14, Y0, Y4
	VPBLENDVB Y3, Y4, Y2, Y2
	VPSRLD    $16, Y2, Y2

	VPSRLD    $16, Y1, Y5
	VPAND     Y11, Y5, Y5
	VPADDD    Y10, Y5, Y5
	VPADDD    Y1, Y5, Y5
	VPAND     Y12, Y1, Y6
	VPCMPGTD  Y13, Y6, Y6
	VPOR      Y14, Y1, Y7
	VPBLENDVB Y6, Y7, Y5, Y5
	VPSRLD    $16, Y5, Y5

	VPACKUSDW Y5, Y2, Y8
	VPERMQ    $0xD8, Y8, Y8
	VMOVDQU   Y8, (DI)

	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  encloop

encdone:
	VZEROUPPER
	RET

// func decodeBF16AVX2(dst *float32, src *uint16, n int, add bool)
// n is a positive multiple of 16: dst[i] (+)= float32frombits(src[i] << 16).
TEXT ·decodeBF16AVX2(SB), NOSPLIT, $0-25
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVBLZX add+24(FP), DX
	SHRQ $4, CX
	JZ   decdone
	TESTQ DX, DX
	JZ   decset

decadd:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VADDPS    (DI), Y0, Y0
	VADDPS    32(DI), Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  decadd
	JMP  decdone

decset:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  decset

decdone:
	VZEROUPPER
	RET

// func addToAVX2(dst, src *float32, n int)
// n is a positive multiple of 16: dst[i] += src[i].
TEXT ·addToAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   adddone

addloop:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VADDPS  (SI), Y0, Y0
	VADDPS  32(SI), Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  addloop

adddone:
	VZEROUPPER
	RET

// func encodeF16F16C(dst *uint16, src *float32, n int)
// n is a positive multiple of 16; rounds to nearest even (imm 0).
TEXT ·encodeF16F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   f16edone

f16eloop:
	VMOVUPS   (SI), Y0
	VMOVUPS   32(SI), Y1
	VCVTPS2PH $0, Y0, X2
	VCVTPS2PH $0, Y1, X3
	VMOVDQU   X2, (DI)
	VMOVDQU   X3, 16(DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  f16eloop

f16edone:
	VZEROUPPER
	RET

// func decodeF16F16C(dst *float32, src *uint16, n int, add bool)
// n is a positive multiple of 16: dst[i] (+)= widen(src[i]).
TEXT ·decodeF16F16C(SB), NOSPLIT, $0-25
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVBLZX add+24(FP), DX
	SHRQ $4, CX
	JZ   f16ddone
	TESTQ DX, DX
	JZ   f16dset

f16dadd:
	VCVTPH2PS (SI), Y0
	VCVTPH2PS 16(SI), Y1
	VADDPS    (DI), Y0, Y0
	VADDPS    32(DI), Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  f16dadd
	JMP  f16ddone

f16dset:
	VCVTPH2PS (SI), Y0
	VCVTPH2PS 16(SI), Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  f16dset

f16ddone:
	VZEROUPPER
	RET

// ENCBF16 rounds the eight float32 lanes of in to bfloat16 as
// encodeBF16AVX2 does, leaving each result zero-extended in a lane of out;
// t1 and t2 are clobbered. Needs the constants in Y10-Y14.
#define ENCBF16(in, t1, t2, out) \
	VPSRLD    $16, in, out; \
	VPAND     Y11, out, out; \
	VPADDD    Y10, out, out; \
	VPADDD    in, out, out; \
	VPAND     Y12, in, t1; \
	VPCMPGTD  Y13, t1, t1; \
	VPOR      Y14, in, t2; \
	VPBLENDVB t1, t2, out, out; \
	VPSRLD    $16, out, out

// BF16CONSTS loads the constants ENCBF16 needs.
#define BF16CONSTS \
	MOVL $0x7fff, AX; \
	MOVL AX, X10; \
	VPBROADCASTD X10, Y10; \
	MOVL $1, AX; \
	MOVL AX, X11; \
	VPBROADCASTD X11, Y11; \
	MOVL $0x7fffffff, AX; \
	MOVL AX, X12; \
	VPBROADCASTD X12, Y12; \
	MOVL $0x7f800000, AX; \
	MOVL AX, X13; \
	VPBROADCASTD X13, Y13; \
	MOVL $0x00400000, AX; \
	MOVL AX, X14; \
	VPBROADCASTD X14, Y14

// func decodeAddEncodeBF16AVX2(dst *float32, src, out *uint16, n int, round bool)
// n is a positive multiple of 16. Per element: s = dst[i] + widen(src[i]);
// out[i] = bf16(s); dst[i] = round ? widen(out[i]) : s.
TEXT ·decodeAddEncodeBF16AVX2(SB), NOSPLIT, $0-33
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ out+16(FP), R8
	MOVQ n+24(FP), CX
	MOVBLZX round+32(FP), DX
	SHRQ $4, CX
	JZ   daedone
	BF16CONSTS
	TESTQ DX, DX
	JNZ  daeround

daeloop:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VADDPS    (DI), Y0, Y0
	VADDPS    32(DI), Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ENCBF16(Y0, Y3, Y4, Y2)
	ENCBF16(Y1, Y6, Y7, Y5)
	VPACKUSDW Y5, Y2, Y8
	VPERMQ    $0xD8, Y8, Y8
	VMOVDQU   Y8, (R8)
	ADDQ $32, SI
	ADDQ $64, DI
	ADDQ $32, R8
	DECQ CX
	JNZ  daeloop
	JMP  daedone

daeround:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VADDPS    (DI), Y0, Y0
	VADDPS    32(DI), Y1, Y1
	ENCBF16(Y0, Y3, Y4, Y2)
	ENCBF16(Y1, Y6, Y7, Y5)
	VPSLLD    $16, Y2, Y3
	VPSLLD    $16, Y5, Y6
	VMOVUPS   Y3, (DI)
	VMOVUPS   Y6, 32(DI)
	VPACKUSDW Y5, Y2, Y8
	VPERMQ    $0xD8, Y8, Y8
	VMOVDQU   Y8, (R8)
	ADDQ $32, SI
	ADDQ $64, DI
	ADDQ $32, R8
	DECQ CX
	JNZ  daeround

daedone:
	VZEROUPPER
	RET

// func decodeCopyBF16AVX2(dst *float32, src, out *uint16, n int)
// n is a positive multiple of 16: out[i] = src[i]; dst[i] = widen(src[i]).
TEXT ·decodeCopyBF16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ out+16(FP), R8
	MOVQ n+24(FP), CX
	SHRQ $4, CX
	JZ   dcdone

dcloop:
	VMOVDQU   (SI), Y0
	VMOVDQU   Y0, (R8)
	VPMOVZXWD (SI), Y1
	VPMOVZXWD 16(SI), Y2
	VPSLLD    $16, Y1, Y1
	VPSLLD    $16, Y2, Y2
	VMOVUPS   Y1, (DI)
	VMOVUPS   Y2, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	ADDQ $32, R8
	DECQ CX
	JNZ  dcloop

dcdone:
	VZEROUPPER
	RET

// func quantizeBF16AVX2(x *float32, n int)
// n is a positive multiple of 16: x[i] = widen(bf16(x[i])), in one pass.
TEXT ·quantizeBF16AVX2(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	JZ   qbdone
	BF16CONSTS

qbloop:
	VMOVDQU (DI), Y0
	VMOVDQU 32(DI), Y1
	ENCBF16(Y0, Y3, Y4, Y2)
	ENCBF16(Y1, Y6, Y7, Y5)
	VPSLLD  $16, Y2, Y2
	VPSLLD  $16, Y5, Y5
	VMOVDQU Y2, (DI)
	VMOVDQU Y5, 32(DI)
	ADDQ $64, DI
	DECQ CX
	JNZ  qbloop

qbdone:
	VZEROUPPER
	RET

// func quantizeF16F16C(x *float32, n int)
// n is a positive multiple of 16: x[i] = widen(fp16(x[i])), in one pass.
TEXT ·quantizeF16F16C(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	JZ   qfdone

qfloop:
	VMOVUPS   (DI), Y0
	VMOVUPS   32(DI), Y1
	VCVTPS2PH $0, Y0, X2
	VCVTPS2PH $0, Y1, X3
	VCVTPH2PS X2, Y0
	VCVTPH2PS X3, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ $64, DI
	DECQ CX
	JNZ  qfloop

qfdone:
	VZEROUPPER
	RET
