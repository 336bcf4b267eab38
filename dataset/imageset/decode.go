package imageset

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"

	"github.com/ringtrain/ringtrain/dataset/imageset/jpegdec"
)

// MaxPixels is the largest image, in pixels (width·height), that Decode
// accepts: 2²⁵, e.g. 8192×4096, far above ImageNet's largest photographs.
// The check reads only the file's header, so a small file that claims a
// huge image costs nothing. Decoding an accepted image allocates at most
// about 16 bytes per pixel (a progressive JPEG's coefficients and the
// decoded planes), so at most about 512 MiB.
const MaxPixels = 1 << 25

// MaxImageBytes is the largest encoded image, in bytes, that is read:
// 64 MiB.
const MaxImageBytes = 64 << 20

// Format is an encoded image's format, sniffed from its first bytes.
type Format int

// The formats Decode reads.
const (
	Unknown Format = iota
	JPEG
	PNG
)

func (f Format) String() string {
	switch f {
	case JPEG:
		return "JPEG"
	case PNG:
		return "PNG"
	}
	return "unknown"
}

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// Sniff returns the format of the encoded image data by its magic bytes,
// whatever the file is named.
func Sniff(data []byte) Format {
	switch {
	case bytes.HasPrefix(data, []byte{0xff, 0xd8}):
		return JPEG
	case bytes.HasPrefix(data, pngMagic):
		return PNG
	}
	return Unknown
}

// DecodeConfig returns the format and header of the encoded image data
// and checks that it is a JPEG or a PNG of at least one and at most
// maxPixels pixels. It reads only the header.
func DecodeConfig(data []byte, maxPixels int) (Format, image.Config, error) {
	f := Sniff(data)
	var cfg image.Config
	var err error
	switch f {
	case JPEG:
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(data))
	case PNG:
		cfg, err = png.DecodeConfig(bytes.NewReader(data))
	default:
		n := min(len(data), 8)
		return f, cfg, fmt.Errorf("not a JPEG or PNG (%d bytes, starting % x)", len(data), data[:n])
	}
	if err != nil {
		return f, cfg, fmt.Errorf("bad %v header: %w", f, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 {
		return f, cfg, fmt.Errorf("%v of %d×%d pixels is empty", f, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return f, cfg, fmt.Errorf("%v of %d×%d pixels is larger than the %d pixels allowed", f, cfg.Width, cfg.Height, maxPixels)
	}
	return f, cfg, nil
}

// Decode decodes a JPEG or PNG (sniffed, not guessed from a name) of at
// most maxPixels pixels. The header is checked before any pixel is
// decoded (see MaxPixels). Errors say what is wrong, not which file: the
// caller names it. Baseline JPEGs are decoded by jpegdec (libjpeg's
// integer IDCT, so djpeg's planes to the bit), the others (progressive,
// CMYK, …: see jpegdec) by image/jpeg.
func Decode(data []byte, maxPixels int) (image.Image, error) {
	f, cfg, err := DecodeConfig(data, maxPixels)
	if err != nil {
		return nil, err
	}
	var img image.Image
	if f == JPEG {
		// Baseline JPEGs with jpegdec; the rest (progressive, CMYK, …)
		// with image/jpeg.
		img, err = jpegdec.Decode(data, maxPixels)
		if errors.Is(err, jpegdec.ErrUnsupported) {
			img, err = jpeg.Decode(bytes.NewReader(data))
		}
	} else {
		img, err = png.Decode(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("bad %v data: %w", f, err)
	}
	if b := img.Bounds(); b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, fmt.Errorf("%v decodes to %d×%d pixels, its header says %d×%d", f, b.Dx(), b.Dy(), cfg.Width, cfg.Height)
	}
	return img, nil
}

// errRect is returned by rgbRegion for a rectangle outside the image.
var errRect = errors.New("imageset: region outside the image")

// rgbRegion writes the pixels of r (in img's coordinates, inside its
// bounds) into dst as interleaved 8-bit RGB, row by row, and returns
// dst[:3·r.Dx()·r.Dy()], growing dst only when it is too short. It is
// Pillow's convert("RGB"): grey is copied to the three channels, CMYK is
// converted, alpha is dropped (not composited), 16-bit samples keep their
// high byte.
func rgbRegion(dst []uint8, img image.Image, r image.Rectangle) ([]uint8, error) {
	if !r.In(img.Bounds()) || r.Empty() {
		return dst, errRect
	}
	n := 3 * r.Dx() * r.Dy()
	if cap(dst) < n {
		dst = make([]uint8, n)
	}
	dst = dst[:n]
	o := 0
	switch m := img.(type) {
	case *image.YCbCr:
		if m.Rect.Min == (image.Point{}) && (m.SubsampleRatio == image.YCbCrSubsampleRatio420 || m.SubsampleRatio == image.YCbCrSubsampleRatio422) {
			fancyYCbCr(dst, m, r)
			break
		}
		// The chroma column of x is x/hs − Rect.Min.X/hs for every
		// subsampling (COffset's arithmetic, taken out of the loop).
		hs := 1
		switch m.SubsampleRatio {
		case image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420:
			hs = 2
		case image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410:
			hs = 4
		}
		for y := r.Min.Y; y < r.Max.Y; y++ {
			yrow := m.Y[m.YOffset(r.Min.X, y):][:r.Dx()]
			row := m.COffset(m.Rect.Min.X, y)
			first := m.Rect.Min.X / hs
			d := dst[o : o+3*len(yrow)]
			for i, yv := range yrow {
				ci := row + (r.Min.X+i)/hs - first
				d[3*i], d[3*i+1], d[3*i+2] = yccToRGB(yv, m.Cb[ci], m.Cr[ci])
			}
			o += 3 * len(yrow)
		}
	case *image.Gray:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, y):]
			for x := range r.Dx() {
				v := row[x]
				dst[o], dst[o+1], dst[o+2] = v, v, v
				o += 3
			}
		}
	case *image.CMYK:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, y):]
			for x := range r.Dx() {
				p := row[4*x : 4*x+4 : 4*x+4]
				dst[o], dst[o+1], dst[o+2] = color.CMYKToRGB(p[0], p[1], p[2], p[3])
				o += 3
			}
		}
	case *image.NRGBA:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, y):]
			for x := range r.Dx() {
				dst[o], dst[o+1], dst[o+2] = row[4*x], row[4*x+1], row[4*x+2]
				o += 3
			}
		}
	case *image.Paletted:
		var pal [256][3]uint8
		for i, c := range m.Palette {
			pal[i] = nrgb(c)
		}
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := m.Pix[m.PixOffset(r.Min.X, y):]
			for x := range r.Dx() {
				p := pal[row[x]]
				dst[o], dst[o+1], dst[o+2] = p[0], p[1], p[2]
				o += 3
			}
		}
	default:
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				p := nrgb(m.At(x, y))
				dst[o], dst[o+1], dst[o+2] = p[0], p[1], p[2]
				o += 3
			}
		}
	}
	return dst, nil
}

