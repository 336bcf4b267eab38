package models

import (
	"fmt"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// Ctx is what a Module's Forward needs besides its input: the tape to record
// on, whether this is a training pass (Dropout drops, BatchNorm uses batch
// statistics and updates its running ones) and the generator Dropout draws
// its masks from (it may be nil when no Dropout runs in training mode).
type Ctx struct {
	Tape     *tensorcore.Tape
	Training bool
	RNG      *rand.Rand
}

// A Module is a layer or a network. Forward records its ops on c.Tape and
// returns the output; it allocates nothing of its own (its parameters were
// placed in the arena when it was built, and the tape reuses its buffers
// from one step to the next).
type Module interface {
	Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var
}

// LayerInit selects the initializers of a layer's weight and bias. The zero
// value is PyTorch's default (PyTorchWeight, and PyTorchBias with the
// weight's fan-in), so fresh layers start like PyTorch's.
type LayerInit struct {
	Weight Initializer // nil: PyTorchWeight()
	Bias   Initializer // nil: PyTorchBias(fan-in of the weight)
	NoBias bool        // no bias parameter at all
}

// Linear is y = x·Wᵀ + b with W of shape (out, in) (PyTorch layout) and x of
// shape (N, in). Parameters: name.weight (out, in), name.bias (out).
type Linear struct {
	W, GW *tensorcore.Tensor // (out, in)
	B, GB *tensorcore.Tensor // (out) or nil
}

// NewLinear adds a Linear layer from in to out features.
func NewLinear(b *Builder, name string, in, out int, init LayerInit) *Linear {
	l := &Linear{}
	l.W, l.GW, l.B, l.GB = weightAndBias(b, name, []int{out, in}, out, init)
	return l
}

// Forward returns x·Wᵀ + b for x of shape (N, in).
func (l *Linear) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	var bias *tensorcore.Var
	if l.B != nil {
		bias = tp.Param(l.B, l.GB)
	}
	return tp.Linear(x, tp.Param(l.W, l.GW), bias)
}

// weightAndBias adds name.weight with shape wshape and, unless init.NoBias,
// name.bias with biasLen elements, using init's initializers.
func weightAndBias(b *Builder, name string, wshape []int, biasLen int, init LayerInit) (w, gw, bias, gb *tensorcore.Tensor) {
	wi := init.Weight
	if wi == nil {
		wi = PyTorchWeight()
	}
	w, gw = b.Param(name+".weight", wshape, wi)
	if init.NoBias {
		return w, gw, nil, nil
	}
	bi := init.Bias
	if bi == nil {
		fanIn, _ := Fans(wshape)
		bi = PyTorchBias(fanIn)
	}
	bias, gb = b.Param(name+".bias", []int{biasLen}, bi)
	return w, gw, bias, gb
}

// Conv2d is a 2-D convolution of an NCHW input with a square kernel.
// Parameters: name.weight (out, in/groups, k, k), name.bias (out).
type Conv2d struct {
	W, GW *tensorcore.Tensor // (out, in/groups, k, k)
	B, GB *tensorcore.Tensor // (out) or nil
	P     tensorcore.ConvParams
}

// NewConv2d adds a convolution from in to out channels with a k×k kernel
// and the given stride, padding, dilation and groups. It records an error
// in b when the channels do not divide by the groups.
func NewConv2d(b *Builder, name string, in, out, k int, cp tensorcore.ConvParams, init LayerInit) *Conv2d {
	g := max(cp.Groups, 1)
	if in%g != 0 || out%g != 0 {
		b.fail(fmt.Errorf("models: %s: %d→%d channels do not divide into %d groups", name, in, out, g))
		g = 1
	}
	c := &Conv2d{P: cp}
	c.W, c.GW, c.B, c.GB = weightAndBias(b, name, []int{out, in / g, k, k}, out, init)
	return c
}

// Forward convolves x (N, in, H, W). A kernel that covers the whole
// unpadded input (LeNet-5's C5: 5×5 on 5×5 maps) has one output position,
// and the convolution is a fully connected layer on the flattened input:
// it runs as one, which is far faster than the convolution's backward on
// a 1×1 output, and gives the same values up to summation order.
func (l *Conv2d) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	var bias *tensorcore.Var
	if l.B != nil {
		bias = tp.Param(l.B, l.GB)
	}
	w := tp.Param(l.W, l.GW)
	if xs, ws := x.Value.Shape, l.W.Shape; l.coversInput(xs) {
		n, out := xs[0], ws[0]
		flat := ws[1] * ws[2] * ws[3]
		y := tp.Linear(tp.Reshape(x, n, flat), tp.Reshape(w, out, flat), bias)
		return tp.Reshape(y, n, out, 1, 1)
	}
	return tp.Conv2D(x, w, bias, l.P)
}

