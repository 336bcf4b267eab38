package models

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// ParamInfo names one tensor of an arena: its dotted name ("c1.weight"), its
// shape and the offset of its first element in the arena's flat slice.
type ParamInfo struct {
	Name   string
	Shape  []int
	Offset int
}

// Len returns the number of elements of the tensor, the product of Shape.
func (p ParamInfo) Len() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

// Arena holds all parameters of a model in one flat slice and all their
// gradients in a parallel one, with named views.
//
// Layout contract: Params lists the parameters in construction order (the
// order the layers asked the Builder for them); they are contiguous and
// unpadded, so Params[i].Offset is the sum of the lengths before it and
// len(Data) == len(Grad) == the sum of all lengths. Backward produces
// gradients roughly in reverse construction order, so buckets taken from the
// end of Grad become ready first. Buffers and BufferInfo lay out the
// non-trained state (BatchNorm running mean and variance) the same way.
//
// The layers of the model hold views into Data, Grad and Buffers: callers
// may write into these slices (load a checkpoint, apply an update) but must
// never replace them.
type Arena struct {
	Data, Grad []float32
	Params     []ParamInfo

	Buffers    []float32
	BufferInfo []ParamInfo

	// Counters names the model's integer state as PyTorch keeps it
	// (BatchNorm's num_batches_tracked), in construction order. Its value
	// is not held here: it is the number of training batches the model has
	// seen, which the engine knows (see checkpoint.Counter).
	Counters []string

	index    map[string]int
	bufIndex map[string]int
}

// Lookup returns the layout of the parameter called name.
func (a *Arena) Lookup(name string) (ParamInfo, bool) {
	i, ok := a.index[name]
	if !ok {
		return ParamInfo{}, false
	}
	return a.Params[i], true
}

// LookupBuffer returns the layout of the buffer called name.
func (a *Arena) LookupBuffer(name string) (ParamInfo, bool) {
	i, ok := a.bufIndex[name]
	if !ok {
		return ParamInfo{}, false
	}
	return a.BufferInfo[i], true
}

// Value returns a view of the parameter called name, or nil if there is no
// such parameter.
func (a *Arena) Value(name string) *tensorcore.Tensor {
	p, ok := a.Lookup(name)
	if !ok {
		return nil
	}
	return view(a.Data, p)
}

// Gradient returns a view of the gradient of the parameter called name, or
// nil if there is no such parameter. (The field Grad is the whole flat
// gradient slice.)
func (a *Arena) Gradient(name string) *tensorcore.Tensor {
	p, ok := a.Lookup(name)
	if !ok {
		return nil
	}
	return view(a.Grad, p)
}

// Buffer returns a view of the non-trained buffer called name, or nil if
// there is no such buffer.
func (a *Arena) Buffer(name string) *tensorcore.Tensor {
	p, ok := a.LookupBuffer(name)
	if !ok {
		return nil
	}
	return view(a.Buffers, p)
}

// ZeroGrad sets every gradient to zero. Backward accumulates, so call it
// before each step's backward pass.
func (a *Arena) ZeroGrad() { clear(a.Grad) }

// NumParams returns the number of trainable scalars, len(Data).
func (a *Arena) NumParams() int { return len(a.Data) }

// CheckLayout returns an error naming the first difference between the
// layouts of a and b (names, shapes, offsets of parameters and buffers), or
// nil when values can be copied between them slice for slice.
func (a *Arena) CheckLayout(b *Arena) error {
	if err := sameInfos("parameter", a.Params, b.Params); err != nil {
		return err
	}
	return sameInfos("buffer", a.BufferInfo, b.BufferInfo)
}

// CopyFrom copies the parameters and buffers of src into a. The layouts must
// be the same (see CheckLayout). Gradients are not copied.
func (a *Arena) CopyFrom(src *Arena) error {
	if err := a.CheckLayout(src); err != nil {
		return err
	}
	copy(a.Data, src.Data)
	copy(a.Buffers, src.Buffers)
	return nil
}

func sameInfos(kind string, a, b []ParamInfo) error {
	if len(a) != len(b) {
		return fmt.Errorf("models: arena layouts differ: %d vs %d %ss", len(a), len(b), kind)
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Offset != b[i].Offset || !slices.Equal(a[i].Shape, b[i].Shape) {
			return fmt.Errorf("models: arena layouts differ at %s %d: %s %v @%d vs %s %v @%d",
				kind, i, a[i].Name, a[i].Shape, a[i].Offset, b[i].Name, b[i].Shape, b[i].Offset)
		}
	}
	return nil
}

func view(flat []float32, p ParamInfo) *tensorcore.Tensor {
	return &tensorcore.Tensor{Shape: append([]int(nil), p.Shape...), Data: flat[p.Offset : p.Offset+p.Len() : p.Offset+p.Len()]}
}

