package models

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/tensorcore"
)

// An Optimizer updates a flat parameter slice in place from the parallel
// gradient slice it was made with (usually Arena.Data and Arena.Grad).
//
// Every replica of a data-parallel job applies the same Step to the same
// all-reduced gradients and so stays bit-identical. The state (moment
// buffers and the step count) is flat too: State returns it as named views
// for a checkpoint, LoadState restores it.
type Optimizer interface {
	// Step applies one update with learning rate lr and counts it.
	Step(lr float32)
	// Steps returns the number of steps taken (or loaded).
	Steps() int64
	// State returns the optimizer's buffers as named views (not copies),
	// each as long as the parameter slice, in a fixed order.
	State() []NamedSlice
	// LoadState sets the step count and copies the named buffers in. Every
	// buffer State lists must be given once, with the right length, and no
	// other; on an error nothing is changed.
	LoadState(steps int64, state []NamedSlice) error
}

// NamedSlice is one named flat buffer of optimizer state.
type NamedSlice struct {
	Name string
	Data []float32
}

func checkLens(kind string, params, grads []float32) error {
	if len(params) != len(grads) {
		return fmt.Errorf("models: %s: %d parameters but %d gradients", kind, len(params), len(grads))
	}
	return nil
}

func loadState(kind string, steps int64, have, given []NamedSlice) error {
	if steps < 0 {
		return fmt.Errorf("models: %s: negative step count %d", kind, steps)
	}
	for _, h := range have {
		found := false
		for _, g := range given {
			if g.Name != h.Name {
				continue
			}
			if len(g.Data) != len(h.Data) {
				return fmt.Errorf("models: %s: state %q has %d elements, want %d", kind, g.Name, len(g.Data), len(h.Data))
			}
			found = true
		}
		if !found {
			return fmt.Errorf("models: %s: state %q missing", kind, h.Name)
		}
	}
	for i, g := range given {
		known := false
		for _, h := range have {
			known = known || g.Name == h.Name
		}
		if !known {
			return fmt.Errorf("models: %s: unknown state %q", kind, g.Name)
		}
		for _, g2 := range given[:i] {
			if g2.Name == g.Name {
				return fmt.Errorf("models: %s: state %q given twice", kind, g.Name)
			}
		}
	}
	for _, h := range have {
		for _, g := range given {
			if g.Name == h.Name {
				copy(h.Data, g.Data)
			}
		}
	}
	return nil
}

// parallel runs an optimizer's element-wise update over the cores of a
// pool: each element's arithmetic is what one core would do, so the result
// is the same bits however the range is split.
type parallel struct {
	pool *tensorcore.Pool // nil: the caller's goroutine
	fn   func(lo, hi int)
}

// parallelGrain is the fewest elements worth a part of their own.
const parallelGrain = 1 << 14

func (q *parallel) run(n int) {
	if q.pool == nil || n < 2*parallelGrain {
		q.fn(0, n)
		return
	}
	q.pool.For(n, parallelGrain, q.fn)
}

// UsePool makes o's steps update its parameters on p's cores (nil: on the
// caller's goroutine, the default). The updates are the same bits either
// way.
func UsePool(o Optimizer, p *tensorcore.Pool) {
	switch o := o.(type) {
	case *SGD:
		o.par.pool = p
	case *Adam:
		o.par.pool = p
	case *RMSProp:
		o.par.pool = p
	case *selectiveDecay:
		UsePool(o.Optimizer, p)
	}
}

// SGDConfig configures SGD. The zero value is plain SGD.
type SGDConfig struct {
	Momentum    float32 // 0: no momentum buffer
	Dampening   float32 // scales the gradient added to the momentum buffer by 1-Dampening (not on the first step)
	WeightDecay float32 // L2 penalty added to the gradient
	Nesterov    bool    // requires Momentum > 0 and Dampening == 0
}

