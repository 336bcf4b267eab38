package models

import (
	"fmt"
)

// The ImageNet and CIFAR nets, with torchvision's layer names and
// layouts, so that their state_dicts load into torchvision's models with
// strict=True (see the golden lists in testdata/torchvision). Classes and
// input size come from Config; at 3×224×224 with 1,000 classes they are
// torchvision's models exactly.

// convOut is the side of a convolution's or pooling's output (PyTorch's
// floor mode).
func convOut(side, k, stride, pad int) int { return (side+2*pad-k)/stride + 1 }

// resnet returns the constructor of a torchvision ResNet with the given
// number of blocks per stage (basic blocks, or bottlenecks when deep):
// conv1 7×7/2 (64, no bias), bn1, ReLU, max-pool 3×3/2 pad 1, layer1…layer4
// of widths 64, 128, 256, 512 (the last three strided), global average
// pool, fc. Convolutions start Kaiming-normal (fan-out), fc as PyTorch's
// Linear.
func resnet(deep bool, blocks ...int) func(*Builder, Config) (Module, error) {
	return func(b *Builder, c Config) (Module, error) {
		side := min(c.Input[1], c.Input[2])
		if convOut(convOut(side, 7, 2, 3), 3, 2, 1) < 1 {
			return nil, fmt.Errorf("models: a ResNet needs input of at least 2×2 pixels, got %d×%d", c.Input[1], c.Input[2])
		}
		o := BlockOptions{Init: LayerInit{Weight: KaimingNormal(0, FanOut)}, ZeroInitLast: c.ZeroInitResidual, Plain: c.Shortcut == "none"}
		net := Sequential{
			NewConv2d(b, "conv1", c.Input[0], 64, 7, strided(2, 3), LayerInit{Weight: o.Init.Weight, NoBias: true}),
			NewBatchNorm(b, "bn1", 64), ReLU{},
			MaxPool2d{K: 3, Stride: 2, Pad: 1},
		}
		in := 64
		for stage, n := range blocks {
			width := 64 << stage
			for i := range n {
				stride := 1
				if stage > 0 && i == 0 {
					stride = 2
				}
				name := fmt.Sprintf("layer%d.%d", stage+1, i)
				if deep {
					net = append(net, NewBottleneck(b, name, in, width, stride, o))
					in = width * BottleneckExpansion
				} else {
					net = append(net, NewBasicBlock(b, name, in, width, stride, o))
					in = width
				}
			}
		}
		return append(net, GlobalAvgPool{}, NewLinear(b, "fc", in, c.Classes, LayerInit{})), nil
	}
}

// cifarResNet returns the constructor of He et al. 2016's CIFAR ResNet with
// 6n+2 layers: conv1 3×3 (16), bn1, ReLU, layer1…layer3 of n basic blocks
// each (16, 32/2, 64/2; projection shortcuts where the shape changes),
// global average pool, fc. Inputs smaller than 32×32 (the digit sets) are
// padded to 32×32 first.
func cifarResNet(n int) func(*Builder, Config) (Module, error) {
	return func(b *Builder, c Config) (Module, error) {
		o := BlockOptions{Init: LayerInit{Weight: KaimingNormal(0, FanOut)}, ZeroInitLast: c.ZeroInitResidual, Plain: c.Shortcut == "none"}
		net := Sequential{
			PadTo{Size: 32},
			NewConv2d(b, "conv1", c.Input[0], 16, 3, pad(1), LayerInit{Weight: o.Init.Weight, NoBias: true}),
			NewBatchNorm(b, "bn1", 16), ReLU{},
		}
		in := 16
		for stage := range 3 {
			width := 16 << stage
			for i := range n {
				stride := 1
				if stage > 0 && i == 0 {
					stride = 2
				}
				net = append(net, NewBasicBlock(b, fmt.Sprintf("layer%d.%d", stage+1, i), in, width, stride, o))
				in = width
			}
		}
		return append(net, GlobalAvgPool{}, NewLinear(b, "fc", in, c.Classes, LayerInit{})), nil
	}
}

// VGG configurations: output channels of each 3×3 convolution, 0 for a
// 2×2 max-pool.
var (
	vgg11 = []int{64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}
	vgg16 = []int{64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0}
)

