// Package jpegdec is a fast decoder of baseline JPEGs for the training
// input pipeline. It produces the same image as the standard library's
// image/jpeg (an *image.YCbCr or *image.Gray with the same planes,
// strides and subsample ratio), with libjpeg's "islow" integer IDCT
// (jidctint.c), so that its planes are libjpeg-turbo's djpeg's to the
// bit.
//
// It decodes sequential Huffman-coded JPEGs of 8-bit samples (SOF0 and
// SOF1) with one component (grey) or three (YCbCr) in one interleaved
// scan, with any sampling factors image/jpeg accepts (4:4:4, 4:4:0,
// 4:2:2, 4:2:0, 4:1:1, 4:1:0, in any of their spellings), restart
// intervals, and any APPn and COM segments. Everything else gives an
// error that wraps ErrUnsupported, for the caller to fall back to
// image/jpeg: progressive (SOF2), arithmetic coding, lossless and
// hierarchical JPEGs, 12-bit samples, 4-component (CMYK, YCCK) images,
// 3-component images that image/jpeg reads as RGB (without a JFIF APP0
// segment, an Adobe APP14 segment with transform 0 or components named
// 'R', 'G', 'B'; found only once the file is decoded), and frames coded
// in more than one scan. Adobe's YCbCr (transform 1)
// is decoded.
//
// Hostile input gives an error, never a panic: the frame's size is checked
// against the caller's pixel bound before anything is allocated (the
// image's planes, about 1.5 bytes a pixel for 4:2:0, and 52 KiB of
// Huffman tables at most); Huffman tables are checked to be prefix codes (not
// over-subscribed, as libjpeg checks) of at most 16 bits; entropy-coded
// data that ends (at a marker or the end of the input) before the image
// is complete is an error, as in image/jpeg (libjpeg would warn and fill
// the rest with grey instead). A file that lacks the final EOI marker,
// and a restart marker out of sequence, are errors too, as in image/jpeg.
//
// The stages are kept apart as in image/jpeg: reader.go parses markers,
// huffman.go builds the lookup tables and reads bits, scan.go decodes
// MCUs, idct.go holds the inverse DCT (plain Go, the reference of the
// assembly in idct_amd64.s).
package jpegdec

import (
	"errors"
	"fmt"
	"image"
)

// ErrUnsupported is wrapped by the error for a valid JPEG that this
// package does not decode (see the package comment); image/jpeg may.
var ErrUnsupported = errors.New("jpegdec: unsupported JPEG")

func unsupported(what string) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, what)
}

// formatError is a malformed JPEG.
type formatError string

func (e formatError) Error() string { return "jpegdec: invalid JPEG: " + string(e) }

// The markers (ITU T.81 table B.1).
const (
	sof0Marker = 0xc0 // baseline
	sof1Marker = 0xc1 // extended sequential, Huffman
	sof2Marker = 0xc2 // progressive, Huffman
	dhtMarker  = 0xc4
	rst0Marker = 0xd0
	rst7Marker = 0xd7
	soiMarker  = 0xd8
	eoiMarker  = 0xd9
	sosMarker  = 0xda
	dqtMarker  = 0xdb
	dnlMarker  = 0xdc
	driMarker  = 0xdd
	app0Marker = 0xe0
	app14      = 0xee
	app15      = 0xef
	comMarker  = 0xfe
)

// component is one colour component of the frame.
type component struct {
	id   uint8
	h, v int   // sampling factors
	tq   uint8 // quantization table
	// The plane the component's blocks are written into.
	pix    []uint8
	stride int
}

// decoder holds one decoding's state.
type decoder struct {
	data []byte
	pos  int // the next byte of data to read

	width, height  int
	nComp          int
	comp           [3]component
	quant          [4][64]int32 // in zig-zag order
	quantSet       [4]bool
	dc, ac         [4]*huffTable
	ri             int // restart interval in MCUs, 0 for none
	jfif           bool
	adobe          bool  // an Adobe APP14 segment was read
	adobeTransform uint8 // its transform
	baseline       bool
	decoded        bool // a scan has been decoded
	idct           func(dst []uint8, stride int, blk *[64]int32)
	// bs is the size of a decoded block: 8, or 4, 2, 1 when scaled
	// (DecodeScaled); 0 means 8.
	bs int
	// check asks for the coefficients' range to be checked; warn says
	// the data was malformed in a way decoders resolve differently (a
	// run past a block's end or without a value, data before a restart
	// marker) or had coefficients beyond an 8-bit image's range (see
	// decodeWith in the tests).
	check, warn bool

	img1 *image.Gray
	img3 *image.YCbCr
	// mxx, myy are the number of MCUs across and down.
	mxx, myy int
}

