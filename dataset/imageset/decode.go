package imageset

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
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
// caller names it.
func Decode(data []byte, maxPixels int) (image.Image, error) {
	f, cfg, err := DecodeConfig(data, maxPixels)
	if err != nil {
		return nil, err
	}
	var img image.Image
	if f == JPEG {
		img, err = jpeg.Decode(bytes.NewReader(data))
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
				d[3*i], d[3*i+1], d[3*i+2] = color.YCbCrToRGB(yv, m.Cb[ci], m.Cr[ci])
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
// the row below.
func fancyYCbCr(dst []uint8, m *image.YCbCr, r image.Rectangle) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	cw := (w + 1) / 2
	ch := h
	if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
		ch = (h + 1) / 2
	}
	// The column sums of one output row, for the columns the region
	// needs (and one beyond each side).
	c0, c1 := max(r.Min.X/2-1, 0), min((r.Max.X-1)/2+1, cw-1)
	sums := make([]int32, 2*(c1-c0+1))
	sb, sr := sums[:c1-c0+1], sums[c1-c0+1:]
	o := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
			near := y / 2
			far := near - 1
			if y%2 == 1 {
				far = near + 1
			}
			far = min(max(far, 0), ch-1)
			nb, fb := m.Cb[near*m.CStride:], m.Cb[far*m.CStride:]
			nr, fr := m.Cr[near*m.CStride:], m.Cr[far*m.CStride:]
			for c := c0; c <= c1; c++ {
				sb[c-c0] = 3*int32(nb[c]) + int32(fb[c])
				sr[c-c0] = 3*int32(nr[c]) + int32(fr[c])
			}
		} else {
			nb, nr := m.Cb[y*m.CStride:], m.Cr[y*m.CStride:]
			for c := c0; c <= c1; c++ {
				sb[c-c0], sr[c-c0] = int32(nb[c]), int32(nr[c])
			}
		}
		// The 4:2:0 sums are 4× a sample, the 4:2:2 ones 1×: the
		// horizontal filter then divides by 16 or by 4.
		shift, even, odd := uint(2), int32(1), int32(2)
		if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
			shift, even, odd = 4, 8, 7
		}
		yrow := m.Y[y*m.YStride:]
		for x := r.Min.X; x < r.Max.X; x++ {
			c := x / 2
			nbr, bias := c-1, even
			if x%2 == 1 {
				nbr, bias = c+1, odd
			}
			nbr = min(max(nbr, 0), cw-1)
			cb := (3*sb[c-c0] + sb[nbr-c0] + bias) >> shift
			cr := (3*sr[c-c0] + sr[nbr-c0] + bias) >> shift
			dst[o], dst[o+1], dst[o+2] = color.YCbCrToRGB(yrow[x], uint8(cb), uint8(cr))
			o += 3
		}
	}
}

// nrgb returns c's non-premultiplied RGB, high bytes, alpha dropped.
func nrgb(c color.Color) [3]uint8 {
	n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
	return [3]uint8{uint8(n.R >> 8), uint8(n.G >> 8), uint8(n.B >> 8)}
}
