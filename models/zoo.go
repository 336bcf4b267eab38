package models

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// Model is a network built by the zoo: its layers, the arena its parameters
// live in, the shape of one input image (C, H, W) and the number of classes
// its logits score.
type Model struct {
	Name       string
	Net        Module
	Arena      *Arena
	InputShape []int // (C, H, W)
	NumClasses int
	// Config is what the model was built for, its defaults filled in.
	Config Config
	// RNG is what Dropout draws from in training passes. Build seeds it from
	// the model's seed on a stream of its own; a data-parallel job may
	// replace it (e.g. one stream per rank, reseeded per step for exact
	// resumption).
	RNG *rand.Rand
}

// Forward records the network on tp for a batch x of shape (N, C, H, W)
// and returns the logits (N, NumClasses).
func (m *Model) Forward(tp *tensorcore.Tape, x *tensorcore.Var, training bool) *tensorcore.Var {
	return tp.Seal(tp.Mark(), m.Net.Forward(Ctx{Tape: tp, Training: training, RNG: m.RNG}, x))
}

// Config is what a zoo model is built for. Sized models (the ImageNet and
// CIFAR nets) take their classes and input from it, as the data set says;
// fixed models (the digit nets of the 1990s, convnet64) always have their
// own, and the engine checks the data set against them.
type Config struct {
	// Classes is the width of the logits (0: the model's default).
	Classes int
	// Input is the (C, H, W) of one image (nil, or zero H and W: the
	// model's default size; zero C: its default channels).
	Input []int
	// ZeroInitResidual starts the last BatchNorm gamma of every residual
	// block at 0 (residual models only).
	ZeroInitResidual bool
	// Shortcut is "" or "projection" (the shortcut is the identity, or a
	// 1×1 convolution and BatchNorm where the shape changes), or "none"
	// (plain nets of the same depth; residual models only).
	Shortcut string
}

// spec is one zoo entry.
type spec struct {
	about   string
	classes int   // the logits' width by default
	input   []int // (C, H, W) by default
	// sized models take Config.Classes and Config.Input; others ignore them.
	sized bool
	// residual models take ZeroInitResidual and Shortcut.
	residual bool
	build    func(b *Builder, c Config) (Module, error)
}

// fixed adapts a fixed model's constructor to the zoo's.
func fixed(f func(b *Builder) (Module, []int)) func(*Builder, Config) (Module, error) {
	return func(b *Builder, _ Config) (Module, error) {
		m, _ := f(b)
		return m, nil
	}
}