// Decode decodes the baseline JPEG in data into an *image.YCbCr (three
// components) or an *image.Gray (one), laid out as image/jpeg lays them
// out. A frame of more than maxPixels pixels is an error, found before
// anything is allocated. A JPEG that this package does not decode gives
// an error wrapping ErrUnsupported. The image is newly allocated; data is
// only read. Decode is safe for concurrent use.
func Decode(data []byte, maxPixels int) (image.Image, error) {
	d := decoder{data: data, idct: bestIDCT}
	return d.decode(maxPixels)
}

func (d *decoder) decode(maxPixels int) (image.Image, error) {
	if len(d.data) < 2 || d.data[0] != 0xff || d.data[1] != soiMarker {
		return nil, formatError("missing SOI marker")
	}
	d.pos = 2
	for {
		marker, err := d.nextMarker()
		if err != nil {
			return nil, err
		}
		if marker == eoiMarker {
			break
		}
		if rst0Marker <= marker && marker <= rst7Marker {
			continue // a stray restart marker, as image/jpeg ignores
		}
		if d.pos+2 > len(d.data) {
			return nil, formatError("short segment length")
		}
		n := int(d.data[d.pos])<<8 | int(d.data[d.pos+1]) - 2
		d.pos += 2
		if n < 0 {
			return nil, formatError("short segment length")
		}
		if d.pos+n > len(d.data) {
			return nil, formatError("segment runs past the end of the data")
		}
		seg := d.data[d.pos : d.pos+n]
		d.pos += n
		switch {
		case marker == sof0Marker || marker == sof1Marker:
			d.baseline = marker == sof0Marker
			err = d.processSOF(seg, maxPixels)
		case marker == sof2Marker:
			return nil, unsupported("progressive")
		case 0xc3 <= marker && marker <= 0xcf && marker != dhtMarker && marker != 0xc8 && marker != 0xcc:
			return nil, unsupported(fmt.Sprintf("SOF%d (arithmetic, lossless or hierarchical)", marker-sof0Marker))
		case marker == 0xcc:
			return nil, unsupported("arithmetic coding")
		case marker == dhtMarker:
			err = d.processDHT(seg)
		case marker == dqtMarker:
			err = d.processDQT(seg)
		case marker == driMarker:
			if len(seg) != 2 {
				return nil, formatError("DRI has wrong length")
			}
			d.ri = int(seg[0])<<8 | int(seg[1])
		case marker == sosMarker:
			d.pos -= n // the scan's data follows its header
			err = d.processSOS(seg)
		case marker == app0Marker:
			if len(seg) >= 5 && string(seg[:5]) == "JFIF\x00" {
				d.jfif = true
			}
		case marker == app14:
			// An Adobe segment's transform: 0 for RGB (or CMYK), 1
			// for YCbCr (or YCCK), as image/jpeg reads it.
			if len(seg) >= 12 && string(seg[:5]) == "Adobe" {
				d.adobe, d.adobeTransform = true, seg[11]
			}
		case app0Marker <= marker && marker <= app15 || marker == comMarker:
		case marker == dnlMarker:
			return nil, unsupported("DNL marker")
		case marker < 0xc0:
			return nil, formatError("unknown marker")
		default:
			return nil, unsupported(fmt.Sprintf("marker %#x", marker))
		}
		if err != nil {
			return nil, err
		}
	}
	if !d.decoded {
		if d.nComp == 0 {
			return nil, formatError("missing SOF marker")
		}
		return nil, formatError("missing SOS marker")
	}
	if d.img1 != nil {
		return d.img1, nil
	}
	// image/jpeg's rule for RGB, applied once the whole file is read as
	// it applies it.
	if !d.jfif && (d.adobe && d.adobeTransform == 0 || d.comp[0].id == 'R' && d.comp[1].id == 'G' && d.comp[2].id == 'B') {
		return nil, unsupported("RGB components")
	}
	return d.img3, nil
}

// nextMarker skips to the next marker, past extraneous bytes as
// image/jpeg and libjpeg do, and returns its code.
func (d *decoder) nextMarker() (uint8, error) {
	for {
		for d.pos < len(d.data) && d.data[d.pos] != 0xff {
			d.pos++
		}
		// Fill bytes (0xff) may precede a marker.
		for d.pos < len(d.data) && d.data[d.pos] == 0xff {
			d.pos++
		}
		if d.pos >= len(d.data) {
			return 0, formatError("unexpected end of data (no EOI marker)")
		}
		m := d.data[d.pos]
		d.pos++
		if m != 0 { // 0xff00 is stuffed data, not a marker
			return m, nil
		}
	}
}

