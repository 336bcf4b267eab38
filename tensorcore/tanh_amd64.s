//go:build amd64 && !noasm

#include "textflag.h"

// tanh in float32 on eight lanes at a time, the algorithm of tanhApprox
// (tanh.go): with a = |x|,
//
//	a < 0.625: tanh(a) = a + a·a²·P(a²)      (odd polynomial, degree 11)
//	otherwise: tanh(a) = 1 − 2/(exp(2·min(a, 9)) + 1)
//
// exp(r) = 2^n·E(r − n·ln2) with n = round(r/ln2) and E a degree-7
// polynomial; the sign of x is put back last, and NaN lanes return x.

DATA tanhC<>+0(SB)/4, $0x7fffffff   // |x| mask
DATA tanhC<>+4(SB)/4, $0.625
DATA tanhC<>+8(SB)/4, $9.0
DATA tanhC<>+12(SB)/4, $1.44269504088896341 // log2(e)
DATA tanhC<>+16(SB)/4, $0.693359375         // ln2, high part
DATA tanhC<>+20(SB)/4, $-2.12194440e-4      // ln2, low part
DATA tanhC<>+24(SB)/4, $1.9875691500e-4     // E
DATA tanhC<>+28(SB)/4, $1.3981999507e-3
DATA tanhC<>+32(SB)/4, $8.3334519073e-3
DATA tanhC<>+36(SB)/4, $4.1665795894e-2
DATA tanhC<>+40(SB)/4, $1.6666665459e-1
DATA tanhC<>+44(SB)/4, $5.0000001201e-1
DATA tanhC<>+48(SB)/4, $1.0
DATA tanhC<>+52(SB)/4, $2.0
DATA tanhC<>+56(SB)/4, $-5.70498872745e-3   // P
DATA tanhC<>+60(SB)/4, $2.06390887954e-2
DATA tanhC<>+64(SB)/4, $-5.37397155531e-2
DATA tanhC<>+68(SB)/4, $1.33314422036e-1
DATA tanhC<>+72(SB)/4, $-3.33332819422e-1
DATA tanhC<>+76(SB)/4, $0x80000000  // sign mask
GLOBL tanhC<>(SB), RODATA|NOPTR, $80

// func tanhAVX2(dst, x *float32, n int)
TEXT ·tanhAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS tanhC<>+0(SB), Y15  // |x| mask
	VBROADCASTSS tanhC<>+4(SB), Y14  // 0.625
	VBROADCASTSS tanhC<>+8(SB), Y13  // 9
	VBROADCASTSS tanhC<>+12(SB), Y12 // log2(e)
	VBROADCASTSS tanhC<>+48(SB), Y11 // 1
	VBROADCASTSS tanhC<>+52(SB), Y10 // 2
	SHRQ $3, CX
	JZ   tanhDone

tanhLoop:
	VMOVUPS (SI), Y0       // x
	VANDPS  Y15, Y0, Y1    // a = |x|
	VMINPS  Y13, Y1, Y2    // min(a, 9)
	VADDPS  Y2, Y2, Y2     // r = 2·min(a, 9)

	// exp(r)
	VMULPS   Y12, Y2, Y3   // r·log2(e)
	VROUNDPS $0, Y3, Y3    // n, nearest
	VBROADCASTSS tanhC<>+16(SB), Y9
	VFNMADD231PS Y9, Y3, Y2 // r −= n·ln2hi
	VBROADCASTSS tanhC<>+20(SB), Y9
	VFNMADD231PS Y9, Y3, Y2 // r −= n·ln2lo
	VBROADCASTSS tanhC<>+24(SB), Y4
	VBROADCASTSS tanhC<>+28(SB), Y9
	VFMADD213PS  Y9, Y2, Y4 // p = p·r + c
	VBROADCASTSS tanhC<>+32(SB), Y9
	VFMADD213PS  Y9, Y2, Y4
	VBROADCASTSS tanhC<>+36(SB), Y9
	VFMADD213PS  Y9, Y2, Y4
	VBROADCASTSS tanhC<>+40(SB), Y9
	VFMADD213PS  Y9, Y2, Y4
	VBROADCASTSS tanhC<>+44(SB), Y9
	VFMADD213PS  Y9, Y2, Y4
	VMULPS       Y2, Y2, Y5 // r²
	VADDPS       Y11, Y2, Y2 // r + 1
	VFMADD213PS  Y2, Y5, Y4 // E = p·r² + r + 1
	VCVTPS2DQ    Y3, Y3
	VPSLLD       $23, Y3, Y3
	VPADDD       Y3, Y4, Y4 // z = 2^n·E

	// big = 1 − 2/(z + 1)
	VADDPS Y11, Y4, Y4
	VDIVPS Y4, Y10, Y4
	VSUBPS Y4, Y11, Y4

	// small = a + a·a²·P(a²)
	VMULPS       Y1, Y1, Y5 // s = a²
	VBROADCASTSS tanhC<>+56(SB), Y6
	VBROADCASTSS tanhC<>+60(SB), Y9
	VFMADD213PS  Y9, Y5, Y6
	VBROADCASTSS tanhC<>+64(SB), Y9
	VFMADD213PS  Y9, Y5, Y6
	VBROADCASTSS tanhC<>+68(SB), Y9
	VFMADD213PS  Y9, Y5, Y6
	VBROADCASTSS tanhC<>+72(SB), Y9
	VFMADD213PS  Y9, Y5, Y6
	VMULPS       Y1, Y5, Y5 // a·s
	VFMADD213PS  Y1, Y5, Y6 // P·(a·s) + a

	VCMPPS    $0x11, Y14, Y1, Y7 // a < 0.625 (false for NaN)
	VBLENDVPS Y7, Y6, Y4, Y4     // small where a < 0.625, else big
	VANDNPS   Y0, Y15, Y8        // sign of x
	VORPS     Y8, Y4, Y4
	VCMPPS    $3, Y0, Y0, Y7     // x is NaN
	VBLENDVPS Y7, Y0, Y4, Y4
	VMOVUPS   Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  tanhLoop

tanhDone:
	VZEROUPPER
	RET

// func tanhGradAVX2(gx, gy, y *float32, n int)
// gx += gy·(1 − y²)
TEXT ·tanhGradAVX2(SB), NOSPLIT, $0-32
	MOVQ gx+0(FP), DI
	MOVQ gy+8(FP), DX
	MOVQ y+16(FP), SI
	MOVQ n+24(FP), CX
	VBROADCASTSS tanhC<>+48(SB), Y15 // 1
	SHRQ $3, CX
	JZ   tgDone

tgLoop:
	VMOVUPS      (SI), Y0
	VMOVAPS      Y15, Y1
	VFNMADD231PS Y0, Y0, Y1 // 1 − y²
	VMULPS       (DX), Y1, Y1
	VADDPS       (DI), Y1, Y1
	VMOVUPS      Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ  tgLoop

tgDone:
	VZEROUPPER
	RET
