package models

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/job"
)

// optimizers are the optimizer names NewOptimizer builds, sorted. A job's
// name is matched without regard to case, and an empty name is sgd.
var optimizers = []string{"adam", "adamw", "rmsprop", "sgd"}

// CheckOptimizer returns nil if NewOptimizer builds the named optimizer,
// else an error naming it and the valid choices. The error has no package
// prefix: its caller puts the job key (optimizer.name) in front of it.
func CheckOptimizer(name string) error {
	if n := strings.ToLower(name); n == "" || slices.Contains(optimizers, n) {
		return nil
	}
	return fmt.Errorf("unknown optimizer %q (known: %s)", name, strings.Join(optimizers, ", "))
}

// NewOptimizer builds the job's optimizer over the arena's parameters and
// gradients. SGD and RMSProp take the job's momentum and weight decay as
// given (RMSProp its eps too when set); Adam and AdamW start from
// DefaultAdam and DefaultAdamW and take each of beta1, beta2, eps and
// weight decay that the job sets (non-zero), so AdamW keeps its decoupled
// decay of 0.01 unless the job names another.
func NewOptimizer(o job.Optimizer, a *Arena) (Optimizer, error) {
	if err := CheckOptimizer(o.Name); err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	decoupled := strings.EqualFold(o.Name, "adamw")
	if wd := o.WeightDecay; decoupled && wd == 0 {
		o.WeightDecay = float64(DefaultAdamW().WeightDecay)
	}
	if o.NoDecayNormBias && o.WeightDecay > 0 {
		inner := o
		inner.NoDecayNormBias, inner.WeightDecay = false, 0
		if decoupled {
			inner.Name = "adam" // AdamW is Adam with its decay applied apart
		}
		opt, err := NewOptimizer(inner, a)
		if err != nil {
			return nil, err
		}
		return newSelectiveDecay(opt, a, float32(o.WeightDecay), decoupled), nil
	}
	switch strings.ToLower(o.Name) {
	case "adam", "adamw":
		cfg := DefaultAdam()
		if strings.EqualFold(o.Name, "adamw") {
			cfg = DefaultAdamW()
		}
		if o.Beta1 != 0 {
			cfg.Beta1 = float32(o.Beta1)
		}
		if o.Beta2 != 0 {
			cfg.Beta2 = float32(o.Beta2)
		}
		if o.Eps != 0 {
			cfg.Eps = float32(o.Eps)
		}
		if o.WeightDecay != 0 {
			cfg.WeightDecay = float32(o.WeightDecay)
		}
		return NewAdam(a.Data, a.Grad, cfg)
	case "rmsprop":
		cfg := DefaultRMSProp()
		cfg.Momentum = float32(o.Momentum)
		cfg.WeightDecay = float32(o.WeightDecay)
		if o.Eps != 0 {
			cfg.Eps = float32(o.Eps)
		}
		return NewRMSProp(a.Data, a.Grad, cfg)
	default: // "sgd" or ""
		return NewSGD(a.Data, a.Grad, SGDConfig{Momentum: float32(o.Momentum), Nesterov: o.Nesterov, WeightDecay: float32(o.WeightDecay)})
	}
}

// selectiveDecay is an optimizer built without weight decay, with the
// decay applied by it to the weights only: every parameter of more than
// one dimension (convolution and linear weights), not BatchNorm's gamma
// and beta or any bias (job optimizer.no_decay_norm_bias). Coupled decay
// adds wd·p to the gradient before the step, decoupled decay (AdamW)
// scales p by 1-lr·wd; either is what the inner optimizer would have done
// with its own decay, element for element.
type selectiveDecay struct {
	Optimizer
	wd            float32
	decoupled     bool
	params, grads []float32
	ranges        [][2]int // [lo, hi) of the decayed parameters
}

func newSelectiveDecay(opt Optimizer, a *Arena, wd float32, decoupled bool) *selectiveDecay {
	o := &selectiveDecay{Optimizer: opt, wd: wd, decoupled: decoupled, params: a.Data, grads: a.Grad}
	for _, p := range a.Params {
		if len(p.Shape) > 1 {
			o.ranges = append(o.ranges, [2]int{p.Offset, p.Offset + p.Len()})
		}
	}
	return o
}

// decayAdder is an optimizer whose own coupled decay computes g + wd·p in
// a kernel of its own: selectiveDecay adds it the same way, so each weight
// gets the same bits as under the optimizer's own decay.
type decayAdder interface {
	addDecay(wd float32, p, g []float32)
}

// Step decays the weights, then steps the inner optimizer.
func (o *selectiveDecay) Step(lr float32) {
	for _, r := range o.ranges {
		p, g := o.params[r[0]:r[1]], o.grads[r[0]:r[1]]
		if o.decoupled {
			scale := 1 - lr*o.wd
			for i := range p {
				p[i] *= scale
			}
		} else if d, ok := o.Optimizer.(decayAdder); ok {
			d.addDecay(o.wd, p, g)
		} else {
			for i := range p {
				g[i] += o.wd * p[i]
			}
		}
	}
	o.Optimizer.Step(lr)
}

// NewSchedule builds the job's learning-rate schedule from its base rate
// lr over epochs epochs of stepsPerEpoch steps: step multiplies lr by
// Gamma every StepEpochs epochs, cosine anneals it to MinLR over the steps
// after the warm-up, and any other name (constant or "", the only others
// job.Spec.Validate lets through) keeps it. WarmupSteps > 0 puts a linear
// warm-up from lr/3 in front.
func NewSchedule(s job.Schedule, lr float64, epochs, stepsPerEpoch int) Schedule {
	var sched Schedule
	switch s.Name {
	case "step":
		sched = StepDecay{Base: lr, Every: s.StepEpochs * stepsPerEpoch, Gamma: s.Gamma}
	case "cosine":
		sched = Cosine{Base: lr, Min: s.MinLR, Steps: epochs*stepsPerEpoch - s.WarmupSteps}
	default:
		sched = ConstantLR{Base: lr}
	}
	if s.WarmupSteps > 0 {
		sched = Warmup{Steps: s.WarmupSteps, Start: 1.0 / 3, Then: sched}
	}
	return sched
}
