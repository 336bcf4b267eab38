package jpegdec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestIDCTImpls: every IDCT this build has equals idctGo for every kind
// of block (dense and sparse, DC-only columns, an 8-bit image's range and
// far beyond it, where int32 wraps), writes its 8×8 samples and nothing
// around them (guard bytes), and matches a float64 IDCT within 1 level in
// an 8-bit image's range (IEEE 1180's spirit).
func TestIDCTImpls(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const stride, guard = 13, 0xa5
	for name, idct := range idctImpls {
		for it := range 20000 {
			var blk [64]int32
			lim := []int32{0, 16, 300, 2048, 1 << 16, math.MaxInt32}[it%6]
			density := rng.IntN(65)
			for i := range blk {
				if rng.IntN(64) < density {
					blk[i] = int32(rng.Int64N(2*int64(lim)+1) - int64(lim))
				}
			}
			if it%7 == 0 { // DC-only columns
				for i := 8; i < 64; i++ {
					if i%8 < 4 {
						blk[i] = 0
					}
				}
			}
			in := blk
			got := make([]uint8, 10*stride)
			want := make([]uint8, 10*stride)
			for i := range got {
				got[i], want[i] = guard, guard
			}
			idct(got[stride+2:], stride, &blk)
			idctGo(want[stride+2:], stride, &in)
			if blk != in {
				t.Fatalf("%s: changed its input", name)
			}
			for i := range got {
				r, c := i/stride-1, i%stride-2
				inside := r >= 0 && r < 8 && c >= 0 && c < 8
				if got[i] != want[i] || (!inside && got[i] != guard) {
					t.Fatalf("%s, block %d (limit %d): byte (%d, %d) = %d, idctGo %d", name, it, lim, r, c, got[i], want[i])
				}
			}
			if lim <= 300 {
				for r := range 8 {
					for c := range 8 {
						if d := math.Abs(float64(want[(r+1)*stride+c+2]) - exactIDCT(&in, r, c)); d > 1 {
							t.Fatalf("block %d: sample (%d, %d) %d, exact %.2f", it, r, c, want[(r+1)*stride+c+2], exactIDCT(&in, r, c))
						}
					}
				}
			}
		}
	}
}

// exactIDCT is T.81's inverse DCT (A.3.3) of blk at sample (y, x), level
// shifted and clamped, in float64.
func exactIDCT(blk *[64]int32, y, x int) float64 {
	s := 0.0
	for v := range 8 {
		for u := range 8 {
			cu, cv := 1.0, 1.0
			if u == 0 {
				cu = math.Sqrt2 / 2
			}
			if v == 0 {
				cv = math.Sqrt2 / 2
			}
			s += cu * cv * float64(blk[8*v+u]) *
				math.Cos(float64(2*x+1)*float64(u)*math.Pi/16) * math.Cos(float64(2*y+1)*float64(v)*math.Pi/16)
		}
	}
	return min(max(s/4+128, 0), 255)
}

func BenchmarkIDCT(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	var blocks [64][64]int32
	for i := range blocks {
		for j := range 10 {
			blocks[i][j*j%64] = int32(rng.IntN(200) - 100)
		}
	}
	dst := make([]uint8, 8*64)
	for name, idct := range idctImpls {
		b.Run(name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				idct(dst, 64, &blocks[i%64])
			}
		})
	}
}
