package imageset

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"strings"
	"testing"
)

// gradient returns a w×h RGBA image whose colour varies smoothly.
func gradient(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(255 * x / w), uint8(255 * y / h), uint8(128 + 64*((x+y)%2)), 255})
		}
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image, q int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rgbAt returns the RGB of pixel (x, y) as rgbRegion converts it.
func rgbAt(t *testing.T, img image.Image, x, y int) [3]uint8 {
	t.Helper()
	px, err := rgbRegion(nil, img, image.Rect(x, y, x+1, y+1))
	if err != nil {
		t.Fatal(err)
	}
	return [3]uint8{px[0], px[1], px[2]}
}

func TestDecodeFormats(t *testing.T) {
	src := gradient(40, 30)
	grey := image.NewGray(src.Bounds())
	pal := image.NewPaletted(src.Bounds(), color.Palette{color.RGBA{10, 20, 30, 255}, color.RGBA{200, 100, 50, 255}})
	nrgba := image.NewNRGBA(src.Bounds())
	for y := range 30 {
		for x := range 40 {
			c := src.RGBAAt(x, y)
			grey.SetGray(x, y, color.Gray{c.R})
			pal.SetColorIndex(x, y, uint8((x+y)%2))
			nrgba.SetNRGBA(x, y, color.NRGBA{c.R, c.G, c.B, uint8(x)}) // alpha is dropped, not composited
		}
	}
	for _, tc := range []struct {
		name string
		data []byte
		want func(x, y int) [3]uint8
		tol  int
	}{
		{"rgb png", encodePNG(t, src), func(x, y int) [3]uint8 { c := src.RGBAAt(x, y); return [3]uint8{c.R, c.G, c.B} }, 0},
		{"grey png", encodePNG(t, grey), func(x, y int) [3]uint8 { v := grey.GrayAt(x, y).Y; return [3]uint8{v, v, v} }, 0},
		{"paletted png", encodePNG(t, pal), func(x, y int) [3]uint8 {
			if (x+y)%2 == 0 {
				return [3]uint8{10, 20, 30}
			}
			return [3]uint8{200, 100, 50}
		}, 0},
		{"rgba png", encodePNG(t, nrgba), func(x, y int) [3]uint8 { c := src.RGBAAt(x, y); return [3]uint8{c.R, c.G, c.B} }, 0},
		{"ycbcr jpeg", encodeJPEG(t, src, 100), func(x, y int) [3]uint8 { c := src.RGBAAt(x, y); return [3]uint8{c.R, c.G, c.B} }, 40},
		{"grey jpeg", encodeJPEG(t, grey, 100), func(x, y int) [3]uint8 { v := grey.GrayAt(x, y).Y; return [3]uint8{v, v, v} }, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Decode(tc.data, MaxPixels)
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != 40 || b.Dy() != 30 {
				t.Fatalf("decoded %v, want 40×30", b)
			}
			var worst int
			for y := range 30 {
				for x := range 40 {
					got, want := rgbAt(t, img, x, y), tc.want(x, y)
					for c := range 3 {
						worst = max(worst, abs(int(got[c])-int(want[c])))
					}
				}
			}
			if worst > tc.tol {
				t.Fatalf("a channel differs by %d from the source, want at most %d", worst, tc.tol)
			}
		})
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// pngHeader returns a PNG of only a signature and an IHDR chunk claiming
// a w×h 8-bit RGB image.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.Write(pngMagic)
	chunk := make([]byte, 0, 17)
	chunk = append(chunk, "IHDR"...)
	chunk = binary.BigEndian.AppendUint32(chunk, w)
	chunk = binary.BigEndian.AppendUint32(chunk, h)
	chunk = append(chunk, 8, 2, 0, 0, 0)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestDecodeRejects(t *testing.T) {
	good := encodeJPEG(t, gradient(16, 16), 90)
	for _, tc := range []struct {
		name string
		data []byte
		max  int
		want string
	}{
		{"empty", nil, MaxPixels, "not a JPEG or PNG (0 bytes"},
		{"text", []byte("hello, world"), MaxPixels, "not a JPEG or PNG (12 bytes, starting 68 65"},
		{"huge png header", pngHeader(100000, 100000), MaxPixels, "PNG of 100000×100000 pixels is larger than the 33554432 pixels allowed"},
		{"over a small bound", good, 255, "JPEG of 16×16 pixels is larger than the 255 pixels allowed"},
		{"truncated jpeg", good[:len(good)-40], MaxPixels, "bad JPEG data"},
		{"jpeg header only", good[:4], MaxPixels, "bad JPEG header"},
		{"png without data", pngHeader(8, 8), MaxPixels, "bad PNG data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Decode(tc.data, tc.max)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, %v; want an error containing %q", img, err, tc.want)
			}
		})
	}
	if _, err := Decode(good, 256); err != nil {
		t.Fatalf("a 16×16 JPEG under a bound of 256 pixels: %v", err)
	}
}