// vggBN returns the constructor of torchvision's vgg*_bn: features.K
// (3×3 conv with bias, BatchNorm, ReLU; max-pool 2×2), an adaptive average
// pool to 7×7, classifier.0 (→4096), ReLU, dropout 0.5, classifier.3
// (4096→4096), ReLU, dropout 0.5, classifier.6 (→classes). Convolutions
// start Kaiming-normal (fan-out) with zero bias, linear layers N(0, 0.01)
// with zero bias, as torchvision does. Inputs under 32 px are padded to
// 32; where the features end smaller than 7×7 (inputs under 224 px) they
// are not enlarged, and the classifier takes 512·s·s features.
func vggBN(cfg []int) func(*Builder, Config) (Module, error) {
	return func(b *Builder, c Config) (Module, error) {
		conv := LayerInit{Weight: KaimingNormal(0, FanOut), Bias: Zeros()}
		net := Sequential{PadTo{Size: 32}}
		in, k, side := c.Input[0], 0, max(min(c.Input[1], c.Input[2]), 32)
		for _, v := range cfg {
			if v == 0 {
				net = append(net, MaxPool2d{K: 2})
				side /= 2
				k++
				continue
			}
			net = append(net,
				NewConv2d(b, fmt.Sprintf("features.%d", k), in, v, 3, pad(1), conv),
				NewBatchNorm(b, fmt.Sprintf("features.%d", k+1), v), ReLU{})
			in, k = v, k+3
		}
		pool, s, err := adaptiveAvg("VGG", side, 7)
		if err != nil {
			return nil, err
		}
		fc := LayerInit{Weight: Normal(0, 0.01), Bias: Zeros()}
		return append(net, pool, Flatten{},
			NewLinear(b, "classifier.0", in*s*s, 4096, fc), ReLU{}, Dropout{P: 0.5},
			NewLinear(b, "classifier.3", 4096, 4096, fc), ReLU{}, Dropout{P: 0.5},
			NewLinear(b, "classifier.6", 4096, c.Classes, fc)), nil
	}
}

// buildAlexNet is torchvision's AlexNet: features.0 (11×11/4 pad 2, 64),
// ReLU, max 3/2, features.3 (5×5 pad 2, 192), ReLU, max 3/2, features.6
// (3×3, 384), ReLU, features.8 (3×3, 256), ReLU, features.10 (3×3, 256),
// ReLU, max 3/2, an adaptive average pool to 6×6, then dropout 0.5,
// classifier.1 (→4096), ReLU, dropout 0.5, classifier.4 (4096→4096), ReLU,
// classifier.6 (→classes). PyTorch's default initialization throughout.
func buildAlexNet(b *Builder, c Config) (Module, error) {
	var d LayerInit
	side := min(c.Input[1], c.Input[2])
	side = convOut(convOut(convOut(convOut(side, 11, 4, 2), 3, 2, 0), 3, 2, 0), 3, 2, 0)
	if side < 1 {
		return nil, fmt.Errorf("models: alexnet needs input of at least 63×63 pixels, got %d×%d", c.Input[1], c.Input[2])
	}
	pool, s, err := adaptiveAvg("AlexNet", side, 6)
	if err != nil {
		return nil, err
	}
	return Sequential{
		NewConv2d(b, "features.0", c.Input[0], 64, 11, strided(4, 2), d), ReLU{}, MaxPool2d{K: 3, Stride: 2},
		NewConv2d(b, "features.3", 64, 192, 5, pad(2), d), ReLU{}, MaxPool2d{K: 3, Stride: 2},
		NewConv2d(b, "features.6", 192, 384, 3, pad(1), d), ReLU{},
		NewConv2d(b, "features.8", 384, 256, 3, pad(1), d), ReLU{},
		NewConv2d(b, "features.10", 256, 256, 3, pad(1), d), ReLU{}, MaxPool2d{K: 3, Stride: 2},
		pool, Flatten{},
		Dropout{P: 0.5}, NewLinear(b, "classifier.1", 256*s*s, 4096, d), ReLU{},
		Dropout{P: 0.5}, NewLinear(b, "classifier.4", 4096, 4096, d), ReLU{},
		NewLinear(b, "classifier.6", 4096, c.Classes, d),
	}, nil
}

// adaptiveAvg is torchvision's AdaptiveAvgPool2d((p, p)) for features of
// side×side: the identity where side ≤ p (smaller features are not
// enlarged), else an average pool of side/p, which must divide. It
// returns the pool and the side it leaves.
func adaptiveAvg(model string, side, p int) (Module, int, error) {
	switch {
	case side <= p:
		return Sequential{}, side, nil
	case side%p != 0:
		return nil, 0, fmt.Errorf("models: %s: features of %d×%d do not pool evenly to %d×%d; choose an input size whose features end at %d×%d or a multiple of it",
			model, side, side, p, p, p, p)
	}
	return AvgPool2d{K: side / p}, p, nil
}
