#!/usr/bin/env python3
"""Writes idct_amd64.s: the AVX2 islow IDCT (see idct_amd64.go)."""
import os
consts = {
 "c0541": 4433, "c1847": 15137, "c0765": 6270, "c1175": 9633,
 "c0298": 2446, "c2053": 16819, "c3072": 25172, "c1501": 12299,
 "cm0899": -7373, "cm2562": -20995, "cm1961": -16069, "cm0390": -3196,
 "r1": 1 << 10, "r2": 1 << 17, "c128": 128,
}
out = []
w = out.append
w("//go:build amd64 && !noasm\n")
w('#include "textflag.h"\n')
for name, v in consts.items():
    for i in range(8):
        w("DATA idct_%s<>+%d(SB)/4, $0x%08x" % (name, 4 * i, v & 0xffffffff))
    w("GLOBL idct_%s<>(SB), RODATA|NOPTR, $32\n" % name)
for i, v in enumerate([0, 4, 1, 5, 2, 6, 3, 7]):
    w("DATA idct_perm<>+%d(SB)/4, $%d" % (4 * i, v))
w("GLOBL idct_perm<>(SB), RODATA|NOPTR, $32\n")

w("""// IDCT_PASS is one 8-point pass of jidctint.c on 8 lanes at once: Y0..Y7
// hold inputs 0..7 (lane j of Yk: input k of the j-th transform) and are
// replaced by outputs 0..7, before descaling. It uses Y8..Y12.""")
pass_ = [
 # even part
 "VPADDD Y6, Y2, Y8",
 "VPMULLD idct_c0541<>(SB), Y8, Y8",      # z1
 "VPMULLD idct_c1847<>(SB), Y6, Y9",
 "VPSUBD Y9, Y8, Y9",                      # tmp2 = z1 - i6*c
 "VPMULLD idct_c0765<>(SB), Y2, Y10",
 "VPADDD Y8, Y10, Y10",                    # tmp3
 "VPADDD Y4, Y0, Y11",
 "VPSLLD $13, Y11, Y11",                   # tmp0
 "VPSUBD Y4, Y0, Y12",
 "VPSLLD $13, Y12, Y12",                   # tmp1
 "VPADDD Y10, Y11, Y8",                    # tmp10
 "VPSUBD Y10, Y11, Y11",                   # tmp13
 "VPADDD Y9, Y12, Y10",                    # tmp11
 "VPSUBD Y9, Y12, Y12",                    # tmp12
 # odd part: t0=Y7 t1=Y5 t2=Y3 t3=Y1
 "VPADDD Y1, Y7, Y0",                      # z1
 "VPADDD Y3, Y5, Y2",                      # z2
 "VPADDD Y3, Y7, Y4",                      # z3
 "VPADDD Y1, Y5, Y6",                      # z4
 "VPADDD Y6, Y4, Y9",
 "VPMULLD idct_c1175<>(SB), Y9, Y9",       # z5
 "VPMULLD idct_c0298<>(SB), Y7, Y7",
 "VPMULLD idct_c2053<>(SB), Y5, Y5",
 "VPMULLD idct_c3072<>(SB), Y3, Y3",
 "VPMULLD idct_c1501<>(SB), Y1, Y1",
 "VPMULLD idct_cm0899<>(SB), Y0, Y0",
 "VPMULLD idct_cm2562<>(SB), Y2, Y2",
 "VPMULLD idct_cm1961<>(SB), Y4, Y4",
 "VPADDD Y9, Y4, Y4",                      # z3
 "VPMULLD idct_cm0390<>(SB), Y6, Y6",
 "VPADDD Y9, Y6, Y6",                      # z4
 "VPADDD Y0, Y7, Y7", "VPADDD Y4, Y7, Y7", # t0 += z1 + z3
 "VPADDD Y2, Y5, Y5", "VPADDD Y6, Y5, Y5", # t1 += z2 + z4
 "VPADDD Y2, Y3, Y3", "VPADDD Y4, Y3, Y3", # t2 += z2 + z3
 "VPADDD Y0, Y1, Y1", "VPADDD Y6, Y1, Y1", # t3 += z1 + z4
 # outputs
 "VPADDD Y1, Y8, Y0",                      # o0 = tmp10 + t3
 "VPSUBD Y1, Y8, Y8",                      # o7
 "VPADDD Y3, Y10, Y1",                     # o1 = tmp11 + t2
 "VPSUBD Y3, Y10, Y6",                     # o6
 "VPADDD Y5, Y12, Y2",                     # o2 = tmp12 + t1
 "VPSUBD Y5, Y12, Y5",                     # o5
 "VPADDD Y7, Y11, Y3",                     # o3 = tmp13 + t0
 "VPSUBD Y7, Y11, Y4",                     # o4
 "VMOVDQA Y8, Y7",
]
w("#define IDCT_PASS \\\n\t" + "; \\\n\t".join(pass_) + "\n")