// coversInput reports whether the kernel spans an input of shape xs (N,
// C, H, W) exactly, without padding, dilation or groups.
func (l *Conv2d) coversInput(xs []int) bool {
	p, ws := l.P, l.W.Shape
	return len(xs) == 4 && xs[0] > 0 && xs[1] == ws[1] && xs[2] == ws[2] && xs[3] == ws[3] &&
		p.PadH == 0 && p.PadW == 0 && max(p.Groups, 1) == 1 && max(p.DilH, 1) == 1 && max(p.DilW, 1) == 1
}

// ConvTranspose2d is the transposed 2-D convolution (the gradient of Conv2d
// with respect to its input) with a square kernel, as in PyTorch.
// Parameters: name.weight (in, out/groups, k, k), name.bias (out).
type ConvTranspose2d struct {
	W, GW            *tensorcore.Tensor // (in, out/groups, k, k)
	B, GB            *tensorcore.Tensor // (out) or nil
	P                tensorcore.ConvParams
	OutPadH, OutPadW int
}

// NewConvTranspose2d adds a transposed convolution from in to out channels
// with a k×k kernel, the given stride, padding, dilation and groups, and
// outPad extra rows and columns of output on the bottom and right.
func NewConvTranspose2d(b *Builder, name string, in, out, k int, cp tensorcore.ConvParams, outPad int, init LayerInit) *ConvTranspose2d {
	g := max(cp.Groups, 1)
	if in%g != 0 || out%g != 0 {
		b.fail(fmt.Errorf("models: %s: %d→%d channels do not divide into %d groups", name, in, out, g))
		g = 1
	}
	c := &ConvTranspose2d{P: cp, OutPadH: outPad, OutPadW: outPad}
	c.W, c.GW, c.B, c.GB = weightAndBias(b, name, []int{in, out / g, k, k}, out, init)
	return c
}

// Forward applies the transposed convolution to x (N, in, H, W).
func (l *ConvTranspose2d) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	var bias *tensorcore.Var
	if l.B != nil {
		bias = tp.Param(l.B, l.GB)
	}
	return tp.ConvTranspose2D(x, tp.Param(l.W, l.GW), bias, l.P, l.OutPadH, l.OutPadW)
}

// MaxPool2d takes the maximum over K×K windows moved by Stride (0: K), with
// Pad rows and columns of -∞ around the input.
type MaxPool2d struct{ K, Stride, Pad int }

// Forward pools x (N, C, H, W).
func (l MaxPool2d) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	return c.Tape.MaxPool2D(x, l.K, stride(l.K, l.Stride), l.Pad)
}

// AvgPool2d averages over K×K windows moved by Stride (0: K), with Pad rows
// and columns of zeros around the input (counted in the average, as
// PyTorch's default count_include_pad).
type AvgPool2d struct{ K, Stride, Pad int }

// Forward pools x (N, C, H, W).
func (l AvgPool2d) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	return c.Tape.AvgPool2D(x, l.K, stride(l.K, l.Stride), l.Pad)
}

func stride(k, s int) int {
	if s <= 0 {
		return k
	}
	return s
}

// BatchNorm normalizes each channel of an (N, C) or (N, C, H, W) input by
// the batch's mean and biased variance in training (updating the running
// statistics with Momentum, the variance unbiased, as PyTorch does) and by
// the running statistics in evaluation, then scales and shifts.
// Parameters: name.weight (C, ones), name.bias (C, zeros); buffers:
// name.running_mean (C, zeros), name.running_var (C, ones); counter:
// name.num_batches_tracked.
type BatchNorm struct {
	Gamma, GGamma *tensorcore.Tensor // (C)
	Beta, GBeta   *tensorcore.Tensor // (C)
	RunMean       *tensorcore.Tensor // (C) buffer
	RunVar        *tensorcore.Tensor // (C) buffer
	Momentum, Eps float32
}