// processSOF reads a frame header (ITU T.81 B.2.2) and allocates the
// image, after checking its size against maxPixels.
func (d *decoder) processSOF(s []byte, maxPixels int) error {
	if d.nComp != 0 {
		return formatError("multiple SOF markers")
	}
	if len(s) < 6 {
		return formatError("SOF has wrong length")
	}
	if s[0] != 8 {
		return unsupported(fmt.Sprintf("%d-bit samples", s[0]))
	}
	d.height = int(s[1])<<8 | int(s[2])
	d.width = int(s[3])<<8 | int(s[4])
	n := int(s[5])
	switch n {
	case 1, 3:
	case 4:
		return unsupported("4 components (CMYK or YCCK)")
	default:
		return unsupported(fmt.Sprintf("%d components", n))
	}
	if len(s) != 6+3*n {
		return formatError("SOF has wrong length")
	}
	if d.height == 0 {
		return unsupported("height given by a DNL marker")
	}
	if d.width == 0 {
		return formatError("zero width")
	}
	if int64(d.width)*int64(d.height) > int64(maxPixels) {
		return fmt.Errorf("jpegdec: %d×%d pixels, more than the %d allowed", d.width, d.height, maxPixels)
	}
	d.nComp = n
	for i := range n {
		c := &d.comp[i]
		c.id = s[6+3*i]
		for j := range i {
			if d.comp[j].id == c.id {
				return formatError("repeated component identifier")
			}
		}
		c.tq = s[8+3*i]
		if c.tq > 3 {
			return formatError("bad Tq value")
		}
		hv := s[7+3*i]
		h, v := int(hv>>4), int(hv&0x0f)
		if h < 1 || 4 < h || v < 1 || 4 < v {
			return formatError("bad sampling factors")
		}
		if h == 3 || v == 3 {
			return unsupported("sampling factor 3")
		}
		if n == 1 {
			// One component is non-interleaved: one block per MCU
			// whatever its factors (T.81 A.2).
			h, v = 1, 1
		} else {
			// image/jpeg's rule: luma's factors are multiples of
			// chroma's, and the two chroma components agree.
			switch i {
			case 0:
				if v == 4 {
					return unsupported("sampling factors")
				}
			case 1:
				if d.comp[0].h%h != 0 || d.comp[0].v%v != 0 {
					return unsupported("sampling factors")
				}
			case 2:
				if d.comp[1].h != h || d.comp[1].v != v {
					return unsupported("sampling factors")
				}
			}
		}
		c.h, c.v = h, v
	}
	d.makeImg()
	return nil
}

// makeImg allocates the image as image/jpeg does: whole MCUs, then a
// sub-image of the frame's size.
func (d *decoder) makeImg() {
	if d.bs == 0 {
		d.bs = 8
	}
	bs, denom := d.bs, 8/d.bs
	w, h := (d.width+denom-1)/denom, (d.height+denom-1)/denom
	h0, v0 := d.comp[0].h, d.comp[0].v
	d.mxx = (d.width + 8*h0 - 1) / (8 * h0)
	d.myy = (d.height + 8*v0 - 1) / (8 * v0)
	if d.nComp == 1 {
		m := image.NewGray(image.Rect(0, 0, bs*d.mxx, bs*d.myy))
		d.comp[0].pix, d.comp[0].stride = m.Pix, m.Stride
		d.img1 = m.SubImage(image.Rect(0, 0, w, h)).(*image.Gray)
		return
	}
	var ratio image.YCbCrSubsampleRatio
	switch (h0/d.comp[1].h)<<4 | v0/d.comp[1].v {
	case 0x11:
		ratio = image.YCbCrSubsampleRatio444
	case 0x12:
		ratio = image.YCbCrSubsampleRatio440
	case 0x21:
		ratio = image.YCbCrSubsampleRatio422
	case 0x22:
		ratio = image.YCbCrSubsampleRatio420
	case 0x41:
		ratio = image.YCbCrSubsampleRatio411
	case 0x42:
		ratio = image.YCbCrSubsampleRatio410
	}
	m := image.NewYCbCr(image.Rect(0, 0, bs*h0*d.mxx, bs*v0*d.myy), ratio)
	d.comp[0].pix, d.comp[0].stride = m.Y, m.YStride
	d.comp[1].pix, d.comp[1].stride = m.Cb, m.CStride
	d.comp[2].pix, d.comp[2].stride = m.Cr, m.CStride
	d.img3 = m.SubImage(image.Rect(0, 0, w, h)).(*image.YCbCr)
}