w("""// TRANSPOSE transposes the 8×8 int32 matrix in Y0..Y7 (rows) into
// Y8..Y15, then moves it back to Y0..Y7.""")
tr = [
 "VPUNPCKLDQ Y1, Y0, Y8", "VPUNPCKHDQ Y1, Y0, Y9",
 "VPUNPCKLDQ Y3, Y2, Y10", "VPUNPCKHDQ Y3, Y2, Y11",
 "VPUNPCKLDQ Y5, Y4, Y12", "VPUNPCKHDQ Y5, Y4, Y13",
 "VPUNPCKLDQ Y7, Y6, Y14", "VPUNPCKHDQ Y7, Y6, Y15",
 "VPUNPCKLQDQ Y10, Y8, Y0", "VPUNPCKHQDQ Y10, Y8, Y1",
 "VPUNPCKLQDQ Y11, Y9, Y2", "VPUNPCKHQDQ Y11, Y9, Y3",
 "VPUNPCKLQDQ Y14, Y12, Y4", "VPUNPCKHQDQ Y14, Y12, Y5",
 "VPUNPCKLQDQ Y15, Y13, Y6", "VPUNPCKHQDQ Y15, Y13, Y7",
 "VPERM2I128 $0x20, Y4, Y0, Y8", "VPERM2I128 $0x31, Y4, Y0, Y12",
 "VPERM2I128 $0x20, Y5, Y1, Y9", "VPERM2I128 $0x31, Y5, Y1, Y13",
 "VPERM2I128 $0x20, Y6, Y2, Y10", "VPERM2I128 $0x31, Y6, Y2, Y14",
 "VPERM2I128 $0x20, Y7, Y3, Y11", "VPERM2I128 $0x31, Y7, Y3, Y15",
] + ["VMOVDQA Y%d, Y%d" % (8 + i, i) for i in range(8)]
w("#define TRANSPOSE \\\n\t" + "; \\\n\t".join(tr) + "\n")

body = ["// func idctAVX2(dst *uint8, stride int, blk *[64]int32)",
"TEXT ·idctAVX2(SB), NOSPLIT, $0-24",
"\tMOVQ dst+0(FP), DI",
"\tMOVQ stride+8(FP), SI",
"\tMOVQ blk+16(FP), AX"]
for i in range(8):
    body.append("\tVMOVDQU %d(AX), Y%d" % (32 * i, i))
body += [
"\t// Columns whose AC coefficients are all zero take jidctint.c's",
"\t// shortcut, DC<<2: Y13 is their mask, Y14 the value.",
"\tVPOR Y2, Y1, Y13", "\tVPOR Y3, Y13, Y13", "\tVPOR Y4, Y13, Y13", "\tVPOR Y5, Y13, Y13",
"\tVPOR Y6, Y13, Y13", "\tVPOR Y7, Y13, Y13",
"\tVPXOR Y15, Y15, Y15", "\tVPCMPEQD Y15, Y13, Y13",
"\tVPSLLD $2, Y0, Y14",
"\t// Pass 1: the columns, all eight at once.",
"\tIDCT_PASS",
"\tVMOVDQU idct_r1<>(SB), Y15"]
for i in range(8):
    body += ["\tVPADDD Y15, Y%d, Y%d" % (i, i), "\tVPSRAD $11, Y%d, Y%d" % (i, i), "\tVPBLENDVB Y13, Y14, Y%d, Y%d" % (i, i)]
body += ["\t// Pass 2: the rows, transposed into lanes.", "\tTRANSPOSE", "\tIDCT_PASS",
"\tVMOVDQU idct_r2<>(SB), Y14", "\tVMOVDQU idct_c128<>(SB), Y15"]
for i in range(8):
    body += ["\tVPADDD Y14, Y%d, Y%d" % (i, i), "\tVPSRAD $18, Y%d, Y%d" % (i, i), "\tVPADDD Y15, Y%d, Y%d" % (i, i)]
body += ["\tTRANSPOSE",
"\t// Clamp to 0..255 by saturating packs; put each row's bytes together.",
"\tVPACKSSDW Y1, Y0, Y0", "\tVPACKSSDW Y3, Y2, Y2", "\tVPACKUSWB Y2, Y0, Y0",
"\tVPACKSSDW Y5, Y4, Y4", "\tVPACKSSDW Y7, Y6, Y6", "\tVPACKUSWB Y6, Y4, Y4",
"\tVMOVDQU idct_perm<>(SB), Y15",
"\tVPERMD Y0, Y15, Y0", "\tVPERMD Y4, Y15, Y4",
"\tLEAQ (SI)(SI*2), BX",
"\tVEXTRACTI128 $1, Y0, X1",
"\tVMOVQ X0, (DI)", "\tVPEXTRQ $1, X0, (DI)(SI*1)", "\tVMOVQ X1, (DI)(SI*2)", "\tVPEXTRQ $1, X1, (DI)(BX*1)",
"\tLEAQ (DI)(SI*4), DI",
"\tVEXTRACTI128 $1, Y4, X5",
"\tVMOVQ X4, (DI)", "\tVPEXTRQ $1, X4, (DI)(SI*1)", "\tVMOVQ X5, (DI)(SI*2)", "\tVPEXTRQ $1, X5, (DI)(BX*1)",
"\tVZEROUPPER", "\tRET"]
w("\n".join(body))
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "idct_amd64.s"), "w").write("\n".join(out) + "\n")