// SGD is stochastic gradient descent with PyTorch's semantics
// (torch.optim.SGD): for each element, with g the gradient and p the
// parameter,
//
//	g = g + wd·p
//	buf = g on the first step, else momentum·buf + (1-dampening)·g
//	g = g + momentum·buf if Nesterov, else buf   (when momentum > 0)
//	p = p - lr·g
type SGD struct {
	cfg           SGDConfig
	params, grads []float32
	buf           []float32 // (len(params)) momentum buffer; nil without momentum
	steps         int64
	par           parallel
	lr            float32 // the step in progress's
}

// NewSGD returns SGD over params with gradients grads.
func NewSGD(params, grads []float32, cfg SGDConfig) (*SGD, error) {
	if err := checkLens("sgd", params, grads); err != nil {
		return nil, err
	}
	if cfg.Momentum < 0 || cfg.WeightDecay < 0 || notFinite(cfg.Momentum, cfg.Dampening, cfg.WeightDecay) {
		return nil, fmt.Errorf("models: sgd: bad config %+v", cfg)
	}
	if cfg.Nesterov && (cfg.Momentum <= 0 || cfg.Dampening != 0) {
		return nil, fmt.Errorf("models: sgd: Nesterov needs momentum > 0 and zero dampening, have %+v", cfg)
	}
	o := &SGD{cfg: cfg, params: params, grads: grads}
	if cfg.Momentum != 0 {
		o.buf = make([]float32, len(params))
	}
	o.par.fn = o.stepRange
	return o, nil
}

// Step applies one SGD update with learning rate lr.
func (o *SGD) Step(lr float32) {
	o.lr = lr
	o.par.run(len(o.params))
	o.steps++
}

// stepRange updates elements [lo, hi) with the step's o.lr, on the
// tensor core's vector kernel.
func (o *SGD) stepRange(lo, hi int) {
	var buf []float32
	if o.buf != nil {
		buf = o.buf[lo:hi]
	}
	tensorcore.SGDStep(o.params[lo:hi], o.grads[lo:hi], buf, tensorcore.SGDArgs{
		LR: o.lr, WeightDecay: o.cfg.WeightDecay, Momentum: o.cfg.Momentum, Dampening: o.cfg.Dampening,
		Nesterov: o.cfg.Nesterov, First: o.steps == 0,
	})
}

// addDecay adds wd·p to g as the SGD kernel's own decay does (fused).
func (o *SGD) addDecay(wd float32, p, g []float32) { tensorcore.Axpy(wd, p, g) }

// Steps returns the number of steps taken.
func (o *SGD) Steps() int64 { return o.steps }

// State returns "momentum_buffer" when momentum is on, else nothing.
func (o *SGD) State() []NamedSlice {
	if o.buf == nil {
		return nil
	}
	return []NamedSlice{{"momentum_buffer", o.buf}}
}

// LoadState restores the step count and the momentum buffer.
func (o *SGD) LoadState(steps int64, state []NamedSlice) error {
	if err := loadState("sgd", steps, o.State(), state); err != nil {
		return err
	}
	o.steps = steps
	return nil
}

// AdamConfig configures Adam and AdamW.
type AdamConfig struct {
	Beta1, Beta2 float32
	Eps          float32
	WeightDecay  float32
	// Decoupled selects AdamW: weight decay multiplies the parameter by
	// (1 - lr·WeightDecay) instead of adding WeightDecay·p to the gradient.
	Decoupled bool
}

