package jpegdec

import (
	"fmt"
	"image"
)

// DecodeScaled decodes the baseline JPEG in data at 1/denom of its size
// (denom 1, 2, 4 or 8) in the DCT domain, as libjpeg does for
// scale_denom: each 8×8 block becomes an (8/denom)² block by jidctred.c's
// reduced inverse DCTs (or, for 1/8, its DC), which costs a fraction of
// the full transform and of the memory. The image is ⌈w/denom⌉×⌈h/denom⌉,
// laid out as Decode lays out a full-size image, with the same subsample
// ratio: every component is reduced alike.
//
// The Y plane (and a grey image) equals djpeg -scale 1/denom's to the
// bit, and so do the chroma planes of a 4:4:4 image; for subsampled
// chroma libjpeg instead decodes the chroma blocks at a larger DCT size
// to spare upsampling, so its chroma differs from ours (by the
// difference between two resamplings). maxPixels bounds the full-size
// frame, as in Decode. This is not used by the training pipeline: its
// crops and resampling are defined on the full-size pixels.
func DecodeScaled(data []byte, maxPixels, denom int) (image.Image, error) {
	d := decoder{data: data, idct: bestIDCT}
	switch denom {
	case 1:
	case 2:
		d.bs, d.idct = 4, idct4x4
	case 4:
		d.bs, d.idct = 2, idct2x2
	case 8:
		d.bs, d.idct = 1, idct1x1
	default:
		return nil, fmt.Errorf("jpegdec: scale 1/%d, want 1/1, 1/2, 1/4 or 1/8", denom)
	}
	return d.decode(maxPixels)
}

// The constants of jidctred.c (CONST_BITS 13).
const (
	fix_0_211164243 = 1730
	fix_0_509795579 = 4176
	fix_0_601344887 = 4926
	fix_0_720959822 = 5906
	fix_0_850430095 = 6967
	fix_1_061594337 = 8697
	fix_1_272758580 = 10426
	fix_1_451774981 = 11893
	fix_2_172734803 = 17799
	fix_3_624509785 = 29692
)

// idct4x4 is jidctred.c's jpeg_idct_4x4: the 4×4 block of averages of
// adjacent pairs of idctGo's outputs, from the coefficients' 8×8 (rows
// and columns 4 unused), into dst with row stride stride.
func idct4x4(dst []uint8, stride int, blk *[64]int32) {
	_ = dst[3*stride+3]
	var ws [32]int32 // 4 rows of 8
	for c := range 8 {
		if c == 4 {
			continue
		}
		in := blk[c:]
		if in[8]|in[16]|in[24]|in[40]|in[48]|in[56] == 0 {
			dc := in[0] << pass1Bits
			ws[c], ws[8+c], ws[16+c], ws[24+c] = dc, dc, dc, dc
			continue
		}
		tmp0 := in[0] << (constBits + 1)
		tmp2 := in[16]*fix_1_847759065 - in[48]*fix_0_765366865
		tmp10, tmp12 := tmp0+tmp2, tmp0-tmp2
		z1, z2, z3, z4 := in[56], in[40], in[24], in[8]
		tmp0 = -z1*fix_0_211164243 + z2*fix_1_451774981 - z3*fix_2_172734803 + z4*fix_1_061594337
		tmp2 = -z1*fix_0_509795579 - z2*fix_0_601344887 + z3*fix_0_899976223 + z4*fix_2_562915447
		const sh, rnd = constBits - pass1Bits + 1, 1 << (constBits - pass1Bits)
		ws[c] = (tmp10 + tmp2 + rnd) >> sh
		ws[24+c] = (tmp10 - tmp2 + rnd) >> sh
		ws[8+c] = (tmp12 + tmp0 + rnd) >> sh
		ws[16+c] = (tmp12 - tmp0 + rnd) >> sh
	}
	for r := range 4 {
		in := (*[8]int32)(ws[8*r:])
		tmp0 := in[0] << (constBits + 1)
		tmp2 := in[2]*fix_1_847759065 - in[6]*fix_0_765366865
		tmp10, tmp12 := tmp0+tmp2, tmp0-tmp2
		z1, z2, z3, z4 := in[7], in[5], in[3], in[1]
		tmp0 = -z1*fix_0_211164243 + z2*fix_1_451774981 - z3*fix_2_172734803 + z4*fix_1_061594337
		tmp2 = -z1*fix_0_509795579 - z2*fix_0_601344887 + z3*fix_0_899976223 + z4*fix_2_562915447
		const sh, rnd = constBits + pass1Bits + 3 + 1, 1 << (constBits + pass1Bits + 3)
		row := (*[4]uint8)(dst[r*stride:])
		row[0] = clamp((tmp10+tmp2+rnd)>>sh + 128)
		row[3] = clamp((tmp10-tmp2+rnd)>>sh + 128)
		row[1] = clamp((tmp12+tmp0+rnd)>>sh + 128)
		row[2] = clamp((tmp12-tmp0+rnd)>>sh + 128)
	}
}

// idct2x2 is jidctred.c's jpeg_idct_2x2: the 2×2 block of averages of
// 4×4 groups of outputs, from the coefficients' rows and columns 0, 1,
// 3, 5 and 7.
func idct2x2(dst []uint8, stride int, blk *[64]int32) {
	_ = dst[stride+1]
	var ws [16]int32 // 2 rows of 8
	for c := 0; c < 8; c++ {
		if c == 2 || c == 4 || c == 6 {
			continue
		}
		in := blk[c:]
		if in[8]|in[24]|in[40]|in[56] == 0 {
			dc := in[0] << pass1Bits
			ws[c], ws[8+c] = dc, dc
			continue
		}
		tmp10 := in[0] << (constBits + 2)
		tmp0 := -in[56]*fix_0_720959822 + in[40]*fix_0_850430095 - in[24]*fix_1_272758580 + in[8]*fix_3_624509785
		const sh, rnd = constBits - pass1Bits + 2, 1 << (constBits - pass1Bits + 1)
		ws[c] = (tmp10 + tmp0 + rnd) >> sh
		ws[8+c] = (tmp10 - tmp0 + rnd) >> sh
	}
	for r := range 2 {
		in := (*[8]int32)(ws[8*r:])
		tmp10 := in[0] << (constBits + 2)
		tmp0 := -in[7]*fix_0_720959822 + in[5]*fix_0_850430095 - in[3]*fix_1_272758580 + in[1]*fix_3_624509785
		const sh, rnd = constBits + pass1Bits + 3 + 2, 1 << (constBits + pass1Bits + 3 + 1)
		row := (*[2]uint8)(dst[r*stride:])
		row[0] = clamp((tmp10+tmp0+rnd)>>sh + 128)
		row[1] = clamp((tmp10-tmp0+rnd)>>sh + 128)
	}
}

// idct1x1 is jidctred.c's jpeg_idct_1x1: the block's mean, DC/8.
func idct1x1(dst []uint8, _ int, blk *[64]int32) {
	dst[0] = clamp((blk[0]+4)>>3 + 128)
}