// NewBatchNorm adds a batch normalization over c channels with PyTorch's
// defaults: momentum 0.1, eps 1e-5.
func NewBatchNorm(b *Builder, name string, c int) *BatchNorm {
	l := &BatchNorm{Momentum: 0.1, Eps: 1e-5}
	l.Gamma, l.GGamma = b.Param(name+".weight", []int{c}, Constant(1))
	l.Beta, l.GBeta = b.Param(name+".bias", []int{c}, Zeros())
	l.RunMean = b.Buffer(name+".running_mean", []int{c}, 0)
	l.RunVar = b.Buffer(name+".running_var", []int{c}, 1)
	b.Counter(name + ".num_batches_tracked")
	return l
}

// Forward normalizes x.
func (l *BatchNorm) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	return tp.BatchNorm(x, tp.Param(l.Gamma, l.GGamma), tp.Param(l.Beta, l.GBeta),
		l.RunMean, l.RunVar, l.Momentum, l.Eps, c.Training)
}

// ForwardReLU is ReLU(Forward(x)). It records two ops, not the fused
// Tape.BatchNormReLU: in a model's sealed forward pass (see
// tensorcore.Tape.Seal) the BatchNorm's output is lent and given back as
// soon as the ReLU has read it, which holds less than the fused op, whose
// output is kept beside its input; at the same speed (ResNet-50 at batch
// 32, 224×224, 2 threads: peak RSS 3.75 GB against 4.21 GB fused, 5.43
// against 5.31 images/s, one run each).
func (l *BatchNorm) ForwardReLU(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	return c.Tape.ReLU(l.Forward(c, x))
}

// BatchNormReLU is a BatchNorm followed by a ReLU, as one module (see
// BatchNorm.ForwardReLU); its parameters are the BatchNorm's.
type BatchNormReLU struct{ *BatchNorm }

// NewBatchNormReLU adds a BatchNorm over c channels, to be followed by a
// ReLU.
func NewBatchNormReLU(b *Builder, name string, c int) BatchNormReLU {
	return BatchNormReLU{NewBatchNorm(b, name, c)}
}

// Forward normalizes and rectifies x.
func (l BatchNormReLU) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	return l.ForwardReLU(c, x)
}

// Dropout zeroes each element with probability P in training and scales
// the rest by 1/(1-P); it is the identity in evaluation. It draws from
// Ctx.RNG, which must then be set.
type Dropout struct{ P float32 }

// Forward applies dropout to x.
func (l Dropout) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	if !c.Training || l.P == 0 {
		return x
	}
	return c.Tape.Dropout(x, l.P, c.RNG, c.Training)
}

// ReLU is max(x, 0).
type ReLU struct{}

// Forward applies ReLU to x.
func (ReLU) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var { return c.Tape.ReLU(x) }

// Tanh is tanh(x).
type Tanh struct{}

// Forward applies tanh to x.
func (Tanh) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var { return c.Tape.Tanh(x) }

// Sigmoid is 1/(1+e⁻ˣ).
type Sigmoid struct{}

// Forward applies the logistic sigmoid to x.
func (Sigmoid) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var { return c.Tape.Sigmoid(x) }

// LeakyReLU is x for x > 0 and Slope·x otherwise.
type LeakyReLU struct{ Slope float32 }

// Forward applies the leaky ReLU to x.
func (l LeakyReLU) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	return c.Tape.LeakyReLU(x, l.Slope)
}

// ScaledTanh is 1.7159·tanh(2x/3), the squashing function of LeCun et al.
// 1998 (Efficient BackProp): f(±1) ≈ ±1 and the gain at 0 is about 1.14.
type ScaledTanh struct{}

// Forward applies the scaled tanh to x.
func (ScaledTanh) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	return tp.MulScalar(tp.Tanh(tp.MulScalar(x, 2.0/3.0)), 1.7159)
}

// Flatten reshapes (N, d1, d2, …) to (N, d1·d2·…).
type Flatten struct{}

// Forward flattens x.
func (Flatten) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	s := x.Value.Shape
	n := s[0]
	if n == 0 {
		return c.Tape.Reshape(x, 0, shapeProd(s[1:]))
	}
	return c.Tape.Reshape(x, n, len(x.Value.Data)/n)
}

func shapeProd(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Sequential applies its modules in order.
type Sequential []Module

// Forward runs x through every module in order.
func (s Sequential) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	for _, m := range s {
		x = m.Forward(c, x)
	}
	return x
}
