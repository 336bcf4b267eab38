package models

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// PartialConv2d is a convolution in which each output map sees only some
// of the input maps, as the hidden layers of the digit nets of 1989 and
// 1998 did (LeCun et al. 1989's H2, LeNet-5's C3): Table[o] lists the
// input maps of output map o. Only the connected kernels are parameters:
// name.weight (connections, k, k), the kernels of output map 0's inputs in
// Table order, then map 1's, and so on; name.bias (out), unless NoBias.
// Forward scatters them, with zero kernels for the missing connections,
// into a full (out, in, k, k) weight and convolves with it, so the
// gradient of a missing connection is never computed into a parameter.
type PartialConv2d struct {
	W, GW   *tensorcore.Tensor // (connections, k, k)
	B, GB   *tensorcore.Tensor // (out) or nil
	P       tensorcore.ConvParams
	In, Out int
	K       int
	idx     []int              // (out·in): the row of [W; 0] each full kernel takes
	zero    *tensorcore.Tensor // (1, k·k) zeros: the missing kernels
}

// NewPartialConv2d adds a convolution from in to len(table) maps with k×k
// kernels connected as table says. Each map's weights are drawn from
// U(−b, b), b = √(3/fan-in) with the map's own fan-in (its inputs·k²), the
// LeCun-uniform rule; biases start at zero. A table that names an input
// outside [0, in), names one twice or leaves a map without inputs is an
// error recorded in b.
func NewPartialConv2d(b *Builder, name string, in, k int, table [][]int, cp tensorcore.ConvParams, noBias bool) *PartialConv2d {
	out := len(table)
	l := &PartialConv2d{P: cp, In: in, Out: out, K: k, idx: make([]int, out*in)}
	conns := 0
	for _, ins := range table {
		conns += len(ins)
	}
	for i := range l.idx {
		l.idx[i] = conns // the zero kernel
	}
	row := 0
	for o, ins := range table {
		if len(ins) == 0 {
			b.fail(fmt.Errorf("models: %s: map %d has no inputs", name, o))
		}
		for _, i := range ins {
			if i < 0 || i >= in || l.idx[o*in+i] != conns {
				b.fail(fmt.Errorf("models: %s: map %d: input %d is outside [0, %d) or repeated", name, o, i, in))
				continue
			}
			l.idx[o*in+i] = row
			row++
		}
	}
	init := func(dst []float32, _ []int, rng *rand.Rand) {
		p := 0
		for _, ins := range table {
			bound := math.Sqrt(3 / float64(len(ins)*k*k))
			for range len(ins) * k * k {
				if p < len(dst) {
					dst[p] = float32(bound * (2*rng.Float64() - 1))
				}
				p++
			}
		}
	}
	l.W, l.GW = b.Param(name+".weight", []int{max(conns, 1), k, k}, init)
	if !noBias {
		l.B, l.GB = b.Param(name+".bias", []int{out}, Zeros())
	}
	l.zero = tensorcore.New(1, k*k)
	return l
}

// Connections returns how many input maps the table connects in all.
func (l *PartialConv2d) Connections() int { return l.W.Shape[0] }

// Forward convolves x (N, in, H, W) through the connection table.
func (l *PartialConv2d) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	kk := l.K * l.K
	w := tp.Reshape(tp.Param(l.W, l.GW), l.W.Shape[0], kk)
	full := tp.IndexSelect(tp.Concat(0, w, tp.Const(l.zero)), 0, l.idx) // (out·in, k·k)
	var bias *tensorcore.Var
	if l.B != nil {
		bias = tp.Param(l.B, l.GB)
	}
	return tp.Conv2D(x, tp.Reshape(full, l.Out, l.In, l.K, l.K), bias, l.P)
}

// UnitBias adds a bias of its own to every unit of a (C, H, W) layer, as
// the 1989 zip-code net did (its maps shared weights, not biases).
// Parameters: name.bias (C, H, W), zeros at first.
type UnitBias struct {
	B, GB *tensorcore.Tensor // (C, H, W)
}

// NewUnitBias adds the biases of a c×h×w layer.
func NewUnitBias(b *Builder, name string, c, h, w int) *UnitBias {
	u := &UnitBias{}
	u.B, u.GB = b.Param(name+".bias", []int{c, h, w}, Zeros())
	return u
}

// Forward adds the biases to x (N, C, H, W).
func (u *UnitBias) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	return c.Tape.Add(x, c.Tape.Param(u.B, u.GB))
}

// MapAffine multiplies each map of an (N, C, H, W) input by a coefficient
// and adds a bias, both trainable, one pair per map: with the average
// before it, LeNet-5's subsampling layers S2 and S4. Parameters:
// name.weight (C, 1, 1), ones at first; name.bias (C, 1, 1), zeros.
type MapAffine struct {
	W, GW *tensorcore.Tensor // (C, 1, 1)
	B, GB *tensorcore.Tensor // (C, 1, 1)
}

// NewMapAffine adds the coefficients and biases of c maps.
func NewMapAffine(b *Builder, name string, c int) *MapAffine {
	m := &MapAffine{}
	m.W, m.GW = b.Param(name+".weight", []int{c, 1, 1}, Constant(1))
	m.B, m.GB = b.Param(name+".bias", []int{c, 1, 1}, Zeros())
	return m
}

