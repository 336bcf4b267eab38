//go:build amd64 && !noasm

#include "textflag.h"

// func sgdAVX2(p, grad, buf *float32, n int, lr, wd, mom, damp float32, mode int)
// Eight floats per iteration: d = g + wd·p; with a buffer b = mom·b +
// damp·d, then d = b (mode 1) or d += mom·b (mode 2); p -= lr·d.
TEXT ·sgdAVX2(SB), NOSPLIT, $0-56
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ buf+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS lr+32(FP), Y0
	VBROADCASTSS wd+36(FP), Y1
	VBROADCASTSS mom+40(FP), Y2
	VBROADCASTSS damp+44(FP), Y3
	MOVQ mode+48(FP), AX
	SHRQ $3, CX
	CMPQ AX, $1
	JEQ  sgdMom
	CMPQ AX, $2
	JEQ  sgdNesterov
	CMPQ AX, $3
	JEQ  sgdFirst
	CMPQ AX, $4
	JEQ  sgdFirstNesterov
sgdPlain:
	VMOVUPS (DI), Y4
	VMOVUPS (SI), Y5
	VFMADD231PS Y1, Y4, Y5
	VFNMADD231PS Y0, Y5, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	DECQ CX
	JNZ  sgdPlain
	JMP  sgdDone
sgdMom:
	VMOVUPS (DI), Y4
	VMOVUPS (SI), Y5
	VFMADD231PS Y1, Y4, Y5
	VMULPS Y3, Y5, Y7
	VMOVUPS (DX), Y6
	VFMADD231PS Y2, Y6, Y7
	VMOVUPS Y7, (DX)
	VFNMADD231PS Y0, Y7, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNZ  sgdMom
	JMP  sgdDone
sgdNesterov:
	VMOVUPS (DI), Y4
	VMOVUPS (SI), Y5
	VFMADD231PS Y1, Y4, Y5
	VMULPS Y3, Y5, Y7
	VMOVUPS (DX), Y6
	VFMADD231PS Y2, Y6, Y7
	VMOVUPS Y7, (DX)
	VFMADD231PS Y2, Y7, Y5
	VFNMADD231PS Y0, Y5, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNZ  sgdNesterov
	JMP  sgdDone
sgdFirst:
	VMOVUPS (DI), Y4
	VMOVUPS (SI), Y5
	VFMADD231PS Y1, Y4, Y5
	VMOVUPS Y5, (DX)
	VFNMADD231PS Y0, Y5, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNZ  sgdFirst
	JMP  sgdDone
sgdFirstNesterov:
	VMOVUPS (DI), Y4
	VMOVUPS (SI), Y5
	VFMADD231PS Y1, Y4, Y5
	VMOVUPS Y5, (DX)
	VMOVUPS Y5, Y7
	VFMADD231PS Y2, Y7, Y5
	VFNMADD231PS Y0, Y5, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNZ  sgdFirstNesterov
sgdDone:
	VZEROUPPER
	RET
