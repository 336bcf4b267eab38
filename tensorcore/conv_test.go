package tensorcore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

type convCase struct {
	x, w [4]int
	cp   ConvParams
}

func convCases() []convCase {
	return []convCase{
		{x: [4]int{2, 1, 12, 12}, w: [4]int{3, 1, 5, 5}, cp: ConvParams{PadH: 2, PadW: 2}},
		{x: [4]int{3, 6, 9, 9}, w: [4]int{4, 6, 5, 5}},
		{x: [4]int{2, 3, 11, 13}, w: [4]int{5, 3, 3, 3}, cp: ConvParams{StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}},
		{x: [4]int{1, 4, 10, 10}, w: [4]int{2, 4, 3, 3}, cp: ConvParams{DilH: 2, DilW: 2, PadH: 2, PadW: 2}},
		{x: [4]int{2, 4, 7, 9}, w: [4]int{6, 2, 3, 3}, cp: ConvParams{PadH: 1, PadW: 1, Groups: 2}},
		{x: [4]int{2, 3, 8, 8}, w: [4]int{3, 1, 3, 3}, cp: ConvParams{PadH: 1, PadW: 1, Groups: 3}},
		{x: [4]int{2, 3, 9, 10}, w: [4]int{4, 3, 2, 4}, cp: ConvParams{StrideW: 2, PadW: 3}},
		{x: [4]int{2, 3, 5, 6}, w: [4]int{4, 3, 1, 1}, cp: ConvParams{PadH: 1, PadW: 2}},
		{x: [4]int{3, 5, 7, 7}, w: [4]int{7, 5, 1, 1}},
		{x: [4]int{3, 17, 13, 13}, w: [4]int{19, 17, 3, 3}, cp: ConvParams{PadH: 1, PadW: 1}},
		{x: [4]int{5, 2, 3, 3}, w: [4]int{3, 2, 3, 3}},
		{x: [4]int{2, 40, 6, 5}, w: [4]int{13, 40, 3, 3}, cp: ConvParams{PadH: 1, PadW: 1}},
		{x: [4]int{1, 3, 17, 1}, w: [4]int{2, 3, 3, 1}, cp: ConvParams{StrideH: 3, DilH: 2, PadH: 4}},
		{x: [4]int{2, 6, 9, 7}, w: [4]int{6, 2, 3, 2}, cp: ConvParams{StrideH: 2, StrideW: 3, DilW: 2, PadH: 1, Groups: 3}},
	}
}

// convWant64 computes, in float64, the values and magnitudes (sum of |terms|)
// of the forward output, the input gradient and the weight gradient.
func convWant64(g ConvGeom, x, w, gy []float32) (y, ymag, gx, gxmag, gw, gwmag []float64) {
	y, ymag = make([]float64, g.N*g.O*g.OH*g.OW), make([]float64, g.N*g.O*g.OH*g.OW)
	gx, gxmag = make([]float64, len(x)), make([]float64, len(x))
	gw, gwmag = make([]float64, len(w)), make([]float64, len(w))
	convTaps(g, func(xi, wi, yi int) {
		p := float64(x[xi]) * float64(w[wi])
		y[yi] += p
		ymag[yi] += math.Abs(p)
		q := float64(gy[yi]) * float64(w[wi])
		gx[xi] += q
		gxmag[xi] += math.Abs(q)
		r := float64(x[xi]) * float64(gy[yi])
		gw[wi] += r
		gwmag[wi] += math.Abs(r)
	})
	return
}

func checkClose(t *testing.T, what string, got []float32, want, mag []float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5*mag[i]+1e-30) {
			t.Fatalf("%s: [%d] = %g, want %g (tolerance %g)", what, i, got[i], want[i], 1e-5*mag[i])
		}
	}
}