// zoo maps each model name to its entry.
var zoo = map[string]spec{
	"mlp":          {"784-300-100-10 ReLU multilayer perceptron (LeCun et al. 1998)", 10, digits, false, false, fixed(buildMLP)},
	"mlp800":       {"784-800-10 ReLU multilayer perceptron (Simard et al. 2003; Hinton et al. 2006's baseline)", 10, digits, false, false, fixed(buildMLP800)},
	"lenet1":       {"LeNet-1 (LeCun et al. 1998): 4 and 12 5×5 tanh maps with 2×2 average pooling, 28×28", 10, digits, false, false, fixed(buildLeNet1)},
	"lenet5":       {"LeNet-5 with ReLU and max-pooling, PyTorch layer names c1 c2 f1 f2 f3, 28×28", 10, digits, false, false, fixed(buildLeNet5)},
	"lenet5-1998":  {"LeNet-5 as in 1998: scaled tanh, average-pool subsampling, C5 as a 5×5 convolution, 28×28", 10, digits, false, false, fixed(buildLeNet51998)},
	"convnet1989":  {"1989 zip-code net (LeCun et al.): H1 12@8×8 5×5/2, H2 12@4×4 5×5/2 on 8 of 12 maps, 30, 10 tanh outputs (train with loss mse), 16×16", 10, []int{1, 16, 16}, false, false, fixed(buildConvNet1989)},
	"lenet5-paper": {"LeNet-5 as in the 1998 paper: 32×32 (padded with background), scaled tanh, trainable subsampling, C3 through Table I's 60 connections, C5, F6, linear output, 28×28", 10, digits, false, false, fixed(buildLeNet5Paper)},
	"convnet1990":  {"1990 ConvNet: filters-tanh → pooling → filters-tanh → pooling → filters, 16×16", 10, []int{1, 16, 16}, false, false, fixed(buildConvNet1990)},
	"vgg":          {"small VGG-style net: [32,32,M,64,64,M] 3×3 conv+BN+ReLU, FC 128 with dropout 0.3, 28×28", 10, digits, false, false, fixed(buildVGG)},
	"resnet8":      {"small ResNet: 3×3 stem of 16, three basic residual blocks (16, 32/2, 64/2), global average pool, 28×28", 10, digits, false, false, fixed(buildResNet8)},
	"convnet64":    {"small colour ConvNet for image sets: four 3×3 conv+BN+ReLU (16, 32, 64, 64) with 2×2 max-pooling after the first three, global average pool, 3×64×64", 10, []int{3, 64, 64}, false, false, fixed(buildConvNet64)},
	"convnet64-1k": {"convnet64 scoring 1000 classes (ImageNet-1k), 3×64×64", 1000, []int{3, 64, 64}, false, false, fixed(buildConvNet64x1000)},

	"resnet18": {"ResNet-18 (He et al. 2016) as torchvision builds it: 7×7/2 stem, max-pool, basic blocks [2,2,2,2], 3×224×224 by default", 1000, imagenet, true, true, resnet(false, 2, 2, 2, 2)},
	"resnet34": {"ResNet-34 as torchvision builds it: basic blocks [3,4,6,3], 3×224×224 by default", 1000, imagenet, true, true, resnet(false, 3, 4, 6, 3)},
	"resnet50": {"ResNet-50 v1.5 as torchvision builds it: bottleneck blocks [3,4,6,3], stride on the 3×3, 3×224×224 by default", 1000, imagenet, true, true, resnet(true, 3, 4, 6, 3)},
	"vgg11_bn": {"VGG-11 with BatchNorm (Simonyan and Zisserman 2014) as torchvision builds it, 3×224×224 by default", 1000, imagenet, true, false, vggBN(vgg11)},
	"vgg16_bn": {"VGG-16 with BatchNorm as torchvision builds it, 3×224×224 by default", 1000, imagenet, true, false, vggBN(vgg16)},
	"alexnet":  {"AlexNet (Krizhevsky et al. 2012) as torchvision builds it (one tower), 3×224×224 by default", 1000, imagenet, true, false, buildAlexNet},
	"resnet20": {"CIFAR ResNet-20 (He et al. 2016): 3×3 stem of 16, basic blocks 3×(16, 32/2, 64/2), inputs under 32 px padded to 32, 3×32×32 by default", 10, cifar, true, true, cifarResNet(3)},
	"resnet56": {"CIFAR ResNet-56: basic blocks 9×(16, 32/2, 64/2), 3×32×32 by default", 10, cifar, true, true, cifarResNet(9)},
}

var (
	digits   = []int{1, 28, 28}
	imagenet = []int{3, 224, 224}
	cifar    = []int{3, 32, 32}
)