// Builder collects the parameters and buffers of a network while its layers
// are constructed, then lays them out in one Arena.
//
// Each Param call allocates and initializes the tensor at once (drawing from
// the Builder's rng in call order, so the same seed and the same
// construction order give identical parameters); Build then moves every
// tensor into the arena and repoints the views the layers hold. Errors (an
// empty or repeated name, a bad shape) are sticky: the first one is returned
// by Build.
type Builder struct {
	rng    *rand.Rand
	params []pending
	bufs   []pending
	counts []string
	names  map[string]bool
	err    error
	built  bool
	// shareData, when set, is the parameter slice Build lays the values
	// out in (a replica's); no initializer runs.
	shareData []float32
	// countOnly counts the parameters into count and allocates nothing:
	// Param and Buffer return tensors without data, and Build is not
	// called (see Describe).
	countOnly bool
	count     int
}

type pending struct {
	name        string
	value, grad *tensorcore.Tensor
}

// NewBuilder returns a Builder whose initializers draw from rng (which may
// be nil only if no random initializer is used).
func NewBuilder(rng *rand.Rand) *Builder {
	return &Builder{rng: rng, names: map[string]bool{}}
}

// RNG returns the generator the Builder's initializers draw from.
func (b *Builder) RNG() *rand.Rand { return b.rng }

// Err returns the first error recorded so far.
func (b *Builder) Err() error { return b.err }

func (b *Builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *Builder) claim(kind, name string, shape []int) bool {
	switch {
	case b.built:
		b.fail(fmt.Errorf("models: %s %q added after Build", kind, name))
		return false
	case name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, ".."):
		b.fail(fmt.Errorf("models: bad %s name %q", kind, name))
		return false
	case b.names[name]:
		b.fail(fmt.Errorf("models: %s name %q used twice", kind, name))
		return false
	}
	for _, d := range shape {
		if d <= 0 {
			b.fail(fmt.Errorf("models: %s %q: bad shape %v", kind, name, shape))
			return false
		}
	}
	b.names[name] = true
	return true
}

// Param adds a trainable tensor called name with the given shape,
// initialized by init (nil: zeros), and returns its value and gradient
// tensors. After Build they are views into the arena. On an error (see
// Builder) it returns placeholder tensors of the requested shape so that
// construction can go on; Build reports the error.
func (b *Builder) Param(name string, shape []int, init Initializer) (value, grad *tensorcore.Tensor) {
	if b.countOnly {
		b.count += shapeProd(shape)
		return &tensorcore.Tensor{Shape: shape}, &tensorcore.Tensor{Shape: shape}
	}
	value, grad = placeholder(shape), placeholder(shape)
	if !b.claim("parameter", name, shape) {
		return value, grad
	}
	if init != nil && b.shareData == nil {
		init(value.Data, value.Shape, b.rng)
	}
	b.params = append(b.params, pending{name: name, value: value, grad: grad})
	return value, grad
}

// Buffer adds a non-trained tensor called name, every element set to fill,
// and returns it; after Build it is a view into the arena's Buffers.
func (b *Builder) Buffer(name string, shape []int, fill float32) *tensorcore.Tensor {
	if b.countOnly {
		return &tensorcore.Tensor{Shape: shape}
	}
	t := placeholder(shape)
	if !b.claim("buffer", name, shape) {
		return t
	}
	for i := range t.Data {
		t.Data[i] = fill
	}
	b.bufs = append(b.bufs, pending{name: name, value: t})
	return t
}

// Counter adds an integer counter of training batches called name (see
// Arena.Counters).
func (b *Builder) Counter(name string) {
	if b.claim("counter", name, nil) {
		b.counts = append(b.counts, name)
	}
}

func placeholder(shape []int) *tensorcore.Tensor {
	n := 1
	for _, d := range shape {
		if d > 0 {
			n *= d
		} else {
			n = 0
		}
	}
	return &tensorcore.Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// Build lays out every parameter and buffer in a new Arena, in the order
// they were added, and repoints the tensors Param and Buffer returned to
// views of it. It may be called once.
func (b *Builder) Build() (*Arena, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.built {
		return nil, errors.New("models: Build called twice")
	}
	b.built = true
	a := &Arena{index: make(map[string]int, len(b.params)), bufIndex: make(map[string]int, len(b.bufs))}
	a.Params, a.Data = layout(b.params, a.index, b.shareData)
	a.Grad = make([]float32, len(a.Data))
	for i, p := range b.params {
		info := a.Params[i]
		p.grad.Data = a.Grad[info.Offset : info.Offset+info.Len() : info.Offset+info.Len()]
	}
	a.BufferInfo, a.Buffers = layout(b.bufs, a.bufIndex, nil)
	a.Counters = b.counts
	return a, nil
}

// layout copies the pending tensors into one new flat slice (or, when
// shared is not nil, points them into shared without copying), repoints
// their values at it and returns their infos.
func layout(ps []pending, index map[string]int, shared []float32) ([]ParamInfo, []float32) {
	total := 0
	for _, p := range ps {
		total += len(p.value.Data)
	}
	flat := shared
	if flat == nil || len(flat) != total {
		flat = make([]float32, total)
	}
	infos := make([]ParamInfo, len(ps))
	off := 0
	for i, p := range ps {
		n := len(p.value.Data)
		if shared == nil {
			copy(flat[off:], p.value.Data)
		}
		p.value.Data = flat[off : off+n : off+n]
		infos[i] = ParamInfo{Name: p.name, Shape: append([]int(nil), p.value.Shape...), Offset: off}
		index[p.name] = i
		off += n
	}
	return infos, flat
}