// DefaultAdam returns PyTorch's Adam defaults: betas (0.9, 0.999), eps 1e-8,
// no weight decay.
func DefaultAdam() AdamConfig { return AdamConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

// DefaultAdamW returns PyTorch's AdamW defaults: DefaultAdam with decoupled
// weight decay 0.01.
func DefaultAdamW() AdamConfig {
	c := DefaultAdam()
	c.WeightDecay, c.Decoupled = 0.01, true
	return c
}

// Adam is Adam or AdamW with PyTorch's semantics (torch.optim.Adam/AdamW,
// no amsgrad): with t the 1-based step,
//
//	p = p·(1 - lr·wd) (AdamW)   or   g = g + wd·p (Adam)
//	m = β1·m + (1-β1)·g
//	v = β2·v + (1-β2)·g²
//	p = p - (lr/(1-β1ᵗ)) · m / (√v/√(1-β2ᵗ) + eps)
type Adam struct {
	cfg           AdamConfig
	params, grads []float32
	m, v          []float32 // (len(params)) first and second moments
	steps         int64
	par           parallel
	// the step in progress's factors
	stepSize, bc2Sqrt, decay, wd float32
}

// NewAdam returns Adam (or AdamW, see AdamConfig.Decoupled) over params
// with gradients grads.
func NewAdam(params, grads []float32, cfg AdamConfig) (*Adam, error) {
	if err := checkLens("adam", params, grads); err != nil {
		return nil, err
	}
	if cfg.Beta1 < 0 || cfg.Beta1 >= 1 || cfg.Beta2 < 0 || cfg.Beta2 >= 1 || cfg.Eps < 0 || cfg.WeightDecay < 0 ||
		notFinite(cfg.Eps, cfg.WeightDecay) {
		return nil, fmt.Errorf("models: adam: bad config %+v", cfg)
	}
	o := &Adam{cfg: cfg, params: params, grads: grads,
		m: make([]float32, len(params)), v: make([]float32, len(params))}
	o.par.fn = o.stepRange
	return o, nil
}

// Step applies one Adam update with learning rate lr.
func (o *Adam) Step(lr float32) {
	o.steps++
	t := float64(o.steps)
	o.stepSize = float32(float64(lr) / (1 - math.Pow(float64(o.cfg.Beta1), t)))
	o.bc2Sqrt = float32(math.Sqrt(1 - math.Pow(float64(o.cfg.Beta2), t)))
	o.decay, o.wd = 1, o.cfg.WeightDecay
	if o.cfg.Decoupled {
		o.decay, o.wd = 1-lr*o.cfg.WeightDecay, 0
	}
	o.par.run(len(o.params))
}

// stepRange updates elements [lo, hi) with the step's factors.
func (o *Adam) stepRange(lo, hi int) {
	b1, b2 := o.cfg.Beta1, o.cfg.Beta2
	stepSize, bc2Sqrt, eps, wd, decay := o.stepSize, o.bc2Sqrt, o.cfg.Eps, o.wd, o.decay
	p, g := o.params[lo:hi], o.grads[lo:hi]
	p = p[:len(g)]
	m, v := o.m[lo:hi], o.v[lo:hi]
	m, v = m[:len(p)], v[:len(p)]
	for i := range p {
		pi := p[i] * decay
		gi := g[i] + wd*pi
		mi := b1*m[i] + (1-b1)*gi
		vi := b2*v[i] + (1-b2)*gi*gi
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))/bc2Sqrt + eps
		p[i] = pi - stepSize*mi/denom
	}
}

// Steps returns the number of steps taken.
func (o *Adam) Steps() int64 { return o.steps }

// State returns "exp_avg" (m) and "exp_avg_sq" (v).
func (o *Adam) State() []NamedSlice {
	return []NamedSlice{{"exp_avg", o.m}, {"exp_avg_sq", o.v}}
}

// LoadState restores the step count and both moments.
func (o *Adam) LoadState(steps int64, state []NamedSlice) error {
	if err := loadState("adam", steps, o.State(), state); err != nil {
		return err
	}
	o.steps = steps
	return nil
}

// RMSPropConfig configures RMSProp.
type RMSPropConfig struct {
	Alpha       float32 // smoothing of the squared-gradient average
	Eps         float32
	WeightDecay float32
	Momentum    float32 // 0: no momentum buffer
	Centered    bool    // normalize by the variance estimate instead of the second moment
}

// DefaultRMSProp returns PyTorch's defaults: alpha 0.99, eps 1e-8.
func DefaultRMSProp() RMSPropConfig { return RMSPropConfig{Alpha: 0.99, Eps: 1e-8} }

