//go:build amd64 && !noasm

#include "textflag.h"

// The batch-normalization row kernels. Each processes n floats, n a
// positive multiple of 8; the Go wrappers in bn_amd64.go do the tail. They
// multiply and add separately (no FMA) where the reference does, so that a
// row gives the reference's bits except for the order of the float64 sums.

// func bnScaleShiftAVX2(y, x *float32, n int, sc, sh float32, relu bool)
TEXT ·bnScaleShiftAVX2(SB), NOSPLIT, $0-33
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS sc+24(FP), Y14
	VBROADCASTSS sh+28(FP), Y13
	VXORPS Y15, Y15, Y15
	SHRQ $3, CX
	MOVBLZX relu+32(FP), AX
	TESTQ AX, AX
	JNZ  ssRelu
ssLoop:
	VMULPS (SI), Y14, Y0
	VADDPS Y13, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  ssLoop
	VZEROUPPER
	RET
ssRelu:
	VMULPS (SI), Y14, Y0
	VADDPS Y13, Y0, Y0
	VMAXPS Y0, Y15, Y0 // x on NaN and on -0, as vecRelu
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  ssRelu
	VZEROUPPER
	RET

// func bnGradSumsAVX2(gy, x *float32, n int, mu, is, sc, sh float32, relu bool) (sdy, sdyx float64)
// The sums of g and g·x̂ (x̂ = (x-mu)·is in float32; g = gy, or 0 where
// x·sc+sh > 0 fails when relu) in float64, over four lanes per half,
// folded in a fixed order. Each product g·x̂ of two float32 is exact in
// float64, so the FMA rounds only the addition, as the reference does.
TEXT ·bnGradSumsAVX2(SB), NOSPLIT, $0-64
	MOVQ gy+0(FP), SI
	MOVQ x+8(FP), DX
	MOVQ n+16(FP), CX
	VBROADCASTSS mu+24(FP), Y14
	VBROADCASTSS is+28(FP), Y13
	VBROADCASTSS sc+32(FP), Y12
	VBROADCASTSS sh+36(FP), Y1
	MOVBLZX relu+40(FP), AX
	VXORPS Y15, Y15, Y15
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	VXORPD Y10, Y10, Y10
	VXORPD Y11, Y11, Y11
	SHRQ $3, CX
sumLoop:
	VMOVUPS (SI), Y0
	VMOVUPS (DX), Y3
	TESTQ AX, AX
	JZ   sumNoMask
	VMULPS Y12, Y3, Y2
	VADDPS Y1, Y2, Y2         // z = x·sc + sh
	VCMPPS $0x1E, Y15, Y2, Y2 // z > 0
	VANDPS Y2, Y0, Y0
sumNoMask:
	VSUBPS Y14, Y3, Y3
	VMULPS Y13, Y3, Y3 // x̂
	VCVTPS2PD X0, Y4
	VEXTRACTF128 $1, Y0, X5
	VCVTPS2PD X5, Y5
	VCVTPS2PD X3, Y6
	VEXTRACTF128 $1, Y3, X7
	VCVTPS2PD X7, Y7
	VADDPD Y4, Y8, Y8
	VADDPD Y5, Y9, Y9
	VFMADD231PD Y6, Y4, Y10
	VFMADD231PD Y7, Y5, Y11
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNZ  sumLoop
	VADDPD Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPD X9, X8, X8
	VUNPCKHPD X8, X8, X9
	VADDSD X9, X8, X8
	VMOVSD X8, sdy+48(FP)
	VADDPD Y11, Y10, Y10
	VEXTRACTF128 $1, Y10, X11
	VADDPD X11, X10, X10
	VUNPCKHPD X10, X10, X11
	VADDSD X11, X10, X10
	VMOVSD X10, sdyx+56(FP)
	VZEROUPPER
	RET

// func bnGradApplyAVX2(gx, gy, x *float32, n int, k, mu, is, mdy, mdyx, sc, sh float32, relu bool)
// gx += k·((g - mdy) - x̂·mdyx), g and x̂ as in bnGradSumsAVX2.
TEXT ·bnGradApplyAVX2(SB), NOSPLIT, $0-61
	MOVQ gx+0(FP), DI
	MOVQ gy+8(FP), SI
	MOVQ x+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS k+32(FP), Y12
	VBROADCASTSS mu+36(FP), Y14
	VBROADCASTSS is+40(FP), Y13
	VBROADCASTSS mdy+44(FP), Y11
	VBROADCASTSS mdyx+48(FP), Y10
	VBROADCASTSS sc+52(FP), Y9
	VBROADCASTSS sh+56(FP), Y8
	MOVBLZX relu+60(FP), AX
	VXORPS Y15, Y15, Y15
	SHRQ $3, CX
applyLoop:
	VMOVUPS (SI), Y0
	VMOVUPS (DX), Y3
	TESTQ AX, AX
	JZ   applyNoMask
	VMULPS Y9, Y3, Y2
	VADDPS Y8, Y2, Y2
	VCMPPS $0x1E, Y15, Y2, Y2
	VANDPS Y2, Y0, Y0
applyNoMask:
	VSUBPS Y14, Y3, Y3
	VMULPS Y13, Y3, Y3 // x̂
	VMULPS Y10, Y3, Y3 // x̂·mdyx
	VSUBPS Y11, Y0, Y0 // g - mdy
	VSUBPS Y3, Y0, Y0
	VMULPS Y12, Y0, Y0
	VADDPS (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ  applyLoop
	VZEROUPPER
	RET

// func bnSumAVX2(x *float32, n int) float64
// Σx in float64 over four accumulators of four lanes, folded in a fixed order.
TEXT ·bnSumAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	SHRQ $3, CX
bnSumLoop:
	VCVTPS2PD (SI), Y0
	VCVTPS2PD 16(SI), Y1
	VADDPD Y0, Y8, Y8
	VADDPD Y1, Y9, Y9
	ADDQ $32, SI
	DECQ CX
	JNZ  bnSumLoop
	VADDPD Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPD X9, X8, X8
	VUNPCKHPD X8, X8, X9
	VADDSD X9, X8, X8
	VMOVSD X8, ret+16(FP)
	VZEROUPPER
	RET

// func bnSumSqDevAVX2(x *float32, n int, mu float64) float64
// Σ(x-mu)² in float64, like bnSumAVX2.
TEXT ·bnSumSqDevAVX2(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSD mu+16(FP), Y15
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	SHRQ $3, CX
bnSqLoop:
	VCVTPS2PD (SI), Y0
	VCVTPS2PD 16(SI), Y1
	VSUBPD Y15, Y0, Y0
	VSUBPD Y15, Y1, Y1
	VFMADD231PD Y0, Y0, Y8
	VFMADD231PD Y1, Y1, Y9
	ADDQ $32, SI
	DECQ CX
	JNZ  bnSqLoop
	VADDPD Y9, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPD X9, X8, X8
	VUNPCKHPD X8, X8, X9
	VADDSD X9, X8, X8
	VMOVSD X8, ret+24(FP)
	VZEROUPPER
	RET
