package main

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// blasConv is the classic im2col + SGEMM convolution (one image at a time,
// as Caffe does) on OpenBLAS, for groups = 1. col is its column scratch.
type blasConv struct {
	g   tensorcore.ConvGeom
	col []float32 // (C·KH·KW × OH·OW)
}

func newBlasConv(g tensorcore.ConvGeom) *blasConv {
	return &blasConv{g: g, col: make([]float32, g.C*g.KH*g.KW*g.OH*g.OW)}
}

// im2col fills b.col from image x (C, H, W).
func (b *blasConv) im2col(x []float32) {
	g := b.g
	P := g.OH * g.OW
	for c := 0; c < g.C; c++ {
		for kh := 0; kh < g.KH; kh++ {
			for kw := 0; kw < g.KW; kw++ {
				row := b.col[((c*g.KH+kh)*g.KW+kw)*P:][:P]
				for oh := 0; oh < g.OH; oh++ {
					dst := row[oh*g.OW:][:g.OW]
					ih := oh*g.StrideH - g.PadH + kh*g.DilH
					if ih < 0 || ih >= g.H {
						clear(dst)
						continue
					}
					src := x[(c*g.H+ih)*g.W:][:g.W]
					for ow := range dst {
						iw := ow*g.StrideW - g.PadW + kw*g.DilW
						if iw >= 0 && iw < g.W {
							dst[ow] = src[iw]
						} else {
							dst[ow] = 0
						}
					}
				}
			}
		}
	}
}

// col2im adds b.col into image gx (C, H, W).
func (b *blasConv) col2im(gx []float32) {
	g := b.g
	P := g.OH * g.OW
	for c := 0; c < g.C; c++ {
		for kh := 0; kh < g.KH; kh++ {
			for kw := 0; kw < g.KW; kw++ {
				row := b.col[((c*g.KH+kh)*g.KW+kw)*P:][:P]
				for oh := 0; oh < g.OH; oh++ {
					ih := oh*g.StrideH - g.PadH + kh*g.DilH
					if ih < 0 || ih >= g.H {
						continue
					}
					dst := gx[(c*g.H+ih)*g.W:][:g.W]
					for ow, v := range row[oh*g.OW:][:g.OW] {
						iw := ow*g.StrideW - g.PadW + kw*g.DilW
						if iw >= 0 && iw < g.W {
							dst[iw] += v
						}
					}
				}
			}
		}
	}
}

func (b *blasConv) forward(x, w, bias, y []float32) {
	g := b.g
	P, K := g.OH*g.OW, g.C*g.KH*g.KW
	for n := 0; n < g.N; n++ {
		b.im2col(x[n*g.C*g.H*g.W:])
		yn := y[n*g.O*P:]
		sgemm(false, false, g.O, P, K, 1, w, K, b.col, P, 0, yn, P)
		for o := 0; o < g.O; o++ {
			bv := bias[o]
			for i := range yn[o*P : (o+1)*P] {
				yn[o*P+i] += bv
			}
		}
	}
}

func (b *blasConv) backwardData(gy, w, gx []float32) {
	g := b.g
	P, K := g.OH*g.OW, g.C*g.KH*g.KW
	clear(gx[:g.N*g.C*g.H*g.W])
	for n := 0; n < g.N; n++ {
		sgemm(true, false, K, P, g.O, 1, w, K, gy[n*g.O*P:], P, 0, b.col, P)
		b.col2im(gx[n*g.C*g.H*g.W:])
	}
}

func (b *blasConv) backwardWeight(x, gy, gw, gb []float32) {
	g := b.g
	P, K := g.OH*g.OW, g.C*g.KH*g.KW
	for n := 0; n < g.N; n++ {
		b.im2col(x[n*g.C*g.H*g.W:])
		beta := float32(1)
		if n == 0 {
			beta = 0
		}
		sgemm(false, true, g.O, K, P, 1, gy[n*g.O*P:], P, b.col, P, beta, gw, K)
	}
	for o := 0; o < g.O; o++ {
		var s float32
		for n := 0; n < g.N; n++ {
			for _, v := range gy[(n*g.O+o)*P : (n*g.O+o+1)*P] {
				s += v
			}
		}
		gb[o] = s
	}
}

var convLayers = []struct {
	name string
	x, w [4]int
	cp   tensorcore.ConvParams
}{
	{"lenet c1 64x1x28x28 5x5 pad2", [4]int{64, 1, 28, 28}, [4]int{6, 1, 5, 5}, tensorcore.ConvParams{PadH: 2, PadW: 2}},
	{"lenet c3 64x6x14x14 5x5", [4]int{64, 6, 14, 14}, [4]int{16, 6, 5, 5}, tensorcore.ConvParams{}},
	{"resnet 8x64x56x56 3x3 pad1", [4]int{8, 64, 56, 56}, [4]int{64, 64, 3, 3}, tensorcore.ConvParams{PadH: 1, PadW: 1}},
	{"resnet 8x128x28x28 3x3 pad1", [4]int{8, 128, 28, 28}, [4]int{128, 128, 3, 3}, tensorcore.ConvParams{PadH: 1, PadW: 1}},
}

// maxRelDiff is max |a-b| / max(1, max|b|): a sanity check that both sides
// compute the same thing.
func maxRelDiff(a, b []float32) float64 {
	var d, m float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	return d / math.Max(1, m)
}

func benchConv(ths []int, reps int, minFlop float64) {
	fmt.Println("\n## Convolution forward + backward (data and weight), NCHW; OpenBLAS side: im2col + cblas_sgemm per image")
	for _, l := range convLayers {
		g := tensorcore.NewConvGeom(l.x, l.w, l.cp)
		rng := rand.New(rand.NewPCG(9, 9))
		x, w := randSlice(rng, g.N*g.C*g.H*g.W), randSlice(rng, g.O*g.C*g.KH*g.KW)
		bias, gy := randSlice(rng, g.O), randSlice(rng, g.N*g.O*g.OH*g.OW)
		y1, gx1, gw1, gb1 := make([]float32, len(gy)), make([]float32, len(x)), make([]float32, len(w)), make([]float32, g.O)
		y2, gx2, gw2, gb2 := make([]float32, len(gy)), make([]float32, len(x)), make([]float32, len(w)), make([]float32, g.O)
		bc := newBlasConv(g)
		flop := 3 * 2 * float64(g.N*g.O*g.OH*g.OW) * float64(g.C*g.KH*g.KW)
		for _, th := range ths {
			p := tensorcore.NewPool(th)
			setThreads(th)
			ours := func() {
				tensorcore.Conv2D(p, g, x, w, bias, y1)
				tensorcore.Conv2DBackwardData(p, g, gy, w, gx1)
				tensorcore.Conv2DBackwardWeight(p, g, x, gy, gw1, gb1)
			}
			theirs := func() {
				bc.forward(x, w, bias, y2)
				bc.backwardData(gy, w, gx2)
				bc.backwardWeight(x, gy, gw2, gb2)
			}
			o, t := compare(reps, flop, minFlop/4, ours, theirs)
			report(fmt.Sprintf("%s threads=%d", l.name, th), o, t)
			if d := max(maxRelDiff(y1, y2), maxRelDiff(gx1, gx2), maxRelDiff(gw1, gw2), maxRelDiff(gb1, gb2)); d > 1e-4 {
				fmt.Printf("  WARNING: results differ (max relative difference %g)\n", d)
			}
			p.Close()
		}
	}
}
