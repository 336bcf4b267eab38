package imageset

import (
	"errors"
	"image"
)

// errOutput is returned for an empty output size or a destination too
// short for it.
var errOutput = errors.New("imageset: output size empty or destination too short")

// Pipeline decodes and transforms one encoded image at a time, as a Set's
// Fill does for each sample, reusing its working memory from call to
// call. The zero value is ready to use, with MaxPixels as the size limit.
// A Pipeline is not safe for concurrent use: give each goroutine its own.
type Pipeline struct {
	sc scratch
}

// Decode decodes a JPEG or PNG of at most MaxPixels pixels (see Decode).
func (pl *Pipeline) Decode(data []byte) (image.Image, error) {
	return Decode(data, MaxPixels)
}

// Sample decodes the encoded image data of sample index and writes it,
// transformed by p, into dst (3·p.H·p.W floats, CHW, normalized with
// ImageNet's mean and standard deviation): exactly what a Set's Fill
// writes for a sample with these bytes and this index.
func (pl *Pipeline) Sample(dst []float32, data []byte, p Params, index int) error {
	img, err := pl.Decode(data)
	if err != nil {
		return err
	}
	return pl.Transform(dst, img, p, index)
}

// Transform writes the decoded image img of sample index, transformed by
// p, into dst (3·p.H·p.W floats, CHW, normalized).
func (pl *Pipeline) Transform(dst []float32, img image.Image, p Params, index int) error {
	if len(dst) < 3*p.H*p.W || p.H < 1 || p.W < 1 {
		return errOutput
	}
	return transform(dst, img, p, index, &pl.sc)
}

// DecodeRGB decodes a JPEG or PNG of at most MaxPixels pixels into
// interleaved 8-bit RGB (Pillow's convert("RGB"), the chroma of a
// subsampled JPEG upsampled as libjpeg does) and returns the pixels, row
// by row, and the size. The pixels are the Pipeline's memory, valid until
// its next call.
func (pl *Pipeline) DecodeRGB(data []byte) (rgb []uint8, w, h int, err error) {
	img, err := pl.Decode(data)
	if err != nil {
		return nil, 0, 0, err
	}
	b := img.Bounds()
	pl.sc.rgb, err = rgbRegion(pl.sc.rgb, img, b)
	return pl.sc.rgb, b.Dx(), b.Dy(), err
}
