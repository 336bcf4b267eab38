package jpegdec

// The fixed-point constants of libjpeg's jidctint.c (CONST_BITS = 13):
// FIX(x) = round(x·2¹³).
const (
	constBits = 13
	pass1Bits = 2

	fix_0_298631336 = 2446
	fix_0_390180644 = 3196
	fix_0_541196100 = 4433
	fix_0_765366865 = 6270
	fix_0_899976223 = 7373
	fix_1_175875602 = 9633
	fix_1_501321110 = 12299
	fix_1_847759065 = 15137
	fix_1_961570560 = 16069
	fix_2_053119869 = 16819
	fix_2_562915447 = 20995
	fix_3_072711026 = 25172
)

// idctGo is libjpeg's "islow" inverse DCT (jidctint.c, jpeg_idct_islow:
// the Loeffler–Ligtenberg–Moschytz algorithm with 13-bit constants, a
// column pass kept to 2 extra bits, a row pass that descales by 2¹⁸ with
// rounding), of the dequantized coefficients blk (natural order) into the
// 8×8 block of samples at dst, row stride stride, level-shifted by 128
// and clamped to 0..255. It computes in int32 (libjpeg in its JLONG) and
// clamps where libjpeg's range-limit table wraps: they differ only for
// coefficients far beyond an 8-bit image's range. It is the reference of
// the assembly version, which must equal it for every input.
func idctGo(dst []uint8, stride int, blk *[64]int32) {
	_ = dst[7*stride+7]
	var ws [64]int32
	// Pass 1: columns, into ws, scaled up by 2^pass1Bits.
	for c := range 8 {
		in := blk[c:]
		i0, i1, i2, i3 := in[0], in[8], in[16], in[24]
		i4, i5, i6, i7 := in[32], in[40], in[48], in[56]
		if i1|i2|i3|i4|i5|i6|i7 == 0 {
			dc := i0 << pass1Bits
			for r := range 8 {
				ws[8*r+c] = dc
			}
			continue
		}
		// Even part.
		z1 := (i2 + i6) * fix_0_541196100
		tmp2 := z1 - i6*fix_1_847759065
		tmp3 := z1 + i2*fix_0_765366865
		tmp0 := (i0 + i4) << constBits
		tmp1 := (i0 - i4) << constBits
		tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
		tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2
		// Odd part (inputs 7, 5, 3, 1).
		t0, t1, t2, t3 := i7, i5, i3, i1
		z5 := (t0 + t1 + t2 + t3) * fix_1_175875602 // (z3 + z4)·c
		z1 = (t0 + t3) * -fix_0_899976223
		z2 := (t1 + t2) * -fix_2_562915447
		z3 := (t0+t2)*-fix_1_961570560 + z5
		z4 := (t1+t3)*-fix_0_390180644 + z5
		t0 = t0*fix_0_298631336 + z1 + z3
		t1 = t1*fix_2_053119869 + z2 + z4
		t2 = t2*fix_3_072711026 + z2 + z3
		t3 = t3*fix_1_501321110 + z1 + z4
		const sh, rnd = constBits - pass1Bits, 1 << (constBits - pass1Bits - 1)
		out := ws[c:]
		out[0] = (tmp10 + t3 + rnd) >> sh
		out[56] = (tmp10 - t3 + rnd) >> sh
		out[8] = (tmp11 + t2 + rnd) >> sh
		out[48] = (tmp11 - t2 + rnd) >> sh
		out[16] = (tmp12 + t1 + rnd) >> sh
		out[40] = (tmp12 - t1 + rnd) >> sh
		out[24] = (tmp13 + t0 + rnd) >> sh
		out[32] = (tmp13 - t0 + rnd) >> sh
	}
	// Pass 2: rows, descaled by 2^(constBits+pass1Bits+3).
	for r := range 8 {
		in := (*[8]int32)(ws[8*r:])
		z1 := (in[2] + in[6]) * fix_0_541196100
		tmp2 := z1 - in[6]*fix_1_847759065
		tmp3 := z1 + in[2]*fix_0_765366865
		tmp0 := (in[0] + in[4]) << constBits
		tmp1 := (in[0] - in[4]) << constBits
		tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
		tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2
		// Odd part (inputs 7, 5, 3, 1).
		t0, t1, t2, t3 := in[7], in[5], in[3], in[1]
		z5 := (t0 + t1 + t2 + t3) * fix_1_175875602 // (z3 + z4)·c
		z1 = (t0 + t3) * -fix_0_899976223
		z2 := (t1 + t2) * -fix_2_562915447
		z3 := (t0+t2)*-fix_1_961570560 + z5
		z4 := (t1+t3)*-fix_0_390180644 + z5
		t0 = t0*fix_0_298631336 + z1 + z3
		t1 = t1*fix_2_053119869 + z2 + z4
		t2 = t2*fix_3_072711026 + z2 + z3
		t3 = t3*fix_1_501321110 + z1 + z4
		const sh, rnd = constBits + pass1Bits + 3, 1 << (constBits + pass1Bits + 2)
		row := (*[8]uint8)(dst[r*stride:])
		row[0] = clamp((tmp10+t3+rnd)>>sh + 128)
		row[7] = clamp((tmp10-t3+rnd)>>sh + 128)
		row[1] = clamp((tmp11+t2+rnd)>>sh + 128)
		row[6] = clamp((tmp11-t2+rnd)>>sh + 128)
		row[2] = clamp((tmp12+t1+rnd)>>sh + 128)
		row[5] = clamp((tmp12-t1+rnd)>>sh + 128)
		row[3] = clamp((tmp13+t0+rnd)>>sh + 128)
		row[4] = clamp((tmp13-t0+rnd)>>sh + 128)
	}
}

func clamp(v int32) uint8 { return uint8(min(max(v, 0), 255)) }

// fillDC writes the bs×bs block of a DC-only coefficient set
// (dequantized DC dc): every sample is what idctGo (and the reduced
// IDCTs) give, (dc·4 + 16)>>5 + 128, clamped.
func fillDC(dst []uint8, stride, bs int, dc int32) {
	v := clamp((dc<<pass1Bits+1<<(pass1Bits+2))>>(pass1Bits+3) + 128)
	_ = dst[(bs-1)*stride+bs-1]
	for r := range bs {
		row := dst[r*stride : r*stride+bs]
		for x := range row {
			row[x] = v
		}
	}
}