func TestConvMatchesReference(t *testing.T) {
	pools := testPools()
	defer closePools(pools)
	rng := rand.New(rand.NewPCG(21, 22))
	for ci, cc := range convCases() {
		g := NewConvGeom(cc.x, cc.w, cc.cp)
		nx, nw, ny := g.N*g.C*g.H*g.W, g.O*(g.C/g.Groups)*g.KH*g.KW, g.N*g.O*g.OH*g.OW
		x, w, gy := randSlice(rng, nx), randSlice(rng, nw), randSlice(rng, ny)
		bias := randSlice(rng, g.O)
		y64, ymag, gx64, gxmag, gw64, gwmag := convWant64(g, x, w, gy)
		for i := range y64 {
			b := float64(bias[(i/(g.OH*g.OW))%g.O])
			y64[i] += b
			ymag[i] += math.Abs(b)
		}
		gb64, gbmag := make([]float64, g.O), make([]float64, g.O)
		for i, v := range gy {
			o := (i / (g.OH * g.OW)) % g.O
			gb64[o] += float64(v)
			gbmag[o] += math.Abs(float64(v))
		}
		for _, ks := range availableKernels() {
			for pi, p := range pools {
				name := fmt.Sprintf("case %d %+v %s pool %d", ci, g, ks.name, pi)
				off := 1 + 2*(pi%2)
				nan := float32(math.NaN())
				fill := func(gd *guarded) {
					for i := range gd.data() {
						gd.data()[i] = nan // outputs are overwritten, never read
					}
				}

				y := newGuarded(nil, off, ny)
				fill(y)
				conv2DWith(ks, p, g, x, w, bias, y.data())
				y.checkGuards(t, name+" y")
				checkClose(t, name+" forward", y.data(), y64, ymag)

				gx := newGuarded(nil, off, nx)
				fill(gx)
				conv2DBackwardDataWith(ks, p, g, gy, w, gx.data())
				gx.checkGuards(t, name+" gx")
				checkClose(t, name+" backward data", gx.data(), gx64, gxmag)

				gw := newGuarded(nil, off, nw)
				gb := newGuarded(nil, off, g.O)
				fill(gw)
				fill(gb)
				conv2DBackwardWeightWith(ks, p, g, x, gy, gw.data(), gb.data())
				gw.checkGuards(t, name+" gw")
				gb.checkGuards(t, name+" gb")
				checkClose(t, name+" backward weight", gw.data(), gw64, gwmag)
				checkClose(t, name+" backward bias", gb.data(), gb64, gbmag)

				conv2DBackwardWeightWith(ks, p, g, x, gy, gw.data(), nil)
				checkClose(t, name+" backward weight without bias", gw.data(), gw64, gwmag)
			}
		}
	}
}

// TestConvExportedMatchesReference runs the exported entry points against
// the float32 references on a LeNet-like layer.
func TestConvExportedMatchesReference(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	rng := rand.New(rand.NewPCG(23, 24))
	g := NewConvGeom([4]int{4, 6, 14, 14}, [4]int{16, 6, 5, 5}, ConvParams{})
	x, w := randSlice(rng, g.N*g.C*g.H*g.W), randSlice(rng, g.O*g.C*g.KH*g.KW)
	bias, gy := randSlice(rng, g.O), randSlice(rng, g.N*g.O*g.OH*g.OW)
	y64, ymag, gx64, gxmag, gw64, gwmag := convWant64(g, x, w, gy)
	_ = y64
	y, yref := make([]float32, len(gy)), make([]float32, len(gy))
	Conv2D(p, g, x, w, bias, y)
	conv2DRef(g, x, w, bias, yref)
	for i := range y {
		ymag[i] += math.Abs(float64(bias[(i/(g.OH*g.OW))%g.O]))
	}
	checkClose(t, "Conv2D vs conv2DRef", y, f64(yref), ymag)
	gx, gxref := make([]float32, len(x)), make([]float32, len(x))
	Conv2DBackwardData(p, g, gy, w, gx)
	conv2DBackwardDataRef(g, gy, w, gxref)
	checkClose(t, "backward data", gx, gx64, gxmag)
	checkClose(t, "backward data vs ref", gxref, gx64, gxmag)
	gw, gb := make([]float32, len(w)), make([]float32, g.O)
	Conv2DBackwardWeight(p, g, x, gy, gw, gb)
	checkClose(t, "backward weight", gw, gw64, gwmag)
}

func f64(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}

func TestConvDeterministic(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	rng := rand.New(rand.NewPCG(25, 26))
	g := NewConvGeom([4]int{4, 16, 10, 10}, [4]int{32, 16, 3, 3}, ConvParams{PadH: 1, PadW: 1})
	x, gy := randSlice(rng, g.N*g.C*g.H*g.W), randSlice(rng, g.N*g.O*g.OH*g.OW)
	gw1, gw2 := make([]float32, g.O*g.C*9), make([]float32, g.O*g.C*9)
	Conv2DBackwardWeight(p, g, x, gy, gw1, nil)
	Conv2DBackwardWeight(p, g, x, gy, gw2, nil)
	for i := range gw1 {
		if math.Float32bits(gw1[i]) != math.Float32bits(gw2[i]) {
			t.Fatalf("gw[%d] differs between runs", i)
		}
	}
}

func TestConvZeroAllocs(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	rng := rand.New(rand.NewPCG(27, 28))
	g := NewConvGeom([4]int{4, 6, 14, 14}, [4]int{16, 6, 5, 5}, ConvParams{PadH: 1, PadW: 1})
	x, w := randSlice(rng, g.N*g.C*g.H*g.W), randSlice(rng, g.O*g.C*25)
	y, gx, gw, gb := make([]float32, g.N*g.O*g.OH*g.OW), make([]float32, len(x)), make([]float32, len(w)), make([]float32, g.O)
	step := func() {
		Conv2D(p, g, x, w, gb, y)
		Conv2DBackwardData(p, g, y, w, gx)
		Conv2DBackwardWeight(p, g, x, y, gw, gb)
	}
	step()
	if a := testing.AllocsPerRun(5, step); a != 0 {
		t.Fatalf("%v allocs per forward+backward", a)
	}
}
