package jpegdec

// unzig maps a coefficient's zig-zag index to its natural (row-major)
// index, with 16 extra entries as libjpeg's jpeg_natural_order has.
var unzig = [64 + 16]uint8{
	0, 1, 8, 16, 9, 2, 3, 10,
	17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34,
	27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36,
	29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46,
	53, 60, 61, 54, 47, 55, 62, 63,
	63, 63, 63, 63, 63, 63, 63, 63,
	63, 63, 63, 63, 63, 63, 63, 63,
}

// scan is one scan's components and their tables.
type scan struct {
	n      int
	comp   [3]int
	dc, ac [3]*huffTable
	q      [3]*[64]int32
}

// decodeScan decodes the entropy-coded data of a sequential scan that
// codes every component, interleaved, writing each block into its plane,
// and leaves d.pos at the first unread byte (the marker after the data,
// for well-formed input).
func (d *decoder) decodeScan(sc *scan) error {
	br := bitReader{data: d.data, pos: d.pos}
	var (
		blk  [64]int32
		pred [3]int32
	)
	nextRST := uint8(rst0Marker)
	mcus := d.mxx * d.myy
	if d.nComp == 1 {
		// A non-interleaved scan: one block per MCU, only those inside
		// the image (for one component, all of the MCU grid's).
		mcus = ((d.width + 7) / 8) * ((d.height + 7) / 8)
	}
	mxx := d.mxx
	if d.nComp == 1 {
		mxx = (d.width + 7) / 8
	}
	mcu, bs := 0, d.bs
	for my := range d.myy {
		for mx := range mxx {
			for i := range sc.n {
				c := &d.comp[sc.comp[i]]
				dct, act, q := sc.dc[i], sc.ac[i], sc.q[i]
				for j := range c.h * c.v {
					bx, by := c.h*mx+j%c.h, c.v*my+j/c.h
					last, err := br.decodeBlock(&blk, &pred[i], dct, act, q)
					if err != nil {
						return err
					}
					if d.check {
						d.checkBlock(&blk)
					}
					off := bs * (by*c.stride + bx)
					if last == 0 {
						fillDC(c.pix[off:], c.stride, bs, blk[0])
						blk[0] = 0
					} else {
						d.idct(c.pix[off:], c.stride, &blk)
						blk = [64]int32{}
					}
				}
			}
			mcu++
			if d.ri > 0 && mcu%d.ri == 0 && mcu < mcus {
				if br.truncated() {
					return formatError("short Huffman data")
				}
				if err := d.restart(&br, nextRST); err != nil {
					return err
				}
				nextRST = rst0Marker + (nextRST-rst0Marker+1)&7
				pred = [3]int32{}
			}
		}
		if br.truncated() {
			return formatError("short Huffman data")
		}
	}
	d.pos = br.pos
	d.warn = d.warn || br.warn
	return nil
}

// checkBlock notes in d.warn a block whose dequantized coefficients are
// outside what an 8-bit image's DCT gives (±2048), where two correct
// IDCTs may disagree by more than their rounding (see decodeWith in the
// tests).
func (d *decoder) checkBlock(blk *[64]int32) {
	for _, c := range blk {
		if c < -2048 || c > 2048 {
			d.warn = true
		}
	}
}

// restart moves br past the restart marker expected after a restart
// interval and empties it. Data before the marker is skipped (with a
// warning), as image/jpeg and libjpeg skip it; any other marker, another
// restart marker included, is an error, as in image/jpeg (libjpeg tries
// to resynchronize).
func (d *decoder) restart(br *bitReader, want uint8) error {
	p := br.pos
	if br.n-br.fake >= 8 || p < len(br.data) && br.data[p] != 0xff {
		d.warn = true // data left in the interval
	}
	for {
		for p < len(br.data) && br.data[p] != 0xff {
			p++
		}
		for p < len(br.data) && br.data[p] == 0xff {
			p++
		}
		if p >= len(br.data) {
			return formatError("missing restart marker")
		}
		m := br.data[p]
		p++
		if m == want {
			break
		}
		if m == 0 {
			continue
		}
		return formatError("bad RST marker")
	}
	*br = bitReader{data: br.data, pos: p, warn: br.warn}
	return nil
}

// decodeBlock decodes one block's coefficients (T.81 F.2.2), dequantized,
// into blk in natural order; blk must be zero on entry. pred is the
// component's DC predictor. It returns the zig-zag index of the last
// coefficient coded (0 when the block has only its DC).
func (br *bitReader) decodeBlock(blk *[64]int32, pred *int32, dct, act *huffTable, q *[64]int32) (int, error) {
	if br.n < 32 {
		br.refill()
	}
	acc, n := br.acc, br.n
	// The DC difference: a code, then s extra bits.
	var s, l uint
	if e := dct.look[acc>>(64-lookBits)]; e != 0 {
		l, s = uint(e>>8), uint(e&0xff)
	} else {
		var v uint8
		v, l = dct.decodeSlow(acc)
		if l == 0 {
			return 0, formatError("bad Huffman code")
		}
		s = uint(v)
	}
	acc <<= l
	n -= l
	if s > 16 {
		return 0, formatError("excessive DC component")
	}
	if s != 0 {
		*pred += extend(int32(acc>>(64-s)), int(s))
		acc <<= s
		n -= s
	}
	blk[0] = *pred * q[0]
	last := uint(0)
	for k := uint(1); k < 64; k++ {
		if n < 32 {
			br.acc, br.n = acc, n
			br.refill()
			acc, n = br.acc, br.n
		}
		b := acc >> (64 - lookBits)
		if f := act.fastAC[b]; f != 0 {
			if r := k + uint(f>>4&15); r < 64 {
				k = r
				l := uint(f & 15)
				acc <<= l
				n -= l
				blk[unzig[k]&63] = (f >> 8) * q[k]
				last = k
				continue
			}
		}
		var rs uint8
		if e := act.look[b]; e != 0 {
			l, rs = uint(e>>8), uint8(e)
		} else {
			rs, l = act.decodeSlow(acc)
			if l == 0 {
				return 0, formatError("bad Huffman code")
			}
		}
		acc <<= l
		n -= l
		r, s := uint(rs>>4), uint(rs&15)
		if s == 0 {
			if r != 15 {
				// End of block. A run with no value (r ≠ 0) is invalid
				// in a sequential scan: libjpeg ends the block, as we
				// do; image/jpeg reads it as a progressive EOB run.
				br.warn = br.warn || r != 0
				break
			}
			k += 15 // sixteen zeros
			continue
		}
		k += r
		if k > 63 {
			// A run past the block's end: image/jpeg drops the
			// coefficient and its extra bits stay in the stream.
			br.warn = true
			break
		}
		blk[unzig[k]&63] = extend(int32(acc>>(64-s)), int(s)) * q[k]
		acc <<= s
		n -= s
		last = k
	}
	br.acc, br.n = acc, n
	return int(last), nil
}