// Forward returns x·w + b, map by map.
func (m *MapAffine) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	return tp.Add(tp.Mul(x, tp.Param(m.W, m.GW)), tp.Param(m.B, m.GB))
}

// PadWith pads the last two dimensions of an (N, C, H, W) input by P on
// every side with the value V (the background of the images, where zero
// is not): x − V padded with zeros, plus V.
type PadWith struct {
	P int
	V float32
}

// Forward pads x.
func (p PadWith) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	return tp.AddScalar(tp.Pad2D(tp.AddScalar(x, -p.V), p.P, p.P, p.P, p.P), p.V)
}

// mnistBackground is a blank MNIST pixel after the data sets'
// normalization: (0 − 0.1307)/0.3081.
const mnistBackground = -0.1307 / 0.3081

// lenet5C3 is the connection table of LeNet-5's C3 (LeCun et al. 1998,
// Table I): the S2 maps each C3 map takes. Six maps take three neighbours,
// six take four neighbours, three take four in two pairs and the last all
// six: 60 connections.
var lenet5C3 = [][]int{
	{0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 0}, {5, 0, 1},
	{0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 0}, {4, 5, 0, 1}, {5, 0, 1, 2},
	{0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5},
	{0, 1, 2, 3, 4, 5},
}

// zipH2 is the connection table of the 1989 zip-code net's H2: each of its
// 12 maps takes 8 of H1's 12. The paper does not give the table; here map
// o takes the 8 consecutive maps from o (cyclically), so every H1 map feeds
// 8 H2 maps.
var zipH2 = func() [][]int {
	t := make([][]int, 12)
	for o := range t {
		for k := range 8 {
			t[o] = append(t[o], (o+k)%12)
		}
	}
	return t
}()

// buildConvNet1989 is the zip-code net of LeCun et al. 1989 on 16×16
// digits: H1 12 maps 8×8 (5×5 kernels, stride 2, the input padded by 2
// with the background), H2 12 maps 4×4 (5×5 kernels on 8 of H1's maps,
// stride 2, padding 2), H3 30 units, 10 output units, every unit
// 1.7159·tanh(2x/3) including the outputs (trained with a mean-squared
// error against ±1 targets: loss mse). Weights are shared within a map,
// biases are not (H1 and H2 have one per unit): 9,760 parameters, the
// paper's count. Names: h1, h1b, h2, h2b, h3, out.
func buildConvNet1989(b *Builder) (Module, []int) {
	init := LayerInit{Weight: LeCunUniform(), Bias: Zeros()}
	s2 := tensorcore.ConvParams{StrideH: 2, StrideW: 2}
	h2 := s2
	h2.PadH, h2.PadW = 2, 2
	return Sequential{
		PadWith{P: 2, V: mnistBackground},
		NewConv2d(b, "h1", 1, 12, 5, s2, LayerInit{Weight: LeCunUniform(), NoBias: true}), NewUnitBias(b, "h1b", 12, 8, 8), ScaledTanh{},
		NewPartialConv2d(b, "h2", 12, 5, zipH2, h2, true), NewUnitBias(b, "h2b", 12, 4, 4), ScaledTanh{},
		Flatten{},
		NewLinear(b, "h3", 12*4*4, 30, init), ScaledTanh{},
		NewLinear(b, "out", 30, 10, init), ScaledTanh{},
	}, []int{1, 16, 16}
}

// buildLeNet5Paper is LeNet-5 as the 1998 paper draws it, but for the
// output layer: the 28×28 digit padded with its background to 32×32; C1 6
// maps 28×28; S2 2×2 averages times a trainable coefficient plus a
// trainable bias per map, squashed; C3 16 maps through Table I's 60
// connections; S4 as S2; C5 120 maps 1×1 (5×5 kernels on all of S4); F6
// 84 units; every squashing 1.7159·tanh(2x/3). The output is a linear
// layer of 10 logits for cross-entropy (the paper's Euclidean RBF units
// compare F6 with fixed 7×12 bitmaps of the characters, not reproduced):
// 60,850 parameters. Names: c1, s2, c3, s4, c5, f6, out.
func buildLeNet5Paper(b *Builder) (Module, []int) {
	init := LayerInit{Weight: LeCunUniform()}
	return Sequential{
		PadWith{P: 2, V: mnistBackground},
		NewConv2d(b, "c1", 1, 6, 5, tensorcore.ConvParams{}, init), ScaledTanh{},
		AvgPool2d{K: 2}, NewMapAffine(b, "s2", 6), ScaledTanh{},
		NewPartialConv2d(b, "c3", 6, 5, lenet5C3, tensorcore.ConvParams{}, false), ScaledTanh{},
		AvgPool2d{K: 2}, NewMapAffine(b, "s4", 16), ScaledTanh{},
		NewConv2d(b, "c5", 16, 120, 5, tensorcore.ConvParams{}, init), ScaledTanh{},
		Flatten{},
		NewLinear(b, "f6", 120, 84, init), ScaledTanh{},
		NewLinear(b, "out", 84, 10, init),
	}, []int{1, 28, 28}
}