// fancyYCbCr is rgbRegion for a 4:2:0 or 4:2:2 image at the origin, with
// the chroma upsampled as libjpeg does by default (and so Pillow, whose
// JPEGs torchvision's models are trained on), not replicated: each
// full-resolution chroma sample weighs the nearest stored sample 3/4 and
// the next nearest 1/4 along each subsampled axis (9/16, 3/16, 3/16, 1/16
// for 4:2:0), edge samples standing in for those beyond the edge, with
// libjpeg's alternating rounding biases:
//
//	4:2:0: s(c) = 3·C[near row][c] + C[far row][c]
//	       even x: (3·s(c) + s(c−1) + 8) >> 4, odd x: (3·s(c) + s(c+1) + 7) >> 4
//	4:2:2: even x: (3·C[c] + C[c−1] + 1) >> 2,  odd x: (3·C[c] + C[c+1] + 2) >> 2
//
// where c = x/2 and the far row of an even y is the row above, of an odd y
// the row below. Each output row is made in two passes: the row's
// upsampled Cb and Cr, then the conversion of the row to RGB.
func fancyYCbCr(dst []uint8, m *image.YCbCr, r image.Rectangle) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cw := (w + 1) / 2
	ch := h
	if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
		ch = (h + 1) / 2
	}
	// The region's pixels sit on chroma columns lo … hi. e holds one
	// output row's vertical sums of those columns with a neighbour each
	// side (e[k] is column lo−1+k, the edge column standing in beyond
	// the edge); u the row's upsampled chroma, from pixel 2·lo.
	lo, hi := r.Min.X/2, (r.Max.X-1)/2
	nc := hi - lo + 1
	left, right := max(lo-1, 0), min(hi+1, cw-1)
	buf := make([]int32, 2*(nc+2))
	eb, er := buf[:nc+2], buf[nc+2:]
	up := make([]uint8, 4*nc)
	ub, ur := up[:2*nc], up[2*nc:]
	// The 4:2:0 sums are 4× a sample, the 4:2:2 ones 1×: the
	// horizontal filter then divides by 16 or by 4.
	shift, even, odd := uint(2), int32(1), int32(2)
	if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
		shift, even, odd = 4, 8, 7
	}
	off, nx := r.Min.X-2*lo, r.Dx()
	o := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		nrow, frow := y, y
		if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
			nrow, frow = y/2, y/2-1
			if y%2 == 1 {
				frow = y/2 + 1
			}
			frow = min(max(frow, 0), ch-1)
		}
		nb, fb := m.Cb[nrow*m.CStride:][:cw], m.Cb[frow*m.CStride:][:cw]
		nr, fr := m.Cr[nrow*m.CStride:][:cw], m.Cr[frow*m.CStride:][:cw]
		sum := func(p, q []uint8, c int) int32 {
			if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
				return 3*int32(p[c]) + int32(q[c])
			}
			return int32(p[c])
		}
		eb[0], er[0] = sum(nb, fb, left), sum(nr, fr, left)
		eb[nc+1], er[nc+1] = sum(nb, fb, right), sum(nr, fr, right)
		ib, ir := eb[1:nc+1], er[1:nc+1]
		if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
			nb, fb, nr, fr = nb[lo:lo+nc], fb[lo:lo+nc], nr[lo:lo+nc], fr[lo:lo+nc]
			for c := range ib {
				ib[c] = 3*int32(nb[c]) + int32(fb[c])
				ir[c] = 3*int32(nr[c]) + int32(fr[c])
			}
		} else {
			nb, nr = nb[lo:lo+nc], nr[lo:lo+nc]
			for c := range ib {
				ib[c], ir[c] = int32(nb[c]), int32(nr[c])
			}
		}
		// Chroma column c gives pixels 2c (leaning on column c−1) and
		// 2c+1 (leaning on c+1).
		b0, b1, b2 := eb[:nc], eb[1:nc+1], eb[2:nc+2]
		r0, r1, r2 := er[:nc], er[1:nc+1], er[2:nc+2]
		for c := range b1 {
			tb, tr := 3*b1[c], 3*r1[c]
			pb, pr := ub[2*c:2*c+2:2*c+2], ur[2*c:2*c+2:2*c+2]
			pb[0] = uint8((tb + b0[c] + even) >> shift)
			pb[1] = uint8((tb + b2[c] + odd) >> shift)
			pr[0] = uint8((tr + r0[c] + even) >> shift)
			pr[1] = uint8((tr + r2[c] + odd) >> shift)
		}
		yrow := m.Y[y*m.YStride+r.Min.X:][:nx]
		cb, cr := ub[off:off+nx], ur[off:off+nx]
		d := dst[o : o+3*nx]
		for i, yv := range yrow {
			p := d[3*i : 3*i+3 : 3*i+3]
			p[0], p[1], p[2] = yccToRGB(yv, cb[i], cr[i])
		}
		o += 3 * nx
	}
}

// yccToRGB converts a JPEG's (JFIF's) Y'CbCr to RGB:
//
//	R = Y' + 1.402·(Cr−128)
//	G = Y' − 0.344136·(Cb−128) − 0.714136·(Cr−128)
//	B = Y' + 1.772·(Cb−128)
//
// in the fixed point of image/color's YCbCrToRGB, to the bit (its
// factors times 2¹⁶ rounded, Y' scaled by 0x10101 so that grey maps to
// itself, then clamped to 0..255); small enough to be inlined.
func yccToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	yy := int32(y) * 0x10101
	b1, r1 := int32(cb)-128, int32(cr)-128
	return clamp16(yy + 91881*r1), clamp16(yy - 22554*b1 - 46802*r1), clamp16(yy + 116130*b1)
}

// clamp16 returns v/2¹⁶, rounded down, clamped to 0..255.
func clamp16(v int32) uint8 { return uint8(min(max(v>>16, 0), 255)) }

// nrgb returns c's non-premultiplied RGB, high bytes, alpha dropped.
func nrgb(c color.Color) [3]uint8 {
	n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
	return [3]uint8{uint8(n.R >> 8), uint8(n.G >> 8), uint8(n.B >> 8)}
}
