package models

import (
	"fmt"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// BlockOptions are the choices a residual block offers besides its shape.
type BlockOptions struct {
	// Init initializes the convolutions (their bias is always off).
	Init LayerInit
	// ZeroInitLast starts the gamma of the block's last BatchNorm at 0, so
	// that the block begins as its shortcut (Goyal et al. 2017's recipe for
	// large batches; torchvision's zero_init_residual).
	ZeroInitLast bool
	// Plain drops the shortcut: the block is its convolutions alone, for
	// the plain nets of He et al. 2016 that the residual ones are held
	// against.
	Plain bool
}

// BasicBlock is the residual block of ResNet-18/34 and of the CIFAR nets:
// relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)), with 3×3
// convolutions without bias (the first one strided), and shortcut the
// identity, or a strided 1×1 convolution and a BatchNorm when the shape
// changes. Parameter names follow torchvision: name.conv1, name.bn1,
// name.conv2, name.bn2, name.downsample.0 (conv), name.downsample.1
// (BatchNorm).
type BasicBlock struct {
	Conv1, Conv2 *Conv2d
	BN1, BN2     *BatchNorm
	DownConv     *Conv2d    // nil for the identity shortcut (or none)
	DownBN       *BatchNorm // nil for the identity shortcut (or none)
	Plain        bool       // no shortcut at all
}

// NewBasicBlock adds a basic block from in to out channels whose first
// convolution (and shortcut) has the given stride.
func NewBasicBlock(b *Builder, name string, in, out, stride int, o BlockOptions) *BasicBlock {
	init := o.Init
	init.NoBias = true
	stride = max(stride, 1)
	r := &BasicBlock{
		Conv1: NewConv2d(b, name+".conv1", in, out, 3, strided(stride, 1), init),
		BN1:   NewBatchNorm(b, name+".bn1", out),
		Plain: o.Plain,
	}
	r.Conv2 = NewConv2d(b, name+".conv2", out, out, 3, pad(1), init)
	r.BN2 = newLastBatchNorm(b, name+".bn2", out, o.ZeroInitLast)
	if !o.Plain && (in != out || stride != 1) {
		r.DownConv = NewConv2d(b, name+".downsample.0", in, out, 1, strided(stride, 0), init)
		r.DownBN = NewBatchNorm(b, name+".downsample.1", out)
	}
	return r
}

// Forward applies the block to x (N, in, H, W).
func (r *BasicBlock) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	h := tp.ReLU(r.BN1.Forward(c, r.Conv1.Forward(c, x)))
	h = r.BN2.Forward(c, r.Conv2.Forward(c, h))
	return tp.ReLU(shortcut(c, h, x, r.Plain, r.DownConv, r.DownBN))
}

// Bottleneck is the residual block of ResNet-50 and deeper, as torchvision
// builds it (ResNet v1.5: the stride is on the 3×3 convolution):
// relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1 x))))))) + shortcut(x)),
// conv1 1×1 to width, conv2 3×3 (strided) width to width, conv3 1×1 to
// width×4. Names: name.conv1…conv3, name.bn1…bn3, name.downsample.0/.1.
type Bottleneck struct {
	Conv1, Conv2, Conv3 *Conv2d
	BN1, BN2, BN3       *BatchNorm
	DownConv            *Conv2d
	DownBN              *BatchNorm
	Plain               bool
}

// BottleneckExpansion is how many times its width a bottleneck block's
// output is.
const BottleneckExpansion = 4

// NewBottleneck adds a bottleneck block from in channels to
// width×BottleneckExpansion, strided by stride on its 3×3 convolution.
func NewBottleneck(b *Builder, name string, in, width, stride int, o BlockOptions) *Bottleneck {
	init := o.Init
	init.NoBias = true
	stride = max(stride, 1)
	out := width * BottleneckExpansion
	r := &Bottleneck{
		Conv1: NewConv2d(b, name+".conv1", in, width, 1, tensorcore.ConvParams{}, init),
		BN1:   NewBatchNorm(b, name+".bn1", width),
		Conv2: NewConv2d(b, name+".conv2", width, width, 3, strided(stride, 1), init),
		BN2:   NewBatchNorm(b, name+".bn2", width),
		Conv3: NewConv2d(b, name+".conv3", width, out, 1, tensorcore.ConvParams{}, init),
		BN3:   newLastBatchNorm(b, name+".bn3", out, o.ZeroInitLast),
		Plain: o.Plain,
	}
	if !o.Plain && (in != out || stride != 1) {
		r.DownConv = NewConv2d(b, name+".downsample.0", in, out, 1, strided(stride, 0), init)
		r.DownBN = NewBatchNorm(b, name+".downsample.1", out)
	}
	return r
}

// Forward applies the block to x (N, in, H, W).
func (r *Bottleneck) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	tp := c.Tape
	h := tp.ReLU(r.BN1.Forward(c, r.Conv1.Forward(c, x)))
	h = tp.ReLU(r.BN2.Forward(c, r.Conv2.Forward(c, h)))
	h = r.BN3.Forward(c, r.Conv3.Forward(c, h))
	return tp.ReLU(shortcut(c, h, x, r.Plain, r.DownConv, r.DownBN))
}

// shortcut returns h plus the block input x (through the projection when
// there is one), or h alone for a plain block.
func shortcut(c Ctx, h, x *tensorcore.Var, plain bool, conv *Conv2d, bn *BatchNorm) *tensorcore.Var {
	if plain {
		return h
	}
	if conv != nil {
		x = bn.Forward(c, conv.Forward(c, x))
	}
	return c.Tape.Add(h, x)
}

// newLastBatchNorm is NewBatchNorm for a block's last normalization, whose
// gamma starts at 0 when zero.
func newLastBatchNorm(b *Builder, name string, ch int, zero bool) *BatchNorm {
	bn := NewBatchNorm(b, name, ch)
	if zero {
		clear(bn.Gamma.Data)
	}
	return bn
}

// strided returns the parameters of a convolution with the given stride
// and padding on both axes.
func strided(stride, p int) tensorcore.ConvParams {
	return tensorcore.ConvParams{StrideH: stride, StrideW: stride, PadH: p, PadW: p}
}

// GlobalAvgPool averages each channel of an (N, C, H, W) input over its
// plane, giving (N, C).
type GlobalAvgPool struct{}

// Forward pools x.
func (GlobalAvgPool) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	return c.Tape.Mean(x, []int{2, 3}, false)
}

// PadTo pads an (N, C, H, W) input with zeros, evenly on both sides (the
// extra row or column at the bottom and right), up to Size×Size; larger
// inputs pass unchanged.
type PadTo struct{ Size int }

// Forward pads x.
func (p PadTo) Forward(c Ctx, x *tensorcore.Var) *tensorcore.Var {
	s := x.Value.Shape
	dh, dw := max(p.Size-s[2], 0), max(p.Size-s[3], 0)
	if dh == 0 && dw == 0 {
		return x
	}
	return c.Tape.Pad2D(x, dh/2, dh-dh/2, dw/2, dw-dw/2)
}

// checkFeatures returns an error unless a net that divides its input by
// down keeps at least one pixel.
func checkFeatures(model string, input []int, down int) error {
	if input[1]/down < 1 || input[2]/down < 1 {
		return fmt.Errorf("models: %s needs input of at least %d×%d pixels (it downsamples %d×), got %d×%d",
			model, down, down, down, input[1], input[2])
	}
	return nil
}