func TestSniff(t *testing.T) {
	png := encodePNG(t, gradient(4, 4))
	jpg := encodeJPEG(t, gradient(4, 4), 90)
	if Sniff(png) != PNG || Sniff(jpg) != JPEG || Sniff([]byte("GIF89a")) != Unknown {
		t.Fatalf("Sniff: png %v, jpeg %v, gif %v", Sniff(png), Sniff(jpg), Sniff([]byte("GIF89a")))
	}
}

func TestRGBRegion(t *testing.T) {
	src := gradient(20, 10)
	img, err := Decode(encodePNG(t, src), MaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	r := image.Rect(3, 2, 9, 7)
	px, err := rgbRegion(make([]uint8, 1), img, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(px) != 3*6*5 {
		t.Fatalf("%d bytes for %v, want %d", len(px), r, 3*6*5)
	}
	for y := range 5 {
		for x := range 6 {
			c := src.RGBAAt(3+x, 2+y)
			if got := px[3*(6*y+x):][:3]; got[0] != c.R || got[1] != c.G || got[2] != c.B {
				t.Fatalf("pixel (%d, %d) = %v, want %v", x, y, got, c)
			}
		}
	}
	for _, bad := range []image.Rectangle{image.Rect(15, 0, 21, 5), image.Rect(0, 0, 0, 0), image.Rect(-1, 0, 3, 3)} {
		if _, err := rgbRegion(nil, img, bad); err == nil {
			t.Errorf("region %v of a 20×10 image: no error", bad)
		}
	}
}

// TestDecodeCMYK: testdata/cmyk.jpg is an Adobe CMYK JPEG (as ImageNet
// holds a few) of the gradient in testdata/cmyk_rgb.png; it decodes to
// that gradient's RGB within JPEG's error.
func TestDecodeCMYK(t *testing.T) {
	data, err := os.ReadFile("testdata/cmyk.jpg")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile("testdata/cmyk_rgb.png")
	if err != nil {
		t.Fatal(err)
	}
	img, err := Decode(data, MaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := img.(*image.CMYK); !ok {
		t.Fatalf("decoded a %T, want *image.CMYK", img)
	}
	want, err := Decode(ref, MaxPixels)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds() != want.Bounds() {
		t.Fatalf("CMYK JPEG is %v, the reference %v", img.Bounds(), want.Bounds())
	}
	b := img.Bounds()
	var worst int
	for y := range b.Dy() {
		for x := range b.Dx() {
			got, w := rgbAt(t, img, x, y), rgbAt(t, want, x, y)
			for c := range 3 {
				worst = max(worst, abs(int(got[c])-int(w[c])))
			}
		}
	}
	if worst > 8 {
		t.Fatalf("a channel differs by %d from the reference, want at most 8", worst)
	}
}

// FuzzDecode: any bytes decode to an image within the pixel bound that
// the transforms accept, or give an error; never a panic, and never an
// allocation for more pixels than the bound (the header is checked first).
func FuzzDecode(f *testing.F) {
	f.Add(encodeJPEG(f, gradient(24, 16), 75))
	f.Add(encodePNG(f, gradient(9, 7)))
	f.Add(encodePNG(f, image.NewGray(image.Rect(0, 0, 5, 3))))
	f.Add(pngHeader(1<<20, 1<<20))
	if cmyk, err := os.ReadFile("testdata/cmyk.jpg"); err == nil {
		f.Add(cmyk)
	}
	const bound = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(data, bound)
		if err != nil {
			return
		}
		b := img.Bounds()
		if b.Dx()*b.Dy() > bound || b.Empty() {
			t.Fatalf("decoded %v, over the bound of %d pixels", b, bound)
		}
		dst := make([]float32, 3*8*8)
		for _, p := range []Params{{H: 8, W: 8}, {H: 8, W: 8, Train: true, Seed: 1}} {
			if err := transform(dst, img, p, 3, &scratch{}); err != nil {
				t.Fatalf("%+v: %v", p, err)
			}
		}
	})
}

// TestRGBRegionYCbCr: the YCbCr conversion with its chroma offsets taken
// out of the loop equals the image's own At, for every subsampling and
// images and regions that start at odd coordinates.
func TestRGBRegionYCbCr(t *testing.T) {
	for _, ratio := range []image.YCbCrSubsampleRatio{
		image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410,
	} {
		m := image.NewYCbCr(image.Rect(-3, 5, 30, 22), ratio)
		r := rng{s: uint64(ratio)}
		for _, p := range [][]uint8{m.Y, m.Cb, m.Cr} {
			for i := range p {
				p[i] = uint8(r.next())
			}
		}
		for _, reg := range []image.Rectangle{m.Rect, image.Rect(0, 7, 13, 20), image.Rect(-1, 6, 29, 9), image.Rect(5, 21, 6, 22)} {
			px, err := rgbRegion(nil, m, reg)
			if err != nil {
				t.Fatal(err)
			}
			o := 0
			for y := reg.Min.Y; y < reg.Max.Y; y++ {
				for x := reg.Min.X; x < reg.Max.X; x++ {
					c := m.YCbCrAt(x, y)
					wr, wg, wb := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
					if px[o] != wr || px[o+1] != wg || px[o+2] != wb {
						t.Fatalf("%v, region %v, pixel (%d, %d): %v, want %v", ratio, reg, x, y, px[o:o+3], []uint8{wr, wg, wb})
					}
					o += 3
				}
			}
		}
	}
}

// TestFancyUpsamplingSmallAndRegions: libjpeg's chroma upsampling, for
// images of 1 to 5, 16 and 33 pixels a side and regions starting at every
// pixel of them (ending at the far edges or before), equals a
// direct per-pixel reading of its definition (fancyYCbCr's comment).
func TestFancyUpsamplingSmallAndRegions(t *testing.T) {
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio422} {
		sizes := []int{1, 2, 3, 4, 5, 16, 33}
		for _, w := range sizes {
			for _, h := range sizes {
				m := image.NewYCbCr(image.Rect(0, 0, w, h), ratio)
				r := rng{s: uint64(w*10 + h)}
				for _, p := range [][]uint8{m.Y, m.Cb, m.Cr} {
					for i := range p {
						p[i] = uint8(r.next())
					}
				}
				cw, ch := (w+1)/2, h
				if ratio == image.YCbCrSubsampleRatio420 {
					ch = (h + 1) / 2
				}
				at := func(p []uint8, cx, cy int) int {
					cx, cy = min(max(cx, 0), cw-1), min(max(cy, 0), ch-1)
					return int(p[cy*m.CStride+cx])
				}
				want := func(p []uint8, x, y int) uint8 {
					c, n, bias := x/2, x/2-1, 8
					if x%2 == 1 {
						n, bias = x/2+1, 7
					}
					if ratio == image.YCbCrSubsampleRatio422 {
						return uint8((3*at(p, c, y) + at(p, n, y) + 1 + x%2) >> 2) // +1 even, +2 odd
					}
					far := y/2 - 1
					if y%2 == 1 {
						far = y/2 + 1
					}
					s := func(cx int) int { return 3*at(p, cx, y/2) + at(p, cx, far) }
					return uint8((3*s(c) + s(n) + bias) >> 4)
				}
				for y0 := range h {
					for x0 := range w {
						// Regions end at the far edges and before them.
						reg := image.Rect(x0, y0, w-(x0*7)%(w-x0), h-(y0*5)%(h-y0))
						px, err := rgbRegion(nil, m, reg)
						if err != nil {
							t.Fatal(err)
						}
						o := 0
						for y := y0; y < reg.Max.Y; y++ {
							for x := x0; x < reg.Max.X; x++ {
								wr, wg, wb := color.YCbCrToRGB(m.Y[y*m.YStride+x], want(m.Cb, x, y), want(m.Cr, x, y))
								if px[o] != wr || px[o+1] != wg || px[o+2] != wb {
									t.Fatalf("%v %d×%d, region %v, pixel (%d, %d): %v, want %v", ratio, w, h, reg, x, y, px[o:o+3], []uint8{wr, wg, wb})
								}
								o += 3
							}
						}
					}
				}
			}
		}
	}
}

// TestYCCToRGBMatchesImageColor: the inlined conversion is image/color's
// YCbCrToRGB for every one of the 2²⁴ inputs.
func TestYCCToRGBMatchesImageColor(t *testing.T) {
	for i := range 1 << 24 {
		y, cb, cr := uint8(i>>16), uint8(i>>8), uint8(i)
		r, g, b := yccToRGB(y, cb, cr)
		wr, wg, wb := color.YCbCrToRGB(y, cb, cr)
		if r != wr || g != wg || b != wb {
			t.Fatalf("Y'CbCr (%d, %d, %d): RGB (%d, %d, %d), want (%d, %d, %d)", y, cb, cr, r, g, b, wr, wg, wb)
		}
	}
}