// processDQT reads quantization tables (B.2.4.1), kept in zig-zag order.
func (d *decoder) processDQT(s []byte) error {
	for len(s) > 0 {
		pq, tq := s[0]>>4, s[0]&0x0f
		s = s[1:]
		if tq > 3 {
			return formatError("bad Tq value")
		}
		q := &d.quant[tq]
		switch pq {
		case 0:
			if len(s) < 64 {
				return formatError("DQT has wrong length")
			}
			for i := range q {
				q[i] = int32(s[i])
			}
			s = s[64:]
		case 1:
			if len(s) < 128 {
				return formatError("DQT has wrong length")
			}
			for i := range q {
				q[i] = int32(s[2*i])<<8 | int32(s[2*i+1])
			}
			s = s[128:]
		default:
			return formatError("bad Pq value")
		}
		d.quantSet[tq] = true
	}
	return nil
}

// processDHT reads Huffman tables (B.2.4.2).
func (d *decoder) processDHT(s []byte) error {
	for len(s) > 0 {
		if len(s) < 17 {
			return formatError("DHT has wrong length")
		}
		tc, th := s[0]>>4, s[0]&0x0f
		if tc > 1 || th > 3 || (d.baseline && th > 1) {
			return formatError("bad Tc or Th value")
		}
		var counts [16]uint8
		copy(counts[:], s[1:17])
		total := 0
		for _, c := range counts {
			total += int(c)
		}
		s = s[17:]
		if total == 0 || total > 256 || len(s) < total {
			return formatError("DHT has wrong length")
		}
		// A table redefined is rebuilt in place: at most 8 tables'
		// memory whatever the number of DHT segments.
		slot := &d.dc[th]
		if tc == 1 {
			slot = &d.ac[th]
		}
		if *slot == nil {
			*slot = new(huffTable)
		}
		if err := (*slot).build(&counts, s[:total], tc == 1); err != nil {
			return err
		}
		s = s[total:]
	}
	return nil
}

// processSOS reads a scan header (B.2.3) and decodes the scan's data,
// leaving d.pos at the marker after it.
func (d *decoder) processSOS(s []byte) error {
	if d.nComp == 0 {
		return formatError("missing SOF marker")
	}
	if len(s) < 6 || int(s[0]) > 4 || len(s) != 4+2*int(s[0]) {
		return formatError("SOS has wrong length")
	}
	n := int(s[0])
	if n != d.nComp {
		return unsupported("components in separate scans")
	}
	if d.decoded {
		// Legal, but never written: a second scan of the whole frame
		// would decode it again (image/jpeg's business, then).
		return unsupported("a second scan")
	}
	var sc scan
	sc.n = n
	for i := range n {
		id := s[1+2*i]
		ci := -1
		for j := range d.nComp {
			if d.comp[j].id == id {
				ci = j
			}
		}
		if ci < 0 {
			return formatError("unknown component selector")
		}
		for j := range i {
			if sc.comp[j] == ci {
				return formatError("repeated component selector")
			}
		}
		td, ta := s[2+2*i]>>4, s[2+2*i]&0x0f
		if td > 3 || ta > 3 || (d.baseline && (td > 1 || ta > 1)) {
			return formatError("bad Td or Ta value")
		}
		if d.dc[td] == nil || d.ac[ta] == nil {
			return formatError("missing Huffman table")
		}
		c := &d.comp[ci]
		if !d.quantSet[c.tq] {
			return formatError("missing quantization table")
		}
		sc.comp[i] = ci
		sc.dc[i], sc.ac[i] = d.dc[td], d.ac[ta]
		sc.q[i] = &d.quant[c.tq]
	}
	if n > 1 {
		total := 0
		for i := range n {
			total += d.comp[i].h * d.comp[i].v
		}
		if total > 10 {
			return formatError("total sampling factors too large")
		}
	}
	// Ss, Se, Ah/Al must be 0, 63, 0 in a sequential scan; image/jpeg
	// ignores them, and so does libjpeg, with a warning.
	d.pos += len(s)
	if err := d.decodeScan(&sc); err != nil {
		return err
	}
	d.decoded = true
	return nil
}
