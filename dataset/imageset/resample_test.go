package imageset

import (
	"bytes"
	"testing"
)

// TestResampleRGBMatchesReference: the resampler's loops give
// resampleRGBRef's bytes exactly, for shrinking and enlarging, crops of
// every shape and position (so every tap count the loops specialize), and
// saturated pixels (the sums' extremes), with guard bytes around the
// output that must stay untouched.
func TestResampleRGBMatchesReference(t *testing.T) {
	r := rng{s: 42}
	const guard = 64
	var buf resampleBuf
	for trial := range 400 {
		sw, sh := 1+r.intn(300), 1+r.intn(300)
		src := make([]uint8, 3*sw*sh)
		for i := range src {
			switch trial % 4 {
			case 0: // saturated: 0 and 255 only
				src[i] = uint8(r.next()>>63) * 255
			default:
				src[i] = uint8(r.next())
			}
		}
		cw, ch := 1+r.intn(sw), 1+r.intn(sh)
		cx, cy := r.intn(sw-cw+1), r.intn(sh-ch+1)
		ow, oh := 1+r.intn(260), 1+r.intn(260)
		xs, ys := resampleAxis(cx, cw, ow, 0, ow), resampleAxis(cy, ch, oh, 0, oh)
		if trial%5 == 0 { // an evaluation-style window of a larger resize
			rw, rh := ow+r.intn(40), oh+r.intn(40)
			xs = resampleAxis(cx, cw, rw, r.intn(rw-ow+1), ow)
			ys = resampleAxis(cy, ch, rh, r.intn(rh-oh+1), oh)
		}
		x0, x1 := xs.span()
		y0, y1 := ys.span()
		region := make([]uint8, 0, 3*(x1-x0)*(y1-y0))
		for y := y0; y < y1; y++ {
			region = append(region, src[3*(y*sw+x0):3*(y*sw+x1)]...)
		}
		n := 3 * ow * oh
		want := make([]uint8, n)
		resampleRGBRef(want, xs, ys, region, x1-x0, x0, y0, nil)
		got := make([]uint8, n+2*guard)
		for i := range got {
			got[i] = 0xa5
		}
		resampleRGB(got[guard:guard+n], xs, ys, region, x1-x0, x0, y0, &buf)
		if !bytes.Equal(got[guard:guard+n], want) {
			t.Fatalf("trial %d: %d×%d crop %d×%d at (%d, %d) to %d×%d: output differs from the reference", trial, sw, sh, cw, ch, cx, cy, ow, oh)
		}
		for i := range guard {
			if got[i] != 0xa5 || got[guard+n+i] != 0xa5 {
				t.Fatalf("trial %d: a guard byte was written", trial)
			}
		}
	}
}
