package jpegdec

import "encoding/binary"

// lookBits is the number of bits the Huffman lookup tables index: codes
// of at most lookBits bits (nearly all of them in photographs) decode in
// one lookup.
const lookBits = 10

// huffTable is one Huffman table (T.81 C and F.2.2.3), as libjpeg's
// jdhuff.c derives it, plus lookup tables.
type huffTable struct {
	// look[b], for the next lookBits bits b of the stream, is the
	// length<<8 | value of the code they start with, or 0 when that code
	// is longer than lookBits bits.
	look [1 << lookBits]uint16
	// fastAC[b], for an AC table, decodes a code and its extra bits at
	// once when together they fit in lookBits bits: the coefficient's
	// value<<8 | run<<4 | total length (at most lookBits); 0 otherwise.
	fastAC [1 << lookBits]int32
	// maxcode[l] is the largest code of length l, -1 if none;
	// maxcode[17] stops the search. A code c of length l is the value
	// vals[c+valOffset[l]].
	maxcode   [18]int32
	valOffset [17]int32
	vals      [256]uint8
}

// build (re)builds t from a DHT segment's 16 code counts and its values.
// The counts must describe a prefix code (libjpeg's check: no length
// overflows the code space); the all-ones codes may be unused.
func (t *huffTable) build(counts *[16]uint8, vals []uint8, ac bool) error {
	clear(t.look[:])
	clear(t.fastAC[:])
	copy(t.vals[:], vals)
	var codes [256]int32
	code, p := int32(0), 0
	for l := 1; l <= 16; l++ {
		t.maxcode[l] = -1
		if counts[l-1] > 0 {
			t.valOffset[l] = int32(p) - code
		}
		for range counts[l-1] {
			codes[p] = code
			p++
			code++
		}
		if code > 1<<l {
			return formatError("bad Huffman table")
		}
		if counts[l-1] > 0 {
			t.maxcode[l] = code - 1
		}
		code <<= 1
	}
	t.maxcode[17] = 1 << 30
	p = 0
	for l := 1; l <= lookBits; l++ {
		for range counts[l-1] {
			v := vals[p]
			lo := int(codes[p]) << (lookBits - l)
			for i := lo; i < lo+1<<(lookBits-l); i++ {
				t.look[i] = uint16(l)<<8 | uint16(v)
				if !ac {
					continue
				}
				run, s := int32(v>>4), int(v&15)
				if s == 0 || l+s > lookBits {
					continue
				}
				extra := int32(i>>(lookBits-l-s)) & (1<<s - 1)
				t.fastAC[i] = extend(extra, s)<<8 | run<<4 | int32(l+s)
			}
			p++
		}
	}
	return nil
}

// extend is T.81's EXTEND (F.2.2.1): the s-bit field v as a signed value.
func extend(v int32, s int) int32 {
	if v < 1<<(s-1) {
		return v - (1<<s - 1)
	}
	return v
}

// bitReader reads the entropy-coded data of a scan, MSB first, with its
// stuffed zero bytes removed. acc holds n bits, left-aligned; the bits
// below them are zero. At a marker (or the end of the data) it stops and
// feeds zeros, as libjpeg does, counting them in fake: a scan that uses
// any of them (n < fake) is truncated.
type bitReader struct {
	data   []byte
	pos    int // the next byte of data; at a marker's 0xff once marker is set
	acc    uint64
	n      uint
	fake   uint
	marker bool
	warn   bool // the stream was not quite well-formed (see decoder.warn)
}

// refill tops acc up to at least 57 bits: eight bytes at a time where
// none of them is 0xff, else byte by byte.
func (br *bitReader) refill() {
	for br.n <= 56 {
		if !br.marker && br.pos+8 <= len(br.data) {
			v := binary.BigEndian.Uint64(br.data[br.pos:])
			x := ^v // a zero byte of x is a 0xff byte of v
			if (x-0x0101010101010101)&^x&0x8080808080808080 == 0 {
				k := (64 - br.n) / 8 // whole bytes that fit
				v = v >> (64 - 8*k) << (64 - 8*k)
				br.acc |= v >> br.n
				br.n += 8 * k
				br.pos += int(k)
				continue
			}
		}
		if br.marker || br.pos >= len(br.data) {
			br.marker = true
			br.n += 8
			br.fake += 8
			continue
		}
		b := br.data[br.pos]
		if b == 0xff {
			if br.pos+1 < len(br.data) && br.data[br.pos+1] == 0 {
				br.pos += 2
			} else {
				br.marker = true
				continue
			}
		} else {
			br.pos++
		}
		br.acc |= uint64(b) << (56 - br.n)
		br.n += 8
	}
}

// truncated reports whether the scan has used bits beyond its data.
func (br *bitReader) truncated() bool { return br.n < br.fake }

// decodeSlow decodes a code longer than lookBits bits (or any code, bit
// by bit as jdhuff.c's jpeg_huff_decode), from acc holding at least 16
// bits. It returns the value and the code's length, 0 for a bad code.
func (t *huffTable) decodeSlow(acc uint64) (uint8, uint) {
	for l := uint(1); l <= 16; l++ {
		code := int32(acc >> (64 - l))
		if code <= t.maxcode[l] {
			return t.vals[uint8(code+t.valOffset[l])], l
		}
	}
	return 0, 0
}