// Names returns the names of the zoo's models, sorted.
func Names() []string {
	names := make([]string, 0, len(zoo))
	for n := range zoo {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// About returns a one-line description of the named model ("" if unknown).
func About(name string) string { return zoo[name].about }

// Sized reports whether the named model takes its classes and input size
// from the data set (Config.Classes, Config.Input).
func Sized(name string) bool { return zoo[name].sized }

// Replica builds a second instance of m that shares m's parameter values
// (the replica's Arena.Data is m's, so an optimizer step on m updates both)
// and has gradients and buffers of its own. Replicas let several cores each
// run forward and backward on a slice of one batch, with their gradients
// summed afterwards. A replica's buffers (BatchNorm running statistics) are
// a copy of m's at the time of the call; its dropout RNG is stream index of
// the model's seed.
func (m *Model) Replica(seed uint64, index int) (*Model, error) {
	z, ok := zoo[m.Name]
	if !ok {
		return nil, fmt.Errorf("models: replica of unknown model %q", m.Name)
	}
	b := NewBuilder(nil)
	b.shareData = m.Arena.Data
	net, err := z.build(b, m.Config)
	if err != nil {
		return nil, err
	}
	a, err := b.Build()
	if err != nil {
		return nil, err
	}
	if err := a.CheckLayout(m.Arena); err != nil {
		return nil, err
	}
	copy(a.Buffers, m.Arena.Buffers)
	return &Model{
		Name: m.Name, Net: net, Arena: a, InputShape: m.InputShape, NumClasses: m.NumClasses, Config: m.Config,
		RNG: rand.New(rand.NewPCG(seed, 0x64726f706f7574+uint64(index))),
	}, nil
}

// Build constructs the named model at its default size with parameters
// drawn from seed (BuildFor with a zero Config).
func Build(name string, seed uint64) (*Model, error) { return BuildFor(name, seed, Config{}) }

// BuildFor constructs the named model for c with parameters drawn from
// seed. The same name, config and seed always give bit-identical
// parameters. The parameter order of the arena is the construction order
// of the layers, input to output.
func BuildFor(name string, seed uint64, c Config) (*Model, error) {
	z, ok := zoo[name]
	if !ok {
		return nil, fmt.Errorf("models: unknown model %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	c, err := z.resolve(name, c)
	if err != nil {
		return nil, err
	}
	b := NewBuilder(rand.New(rand.NewPCG(seed, 0x6d6f64656c73))) // stream "models"
	net, err := z.build(b, c)
	if err != nil {
		return nil, err
	}
	a, err := b.Build()
	if err != nil {
		return nil, err
	}
	return &Model{
		Name: name, Net: net, Arena: a, InputShape: c.Input, NumClasses: c.Classes, Config: c,
		RNG: rand.New(rand.NewPCG(seed, 0x64726f706f7574)), // stream "dropout"
	}, nil
}

// Describe returns the number of parameters and the input shape (C, H, W)
// of the named model built for c, without building it: nothing is
// allocated or drawn.
func Describe(name string, c Config) (params int, input []int, err error) {
	z, ok := zoo[name]
	if !ok {
		return 0, nil, fmt.Errorf("models: unknown model %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	if c, err = z.resolve(name, c); err != nil {
		return 0, nil, err
	}
	b := &Builder{names: map[string]bool{}, countOnly: true}
	if _, err := z.build(b, c); err != nil {
		return 0, nil, err
	}
	if b.err != nil {
		return 0, nil, b.err
	}
	return b.count, c.Input, nil
}

// CheckConfig returns an error when the named model cannot take c's
// options (a shortcut or zero-initialized residuals on a model without
// residual blocks, an unknown shortcut); nil for an unknown model, which
// Build reports.
func CheckConfig(name string, c Config) error {
	z, ok := zoo[name]
	if !ok {
		return nil
	}
	_, err := z.resolve(name, c)
	return err
}

// resolve fills c's defaults from the entry and checks what the model
// offers: a fixed model keeps its own classes and input whatever c says.
func (z spec) resolve(name string, c Config) (Config, error) {
	switch c.Shortcut {
	case "", "projection":
		c.Shortcut = ""
	case "none":
	default:
		return c, fmt.Errorf("models: %s: unknown shortcut %q (known: projection, none)", name, c.Shortcut)
	}
	if !z.residual && (c.Shortcut != "" || c.ZeroInitResidual) {
		return c, fmt.Errorf("models: %s has no residual blocks: shortcut and zero_init_residual do not apply", name)
	}
	in := slices.Clone(z.input)
	if z.sized && len(c.Input) == 3 {
		if c.Input[0] > 0 {
			in[0] = c.Input[0]
		}
		if c.Input[1] > 0 && c.Input[2] > 0 {
			in[1], in[2] = c.Input[1], c.Input[2]
		}
	} else if len(c.Input) != 0 && len(c.Input) != 3 {
		return c, fmt.Errorf("models: %s: input %v is not (C, H, W)", name, c.Input)
	}
	c.Input = in
	if !z.sized || c.Classes <= 0 {
		c.Classes = z.classes
	}
	return c, nil
}

func pad(p int) tensorcore.ConvParams { return tensorcore.ConvParams{PadH: p, PadW: p} }

// buildMLP: 784-300-100-10 with ReLU (the 1998 paper's nets used sigmoid
// units; ReLU with PyTorch's initialization trains faster to the same error).
// Names: f1, f2, f3.
func buildMLP(b *Builder) (Module, []int) {
	var d LayerInit
	return Sequential{
		Flatten{},
		NewLinear(b, "f1", 784, 300, d), ReLU{},
		NewLinear(b, "f2", 300, 100, d), ReLU{},
		NewLinear(b, "f3", 100, 10, d),
	}, []int{1, 28, 28}
}

// buildMLP800 is the wide one-hidden-layer net: 784-800-10, ReLU.
func buildMLP800(b *Builder) (Module, []int) {
	var d LayerInit
	return Sequential{
		Flatten{},
		NewLinear(b, "f1", 784, 800, d), ReLU{},
		NewLinear(b, "f2", 800, 10, d),
	}, []int{1, 28, 28}
}

// buildLeNet1: 28×28 → c1 4@5×5 (24×24) → tanh → avg 2 (12×12) → c2 12@5×5
// (8×8) → tanh → avg 2 (4×4) → f 192→10. The paper's partial connection
// between the 4 and 12 maps is replaced by full connection.
func buildLeNet1(b *Builder) (Module, []int) {
	init := LayerInit{Weight: LeCunUniform()}
	return Sequential{
		NewConv2d(b, "c1", 1, 4, 5, tensorcore.ConvParams{}, init), Tanh{}, AvgPool2d{K: 2},
		NewConv2d(b, "c2", 4, 12, 5, tensorcore.ConvParams{}, init), Tanh{}, AvgPool2d{K: 2},
		Flatten{},
		NewLinear(b, "f", 12*4*4, 10, init),
	}, []int{1, 28, 28}
}

// buildLeNet5 is the golden LeNet-5: c1 1→6 5×5 pad 2, ReLU, max 2, c2 6→16
// 5×5, ReLU, max 2, f1 400→120, ReLU, f2 120→84, ReLU, f3 84→10, PyTorch's
// default initialization. 61,706 parameters.
func buildLeNet5(b *Builder) (Module, []int) {
	var d LayerInit
	return Sequential{
		NewConv2d(b, "c1", 1, 6, 5, pad(2), d), ReLU{}, MaxPool2d{K: 2},
		NewConv2d(b, "c2", 6, 16, 5, tensorcore.ConvParams{}, d), ReLU{}, MaxPool2d{K: 2},
		Flatten{},
		NewLinear(b, "f1", 400, 120, d), ReLU{},
		NewLinear(b, "f2", 120, 84, d), ReLU{},
		NewLinear(b, "f3", 84, 10, d),
	}, []int{1, 28, 28}
}

// buildLeNet51998 follows the 1998 paper with these differences: the 32×32
// input is the 28×28 image padded by 2 in C1; S2 and S4 are plain 2×2
// average pooling (the paper's trainable coefficient and bias per map are
// left out); C3 connects every S2 map (not the paper's table of 60
// connections); the output layer is a linear layer giving logits for
// cross-entropy (not Euclidean RBF units). Units use 1.7159·tanh(2x/3) and
// LeCun-uniform initialization. Names: c1, c3, c5, f6, out. lenet5-paper
// (partial.go) keeps the paper's C3 table, subsampling and 32×32 input.
func buildLeNet51998(b *Builder) (Module, []int) {
	init := LayerInit{Weight: LeCunUniform()}
	return Sequential{
		NewConv2d(b, "c1", 1, 6, 5, pad(2), init), ScaledTanh{}, AvgPool2d{K: 2},
		NewConv2d(b, "c3", 6, 16, 5, tensorcore.ConvParams{}, init), ScaledTanh{}, AvgPool2d{K: 2},
		NewConv2d(b, "c5", 16, 120, 5, tensorcore.ConvParams{}, init), ScaledTanh{},
		Flatten{},
		NewLinear(b, "f6", 120, 84, init), ScaledTanh{},
		NewLinear(b, "out", 84, 10, init),
	}, []int{1, 28, 28}
}

// buildConvNet1990: the 1990 NIPS net's filters-tanh → pooling →
// filters-tanh → pooling → filters shape on a 16×16 image: c1 4@5×5 pad 2
// (16×16), tanh, avg 2 (8×8), c2 12@5×5 pad 2 (8×8), tanh, avg 2 (4×4), c3
// 10@4×4 (1×1). The last filters give the 10 logits directly (no squashing,
// since they feed cross-entropy).
func buildConvNet1990(b *Builder) (Module, []int) {
	init := LayerInit{Weight: LeCunUniform()}
	return Sequential{
		NewConv2d(b, "c1", 1, 4, 5, pad(2), init), Tanh{}, AvgPool2d{K: 2},
		NewConv2d(b, "c2", 4, 12, 5, pad(2), init), Tanh{}, AvgPool2d{K: 2},
		NewConv2d(b, "c3", 12, 10, 4, tensorcore.ConvParams{}, init),
		Flatten{},
	}, []int{1, 16, 16}
}

// buildVGG: conv3×3(32)-BN-ReLU ×2, max 2, conv3×3(64)-BN-ReLU ×2, max 2,
// FC 3136→128, ReLU, FC 128→10. Convolutions before a BatchNorm have no
// bias. Names: conv1…conv4, bn1…bn4, fc1, fc2.
func buildVGG(b *Builder) (Module, []int) {
	conv := LayerInit{Weight: KaimingNormal(0, FanOut), NoBias: true}
	var net Sequential
	in, i := 1, 1
	for _, v := range []int{32, 32, 0, 64, 64, 0} {
		if v == 0 {
			net = append(net, MaxPool2d{K: 2})
			continue
		}
		name := fmt.Sprint(i)
		net = append(net, NewConv2d(b, "conv"+name, in, v, 3, pad(1), conv), NewBatchNorm(b, "bn"+name, v), ReLU{})
		in, i = v, i+1
	}
	var d LayerInit
	net = append(net, Flatten{},
		NewLinear(b, "fc1", 64*7*7, 128, d), ReLU{}, Dropout{P: 0.3},
		NewLinear(b, "fc2", 128, 10, d))
	return net, []int{1, 28, 28}
}

// buildResNet8: stem conv3×3(16)-BN-ReLU, residual blocks 16→16, 16→32
// (stride 2), 32→64 (stride 2), global 7×7 average pool, FC 64→10.
func buildResNet8(b *Builder) (Module, []int) {
	conv := LayerInit{Weight: KaimingNormal(0, FanOut), NoBias: true}
	var d LayerInit
	return Sequential{
		NewConv2d(b, "conv1", 1, 16, 3, pad(1), conv), NewBatchNorm(b, "bn1", 16), ReLU{},
		NewBasicBlock(b, "layer1", 16, 16, 1, BlockOptions{Init: conv}),
		NewBasicBlock(b, "layer2", 16, 32, 2, BlockOptions{Init: conv}),
		NewBasicBlock(b, "layer3", 32, 64, 2, BlockOptions{Init: conv}),
		AvgPool2d{K: 7},
		Flatten{},
		NewLinear(b, "fc", 64, 10, d),
	}, []int{1, 28, 28}
}

// buildConvNet64: a small ConvNet for colour image sets (imagefolder:DIR,
// shards:DIR) at 3×64×64: conv3×3(16)-BN-ReLU, max 2 (32×32),
// conv3×3(32)-BN-ReLU, max 2 (16×16), conv3×3(64)-BN-ReLU, max 2 (8×8),
// conv3×3(64)-BN-ReLU, global 8×8 average pool, FC 64→10. Names:
// conv1…conv4, bn1…bn4, fc.
func buildConvNet64(b *Builder) (Module, []int) { return convNet64(b, 10) }

func buildConvNet64x1000(b *Builder) (Module, []int) { return convNet64(b, 1000) }

// convNet64 is convnet64 with a head of classes outputs.
func convNet64(b *Builder, classes int) (Module, []int) {
	conv := LayerInit{Weight: KaimingNormal(0, FanOut), NoBias: true}
	var net Sequential
	in := 3
	for i, c := range []int{16, 32, 64, 64} {
		name := fmt.Sprint(i + 1)
		net = append(net, NewConv2d(b, "conv"+name, in, c, 3, pad(1), conv), NewBatchNorm(b, "bn"+name, c), ReLU{})
		if i < 3 {
			net = append(net, MaxPool2d{K: 2})
		}
		in = c
	}
	var d LayerInit
	net = append(net, AvgPool2d{K: 8}, Flatten{}, NewLinear(b, "fc", 64, classes, d))
	return net, []int{3, 64, 64}
}