// RMSProp has PyTorch's semantics (torch.optim.RMSprop):
//
//	g = g + wd·p
//	s = α·s + (1-α)·g²
//	a = √(s - ḡ²) + eps with ḡ = α·ḡ + (1-α)·g (centered), else √s + eps
//	buf = momentum·buf + g/a; p = p - lr·buf   (momentum > 0)
//	p = p - lr·g/a                             (otherwise)
type RMSProp struct {
	cfg           RMSPropConfig
	params, grads []float32
	sq            []float32 // (len(params)) square_avg
	gavg          []float32 // (len(params)) grad_avg, centered only
	buf           []float32 // (len(params)) momentum_buffer, momentum only
	steps         int64
	par           parallel
	lr            float32 // the step in progress's
}

// NewRMSProp returns RMSProp over params with gradients grads.
func NewRMSProp(params, grads []float32, cfg RMSPropConfig) (*RMSProp, error) {
	if err := checkLens("rmsprop", params, grads); err != nil {
		return nil, err
	}
	if cfg.Alpha < 0 || cfg.Alpha > 1 || cfg.Eps < 0 || cfg.WeightDecay < 0 || cfg.Momentum < 0 ||
		notFinite(cfg.Eps, cfg.WeightDecay, cfg.Momentum) {
		return nil, fmt.Errorf("models: rmsprop: bad config %+v", cfg)
	}
	o := &RMSProp{cfg: cfg, params: params, grads: grads, sq: make([]float32, len(params))}
	if cfg.Centered {
		o.gavg = make([]float32, len(params))
	}
	if cfg.Momentum > 0 {
		o.buf = make([]float32, len(params))
	}
	o.par.fn = o.stepRange
	return o, nil
}

// Step applies one RMSProp update with learning rate lr.
func (o *RMSProp) Step(lr float32) {
	o.lr = lr
	o.par.run(len(o.params))
	o.steps++
}

// stepRange updates elements [lo, hi) with the step's o.lr.
func (o *RMSProp) stepRange(lo, hi int) {
	p, g := o.params[lo:hi], o.grads[lo:hi]
	p = p[:len(g)]
	sq := o.sq[lo:hi]
	sq = sq[:len(p)]
	lr, a, eps, wd, mom := o.lr, o.cfg.Alpha, o.cfg.Eps, o.cfg.WeightDecay, o.cfg.Momentum
	for i := range p {
		gi := g[i] + wd*p[i]
		s := a*sq[i] + (1-a)*gi*gi
		sq[i] = s
		if o.gavg != nil {
			ga := o.gavg[lo+i] + (1-a)*(gi-o.gavg[lo+i])
			o.gavg[lo+i] = ga
			s -= ga * ga
		}
		avg := float32(math.Sqrt(float64(s))) + eps
		if o.buf != nil {
			b := mom*o.buf[lo+i] + gi/avg
			o.buf[lo+i] = b
			p[i] -= lr * b
		} else {
			p[i] -= lr * gi / avg
		}
	}
}

// Steps returns the number of steps taken.
func (o *RMSProp) Steps() int64 { return o.steps }

// State returns "square_avg", then "grad_avg" (centered) and
// "momentum_buffer" (momentum) when used.
func (o *RMSProp) State() []NamedSlice {
	s := []NamedSlice{{"square_avg", o.sq}}
	if o.gavg != nil {
		s = append(s, NamedSlice{"grad_avg", o.gavg})
	}
	if o.buf != nil {
		s = append(s, NamedSlice{"momentum_buffer", o.buf})
	}
	return s
}

// LoadState restores the step count and the buffers.
func (o *RMSProp) LoadState(steps int64, state []NamedSlice) error {
	if err := loadState("rmsprop", steps, o.State(), state); err != nil {
		return err
	}
	o.steps = steps
	return nil
}

func notFinite(xs ...float32) bool {
	for _, x := range xs {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return true
		}
	}
	return false
}
